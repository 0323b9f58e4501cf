//! Client → server: frames client messages, lets the firewall see every
//! statement, renames named statements in transaction mode, and records
//! what reply each message will get (see [`super::expect`]).
//!
//! Messages are copied from the read buffer to the output buffer: they are
//! small, and it keeps rewriting simple. The large direction (results) is
//! zero-copy in [`super::downstream`].

mod effects;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::message::frontend;

use super::downstream::Downstream;
use super::expect::{Expect, Reply};
use super::pinning::{Effect, session_effect};
use super::prepared::{ClientStatements, Lookup, Statement, StatementCache};
use super::repeats::Repeats;
use crate::error::ClientError;
use crate::lexical::{self, Lexed};
use crate::pool::{ServerConn, Settings};
use crate::protocol::startup::StartupError;
use crate::protocol::{self, FrameError, TxStatus, read_cstr, tag};

/// A statement the server is sure to reject at parse time, sent in place of
/// a refused one so that the server's transaction state follows exactly as
/// if the refused statement had failed there.
const REFUSED_SQL: &str = "pgtenant refused this statement";
const PARSE_COMPLETE: &[u8] = b"1\0\0\0\x04";
pub const FLUSH: &[u8] = b"H\0\0\0\x04";
/// A session's named statements, in number and in text (transaction mode
/// keeps each one's Parse for the session).
const MAX_STATEMENTS: usize = 10_000;
const MAX_STATEMENT_BYTES: usize = 64 << 20;
const CLOSE_COMPLETE: &[u8] = b"3\0\0\0\x04";

/// Decides whether SQL may reach the server; `Err` holds the ErrorResponse.
/// Gets the raw text: SQL that is not valid UTF-8 is the inspector's call.
pub trait Inspector: Send + Sync {
    /// `lexed`: the text's words (see [`Inspector::reads_text`]).
    fn inspect(&self, sql: &[u8], lexed: &Lexed) -> Result<(), Bytes>;

    /// False when [`Inspector::inspect`] ignores the text: then its words
    /// are read only if the session-effect check needs them.
    fn reads_text(&self) -> bool {
        true
    }

    /// Whether refusals are enforced (not only logged): then the server
    /// must keep reading SQL as the inspector does.
    fn enforces(&self) -> bool {
        false
    }

    /// A FunctionCall message calls the function with this OID (None: the
    /// message is too short to name one); `Err` holds the ErrorResponse.
    fn function_call(&self, _oid: Option<u32>) -> Result<(), Bytes> {
        Ok(())
    }

    /// The session repeats a text it had cleared (see
    /// [`super::repeats`]): may it pass without a new look? `lexical`: the
    /// earlier text was cleared by the lexical facts alone, and this one
    /// differs from it in its numbers. Counts the repeat when it may pass.
    fn repeat(&self, _lexical: bool) -> bool {
        true
    }
}

/// Lets everything through (firewall off).
pub struct AllowAll;

impl Inspector for AllowAll {
    fn inspect(&self, _: &[u8], _: &Lexed) -> Result<(), Bytes> {
        Ok(())
    }

    fn reads_text(&self) -> bool {
        false
    }
}

pub struct Upstream {
    pub inbuf: BytesMut,
    /// Complete messages to write to the server.
    pub out: BytesMut,
    pub terminated: bool,
    /// After a refused Parse or an error the server skips on from: drop
    /// messages up to Sync, as the server does.
    discard_until_sync: bool,
    /// Extended-protocol messages went to the server after its last Sync
    /// (or Query): whatever its last ReadyForQuery said, it is
    /// mid-pipeline (maybe in an implicit transaction, maybe skipping to
    /// the Sync after an error) until that Sync's ReadyForQuery. Its
    /// connection can't be given to anyone else, nor reset, until then.
    pub unsynced: bool,
    /// Transaction mode: why this client keeps its server connection.
    pub pinned: Option<&'static str>,
    /// Transaction mode: the client may have changed session settings; read
    /// them back before the connection is given away.
    pub settings_changed: bool,
    /// Transaction mode: custom settings the client changed, which only
    /// their names can read back (see [`super::custom`]).
    pub custom_settings: Vec<String>,
    /// Transaction mode renames named statements; session mode passes them.
    rename: bool,
    /// Whether statements' words are read (for the inspector or `rename`'s
    /// session-effect check).
    lex: bool,
    statements: ClientStatements,
    /// The size of `statements`' Parse messages.
    statement_bytes: usize,
    /// See [`Upstream::hidden_query`].
    hidden: Option<(String, Settings)>,
    /// Texts cleared before, whose repeats pass unread.
    repeats: Repeats,
    /// The client's, for what is logged here (see `relay::Session::span`).
    span: tracing::Span,
}

