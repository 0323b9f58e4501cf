//! Server → client: bytes stream through where they were read; only
//! message headers are looked at, and whole messages are held back just
//! when the proxy has to drop or replace one (see [`super::expect`]).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::expect::{Expect, Reply};
use super::prepared::StatementCache;
use crate::error::ClientError;
use crate::pool::ServerParams;
use crate::protocol::{self, ErrorFields, HEADER_LEN, TxStatus};

pub struct Downstream {
    pub buf: BytesMut,
    /// `buf[..scanned]` may be written to the client.
    pub scanned: usize,
    /// Body bytes of the current message still to pass through.
    remaining: usize,
    pub last_tag: u8,
    pub status: TxStatus,
    pub expect: VecDeque<Expect>,
    pub transactions: u64,
    /// Statements completed (CommandComplete).
    pub queries: u64,
    /// The firewall enforces: the server must keep reading SQL as it does
    /// (see [`crate::firewall::misread_under`]).
    pub guard_reading: bool,
    /// The server waits for COPY data (COPY FROM STDIN, by a Query or an
    /// Execute): it ignores Syncs until the client's CopyDone or CopyFail,
    /// and only the client can end the wait.
    pub copy_in: bool,
    /// An error ended an unsynced pipeline whose Sync the client has not
    /// sent yet: the server skips every message up to it.
    pub skipping_to_sync: bool,
    /// A COPY FROM STDIN run by an Execute began, and the server ignored
    /// the client's Syncs behind it: it ends the Execute's implicit
    /// transaction (or skips to, after an error) only at a Sync still to
    /// come; or an error made the server skip to a Sync not sent yet. The
    /// relay makes the client unsynced again (see `Upstream::unsynced`).
    pub sync_owed: bool,
    /// Transaction mode: the unnamed statement was parsed and not yet
    /// bound (`PQprepare(conn, "", …)`, pgx's describe-then-execute): it
    /// lives on this server connection only, so the client keeps the
    /// connection until its Bind, its Close, a Query that replaces it or
    /// the server's refusal of its Parse.
    pub unnamed_unbound: bool,
    /// Transaction mode: the server failed or skipped the client's last
    /// unnamed Parse, so there is no unnamed statement to parse again on
    /// another connection (see `Upstream::reparse_unnamed`).
    pub unnamed_lost: bool,
    /// A `DEALLOCATE ALL` or `DISCARD ALL` ran (see [`Expect::DropsAll`]):
    /// the client's statements kept up to this number are gone.
    pub dropped_all: Option<u64>,
    /// The proxy's restore of startup settings met a failed transaction.
    pub restore_again: bool,
    /// Pipelined `DEALLOCATE name`s that met a failed transaction, and
    /// Closes the server skipped: the client's statements are back (see
    /// [`Expect::Deallocate`], [`Expect::Closed`]).
    pub undeallocated: Vec<std::sync::Arc<(String, super::prepared::Statement)>>,
    /// Client's named statements (by the number the session kept them
    /// under) whose Parse failed or was skipped: they go (see
    /// [`Expect::Parsed`]).
    pub unparsed: Vec<u64>,
    /// Those numbers, for as long as a Close of one may still be answered
    /// (ascending; see [`Downstream::give_back`]).
    failed_parses: Vec<u64>,
    /// The highest `dropped_all` yet.
    dropped_upto: u64,
    /// Client's named statements that the proxy answered for alone, now
    /// read by a server (see `Statement::unproven`).
    pub proven: Vec<u64>,
}

/// Failed Parses remembered while pipelines go on (see `failed_parses`):
/// past this, the oldest are let go.
const MAX_FAILED_PARSES: usize = 1024;

/// A server that now reads SQL differently from the firewall (its
/// `standard_conforming_strings` or `client_encoding` changed where the
/// firewall could not see it: dynamic SQL, a function) ends the session.
fn misread_guard(body: &[u8]) -> Result<(), ClientError> {
    let Some((name, rest)) = protocol::read_cstr(body) else {
        return Ok(());
    };
    let value = protocol::read_cstr(rest).map_or(rest, |(v, _)| v);
    let (name, value) = (
        String::from_utf8_lossy(name).to_ascii_lowercase(),
        String::from_utf8_lossy(value),
    );
    if crate::firewall::misread_under(&name, &value) {
        return Err(ClientError::ReadingChanged(name, value.into_owned()));
    }
    Ok(())
}

