//! One backend connection: login as the tenant's role (SCRAM), the few
//! control queries the proxy runs itself, and the reset that makes a
//! connection safe to hand to the next client.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::clock::Stamp;
pub use super::endpoint::Endpoint;
use super::replies::{ServerParams, parse_data_row};
use super::settings::{self, Settings};
use super::tls::BackendStream;
use crate::config::BackendTls;
use crate::error::ClientError;
use crate::protocol::{self, ErrorFields, TxStatus, tag};
use crate::registry::Tenant;
use crate::session::prepared::StatementCache;
use crate::timer::Timers;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Backend(ErrorFields),
    #[error("unexpected reply from the server: {0}")]
    Unexpected(String),
}

impl From<ServerError> for ClientError {
    fn from(e: ServerError) -> Self {
        match e {
            ServerError::Backend(f) => ClientError::Backend(f),
            ServerError::Io(_) => ClientError::BackendLost,
            ServerError::Unexpected(m) => ClientError::BackendConnect(m),
        }
    }
}

/// The pinned identity a connection must show before it is handed out.
/// `current_schemas(false)`: the schemas name resolution uses (bar the
/// implicit `pg_catalog`), which must be the tenant's alone.
const VERIFY: &str = "SELECT current_user, pg_catalog.current_schema(), \
     pg_catalog.array_to_string(pg_catalog.current_schemas(false), ',')";
const MAX_CONTROL_MSG: usize = 1 << 20;
/// How long [`ServerConn::close`] waits for the server's end to close.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// How long a control query (verification, settings, reset) may take: a
/// server that has not answered by then stopped answering (a frozen host,
/// a dropped network), and the connection is closed instead of holding
/// its client, slot and budget until the kernel gives up (~15 min).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(15);

pub struct ServerConn {
    pub stream: BackendStream,
    pub addr: SocketAddr,
    pub pid: i32,
    pub secret: i32,
    /// Last ParameterStatus value of each reported setting.
    pub params: ServerParams,
    pub tenant: Arc<Tenant>,
    pub created: Stamp,
    pub idle_since: Stamp,
    /// Client settings the proxy has SET on this session.
    applied: Settings,
    /// Named statements prepared here (transaction mode).
    pub statements: StatementCache,
    buf: BytesMut,
    timers: Timers,
    /// Its place under `max_backend_connections`; None once given back.
    budget: Option<OwnedSemaphorePermit>,
    /// A client seeded the server's random() sequence here, which no
    /// reset undoes: closed, never handed to another client.
    pub reseeded: bool,
}

impl ServerConn {
    pub async fn connect(
        ep: &Endpoint,
        timers: &Timers,
        tenant: Arc<Tenant>,
        password: &str,
        budget: OwnedSemaphorePermit,
        statement_cache: usize,
    ) -> Result<ServerConn, ClientError> {
        let connect = TcpStream::connect((ep.host.as_str(), ep.port));
        let stream = timers
            .timeout(ep.connect_timeout, connect)
            .await
            .map_err(|_| {
                ClientError::BackendConnect(format!(
                    "timed out after {} ms",
                    ep.connect_timeout.as_millis()
                ))
            })?
            .map_err(|e| ClientError::BackendConnect(e.to_string()))?;
        crate::net::configure(&stream);
        let addr = stream
            .peer_addr()
            .map_err(|e| ClientError::BackendConnect(e.to_string()))?;
        let stream = timers
            .timeout(ep.connect_timeout, super::tls::negotiate(ep, stream))
            .await
            .map_err(|_| ClientError::BackendConnect("TLS negotiation timed out".into()))??;
        let mut conn = ServerConn {
            stream,
            addr,
            pid: 0,
            secret: 0,
            params: ServerParams::default(),
            tenant,
            created: Stamp::now(),
            idle_since: Stamp::now(),
            applied: Settings::from([]),
            statements: StatementCache::new(statement_cache),
            buf: BytesMut::with_capacity(4096),
            timers: timers.clone(),
            budget: Some(budget),
            reseeded: false,
        };
        // The role's password itself may go only where nobody can listen
        // in or stand in: a verified server, or this host.
        let cleartext_ok = addr.ip().is_loopback()
            || matches!(ep.tls.mode, BackendTls::VerifyCa | BackendTls::VerifyFull);
        let login = conn.login(&ep.dbname, password, cleartext_ok);
        timers
            .timeout(ep.connect_timeout, login)
            .await
            .map_err(|_| ClientError::BackendConnect("login timed out".into()))?
            .map_err(|e| conn.login_refused(e))?;
        conn.pin().await?;
        Ok(conn)
    }