impl Upstream {
    pub fn new(rename: bool, inspector_reads: bool, span: tracing::Span) -> Upstream {
        Upstream {
            inbuf: BytesMut::new(),
            out: BytesMut::new(),
            terminated: false,
            discard_until_sync: false,
            unsynced: false,
            pinned: None,
            settings_changed: false,
            custom_settings: Vec::new(),
            rename,
            lex: rename || inspector_reads,
            statements: ClientStatements::new(),
            statement_bytes: 0,
            hidden: None,
            repeats: Repeats::default(),
            span,
        }
    }

    /// Is at least one whole message waiting? (Errors surface in `process`.)
    pub fn has_message(&self, max: usize) -> bool {
        matches!(protocol::header(&self.inbuf, max), Ok(Some(h)) if self.inbuf.len() >= h.frame_len)
            || protocol::header(&self.inbuf, max).is_err()
    }

    pub fn process(
        &mut self,
        max: usize,
        inspector: &dyn Inspector,
        down: &mut Downstream,
        server: &mut ServerConn,
    ) -> Result<(), ClientError> {
        down.forget_copies();
        if down.skipping_to_sync {
            // The server skips to the client's next Sync (an error ended
            // its pipeline): so does the proxy, or it would expect replies,
            // answer Parses and Closes, and record statements the server
            // never sees.
            down.skipping_to_sync = false;
            self.discard_until_sync = true;
        }
        // Messages are read where they lie and the buffer advanced once.
        let mut inbuf = std::mem::take(&mut self.inbuf);
        let read = self.frames(&inbuf, max, inspector, down, server);
        if self.terminated {
            inbuf.clear();
        } else if let Ok(n) = read {
            inbuf.advance(n);
        }
        self.inbuf = inbuf;
        read?;
        down.flush_synth(&mut server.statements, &mut server.params)
    }

    /// Handles the whole messages at the start of `inbuf`; returns the
    /// bytes they took.
    fn frames(
        &mut self,
        inbuf: &[u8],
        max: usize,
        inspector: &dyn Inspector,
        down: &mut Downstream,
        server: &mut ServerConn,
    ) -> Result<usize, ClientError> {
        let mut pos = 0;
        while let Some(h) = protocol::header(&inbuf[pos..], max)? {
            if inbuf.len() - pos < h.frame_len {
                break;
            }
            if !protocol::is_frontend_message(h.tag) {
                return Err(FrameError::UnknownType(h.tag).into());
            }
            let frame = &inbuf[pos..pos + h.frame_len];
            pos += h.frame_len;
            if h.tag == tag::TERMINATE {
                // Never forwarded: the server connection outlives the client.
                self.terminated = true;
                if self.unsynced {
                    // The pipeline's replies wait for a Sync or Flush that
                    // will never come. A Flush, not a Sync: a Sync would
                    // commit what PostgreSQL rolls back when a client
                    // leaves mid-pipeline (the connection is closed).
                    self.out.extend_from_slice(FLUSH);
                }
                break;
            }
            if self.discard_until_sync && h.tag != tag::SYNC {
                continue;
            }
            if let Some((sql, settings)) = self.hidden.take() {
                // From NUL-terminated startup values or from the server.
                frontend::query(&sql, &mut self.out).map_err(|_| {
                    ClientError::Startup(StartupError::Malformed("NUL in a setting"))
                })?;
                down.expect.push_back(Expect::Hidden);
                server.settings_applied(&settings);
            }
            self.message(h.tag, frame, inspector, down, server);
        }
        Ok(pos)
    }

