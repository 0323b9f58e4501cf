//! Client → server: frames client messages, lets the firewall see every
//! statement, renames named statements in transaction mode, and records
//! what reply each message will get (see [`super::expect`]).
//!
//! Messages are copied from the read buffer to the output buffer: they are
//! small, and it keeps rewriting simple. The large direction (results) is
//! zero-copy in [`super::downstream`].

mod deallocate;
mod effects;
mod named;

use named::Renamed;

use bytes::{Buf, Bytes, BytesMut};
use postgres_protocol::message::frontend;

use super::downstream::Downstream;
use super::expect::{Expect, Reply};
use super::offload::Ahead;
use super::prepared::ClientStatements;
use super::repeats::Repeats;
use crate::error::ClientError;
use crate::firewall::rules;
use crate::lexical::Lexed;
use crate::pool::{ServerConn, Settings};
use crate::protocol::startup::StartupError;
use crate::protocol::{self, FrameError, read_cstr, tag};
use effects::Resetting;

/// A statement the server is sure to reject at parse time, sent in place of
/// a refused one so that the server's transaction state follows exactly as
/// if the refused statement had failed there.
const REFUSED_SQL: &str = "pgtenant refused this statement";
/// As [`REFUSED_SQL`], but it parses: rejected at analysis, so that in a
/// failed transaction the server's 25P02 comes first, as PostgreSQL's
/// would before the reason the proxy refuses for (see `Expect::Refused`).
const REFUSED_VALID_SQL: &str = "SELECT pgtenant_refused_this_statement";
const PARSE_COMPLETE: &[u8] = b"1\0\0\0\x04";
pub const FLUSH: &[u8] = b"H\0\0\0\x04";

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

    /// [`Inspector::inspect`] if its verdict comes cheap (no parse); None
    /// where it doesn't.
    fn inspect_cheap(&self, sql: &[u8], lexed: &Lexed) -> Option<Result<(), Bytes>> {
        Some(self.inspect(sql, lexed))
    }

    /// A copy of this inspector for a thread of the blocking pool, where
    /// long texts are read (see [`super::offload`]); None: its verdicts
    /// cost nothing worth moving.
    fn detached(&self) -> Option<Box<dyn Inspector>> {
        None
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

/// The 54000 a Parse gets when the session holds too many statements of a
/// kind (`what` follows "too many prepared statements").
fn too_many_statements(what: &str) -> Bytes {
    protocol::error(
        "54000",
        &format!("too many prepared statements {what}"),
        Some("close prepared statements the application no longer uses"),
    )
}

pub struct Upstream {
    pub inbuf: BytesMut,
    /// Complete messages to write to the server.
    pub out: BytesMut,
    /// Nothing more is read from the client: it said goodbye, or sent
    /// what ends its session (`quit`).
    pub terminated: bool,
    /// A framing error behind whole messages: as PostgreSQL, the session
    /// ends with it once what came before has been answered.
    pub quit: Option<FrameError>,
    /// After a refused Parse or an error the server skips on from: drop
    /// messages up to Sync, as the server does.
    discard_until_sync: bool,
    /// Extended-protocol messages went to the server after its last Sync
    /// (or Query): whatever its last ReadyForQuery said, it is
    /// mid-pipeline (maybe in an implicit transaction, maybe skipping to
    /// the Sync after an error) until that Sync's ReadyForQuery. Its
    /// connection can't be given to anyone else, nor reset, until then.
    /// Also after a COPY run by an Execute began: the server ignored the
    /// Syncs before its end (see `Downstream::sync_owed`).
    pub unsynced: bool,
    /// Transaction mode: why this client keeps its server connection.
    pub pinned: Option<&'static str>,
    /// Transaction mode: the client may have changed session settings; read
    /// them back before the connection is given away.
    pub settings_changed: bool,
    /// A statement may have reset the client's startup settings: give them
    /// back once it is answered (see `relay`).
    pub restore_startup: bool,
    /// The client's startup settings, if it gave any: what a RESET gives back.
    pub startup: Option<Settings>,
    /// Prepared statements (by name; "" unnamed) that reset settings when
    /// they run: nearly always empty. See [`Upstream::note_prepared_resets`].
    resetting: Resetting,
    /// The session's number: whose unnamed statement a connection holds
    /// (see `StatementCache::unnamed_owner`).
    owner: u64,
    /// Transaction mode: custom settings the client changed, which only
    /// their names can read back (see [`super::custom`]).
    pub custom_settings: Vec<String>,
    /// Transaction mode renames named statements; session mode passes them.
    rename: bool,
    /// Whether statements' words are read (for the inspector or `rename`'s
    /// session-effect check).
    lex: bool,
    statements: ClientStatements,
    /// The size of `statements`' names and Parse messages.
    statement_bytes: usize,
    /// Statements kept so far (see [`Statement::kept`]).
    statements_kept: u64,
    /// The statement just checked drops every prepared statement.
    drops_all: bool,
    /// The unnamed statement does, when it runs.
    unnamed_drops_all: bool,
    /// Transaction mode: the client's unnamed statement, to parse again
    /// where it is missing (see [`Upstream::reparse_unnamed`]).
    unnamed: named::Unnamed,
    /// See [`effects::EffectPortal`].
    effect_portals: Vec<effects::EffectPortal>,
    /// See [`Upstream::hidden_query`].
    hidden: Option<(String, Settings)>,
    /// Texts cleared before, whose repeats pass unread.
    repeats: Repeats,
    /// Verdicts on the long texts of the whole messages in `inbuf`,
    /// reached off the event loop (see [`super::offload`]): for the next
    /// `process` or `prepare_locally`, dropped by it.
    pub ahead: Vec<Ahead>,
    /// The client's, for what is logged here (see `relay::Session::span`).
    span: tracing::Span,
}

impl Upstream {
    pub fn new(rename: bool, inspector_reads: bool, owner: u64, span: tracing::Span) -> Upstream {
        Upstream {
            inbuf: BytesMut::new(),
            out: BytesMut::new(),
            terminated: false,
            quit: None,
            discard_until_sync: false,
            unsynced: false,
            pinned: None,
            settings_changed: false,
            restore_startup: false,
            startup: None,
            resetting: Resetting::default(),
            owner,
            custom_settings: Vec::new(),
            rename,
            lex: rename || inspector_reads,
            statements: ClientStatements::new(),
            statement_bytes: 0,
            statements_kept: 0,
            drops_all: false,
            unnamed_drops_all: false,
            unnamed: named::Unnamed::default(),
            effect_portals: Vec::new(),
            hidden: None,
            repeats: Repeats::default(),
            ahead: Vec::new(),
            span,
        }
    }

    /// Transaction mode: statements are renamed, and words read as such.
    pub fn renames(&self) -> bool {
        self.rename
    }

    /// Messages are dropped up to the client's next Sync (see
    /// [`Upstream::process`] for the server's own skip).
    pub fn skips_to_sync(&self) -> bool {
        self.discard_until_sync
    }

    /// Is at least one whole message waiting? (Errors surface in `process`.)
    pub fn has_message(&self, max: usize) -> bool {
        match protocol::client_header(&self.inbuf, max) {
            Ok(Some(h)) => self.inbuf.len() >= h.frame_len,
            Ok(None) => false,
            Err(_) => true, // to be refused
        }
    }

    pub fn process(
        &mut self,
        max: usize,
        inspector: &dyn Inspector,
        down: &mut Downstream,
        server: &mut ServerConn,
    ) -> Result<(), ClientError> {
        // Replies are read between batches: a DEALLOCATE ALL answered since
        // the last one takes its names before this one uses any.
        if down.has_statement_news() {
            self.statements_answered(down);
        }
        if !self.effect_portals.is_empty() {
            self.portals_ended(down);
        }
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
        // Keyed by where their texts lay: never to outlive this pass.
        self.ahead.clear();
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
        loop {
            let h = match protocol::client_header(&inbuf[pos..], max) {
                Ok(Some(h)) if inbuf.len() - pos >= h.frame_len => h,
                Ok(_) => break,
                Err(e) => {
                    self.quit_after_replies(e);
                    break;
                }
            };
            let frame = &inbuf[pos..pos + h.frame_len];
            pos += h.frame_len;
            if h.tag == tag::TERMINATE {
                // Never forwarded: the server connection outlives the client.
                self.stop_reading();
                break;
            }
            // PostgreSQL fails a COPY from stdin at any other message, then
            // answers the Sync it ignored during the copy: the replies the
            // proxy expects, and whose unnamed statement the connection
            // holds, would go out of step. The session ends, as at a bad
            // message (its connection, mid-copy, is closed).
            let in_copy = |t| {
                matches!(
                    t,
                    tag::COPY_DATA | tag::COPY_DONE | tag::COPY_FAIL | tag::FLUSH | tag::SYNC
                )
            };
            if down.copy_in && !in_copy(h.tag) {
                self.quit_after_replies(FrameError::DuringCopy(h.tag));
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
                server.statements.unnamed_owner = 0; // a Query drops it
            }
            self.message(h.tag, frame, inspector, down, server);
        }
        Ok(pos)
    }

    /// What the client sent so far is answered, then its session ends with
    /// `err`: PostgreSQL runs the messages before a bad one, and a
    /// pipeline cut short by it is rolled back (its connection is closed,
    /// as at a Terminate mid-pipeline).
    fn quit_after_replies(&mut self, err: FrameError) {
        self.quit = Some(err);
        self.stop_reading();
    }

    fn stop_reading(&mut self) {
        self.terminated = true;
        if self.unsynced {
            // The pipeline's replies wait for a Sync or Flush that will
            // never come. A Flush, not a Sync: a Sync would commit what
            // PostgreSQL rolls back when a client leaves mid-pipeline (the
            // connection is closed).
            self.out.extend_from_slice(FLUSH);
        }
    }

    /// Answers a Parse with `err`: the server gets one that fails in its
    /// place, and skips to Sync as the client expects. Named as the
    /// client's is (unnamed or not): a failed Parse drops the unnamed
    /// statement only if it is an unnamed one.
    fn refuse_parse(
        &mut self,
        named: bool,
        err: Bytes,
        q: &mut std::collections::VecDeque<Expect>,
    ) {
        self.refuse_parse_as(REFUSED_SQL, named, err, q);
    }

    /// As [`Upstream::refuse_parse`], sending `sql` in its place.
    fn refuse_parse_as(
        &mut self,
        sql: &str,
        named: bool,
        err: Bytes,
        q: &mut std::collections::VecDeque<Expect>,
    ) {
        let name = if named { "pgt_refused" } else { "" };
        frontend::parse(name, sql, [], &mut self.out).expect("no NUL in constant");
        q.push_back(Expect::Refused(Reply::Parse, err));
        self.discard_until_sync = true;
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
            // (A server in COPY ignores a Sync: it ends nothing.)
            tag::SYNC if down.copy_in => {}
            tag::SYNC | tag::QUERY | tag::FUNCTION_CALL => self.unsynced = false,
            tag::PARSE | tag::BIND | tag::DESCRIBE | tag::EXECUTE | tag::CLOSE | tag::FLUSH => {
                self.unsynced = true;
            }
            _ => {}
        }
        match t {
            tag::QUERY => {
                // It drops the unnamed statement, on the server too.
                down.unnamed_unbound = false;
                server.statements.unnamed_owner = 0;
                self.unnamed.forget();
                // The text and its NUL; a malformed body may hold more.
                let raw = match body.split_last() {
                    Some((0, text)) => text,
                    _ => body,
                };
                if self.rename && self.deallocate_query(raw, down.status, q) {
                    return;
                }
                if let Err(err) = self.check(raw, false, inspector, server) {
                    frontend::query(REFUSED_SQL, &mut self.out).expect("no NUL in constant");
                    q.push_back(Expect::Refused(Reply::UntilReady, err));
                    return;
                }
                self.out.extend_from_slice(frame);
                if !self.resetting.is_empty() {
                    self.resetting.dropped(self.drops_all, raw);
                }
                if self.drops_all || self.restore_startup {
                    return self.query_effects(raw, down);
                }
                q.push_back(Expect::Pass(Reply::UntilReady));
            }
            tag::PARSE => {
                let (name, rest) = read_cstr(body).unwrap_or((b"", body));
                let effect = match self.check(rest, true, inspector, server) {
                    Ok(effect) => effect,
                    Err(err) => {
                        // A failed unnamed Parse drops the unnamed statement.
                        if name.is_empty() {
                            down.unnamed_unbound = false;
                            self.unnamed.forget();
                        }
                        return self.refuse_parse(!name.is_empty(), err, q);
                    }
                };
                if (!self.rename || name.is_empty())
                    && (effect.resets || !self.resetting.is_empty())
                    && let Err(err) = self.note_prepared_resets(name, effect.resets)
                {
                    return self.refuse_parse(!name.is_empty(), err, q);
                }
                // It drops them when it runs (see `bind_portal`).
                let drops_all = std::mem::take(&mut self.drops_all);
                if name.is_empty() {
                    self.unnamed_drops_all = drops_all;
                }
                if self.rename && !name.is_empty() {
                    self.parse_named(name, rest, effect, down.status, &mut server.statements, q);
                } else {
                    if self.rename && name.is_empty() {
                        down.unnamed_unbound = true;
                        down.unnamed_lost = false;
                        server.statements.unnamed_owner = self.owner;
                        self.unnamed.parsed(frame, effect);
                    }
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
                    server.statements.unnamed_owner = 0; // a Query drops it
                    q.push_back(Expect::Refused(Reply::UntilReady, err));
                    return;
                }
                // Transaction mode, firewall not enforcing: a function other
                // than the large-object ones may change the session
                // (`set_config` by its OID), unseen.
                // (`setseed` too: the connection is closed after.)
                if !oid.is_some_and(rules::is_fastpath_function) {
                    server.reseeded = true;
                    if self.rename {
                        self.pin("function-call message");
                    }
                }
                self.out.extend_from_slice(frame);
                q.push_back(Expect::Pass(Reply::UntilReady));
            }
            tag::BIND | tag::DESCRIBE if self.rename => {
                let reply = if t == tag::BIND {
                    Reply::Bind
                } else {
                    Reply::Describe
                };
                match self.rename_statement(t, body, &mut server.statements, down) {
                    Renamed::No => self.out.extend_from_slice(frame),
                    Renamed::Yes => {}
                    Renamed::NotOurs(err) => {
                        down.expect.push_back(Expect::Refused(reply, err));
                        return;
                    }
                }
                down.expect.push_back(Expect::Pass(reply));
            }
            tag::BIND => {
                // (Read only when a statement resets or a portal is tracked.)
                if !self.resetting.is_empty() || !self.effect_portals.is_empty() {
                    let resets = self.resets_when_run(bound_statement(body));
                    self.bind_portal(cstr(body), false, resets);
                }
                self.out.extend_from_slice(frame);
                q.push_back(Expect::Pass(Reply::Bind));
            }
            tag::DESCRIBE => {
                self.out.extend_from_slice(frame);
                q.push_back(Expect::Pass(Reply::Describe));
            }
            tag::CLOSE if self.rename && body.first() == Some(&b'S') && body.get(1) != Some(&0) => {
                self.close_named(cstr(&body[1..]), q);
            }
            tag::EXECUTE if !self.effect_portals.is_empty() => {
                self.portal_runs(frame, cstr(body), down);
            }
            _ => {
                self.out.extend_from_slice(frame);
                let reply = match t {
                    tag::CLOSE => {
                        if body.starts_with(b"S\0") {
                            down.unnamed_unbound = false; // closed: nothing to bind
                            self.unnamed.forget();
                        }
                        if body.first() == Some(&b'P') {
                            self.bind_portal(cstr(&body[1..]), false, false);
                        }
                        if body.first() == Some(&b'S') && !self.resetting.is_empty() {
                            self.resetting.closed(cstr(&body[1..]));
                        }
                        Some(Reply::Close)
                    }
                    tag::EXECUTE => Some(Reply::Execute),
                    tag::SYNC => {
                        self.discard_until_sync = false;
                        // A server waiting for COPY data ignores it.
                        (!down.copy_in).then_some(Reply::Sync)
                    }
                    tag::COPY_DONE | tag::COPY_FAIL => {
                        // Ahead of the server's CopyInResponse (or stray):
                        // mark where, for the Syncs before it.
                        if !std::mem::take(&mut down.copy_in) {
                            q.push_back(Expect::CopyEnd);
                        }
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
}

/// The statement a Bind's body names (after its portal's name).
fn bound_statement(body: &[u8]) -> &[u8] {
    read_cstr(body)
        .and_then(|(_, after)| read_cstr(after))
        .map_or(&[][..], |(name, _)| name)
}

/// The NUL-terminated string at the start of `b`.
fn cstr(b: &[u8]) -> &[u8] {
    read_cstr(b).map_or(b, |(s, _)| s)
}