    /// A refusal of the tenant role's login is the proxy's problem, not the
    /// client's: passed on as is, a 28P01 would tell the client its key is
    /// wrong. The server's reason goes to the log.
    fn login_refused(&self, e: ServerError) -> ClientError {
        match e {
            ServerError::Backend(f) if f.code.starts_with("28") => {
                tracing::error!(
                    tenant = %self.tenant.name,
                    code = %f.code,
                    reason = %f.message,
                    "the server refused the tenant role's login"
                );
                ClientError::BackendLoginRefused(f.code)
            }
            e => e.into(),
        }
    }

    /// `cleartext_ok`: the server may ask for the password itself (its
    /// `password` method); otherwise only a proof of it (SCRAM, MD5) goes.
    async fn login(
        &mut self,
        dbname: &str,
        password: &str,
        cleartext_ok: bool,
    ) -> Result<(), ServerError> {
        let mut out = BytesMut::new();
        let role = self.tenant.role.clone();
        let options = settings::startup_options(&self.tenant.schema);
        frontend::startup_message(
            [
                ("user", role.as_str()),
                ("database", dbname),
                ("client_encoding", "UTF8"),
                ("application_name", "pgtenant"),
                ("options", options.as_str()),
            ],
            &mut out,
        )?;
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        let mut scram: Option<ScramSha256> = None;
        loop {
            let (t, mut body) = self.read_msg().await?;
            match t {
                tag::AUTHENTICATION => {
                    out.clear();
                    if body.len() < 4 {
                        return Err(bad("short Authentication message"));
                    }
                    match body.get_i32() {
                        0 => continue,
                        3 if cleartext_ok => {
                            frontend::password_message(password.as_bytes(), &mut out)?
                        }
                        3 => {
                            return Err(bad(
                                "the server asked for the role's password in cleartext over a \
                                 connection that may be read or intercepted; use scram-sha-256 \
                                 in pg_hba.conf, or backend.tls = verify-ca or verify-full",
                            ));
                        }
                        5 => {
                            let salt = body.get(..4).ok_or_else(|| bad("short MD5 salt"))?;
                            let hash = postgres_protocol::authentication::md5_hash(
                                role.as_bytes(),
                                password.as_bytes(),
                                salt.try_into().expect("4 bytes"),
                            );
                            frontend::password_message(hash.as_bytes(), &mut out)?;
                        }
                        10 => {
                            let offers_scram = body[..]
                                .split(|&b| b == 0)
                                .any(|m| m == SCRAM_SHA_256.as_bytes());
                            if !offers_scram {
                                return Err(bad("server offers no SCRAM-SHA-256"));
                            }
                            let s = ScramSha256::new(
                                password.as_bytes(),
                                ChannelBinding::unsupported(),
                            );
                            frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out)?;
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram
                                .as_mut()
                                .ok_or_else(|| bad("SASL continue before start"))?;
                            // PBKDF2, ~0.9 ms: on this thread, on purpose. On
                            // a thread of its own it made the process
                            // multi-threaded, and glibc's socket calls slower
                            // for good (+5.5 % instructions per relayed
                            // transaction: bench/results/
                            // 2026-12-05-1143-vm-login-burst.md).
                            s.update(&body).map_err(|e| bad(&format!("SCRAM: {e}")))?;
                            frontend::sasl_response(s.message(), &mut out)?;
                        }
                        12 => {
                            let s = scram
                                .as_mut()
                                .ok_or_else(|| bad("SASL final before start"))?;
                            // A wrong signature: the server does not know
                            // the password, so it is not ours.
                            s.finish(&body).map_err(|e| bad(&format!("SCRAM: {e}")))?;
                            continue;
                        }
                        other => return Err(bad(&format!("authentication method {other}"))),
                    }
                    self.stream.write_all(&out).await?;
                    self.stream.flush().await?;
                }
                tag::PARAMETER_STATUS => self.record_param(&body),
                tag::BACKEND_KEY_DATA if body.len() >= 8 => {
                    self.pid = body.get_i32();
                    self.secret = body.get_i32();
                }
                tag::READY_FOR_QUERY => return Ok(()),
                tag::ERROR_RESPONSE => return Err(ServerError::Backend(ErrorFields::parse(&body))),
                _ => {} // notices, NegotiateProtocolVersion
            }
        }
    }

    /// Checks that the fresh session is the tenant's role in the tenant's
    /// schema.
    async fn pin(&mut self) -> Result<(), ClientError> {
        let r = self.simple(&[VERIFY]).await?;
        let row = r
            .rows
            .first()
            .filter(|row| row.len() >= 3)
            .ok_or_else(|| bad("no verification row"))?;
        if row[0] != self.tenant.role || row[1] != self.tenant.schema || row[2] != row[1] {
            return Err(ClientError::BackendConnect(format!(
                "tenant role {} is not pinned to schema {} (got role {}, schemas {}); does the \
                 schema exist, and is the role the one `pgtenant tenant create` made?",
                self.tenant.role, self.tenant.schema, row[0], row[2]
            )));
        }
        Ok(())
    }

    /// The SQL that makes the session's settings the client's (RESETs what
    /// an earlier client had set, SETs what differs; see
    /// [`super::settings`]), and whether it undoes an earlier client's
    /// value (holds a RESET; see `session::attach`); None when they already
    /// are: the common case, the same settings as the last client. Once it
    /// has run (or is sent), call [`Self::settings_applied`].
    pub fn settings_sql(&self, wanted: &Settings) -> Option<(String, bool)> {
        if Arc::ptr_eq(&self.applied, wanted) || self.applied == *wanted {
            return None;
        }
        // Room for a SET of each, so that building it rarely reallocates.
        let room = wanted.iter().map(|(n, v)| n.len() + v.len() + 16).sum();
        let (mut sql, mut undoes) = (String::with_capacity(room), false);
        for (name, _) in self.applied.iter() {
            if !wanted.iter().any(|(n, _)| n == name) {
                settings::push_reset(&mut sql, name);
                undoes = true;
            }
        }
        for (name, value) in wanted.iter() {
            let reported = self
                .params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name));
            if self.applied.iter().any(|(n, v)| n == name && v == value)
                || reported.is_some_and(|(_, v)| v == value)
            {
                continue;
            }
            // Another client's value first goes: a SET may keep part of it
            // (`SET DateStyle = 'ISO'` keeps the field order `German` set).
            if self.applied.iter().any(|(n, _)| n == name) {
                settings::push_reset(&mut sql, name);
                undoes = true;
            }
            settings::push_set(&mut sql, name, value);
        }
        (!sql.is_empty()).then_some((sql, undoes))
    }

    pub fn settings_applied(&mut self, wanted: &Settings) {
        self.applied = wanted.clone();
    }

    /// Runs SQL from [`Self::settings_sql`] and waits for the server's answer.
    pub async fn run_settings(&mut self, sql: &str) -> Result<(), ClientError> {
        let r = self.simple(&[sql]).await?;
        match r.errors.into_iter().next() {
            Some(e) => Err(ClientError::Backend(e)),
            None => Ok(()),
        }
    }

    /// Reads back every setting changed in this session (by the client's
    /// SET/RESET/set_config or by the proxy), to replay on the client's
    /// next connection. Names are lowercased, values in base units. Custom
    /// settings are read by name: those in `custom` and the custom ones
    /// among `current` (the client's so far). The caller records them with
    /// [`Self::settings_applied`] (as the shared copy it keeps for the
    /// client).
    pub async fn capture_settings(
        &mut self,
        custom: &[String],
        current: &Settings,
    ) -> Result<Vec<(String, String)>, ServerError> {
        let known = current.iter().map(|(n, _)| n.as_str());
        let names = custom
            .iter()
            .map(String::as_str)
            .chain(known.filter(|n| n.contains('.')));
        let sql = settings::capture_sql(names);
        let r = self.simple(&[&sql]).await?;
        if let Some(e) = r.errors.into_iter().next() {
            return Err(ServerError::Backend(e));
        }
        r.rows
            .into_iter()
            .map(|mut row| match &mut row[..] {
                [name, value, ..] => Ok((std::mem::take(name), std::mem::take(value))),
                _ => Err(bad("short settings row")),
            })
            .collect()
    }

    /// Returns the session to the state of a fresh login: no transaction,
    /// no prepared statements, temp tables, advisory locks, LISTENs or
    /// settings.
    ///
    /// No query re-proves role and schema here: `DISCARD ALL` resets the
    /// role to the login role and every setting to its value at login,
    /// which [`Self::pin`] proved (a later `ALTER ROLE … SET` doesn't
    /// change a running session's reset values). What the server reports
    /// is checked instead, at no cost: the session user must still be the
    /// tenant's role, and not a superuser.
    pub async fn reset(&mut self, status: TxStatus) -> Result<(), ServerError> {
        let discard: &[&str] = &["DISCARD ALL"];
        let rollback: &[&str] = &["ROLLBACK", "DISCARD ALL"];
        let r = self
            .simple(if status == TxStatus::Idle {
                discard
            } else {
                rollback
            })
            .await?;
        if let Some(e) = r.errors.into_iter().next() {
            return Err(ServerError::Backend(e));
        }
        let reported = |name: &str| self.params.get(name);
        let ok = r.status == TxStatus::Idle
            && reported("session_authorization").is_none_or(|u| u == self.tenant.role)
            && reported("is_superuser") != Some("on");
        if !ok {
            return Err(bad("session is not back on its tenant's login role"));
        }
        // DISCARD ALL dropped every setting and prepared statement.
        self.applied = Settings::from([]);
        self.statements.clear();
        Ok(())
    }

    /// Says goodbye (Terminate) and waits, at most `CLOSE_WAIT`, for the
    /// server to close its end. A backend closes its socket only after it
    /// has left Postgres' process table, so the budget this connection
    /// frees when dropped is free on the server too: a connection opened
    /// in its place can't find Postgres still counting the old one (and,
    /// with the budget at the server's limit, refusing the new one).
    pub async fn close(mut self: Box<Self>, timers: &Timers) {
        let goodbye = async {
            let mut terminate = BytesMut::with_capacity(5);
            frontend::terminate(&mut terminate);
            self.stream.write_all(&terminate).await?;
            self.stream.flush().await?;
            let mut sink = [0u8; 64];
            while self.stream.read(&mut sink).await? > 0 {}
            Ok::<(), std::io::Error>(())
        };
        let _ = timers.timeout(CLOSE_WAIT, goodbye).await;
        drop(self.budget.take());
    }

    /// True when the server has closed the connection or sent something
    /// unprompted (a FATAL after pg_terminate_backend) while it sat idle.
    pub fn is_broken(&self) -> bool {
        self.stream.is_broken()
    }

    pub fn record_param(&mut self, body: &[u8]) {
        self.params.record(body);
    }

    /// Runs each query as its own Query message, all in one write, and
    /// reads until every one has been answered.
    /// At most [`CONTROL_TIMEOUT`]; after an error other than the
    /// server's own answer, the connection is in an unknown state and must
    /// be closed. (A Query drops the unnamed statement: nobody's is here.)
    async fn simple(&mut self, queries: &[&str]) -> Result<SimpleResult, ServerError> {
        self.statements.unnamed_owner = 0;
        let timers = self.timers.clone();
        // Boxed: the exchange's state would otherwise sit in the future of
        // every session that may reset or configure a connection.
        match timers
            .timeout(CONTROL_TIMEOUT, Box::pin(self.exchange(queries)))
            .await
        {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer to a control query in {CONTROL_TIMEOUT:?}"),
            )
            .into()),
        }
    }

    async fn exchange(&mut self, queries: &[&str]) -> Result<SimpleResult, ServerError> {
        // Sized once: grown from empty, each message's parts reallocate.
        let mut out = BytesMut::with_capacity(queries.iter().map(|q| q.len() + 6).sum());
        for q in queries {
            frontend::query(q, &mut out)?;
        }
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        let mut res = SimpleResult {
            rows: Vec::new(),
            errors: Vec::new(),
            status: TxStatus::Idle,
        };
        let mut pending = queries.len();
        while pending > 0 {
            let (t, body) = self.read_msg().await?;
            match t {
                b'D' => res.rows.push(parse_data_row(&body)?),
                tag::ERROR_RESPONSE => res.errors.push(ErrorFields::parse(&body)),
                tag::PARAMETER_STATUS => self.record_param(&body),
                tag::READY_FOR_QUERY => {
                    pending -= 1;
                    res.status = body
                        .first()
                        .and_then(|&b| TxStatus::from_byte(b))
                        .ok_or_else(|| bad("bad ReadyForQuery"))?;
                }
                b'G' | b'H' | b'W' => return Err(bad("unexpected COPY during a control query")),
                _ => {}
            }
        }
        Ok(res)
    }

    async fn read_msg(&mut self) -> Result<(u8, BytesMut), ServerError> {
        loop {
            if let Some(h) = protocol::header(&self.buf, MAX_CONTROL_MSG)
                .map_err(|e| ServerError::Unexpected(e.to_string()))?
                && self.buf.len() >= h.frame_len
            {
                let mut frame = self.buf.split_to(h.frame_len);
                frame.advance(protocol::HEADER_LEN);
                return Ok((h.tag, frame));
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
        }
    }

    pub fn age(&self) -> Duration {
        self.created.elapsed()
    }
}