    /// Transaction mode, no connection attached, no transaction open: a
    /// batch that only prepares named statements (Parse … Sync, what libpq's
    /// `PQprepare` sends) is answered by the proxy, and the statements are
    /// prepared on whichever connection first runs them, as after any
    /// connection switch. A synchronous prepare then never waits for a
    /// connection that other clients of the same thread hold (pgbench
    /// `-M prepared` with more clients than connections would deadlock on
    /// its own thread). The cost: a statement the server would reject is
    /// reported at its first use rather than at the prepare. Returns false
    /// (nothing consumed) for any other batch. A Terminate is taken here
    /// too.
    pub fn prepare_locally(
        &mut self,
        max: usize,
        inspector: &dyn Inspector,
        down: &mut Downstream,
    ) -> Result<bool, ClientError> {
        // A client that says goodbye between transactions needs no
        // connection (nor to wait for one, at a PAUSE).
        if self.inbuf.first() == Some(&tag::TERMINATE) {
            self.terminated = true;
            self.inbuf.clear();
            return Ok(true);
        }
        // Nor one that sends what no server takes.
        if let Some(&t) = self.inbuf.first()
            && !protocol::is_frontend_message(t)
        {
            return Err(FrameError::UnknownType(t).into());
        }
        if !self.rename || self.pinned.is_some() || !down.settled() || down.status != TxStatus::Idle
        {
            return Ok(false);
        }
        // Most batches are ruled out by their first bytes: not a Parse, or
        // one of the unnamed statement (its name is empty).
        if self.inbuf.first() != Some(&tag::PARSE)
            || self.inbuf.get(protocol::HEADER_LEN).is_none_or(|&b| b == 0)
        {
            return Ok(false);
        }
        // Parse(named)+ then Sync, all whole, none with session effects.
        let mut pos = 0;
        let mut parses = 0;
        loop {
            let Some(h) = protocol::header(&self.inbuf[pos..], max)? else {
                return Ok(false);
            };
            if self.inbuf.len() - pos < h.frame_len {
                return Ok(false);
            }
            let body = &self.inbuf[pos + protocol::HEADER_LEN..pos + h.frame_len];
            pos += h.frame_len;
            match h.tag {
                tag::SYNC if parses > 0 && pos == self.inbuf.len() => break,
                tag::PARSE => {
                    let Some((name, rest)) = read_cstr(body) else {
                        return Ok(false);
                    };
                    let sql = cstr(rest);
                    if name.is_empty()
                        || session_effect(sql, &lexical::scan(sql, true)) != Effect::default()
                    {
                        return Ok(false);
                    }
                    parses += 1;
                }
                _ => return Ok(false),
            }
        }
        let batch = self.inbuf.split_to(pos);
        let mut pos = 0;
        while let Ok(Some(h)) = protocol::header(&batch[pos..], max) {
            let body = &batch[pos + protocol::HEADER_LEN..pos + h.frame_len];
            pos += h.frame_len;
            let (tag::PARSE, Some((name, rest))) = (h.tag, read_cstr(body)) else {
                continue;
            };
            // As the server would: the first refusal skips the rest up to Sync.
            let sql = cstr(rest);
            if let Err(err) = inspector.inspect(sql, &lexical::scan(sql, true)) {
                down.buf.extend_from_slice(&err);
                break;
            }
            if let Err(err) = self.keep_statement(name, Statement::from_parse_body(rest)) {
                down.buf.extend_from_slice(&err);
                break;
            }
            down.buf.extend_from_slice(PARSE_COMPLETE);
        }
        protocol::ready_for_query(&mut down.buf, b'I');
        down.scanned = down.buf.len();
        Ok(true)
    }

    /// Answers a Parse with `err`: the server gets one that fails in its
    /// place, and skips to Sync as the client expects.
    fn refuse_parse(&mut self, err: Bytes, q: &mut std::collections::VecDeque<Expect>) {
        frontend::parse("", REFUSED_SQL, [], &mut self.out).expect("no NUL in constant");
        q.push_back(Expect::Refused(Reply::Parse, err));
        self.discard_until_sync = true;
    }

    /// Records a client's named statement (kept for the session: its text
    /// goes to whichever connection it is used on), unless the session
    /// holds too many already: then the error to answer its Parse with.
    fn keep_statement(&mut self, name: &[u8], st: Statement) -> Result<(), Bytes> {
        let name = String::from_utf8_lossy(name).into_owned();
        let replaced = self.statements.get(&name).map(|o| o.parse.len());
        let bytes = self.statement_bytes - replaced.unwrap_or(0) + st.parse.len();
        if bytes > MAX_STATEMENT_BYTES
            || (replaced.is_none() && self.statements.len() >= MAX_STATEMENTS)
        {
            let mut err = BytesMut::new();
            protocol::error_response(
                &mut err,
                protocol::Severity::Error,
                "54000",
                &format!(
                    "too many prepared statements in this session (at most {MAX_STATEMENTS}, {} MiB of text)",
                    MAX_STATEMENT_BYTES >> 20
                ),
                Some("close prepared statements the application no longer uses"),
            );
            return Err(err.freeze());
        }
        self.statement_bytes = bytes;
        self.statements.insert(name, st);
        Ok(())
    }