/// PostgreSQL's ErrorResponse for a statement in a failed transaction.
#[cold]
pub(crate) fn in_failed_transaction() -> Bytes {
    protocol::error(
        "25P02",
        "current transaction is aborted, commands ignored until end of transaction block",
        None,
    )
}

/// Messages the server may send at any time, outside any reply.
fn is_async(tag: u8) -> bool {
    matches!(tag, b'N' | b'S' | b'A')
}

impl Downstream {
    pub fn new(buf: BytesMut) -> Downstream {
        Downstream {
            buf,
            scanned: 0,
            remaining: 0,
            last_tag: 0,
            status: TxStatus::Idle,
            expect: VecDeque::new(),
            transactions: 0,
            queries: 0,
            guard_reading: false,
            copy_in: false,
            skipping_to_sync: false,
            sync_owed: false,
            unnamed_unbound: false,
            unnamed_lost: false,
            dropped_all: None,
            undeallocated: Vec::new(),
            unparsed: Vec::new(),
            failed_parses: Vec::new(),
            proven: Vec::new(),
            dropped_upto: 0,
            restore_again: false,
        }
    }

    /// Every reply delivered (or at least received) and nothing pending.
    pub fn settled(&self) -> bool {
        self.expect.is_empty() && self.remaining == 0 && self.scanned == self.buf.len()
    }

