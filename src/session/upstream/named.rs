//! Transaction mode's named statements: the client's names are kept for
//! the session (each one's Parse), renamed to the server's `pgt_<hash>` on
//! every connection, prepared where missing, and closed by the proxy.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes};
use postgres_protocol::message::frontend;

use super::super::downstream::Downstream;
use super::super::expect::{Expect, Reply};
use super::super::pinning::{Effect, session_effect};
use super::super::prepared::{Lookup, Statement, StatementCache};
use super::{Inspector, PARSE_COMPLETE, REFUSED_VALID_SQL, Upstream, cstr};
use crate::error::ClientError;
use crate::lexical;
use crate::protocol::{self, TxStatus, read_cstr, tag};

/// What became of a Bind or Describe (see [`Upstream::rename_statement`]).
pub(super) enum Renamed {
    /// Not a statement of the proxy's: forward it as sent.
    No,
    /// Rewritten into the output.
    Yes,
    /// Another client's unnamed statement: rewritten to fail, with this
    /// error for the client.
    NotOurs(Bytes),
}

/// Transaction mode: the client's unnamed statement. PostgreSQL keeps it
/// across transactions, until the next unnamed Parse or simple Query; on
/// a pooled connection it lives until another client's replaces it, or a
/// Query drops it. So its Parse is kept, to send again where a Bind or
/// Describe names it and the connection may lack it.
#[derive(Default)]
pub(super) struct Unnamed {
    /// The client's last unnamed Parse as sent (buffer reused); empty: it
    /// has none, or one too long to keep past its transaction.
    parse: Vec<u8>,
    /// What it does when it runs: each run in a later transaction, too.
    effect: Effect,
}

/// The buffer that keeps the unnamed Parse, at most, between
/// transactions. A longer Parse (rare) is kept at its own size, up to as
/// much as a session's named statements may hold in all, besides them
/// ([`MAX_STATEMENT_BYTES`]; past that, PostgreSQL's 26000 on another
/// connection); a buffer grown for one is given back once it holds a
/// shorter one. Within a transaction every one is kept: a Bind pipelined
/// behind a Sync may need it again (see [`unnamed_unconfirmed`]).
const MAX_UNNAMED: usize = 8 * 1024;

/// What a kept statement holds: its Parse frame and the client's name for
/// it (which can be as long as a message).
fn kept_size(name: &str, st: &Statement) -> usize {
    name.len() + st.parse.len()
}

impl Unnamed {
    pub fn parsed(&mut self, frame: &[u8], effect: Effect) {
        self.parse.clear();
        self.parse.extend_from_slice(frame);
        self.effect = effect;
    }

    /// The connection goes back: an idle client holds no spare room.
    pub fn trim(&mut self) {
        if self.parse.len() > MAX_STATEMENT_BYTES {
            self.parse = Vec::new();
        } else if self.parse.capacity() > MAX_UNNAMED.max(self.parse.len()) {
            self.parse.shrink_to_fit();
        }
    }

    pub fn forget(&mut self) {
        self.parse.clear();
        self.effect = Effect::default();
    }
}

/// An unnamed Parse (the client's, or the proxy's again) sent before the
/// client's last Sync is still unanswered: the server may yet fail it, or
/// skip it after an error, and keep whichever statement it had, another
/// client's. (One in the same pipeline segment as the message that asks
/// shares its fate: skipped together.)
fn unnamed_unconfirmed(q: &VecDeque<Expect>) -> bool {
    let mut synced = false;
    for e in q.iter().rev() {
        match e {
            Expect::Pass(Reply::Parse) | Expect::ReparseUnnamed => return synced,
            e if e.reply().is_some_and(Reply::ends_at_ready) => synced = true,
            _ => {}
        }
    }
    false
}

/// PostgreSQL's answer to a Parse of a name the client has.
#[cold]
fn already_exists(name: &str) -> Bytes {
    protocol::error(
        "42P05",
        &format!("prepared statement \"{name}\" already exists"),
        Some("close it (or DEALLOCATE it) before preparing another under its name"),
    )
}