    /// Queues a Query of the proxy's own, sent in the same write as the
    /// client's next message and ahead of it; its reply never reaches the
    /// client (see [`Expect::Hidden`]).
    /// `settings`: what the query applies, recorded on the connection once
    /// it is sent.
    pub fn hidden_query(&mut self, sql: String, settings: &Settings) {
        self.hidden = Some((sql, settings.clone()));
    }

    pub fn drop_hidden(&mut self) {
        self.hidden = None;
    }

    fn message(
        &mut self,
        t: u8,
        frame: &[u8],
        inspector: &dyn Inspector,
        down: &mut Downstream,
        server: &mut ServerConn,
    ) {
        let body = &frame[protocol::HEADER_LEN..];
        let q = &mut down.expect;
        match t {
            // A Query or FunctionCall also ends the implicit transaction
            // (the server answers it up to ReadyForQuery; skipping to a
            // Sync after an error, it never does, and the reply that never
            // comes keeps the connection anyway).
            tag::SYNC | tag::QUERY | tag::FUNCTION_CALL => self.unsynced = false,
            tag::PARSE | tag::BIND | tag::DESCRIBE | tag::EXECUTE | tag::CLOSE | tag::FLUSH => {
                self.unsynced = true;
            }
            _ => {}
        }
        match t {
            tag::QUERY => {
                // It replaces the unnamed statement, on the server too.
                down.unnamed_unbound = false;
                // The text and its NUL; a malformed body may hold more.
                let raw = match body.split_last() {
                    Some((0, text)) => text,
                    _ => body,
                };
                if let Err(err) = self.check(raw, false, inspector, server) {
                    frontend::query(REFUSED_SQL, &mut self.out).expect("no NUL in constant");
                    q.push_back(Expect::Refused(Reply::UntilReady, err));
                    return;
                }
                self.out.extend_from_slice(frame);
                q.push_back(Expect::Pass(Reply::UntilReady));
            }
            tag::PARSE => {
                let (name, rest) = read_cstr(body).unwrap_or((b"", body));
                let effect = match self.check(rest, true, inspector, server) {
                    Ok(effect) => effect,
                    Err(err) => return self.refuse_parse(err, q),
                };
                if self.rename && !name.is_empty() {
                    let mut st = Statement::from_parse_body(rest);
                    st.effect = effect;
                    if let Err(err) = self.keep_statement(name, st.clone()) {
                        return self.refuse_parse(err, q);
                    }
                    if matches!(server.statements.lookup(&st), Lookup::Present) {
                        q.push_back(Expect::Synth(Bytes::from_static(PARSE_COMPLETE)));
                    } else {
                        self.prepare(&st, &mut server.statements, q, false);
                    }
                } else {
                    down.unnamed_unbound |= self.rename && name.is_empty();
                    self.out.extend_from_slice(frame);
                    q.push_back(Expect::Pass(Reply::Parse));
                }
            }
            tag::FUNCTION_CALL => {
                let oid = body
                    .get(..4)
                    .map(|b| u32::from_be_bytes(b.try_into().expect("4")));
                if let Err(err) = inspector.function_call(oid) {
                    frontend::query(REFUSED_SQL, &mut self.out).expect("no NUL in constant");
                    q.push_back(Expect::Refused(Reply::UntilReady, err));
                    return;
                }
                self.out.extend_from_slice(frame);
                q.push_back(Expect::Pass(Reply::UntilReady));
            }
            tag::BIND | tag::DESCRIBE if self.rename => {
                let renamed = self.rename_statement(t, body, &mut server.statements, down);
                if !renamed {
                    self.out.extend_from_slice(frame);
                }
                down.expect.push_back(Expect::Pass(if t == tag::BIND {
                    Reply::Bind
                } else {
                    Reply::Describe
                }));
            }
            tag::BIND => {
                self.out.extend_from_slice(frame);
                q.push_back(Expect::Pass(Reply::Bind));
            }
            tag::DESCRIBE => {
                self.out.extend_from_slice(frame);
                q.push_back(Expect::Pass(Reply::Describe));
            }
            tag::CLOSE if self.rename && body.first() == Some(&b'S') && body.get(1) != Some(&0) => {
                // The server statement may be shared: only the client's name goes.
                if let Some(st) = self
                    .statements
                    .remove(&*String::from_utf8_lossy(cstr(&body[1..])))
                {
                    self.statement_bytes -= st.parse.len();
                }
                q.push_back(Expect::Synth(Bytes::from_static(CLOSE_COMPLETE)));
            }
            _ => {
                self.out.extend_from_slice(frame);
                let reply = match t {
                    tag::CLOSE => {
                        if body.starts_with(b"S\0") {
                            down.unnamed_unbound = false; // closed: nothing to bind
                        }
                        Some(Reply::Close)
                    }
                    tag::EXECUTE => Some(Reply::Execute),
                    tag::SYNC => {
                        self.discard_until_sync = false;
                        // A server waiting for COPY data ignores it.
                        (!down.copy_in).then_some(Reply::UntilReady)
                    }
                    tag::COPY_DONE | tag::COPY_FAIL => {
                        down.copy_in = false;
                        down.copies_ended = down.copies_ended.saturating_add(1);
                        None
                    }
                    _ => None, // Flush, COPY data: no reply of their own
                };
                if let Some(r) = reply {
                    q.push_back(Expect::Pass(r));
                }
            }
        }
    }