    /// Walks newly read server bytes; applies the expect queue and records
    /// the server's ParameterStatus reports in `params`.
    pub fn scan(
        &mut self,
        cache: &mut StatementCache,
        params: &mut ServerParams,
    ) -> Result<(), ClientError> {
        let mut pos = self.scanned;
        loop {
            if self.remaining > 0 {
                let take = self.remaining.min(self.buf.len() - pos);
                pos += take;
                self.remaining -= take;
                if self.remaining > 0 {
                    break;
                }
            }
            self.emit_synth(&mut pos);
            // Server messages can be huge (a 1 GB bytea): they stream, no cap.
            let h = match protocol::header(&self.buf[pos..], usize::MAX) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(_) => return Err(ClientError::BackendLost),
            };
            let tag = h.tag;
            // Nearly every message: part of a reply that passes through, with
            // nothing to record, replace or drop (rows, descriptions, tags).
            if let Some(&Expect::Pass(reply)) = self.expect.front()
                && match tag {
                    // CopyInResponse: see `copy_started`.
                    b'E' | b'S' | b'G' => false,
                    b'Z' => reply.ends_at_ready(),
                    _ => true,
                }
            {
                match tag {
                    b'C' => self.queries += 1,
                    // The end of a Query's or Sync's reply; its status
                    // byte may not be here yet.
                    b'Z' if !self.read_status(pos)? => break,
                    _ => {}
                }
                if reply.ended_by(tag) {
                    self.expect.pop_front();
                }
                self.last_tag = tag;
                pos += HEADER_LEN;
                self.remaining = h.frame_len - HEADER_LEN;
                continue;
            }
            let whole = self.buf.len() - pos >= h.frame_len;
            let head = if is_async(tag) {
                None
            } else {
                self.expect.front().cloned()
            };
            if tag == b'S' {
                // Small; held until whole so that it can be recorded.
                if !whole {
                    break;
                }
                let body = &self.buf[pos + HEADER_LEN..pos + h.frame_len];
                if self.guard_reading {
                    misread_guard(body)?;
                }
                params.record(body);
            }
            if let Some(hidden @ (Expect::Hidden | Expect::Restore)) = head {
                if !whole {
                    break;
                }
                if tag == b'E' {
                    let body = &self.buf[pos + HEADER_LEN..pos + h.frame_len];
                    let err = ErrorFields::parse(body);
                    if matches!(hidden, Expect::Hidden) {
                        return Err(ClientError::Backend(err));
                    }
                    // Sent behind a RESET in a transaction that failed:
                    // again once it is rolled back (see `relay`).
                    self.restore_again |= err.code == "25P02";
                }
                if tag == b'Z' {
                    self.expect.pop_front();
                }
                splice(&mut self.buf, pos, h.frame_len, &[]);
                continue;
            }
            if let Some(Expect::Quiet(reply)) = head
                && tag != b'E'
            {
                if !whole {
                    break;
                }
                if reply.ended_by(tag) {
                    self.expect.pop_front();
                }
                splice(&mut self.buf, pos, h.frame_len, &[]);
                continue;
            }
            if tag == b'Z' && !self.read_status(pos)? {
                break;
            }
            if tag == b'C' {
                self.queries += 1;
            }
            if tag == b'E' {
                self.copy_in = false; // an error ends a copy
            }
            match (head, tag) {
                (Some(Expect::Pass(Reply::Execute)), b'G') => self.copy_started(true),
                (_, b'G') => self.copy_started(false),
                // The proxy's own Parse/Close succeeded: the client never asked.
                (Some(Expect::Reparse(..) | Expect::ReparseUnnamed), b'1')
                | (Some(Expect::Evict), b'3') => {
                    if !whole {
                        break;
                    }
                    splice(&mut self.buf, pos, h.frame_len, &[]);
                    if let Some(Expect::Reparse(name, sent, proves)) = self.expect.pop_front() {
                        cache.answered(&name, sent, true);
                        self.proven.extend(proves);
                    }
                    continue;
                }
                (Some(Expect::DropsAll(reply, upto)), b'C') => {
                    if !whole {
                        break;
                    }
                    let body = &self.buf[pos + HEADER_LEN..pos + h.frame_len];
                    if body == b"DEALLOCATE ALL\0" || body == b"DISCARD ALL\0" {
                        self.dropped_all = Some(upto);
                        self.dropped_upto = self.dropped_upto.max(upto);
                    }
                    if reply.ended_by(tag) {
                        self.expect.pop_front();
                    }
                }
                (Some(Expect::Deallocate(reply, kept)), b'I') => {
                    if !whole {
                        break;
                    }
                    // (An Execute's empty portal ran: where the
                    // transaction had failed for certain the proxy refused
                    // it, see `Upstream::run_deallocate`.)
                    let executed = reply == Reply::Execute;
                    let reply = if self.status == TxStatus::Failed && !executed {
                        // PostgreSQL's answer there; the statement stays.
                        if let Some(kept) = kept {
                            self.give_back(kept.clone());
                        }
                        in_failed_transaction()
                    } else {
                        Bytes::from_static(b"C\0\0\0\x0fDEALLOCATE\0")
                    };
                    if executed {
                        self.expect.pop_front();
                    }
                    splice(&mut self.buf, pos, h.frame_len, &reply);
                    self.last_tag = reply[0];
                    pos += reply.len();
                    continue;
                }
                (Some(Expect::Refused(reply, ref err)), b'E') => {
                    if !whole {
                        break;
                    }
                    // The server's 25P02 passes: its transaction failed
                    // before the refusal mattered. (Only a stand-in that
                    // parses meets it: see REFUSED_VALID_SQL.)
                    let body = &self.buf[pos + HEADER_LEN..pos + h.frame_len];
                    if ErrorFields::parse(body).code == "25P02" {
                        pos += h.frame_len;
                    } else {
                        splice(&mut self.buf, pos, h.frame_len, err);
                        pos += err.len();
                    }
                    self.last_tag = tag;
                    if reply.is_extended() {
                        self.fail_until_sync(cache);
                    }
                    continue;
                }
                (Some(Expect::Quiet(_)), b'E') => {
                    // The restore failed (a cancel): again after the Sync.
                    self.restore_again = true;
                    self.fail_until_sync(cache);
                }
                // (A failed unnamed Parse is among what this skips.)
                (Some(e), b'E') if e.reply().is_some_and(Reply::is_extended) => {
                    self.fail_until_sync(cache);
                }
                (Some(Expect::ParseNamed(name, _, sent)), b'1') => {
                    cache.answered(&name, sent, true);
                    self.expect.pop_front();
                }
                (Some(e), _) if e.reply().is_some_and(|r| r.ended_by(tag)) => {
                    self.expect.pop_front();
                }
                (Some(_), b'Z') => {
                    // Out of step (should not happen): resynchronise on Ready.
                    while let Some(e) = self.expect.pop_front() {
                        if e.reply().is_some_and(Reply::ends_at_ready) {
                            break;
                        }
                        self.never_answered(e, cache);
                    }
                    cache.unnamed_owner = 0; // whatever its Parses became
                }
                _ => {}
            }
            self.last_tag = tag;
            pos += HEADER_LEN;
            self.remaining = h.frame_len - HEADER_LEN;
        }
        self.scanned = pos;
        Ok(())
    }

    /// Takes the transaction status from the ReadyForQuery at `pos`;
    /// false while its status byte has not arrived.
    fn read_status(&mut self, pos: usize) -> Result<bool, ClientError> {
        let Some(&b) = self.buf.get(pos + HEADER_LEN) else {
            return Ok(false);
        };
        // Not `ok_or`: an error built for nothing costs a drop per reply.
        let Some(status) = TxStatus::from_byte(b) else {
            return Err(ClientError::BackendLost);
        };
        self.status = status;
        if self.status == TxStatus::Idle {
            self.transactions += 1;
        }
        Ok(true)
    }

    /// COPY FROM STDIN began (CopyInResponse). The server now ignores
    /// Syncs until the client's CopyDone or CopyFail; for a COPY run by an
    /// Execute, those the client already sent behind it too, so their
    /// replies never come, and the client's Sync after its CopyDone gets
    /// the one ReadyForQuery. If the client already ended the copy (its
    /// data pipelined ahead of this reply: a [`Expect::CopyEnd`] behind),
    /// only the Syncs before that end are ignored, and nothing waits for data.
    fn copy_started(&mut self, by_execute: bool) {
        // Behind the Execute: its Syncs, and answers the proxy gives itself.
        let mut i = 1;
        let mut ended = false;
        while let Some(e) = self.expect.get(i) {
            match e {
                Expect::Pass(Reply::Sync) if by_execute => drop(self.expect.remove(i)),
                e if by_execute && e.synth().is_some() => i += 1,
                Expect::CopyEnd => {
                    self.expect.remove(i);
                    ended = true;
                    break;
                }
                _ => break,
            }
        }
        self.copy_in = !ended;
        // Unless the client sent a Sync after its copy's end already.
        let until_ready = |e: &Expect| e.reply().is_some_and(Reply::ends_at_ready);
        self.sync_owed = by_execute && !self.expect.iter().any(until_ready);
    }

    /// An error in the extended protocol: the server skips everything up
    /// to the next Sync, a Query too, so those replies will never come.
    fn fail_until_sync(&mut self, cache: &mut StatementCache) {
        // A Parse of the unnamed statement (transaction mode: named ones
        // are the proxy's) among them: the client's, or the proxy's again.
        let own_parse = |e: &Expect| matches!(e, Expect::Pass(Reply::Parse));
        let unnamed_parse = |e: &Expect| own_parse(e) || matches!(e, Expect::ReparseUnnamed);
        let (mut skipped_parse, mut skipped_own) = (false, false);
        let mut synced = false;
        while let Some(e) = self.expect.front() {
            if e.reply() == Some(Reply::Sync) {
                synced = true;
                break;
            }
            skipped_parse |= unnamed_parse(e);
            skipped_own |= own_parse(e);
            let e = self.expect.pop_front().expect("front");
            self.never_answered(e, cache);
        }
        // The connection's unnamed statement is whoever's it was before,
        // so nobody's, and nothing the client may bind holds the
        // connection; unless the client sent another Parse since. Its own
        // Parse failed or skipped, the client has none to parse again.
        // (When an error only skipped it, PostgreSQL keeps the earlier
        // statement; the proxy, which keeps only the last text, answers
        // 26000.)
        if skipped_parse && !self.expect.iter().any(unnamed_parse) {
            cache.unnamed_owner = 0;
            self.unnamed_unbound = false;
            self.unnamed_lost |= skipped_own;
        }
        // The client's Sync is still to come: what it sends until then is
        // skipped too (see `Upstream::process`), and the connection is the
        // client's until then (a Query it sent since, which the server
        // skipped, did not end its pipeline).
        self.skipping_to_sync |= !synced;
        self.sync_owed |= !synced;
    }

    /// What the server failed or skipped never happened: a statement the
    /// proxy prepared is not there, one it closed may still be; the
    /// client's statement whose Parse it was goes, one whose Close or
    /// `DEALLOCATE` it was stays.
    fn never_answered(&mut self, e: Expect, cache: &mut StatementCache) {
        match e {
            Expect::Reparse(name, sent, _) => cache.answered(&name, sent, false),
            Expect::ParseNamed(name, kept, sent) => {
                cache.answered(&name, sent, false);
                self.parse_failed(kept);
            }
            Expect::Parsed(kept) => self.parse_failed(kept),
            Expect::Evict => cache.close_skipped(),
            Expect::Deallocate(_, Some(kept)) | Expect::Closed(Some(kept)) => self.give_back(kept),
            _ => {}
        }
    }

    /// Have replies changed the client's statements since its last batch
    /// (see `Upstream::statements_answered`)?
    pub fn has_statement_news(&self) -> bool {
        self.dropped_all.is_some()
            || !self.undeallocated.is_empty()
            || !self.unparsed.is_empty()
            || !self.proven.is_empty()
    }

    fn parse_failed(&mut self, kept: u64) {
        self.unparsed.push(kept);
        // A Close of it can only be queued behind, answered in this read or
        // a later one; with nothing but a Sync there, no Close of any is.
        let settled = self.expect.len() <= 1
            && (self.expect.front()).is_none_or(|e| e.reply().is_some_and(Reply::ends_at_ready));
        if settled || self.failed_parses.len() >= MAX_FAILED_PARSES {
            self.failed_parses.clear();
        }
        if !settled {
            self.failed_parses.push(kept);
        }
    }

    /// A Close or `DEALLOCATE name` that did not run: its statement comes
    /// back, unless the server never had it (its Parse failed) or a
    /// `DEALLOCATE ALL` sent before it took it. Decided here, in the
    /// order of the replies: the client's statements follow only at its
    /// next batch, when those answers may have come in different reads.
    fn give_back(&mut self, kept: std::sync::Arc<(String, super::prepared::Statement)>) {
        let n = kept.1.kept;
        if n > self.dropped_upto && self.failed_parses.binary_search(&n).is_err() {
            self.undeallocated.push(kept);
        }
    }

    /// Answers the proxy gives itself, once all earlier replies are out.
    /// (A copy's end that no CopyInResponse claimed, a stray CopyDone,
    /// goes here too.)
    fn emit_synth(&mut self, pos: &mut usize) {
        loop {
            match self.expect.front() {
                Some(Expect::CopyEnd) => {}
                Some(e) if let Some(bytes) = e.synth() => {
                    splice(&mut self.buf, *pos, 0, bytes);
                    *pos += bytes.len();
                }
                _ => return,
            }
            self.expect.pop_front();
        }
    }

    /// Called after new expectations were queued: emits leading synthetic
    /// answers right away when no server bytes are pending.
    pub fn flush_synth(
        &mut self,
        cache: &mut StatementCache,
        params: &mut ServerParams,
    ) -> Result<(), ClientError> {
        if self
            .expect
            .front()
            .is_some_and(|e| matches!(e, Expect::CopyEnd) || e.synth().is_some())
        {
            self.scan(cache, params)?;
        }
        Ok(())
    }
}

/// Replaces `buf[at..at + remove]` with `insert`.
fn splice(buf: &mut BytesMut, at: usize, remove: usize, insert: &[u8]) {
    let old_len = buf.len();
    let new_len = old_len - remove + insert.len();
    if insert.len() > remove {
        buf.resize(new_len, 0);
        buf.copy_within(at + remove..old_len, at + insert.len());
    } else {
        buf.copy_within(at + remove..old_len, at + insert.len());
        buf.truncate(new_len);
    }
    buf[at..at + insert.len()].copy_from_slice(insert);
}

#[cfg(test)]
mod tests;