struct SimpleResult {
    rows: Vec<Vec<String>>,
    errors: Vec<ErrorFields>,
    status: TxStatus,
}

pub(super) fn bad(what: &str) -> ServerError {
    ServerError::Unexpected(what.to_owned())
}

/// A connection dropped without [`ServerConn::close`] (closed dirty, past
/// its lifetime, found broken, its tenant gone) keeps its budget place
/// until the server has let it go, as `close` does: its end of the socket
/// is shut (the backend reads EOF and exits) and, in a task of its own,
/// read until the server's end closes too, at most `CLOSE_WAIT`. Without
/// that, a connection opened at once in its place could find PostgreSQL
/// still counting the old one and, with the budget at the server's
/// `max_connections`, be refused.
impl Drop for ServerConn {
    fn drop(&mut self) {
        let Some(budget) = self.budget.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(fd) = self.stream.tcp().as_fd().try_clone_to_owned() else {
            return;
        };
        let timers = self.timers.clone();
        runtime.spawn(async move {
            // The same socket under a second descriptor (already
            // non-blocking): it stays open when the connection's closes.
            let Ok(mut tcp) = TcpStream::from_std(std::net::TcpStream::from(fd)) else {
                return;
            };
            let _ = socket2::SockRef::from(&tcp).shutdown(std::net::Shutdown::Write);
            let drain = async {
                let mut sink = [0u8; 512];
                while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
            };
            let _ = timers.timeout(CLOSE_WAIT, drain).await;
            drop(budget);
        });
    }
}