/// Replies awaited past which the proxy does not read the queue for what
/// they may change (each Parse of a long pipeline would cost its length):
/// it assumes the worst, and lets the server decide.
const READ_AHEAD: usize = 64;

/// No reply awaited in `q` is one `matters` picks, as far as the proxy
/// reads (see [`READ_AHEAD`]).
fn awaits_none(q: &VecDeque<Expect>, matters: impl Fn(&Expect) -> bool) -> bool {
    q.len() <= READ_AHEAD && !q.iter().any(matters)
}

/// A session's named statements, in number and in text (transaction mode
/// keeps each one's Parse for the session).
const MAX_STATEMENTS: usize = 10_000;
const MAX_STATEMENT_BYTES: usize = 64 << 20;

impl Upstream {
    /// Transaction mode, no connection attached, no transaction open: a
    /// batch that only prepares named statements (Parse … Sync, what libpq's
    /// `PQprepare` sends) is answered by the proxy, and the statements are
    /// prepared on whichever connection first runs them, as after any
    /// connection switch. A synchronous prepare then never waits for a
    /// connection that other clients of the same thread hold (pgbench
    /// `-M prepared` with more clients than connections would deadlock on
    /// its own thread). The cost: a statement the server would reject is
    /// reported at each use (until its text works) rather than at the
    /// prepare, and until a server reads it a new Parse of its name
    /// replaces it (see [`Upstream::surely_has`]). Returns false
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
            self.ahead.clear();
            return Ok(true);
        }
        // Nor one that sends what no server takes: its session ends once
        // what it was sent is written.
        if let Err(e) = protocol::client_header(&self.inbuf, max) {
            self.quit_after_replies(e);
            self.inbuf.clear();
            self.ahead.clear();
            return Ok(true);
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
            let Some(h) = protocol::client_header(&self.inbuf[pos..], max)? else {
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
        // (What the last replies said about the client's statements first:
        // a failed Parse's name no longer counts against the limit.)
        if down.has_statement_news() {
            self.statements_answered(down);
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
            if let (_, Err(err)) = self.read(sql, inspector) {
                down.buf.extend_from_slice(&err);
                break;
            }
            let named = String::from_utf8_lossy(name);
            if self.surely_has(&named, &down.expect) {
                down.buf.extend_from_slice(&already_exists(&named));
                break;
            }
            let mut st = Statement::from_parse_body(rest);
            st.unproven = true;
            if let Err(err) = self.keep_statement(&named, st) {
                down.buf.extend_from_slice(&err);
                break;
            }
            down.buf.extend_from_slice(PARSE_COMPLETE);
        }
        protocol::ready_for_query(&mut down.buf, b'I');
        down.scanned = down.buf.len();
        self.ahead.clear(); // keyed by where the batch lay
        Ok(true)
    }

    /// Forgets the client's statement `name`, if it had one.
    pub(super) fn forget_statement(&mut self, name: &str) -> Option<Statement> {
        let st = self.statements.remove(name)?;
        self.statement_bytes -= kept_size(name, &st);
        Some(st)
    }

    /// A `DEALLOCATE name` did not run: the statement is back, unless the
    /// client has parsed another under its name since.
    pub(super) fn undeallocate(&mut self, name: &str, st: &Statement) {
        if !self.statements.contains_key(name) {
            self.statement_bytes += kept_size(name, st);
            self.statements.insert(name.to_owned(), st.clone());
        }
    }

    /// What the replies read since the last batch say about the client's
    /// statements: Parses that failed or were skipped take theirs away;
    /// pipelined `DEALLOCATE name`s and Closes that did not run give theirs
    /// back (see `Downstream::give_back`); statements the proxy answered for
    /// alone that a server has now read are proven (after the give-backs,
    /// which may bring one back); then a `DEALLOCATE ALL` that ran drops
    /// what it did.
    #[cold]
    pub(super) fn statements_answered(&mut self, down: &mut Downstream) {
        if !down.unparsed.is_empty() {
            // Ascending: numbered as sent, answered in order.
            let (gone, bytes) = (&down.unparsed, &mut self.statement_bytes);
            self.statements.retain(|n, s| {
                let keep = gone.binary_search(&s.kept).is_err();
                if !keep {
                    *bytes -= kept_size(n, s);
                }
                keep
            });
            down.unparsed.clear();
        }
        for kept in down.undeallocated.drain(..) {
            self.undeallocate(&kept.0, &kept.1);
        }
        if !down.proven.is_empty() {
            // (Mostly once per statement: proven, its Parses carry none.)
            down.proven.sort_unstable();
            let proven = &down.proven;
            for st in self.statements.values_mut().filter(|s| s.unproven) {
                st.unproven = proven.binary_search(&st.kept).is_err();
            }
            down.proven.clear();
        }
        if let Some(upto) = down.dropped_all.take() {
            self.forget_statements_upto(upto);
        }
    }

    /// A `DEALLOCATE ALL` ran: the statements kept before it was sent go;
    /// those the client parsed behind it stay.
    pub(super) fn forget_statements_upto(&mut self, upto: u64) {
        self.statements.retain(|_, s| s.kept > upto);
        self.statement_bytes = self.statements.iter().map(|(n, s)| kept_size(n, s)).sum();
    }

    /// Records a client's named statement (kept for the session: its text
    /// goes to whichever connection it is used on), unless the session
    /// holds too many already: then the error to answer its Parse with.
    /// One of the name is replaced (see [`Upstream::surely_has`]).
    pub(super) fn keep_statement(&mut self, name: &str, mut st: Statement) -> Result<u64, Bytes> {
        let replaced = self.statements.get(name).map(|o| kept_size(name, o));
        let bytes = self.statement_bytes - replaced.unwrap_or(0) + kept_size(name, &st);
        if bytes > MAX_STATEMENT_BYTES
            || (replaced.is_none() && self.statements.len() >= MAX_STATEMENTS)
        {
            return Err(super::too_many_statements(&format!(
                "in this session (at most {MAX_STATEMENTS}, {} MiB of text and names)",
                MAX_STATEMENT_BYTES >> 20
            )));
        }
        self.statement_bytes = bytes;
        self.statements_kept += 1;
        st.kept = self.statements_kept;
        self.statements.insert(name.to_owned(), st);
        Ok(self.statements_kept)
    }

    /// The client has statement `name` for certain: PostgreSQL would have
    /// it, whatever the replies still awaited in `q` say. While its own
    /// Parse is unanswered (it may fail, or be skipped after an error) or
    /// a `DEALLOCATE ALL` sent after it is, it may be gone; so may one the
    /// proxy answered for alone until a server reads it (PostgreSQL may
    /// have refused it). A new Parse of the name then replaces it, as if
    /// it were gone. So in a pipeline longer than [`READ_AHEAD`].
    fn surely_has(&self, name: &str, q: &VecDeque<Expect>) -> bool {
        let Some(st) = self.statements.get(name) else {
            return false;
        };
        !st.unproven
            && awaits_none(q, |e| match *e {
                Expect::ParseNamed(_, kept, _) | Expect::Parsed(kept) => kept == st.kept,
                Expect::DropsAll(_, upto) => upto >= st.kept,
                _ => false,
            })
    }

    /// A client's Parse of a named statement: kept under the client's name,
    /// parsed on the server under its own unless the connection has it
    /// (then answered here, unless the transaction may have failed: the
    /// server's answer is then 25P02). `status`: the last one the server
    /// reported.
    pub(super) fn parse_named(
        &mut self,
        name: &[u8],
        rest: &[u8],
        effect: Effect,
        status: TxStatus,
        cache: &mut StatementCache,
        q: &mut VecDeque<Expect>,
    ) {
        let named = String::from_utf8_lossy(name);
        if self.surely_has(&named, q) {
            // The server's 25P02 passes if the transaction failed.
            let err = already_exists(&named);
            return self.refuse_parse_as(REFUSED_VALID_SQL, true, err, q);
        }
        let mut st = Statement::from_parse_body(rest);
        st.effect = effect;
        let kept = match self.keep_statement(&named, st.clone()) {
            Ok(kept) => kept,
            Err(err) => return self.refuse_parse(true, err, q),
        };
        // Behind a Sync or Query still unanswered, the status is older.
        let settled = |q| awaits_none(q, |e| e.reply().is_some_and(Reply::ends_at_ready));
        match cache.lookup(&st) {
            Lookup::Present if status != TxStatus::Failed && settled(q) => {
                q.push_back(Expect::Parsed(kept))
            }
            Lookup::Present | Lookup::Pending => {
                // Pending, its Parse may fail: again, for this client's own
                // answer (the last Parse decides what the connection has).
                self.close_on_server(&st.server_name, q);
                self.prepare(&st, cache, q, Some(kept));
            }
            _ => self.prepare(&st, cache, q, Some(kept)),
        }
    }

    /// A client's Close of its named statement: the server's copy may be
    /// shared, so only the client's name goes, answered here. Behind
    /// messages that may fail it may come back (see `Expect::Closed`).
    pub(super) fn close_named(&mut self, name: &[u8], q: &mut VecDeque<Expect>) {
        let name = String::from_utf8_lossy(name);
        let st = self.forget_statement(&name);
        // (After an error the server skips a Query too, up to Sync.)
        let skippable = q.back().is_some_and(|e| e.reply() != Some(Reply::Sync));
        let kept = st
            .filter(|_| skippable)
            .map(|st| std::sync::Arc::new((name.into_owned(), st)));
        q.push_back(Expect::Closed(kept));
    }

    /// Bind or Describe of a named statement: use its server name, preparing
    /// it first on this connection if needed. Of the unnamed statement:
    /// only the client's own on this connection.
    pub(super) fn rename_statement(
        &mut self,
        t: u8,
        body: &[u8],
        cache: &mut StatementCache,
        down: &mut Downstream,
    ) -> Renamed {
        // Bind: portal\0 statement\0 rest; Describe: 'S' statement\0.
        let (prefix, name, rest) = if t == tag::BIND {
            let Some((portal, after)) = read_cstr(body) else {
                return Renamed::No;
            };
            let Some((name, rest)) = read_cstr(after) else {
                return Renamed::No;
            };
            (&body[..portal.len() + 1], name, rest)
        } else {
            if body.first() != Some(&b'S') {
                return Renamed::No;
            }
            let Some((name, rest)) = read_cstr(&body[1..]) else {
                return Renamed::No;
            };
            (&body[..1], name, rest)
        };
        if name.is_empty() {
            if t == tag::BIND
                && self.unnamed.effect.deallocates
                && !down.unnamed_lost
                && let Some(target) =
                    (self.unnamed.parse.get(6..)).and_then(|b| self.deallocates(b, &down.expect))
                && let Some(bound) = self.bind_deallocate(prefix, rest, target, cache, down)
            {
                down.unnamed_unbound = false;
                return bound;
            }
            // Parsed in an earlier transaction, on another connection (or
            // replaced on this one): parsed again; if the client has none
            // to parse, PostgreSQL's answer when it is gone, never another
            // client's statement.
            let missing = cache.unnamed_owner != self.owner || unnamed_unconfirmed(&down.expect);
            if missing && !self.reparse_unnamed(cache, down) {
                return self.not_ours(t, prefix, rest);
            }
            if t == tag::BIND {
                down.unnamed_unbound = false;
                let resets = self.resets_when_run(name);
                let portal = &prefix[..prefix.len() - 1];
                self.bind_portal(portal, self.unnamed_drops_all, resets);
                let effect = self.unnamed.effect;
                self.runs_again(effect, cache);
            }
            return Renamed::No;
        }
        let key = std::str::from_utf8(name).unwrap_or("");
        let Some(st) = self.statements.get(key).cloned() else {
            return Renamed::No; // unknown: the server says "does not exist", as it should
        };
        if t == tag::BIND
            && st.effect.deallocates
            && let Some(target) = self.deallocates(st.body(), &down.expect)
            && let Some(bound) = self.bind_deallocate(prefix, rest, target, cache, down)
        {
            return bound;
        }
        match cache.lookup(&st) {
            // The server has read its text: the client's for certain.
            Lookup::Present if st.unproven => {
                if let Some(st) = self.statements.get_mut(key) {
                    st.unproven = false;
                }
            }
            // (One pending shares its fate with this Bind: both need it.)
            Lookup::Present | Lookup::Pending => {}
            _ => self.prepare(&st, cache, &mut down.expect, None),
        }
        self.write_naming(t, prefix, st.server_name.as_bytes(), rest);
        if t == tag::BIND {
            let portal = &prefix[..prefix.len() - 1];
            self.bind_portal(portal, st.effect.drops_all, st.effect.resets);
        }
        if t == tag::BIND {
            self.runs_again(st.effect, cache);
        }
        Renamed::Yes
    }

    /// A statement with `effect` runs again: a setting it changes must be
    /// read back before the connection goes to another client, and
    /// statements it drops are gone from this connection (after the Bind,
    /// which needs its own).
    fn runs_again(&mut self, effect: Effect, cache: &mut StatementCache) {
        if effect != Effect::default() {
            self.settings_changed |= effect.changes_settings;
            if effect.drops_statements {
                cache.dropped_maybe();
            }
        }
    }

    /// Writes message `t` (a Bind or Describe) naming statement `name`,
    /// between the `prefix` and `rest` of the client's.
    pub(super) fn write_naming(&mut self, t: u8, prefix: &[u8], name: &[u8], rest: &[u8]) {
        self.out.put_u8(t);
        self.out
            .put_i32((4 + prefix.len() + name.len() + 1 + rest.len()) as i32);
        self.out.put_slice(prefix);
        self.out.put_slice(name);
        self.out.put_u8(0);
        self.out.put_slice(rest);
    }

    /// Transaction mode, the connection going back: what the session
    /// keeps for later ones stays small.
    pub fn between_transactions(&mut self) {
        self.unnamed.trim();
    }

    /// Sends the client's unnamed Parse again, ahead of the Bind or
    /// Describe that needs it, unless it has none (none kept, or the server
    /// refused its last).
    fn reparse_unnamed(&mut self, cache: &mut StatementCache, down: &mut Downstream) -> bool {
        if self.unnamed.parse.is_empty() || down.unnamed_lost {
            return false;
        }
        self.out.extend_from_slice(&self.unnamed.parse);
        down.expect.push_back(Expect::ReparseUnnamed);
        cache.unnamed_owner = self.owner;
        true
    }

    /// A Bind or Describe of an unnamed statement that is not the client's:
    /// sent naming a statement that never exists, so that the server fails
    /// it and skips to Sync as for a missing one; its error is replaced.
    fn not_ours(&mut self, t: u8, prefix: &[u8], rest: &[u8]) -> Renamed {
        self.write_naming(t, prefix, b"pgt_unnamed_gone", rest);
        let err = protocol::error(
            "26000",
            "unnamed prepared statement does not exist",
            Some(
                "parse it again: a simple Query, a Close or a failed Parse drops it (and \
                 transaction pooling keeps none over 64 MiB across transactions)",
            ),
        );
        Renamed::NotOurs(err)
    }

    /// Sends a Parse of `st` under its server name (closing a colliding or
    /// evicted statement first). `client`: the client asked for it, and
    /// the number the session kept it under; `None`: the proxy prepares
    /// it for a Bind or Describe, silently.
    pub(super) fn prepare(
        &mut self,
        st: &Statement,
        cache: &mut StatementCache,
        q: &mut VecDeque<Expect>,
        client: Option<u64>,
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
        let sent = cache.insert(st);
        while let Some(evicted) = cache.evict() {
            self.close_on_server(&evicted, q);
        }
        self.out.extend_from_slice(&st.parse);
        q.push_back(match client {
            None => Expect::Reparse(st.server_name.clone(), sent, st.unproven.then_some(st.kept)),
            Some(kept) => Expect::ParseNamed(st.server_name.clone(), kept, sent),
        });
    }

    pub(super) fn close_on_server(&mut self, name: &str, q: &mut VecDeque<Expect>) {
        frontend::close(b'S', name, &mut self.out).expect("no NUL in generated name");
        q.push_back(Expect::Evict);
    }
}