    /// Bind or Describe of a named statement: use its server name, preparing
    /// it first on this connection if needed. False: not ours to rename.
    fn rename_statement(
        &mut self,
        t: u8,
        body: &[u8],
        cache: &mut StatementCache,
        down: &mut Downstream,
    ) -> bool {
        // Bind: portal\0 statement\0 rest; Describe: 'S' statement\0.
        let (prefix, name, rest) = if t == tag::BIND {
            let Some((portal, after)) = read_cstr(body) else {
                return false;
            };
            let Some((name, rest)) = read_cstr(after) else {
                return false;
            };
            (&body[..portal.len() + 1], name, rest)
        } else {
            if body.first() != Some(&b'S') {
                return false;
            }
            let Some((name, rest)) = read_cstr(&body[1..]) else {
                return false;
            };
            (&body[..1], name, rest)
        };
        if name.is_empty() {
            down.unnamed_unbound &= t != tag::BIND;
            return false;
        }
        let Some(st) = self
            .statements
            .get(std::str::from_utf8(name).unwrap_or(""))
            .cloned()
        else {
            return false; // unknown: the server says "does not exist", as it should
        };
        if !matches!(cache.lookup(&st), Lookup::Present) {
            self.prepare(&st, cache, &mut down.expect, true);
        }
        self.out.put_u8(t);
        self.out
            .put_i32((4 + prefix.len() + st.server_name.len() + 1 + rest.len()) as i32);
        self.out.put_slice(prefix);
        self.out.put_slice(st.server_name.as_bytes());
        self.out.put_u8(0);
        self.out.put_slice(rest);
        if t == tag::BIND && st.effect != Effect::default() {
            // It runs again: a setting it changes must be read back before
            // the connection goes to another client, and statements it
            // drops are gone from this connection (after the Bind, which
            // needs its own).
            self.settings_changed |= st.effect.changes_settings;
            if st.effect.drops_statements {
                cache.dropped_maybe();
            }
        }
        true
    }

    /// Sends a Parse of `st` under its server name (closing a colliding or
    /// evicted statement first). `silent`: the client did not ask for it.
    fn prepare(
        &mut self,
        st: &Statement,
        cache: &mut StatementCache,
        q: &mut std::collections::VecDeque<Expect>,
        silent: bool,
    ) {
        match cache.lookup(st) {
            Lookup::Collision => {
                self.close_on_server(&st.server_name, q);
                cache.forget(&st.server_name);
            }
            // The server may still have it (see `StatementCache::unsure`);
            // closing a name it lacks is no error.
            Lookup::Missing if cache.unsure() => self.close_on_server(&st.server_name, q),
            _ => {}
        }
        if let Some(evicted) = cache.insert(st) {
            self.close_on_server(&evicted, q);
        }
        self.out.extend_from_slice(&st.parse);
        q.push_back(if silent {
            Expect::Reparse(st.server_name.clone())
        } else {
            Expect::ParseNamed(st.server_name.clone())
        });
    }

    fn close_on_server(&mut self, name: &str, q: &mut std::collections::VecDeque<Expect>) {
        frontend::close(b'S', name, &mut self.out).expect("no NUL in generated name");
        q.push_back(Expect::Evict);
    }
}

/// The NUL-terminated string at the start of `b`.
fn cstr(b: &[u8]) -> &[u8] {
    read_cstr(b).map_or(b, |(s, _)| s)
}
