//! What the client sends, read for the firewall and for its effects on the
//! session: a statement's check (or its repeat's), what a cleared text
//! lets the session remember, and the effects that pin the client or
//! have its settings read back (transaction mode).

use bytes::Bytes;
use postgres_protocol::message::frontend;

use super::super::custom::{Unreadable, custom_names};
use super::super::downstream::Downstream;
use super::super::expect::{Expect, Reply};
use super::super::offload;
use super::super::pinning::{Effect, session_effect};
use super::{Inspector, Upstream, cstr};
use crate::lexical::{self, Lexed};
use crate::pool::ServerConn;
use crate::protocol::TxStatus;

/// A portal bound to a statement whose run the proxy follows up (see
/// [`Upstream::portal_runs`]). A stale one costs little: a `DEALLOCATE
/// ALL`'s reply must name the statement, a restore of settings nothing
/// reset changes nothing, and an Execute of a `DEALLOCATE`'s portal gone
/// with its transaction fails on the server, which gives the statement
/// back. (They are forgotten once the client's pipeline is answered
/// outside a transaction: see [`Upstream::portals_ended`].)
pub(super) struct EffectPortal {
    name: Box<[u8]>,
    drops_all: bool,
    resets: bool,
    /// Bound to the proxy's empty statement in place of a `DEALLOCATE`
    /// of the client's statement of this name (see
    /// [`Upstream::bind_deallocate`]).
    deallocates: Option<Box<str>>,
    /// Executed already (of one that deallocates: PostgreSQL runs a
    /// portal of a `DEALLOCATE` once).
    ran: bool,
}

/// Effect portals a session tracks at once (nearly always none or one).
const EFFECT_PORTALS: usize = 16;

impl Upstream {
    /// Asks the inspector about the text that starts `raw` and ends at its
    /// first NUL (or with `raw`), and notes its session effects, unless it
    /// repeats a text cleared before (see [`crate::session::repeats`]).
    /// `parse`: `raw` is the rest of a Parse, else a Query's body without
    /// its final NUL.
    ///
    /// A repeat is looked for before the NUL is: remembered texts hold no
    /// NUL, so a match is the whole text (the search for the NUL costs as
    /// much as the lookup, on every statement).
    pub(super) fn check(
        &mut self,
        raw: &[u8],
        parse: bool,
        inspector: &dyn Inspector,
        server: &mut ServerConn,
    ) -> Result<Effect, Bytes> {
        if !self.lex {
            // Session mode, firewall off: nobody reads the text but for a
            // reset of the startup settings.
            let sql = cstr(raw);
            inspector.inspect(sql, &Lexed::default())?;
            let effect = self.note_resets(sql, &lexical::scan(sql, false), parse);
            server.reseeded |= effect.reseeds;
            return Ok(effect);
        }
        let seen = if parse {
            self.repeats.parse_seen(raw)
        } else {
            self.repeats.query_seen(raw)
        };
        if seen && inspector.repeat(!parse) {
            return Ok(Effect::default()); // only texts without effects are remembered
        }
        let sql = cstr(raw);
        let (lexed, verdict) = self.read(sql, inspector);
        verdict?;
        let effect = self.note_session_effect(sql, &lexed, parse, server);
        server.reseeded |= effect.reseeds;
        // A repeat read again by the inspector's choice (monitor mode) is
        // remembered already.
        if !seen {
            self.remember(sql, parse, effect == Effect::default(), &lexed);
        }
        Ok(effect)
    }

    /// A text's words and the inspector's verdict on it: reached already,
    /// off the event loop, for a long text (see [`super::super::offload`]).
    pub(super) fn read(
        &mut self,
        sql: &[u8],
        inspector: &dyn Inspector,
    ) -> (Lexed, Result<(), Bytes>) {
        if let Some(a) = offload::take(&mut self.ahead, sql) {
            return (a.lexed, a.verdict);
        }
        let lexed = lexical::scan(sql, self.rename);
        let verdict = inspector.inspect(sql, &lexed);
        (lexed, verdict)
    }

    /// Remembers a text [`Upstream::check`] cleared, if its repeats may
    /// pass unread (see [`crate::session::repeats`]).
    fn remember(&mut self, sql: &[u8], parse: bool, inert: bool, lexed: &Lexed) {
        if parse {
            if inert {
                self.repeats.parse_cleared(sql);
            }
        } else if lexed.firewall_fast_path()
            && !lexed.non_ascii
            && (!self.rename || !lexed.may_have_session_effect())
        {
            // Cleared from the lexical facts alone, which its numbers don't
            // change.
            self.repeats.query_cleared(sql);
        }
    }

    /// Transaction mode: pins the client on statements with session
    /// effects, and forgets what a clearing statement wipes on the server.
    /// Returns the effects (none outside transaction mode). `parse`: the
    /// text is only parsed now; a reset is followed up when it runs.
    fn note_session_effect(
        &mut self,
        sql: &[u8],
        lexed: &Lexed,
        parse: bool,
        server: &mut ServerConn,
    ) -> Effect {
        if !self.rename {
            return self.note_resets(sql, lexed, parse);
        }
        let e = session_effect(sql, lexed);
        if e == Effect::default() {
            return e;
        }
        self.restore_startup |= e.resets && !parse;
        if let Some(why) = e.pins {
            self.pin(why);
        }
        if e.drops_statements {
            server.statements.dropped_maybe();
        }
        self.drops_all = e.drops_all;
        if e.changes_settings {
            self.settings_changed = true;
            self.note_custom_settings(sql);
        }
        e
    }

    /// Session mode: only whether startup settings need giving back, and
    /// whether the connection must be closed after. One plain statement
    /// (the firewall's fast path; `setseed` is off it) does neither.
    fn note_resets(&mut self, sql: &[u8], lexed: &Lexed, parse: bool) -> Effect {
        if lexed.firewall_fast_path() {
            return Effect::default();
        }
        let e = session_effect(sql, &lexical::scan(sql, true));
        self.restore_startup |= e.resets && !parse;
        Effect {
            resets: e.resets,
            reseeds: e.reseeds,
            ..Effect::default()
        }
    }

    /// A statement prepared as `name` (unnamed: empty) resets settings
    /// each time it runs, or no longer does (parsed again): see
    /// [`Upstream::bound`]. Session mode, and the unnamed statement in
    /// transaction mode (named ones carry their effect).
    /// Past [`Resetting::MAX`] such statements, the error to refuse the
    /// Parse with.
    pub(super) fn note_prepared_resets(&mut self, name: &[u8], resets: bool) -> Result<(), Bytes> {
        if self.resetting.note(name, resets) {
            return Ok(());
        }
        Err(super::too_many_statements(&format!(
            "that reset settings in this session (at most {})",
            Resetting::MAX
        )))
    }

    /// Whether the statement `name` (unnamed: empty) resets settings when
    /// it runs.
    pub(super) fn resets_when_run(&self, name: &[u8]) -> bool {
        self.resetting.resets(name)
    }

    /// A Bind of `portal` (replacing any portal of that name) to a
    /// statement that, when it runs, drops every prepared statement or
    /// resets settings, or neither; or a Close of it (neither). One test
    /// when no portal is tracked nor is to be.
    #[inline]
    pub(super) fn bind_portal(&mut self, portal: &[u8], drops_all: bool, resets: bool) {
        if drops_all || resets || !self.effect_portals.is_empty() {
            self.track_portal(portal, drops_all, resets, None);
        }
    }

    #[cold]
    pub(super) fn track_portal(
        &mut self,
        portal: &[u8],
        drops_all: bool,
        resets: bool,
        deallocates: Option<Box<str>>,
    ) {
        self.effect_portals.retain(|p| *p.name != *portal);
        if drops_all || resets || deallocates.is_some() {
            if self.effect_portals.len() == EFFECT_PORTALS {
                // The oldest, but one a `DEALLOCATE` is still to run
                // from as last: its Execute must be answered for (see
                // `portal_room`).
                let ps = &self.effect_portals;
                let i = ps.iter().position(|p| p.deallocates.is_none() || p.ran);
                self.effect_portals.remove(i.unwrap_or(0));
            }
            self.effect_portals.push(EffectPortal {
                name: portal.into(),
                drops_all,
                resets,
                deallocates,
                ran: false,
            });
        }
    }

    /// Whether `portal` can be tracked without forgetting one that a
    /// `DEALLOCATE` runs (see [`Upstream::bind_deallocate`]).
    pub(super) fn portal_room(&self, portal: &[u8]) -> bool {
        let ps = &self.effect_portals;
        ps.len() < EFFECT_PORTALS
            || (ps.iter()).any(|p| p.deallocates.is_none() || p.ran || *p.name == *portal)
    }

    /// Portals end with their transaction: once the client's pipeline is
    /// answered and no transaction is open, none tracked is left, whether
    /// the connection went back or stays the client's (pinned). An
    /// Execute of one then gets the server's 34000.
    #[cold]
    pub(super) fn portals_ended(&mut self, down: &Downstream) {
        if !self.unsynced && down.settled() && down.status == TxStatus::Idle {
            self.effect_portals.clear();
        }
    }

    /// Marks the tracked portal `i` run; whether it was before.
    pub(super) fn portal_ran(&mut self, i: usize) -> bool {
        std::mem::replace(&mut self.effect_portals[i].ran, true)
    }

    /// The name of the tracked portal `i`, for an error.
    pub(super) fn portal_name(&self, i: usize) -> String {
        String::from_utf8_lossy(&self.effect_portals[i].name).into_owned()
    }

    /// An Execute of `portal` (its `frame`) while effect portals are
    /// tracked: if it is one, whether the client's names go is decided by
    /// its reply (it may fail: in a failed transaction, `DISCARD ALL` in a
    /// block), and a reset's restore goes right behind it.
    #[cold]
    pub(super) fn portal_runs(&mut self, frame: &[u8], portal: &[u8], down: &mut Downstream) {
        let i = self.effect_portals.iter().position(|p| *p.name == *portal);
        let p = i.map(|i| &self.effect_portals[i]);
        if let (Some(i), Some(name)) = (i, p.and_then(|p| p.deallocates.clone())) {
            return self.run_deallocate(frame, i, &name, down);
        }
        self.out.extend_from_slice(frame);
        let (drops_all, resets) = p.map_or((false, false), |p| (p.drops_all, p.resets));
        down.expect.push_back(if drops_all {
            Expect::DropsAll(Reply::Execute, self.statements_kept)
        } else {
            Expect::Pass(Reply::Execute)
        });
        if resets {
            self.restore_in_pipeline(down);
        }
    }

    /// Right behind the Execute of a reset, inside the client's pipeline
    /// (libpq pipeline mode, pgx batches, a driver's pipelined queries):
    /// the startup settings are back before its next message runs, in the
    /// same transaction, as [`Upstream::restore_behind`] does for a Query.
    /// A named statement and portal of the proxy's own, closed again, so
    /// the client's unnamed ones are left alone. If the reset fails the
    /// server skips these too; if they fail, the relay restores after the
    /// Sync (`restore_again`).
    fn restore_in_pipeline(&mut self, down: &mut Downstream) {
        let Some(sql) = self.startup.as_deref().and_then(crate::pool::restore_sql) else {
            return;
        };
        // The client's names reach the server as they are in session mode
        // (portals in both): one it could not have chosen by accident.
        let name = format!("pgt_restore_{}", self.owner);
        let name = name.as_str();
        let mut msgs = bytes::BytesMut::new();
        let written = frontend::parse(name, &sql, [], &mut msgs).is_ok()
            && frontend::bind(
                name,
                name,
                [],
                [],
                |_: (), _| Ok(postgres_protocol::IsNull::Yes),
                [],
                &mut msgs,
            )
            .is_ok()
            && frontend::execute(name, 0, &mut msgs).is_ok()
            && frontend::close(b'P', name, &mut msgs).is_ok()
            && frontend::close(b'S', name, &mut msgs).is_ok();
        if !written {
            return; // (startup values hold no NUL)
        }
        self.out.extend_from_slice(&msgs);
        for r in [
            Reply::Parse,
            Reply::Bind,
            Reply::Execute,
            Reply::Close,
            Reply::Close,
        ] {
            down.expect.push_back(Expect::Quiet(r));
        }
        self.restore_startup = false;
    }

    /// Remembers the custom settings `sql` changes, to read back by name;
    /// pins the client when it can't tell which (see [`crate::session::custom`]).
    fn note_custom_settings(&mut self, sql: &[u8]) {
        /// Enough for any application; past it, reading them all back
        /// after every change would cost more than keeping the connection.
        const MAX_CUSTOM: usize = 64;
        if self.pinned.is_some() {
            return; // its connection stays: nothing to carry over
        }
        let why = match custom_names(sql) {
            Ok(names) => {
                // Past the limit no more are looked at (a text of a
                // million SETs must not cost a million searches each).
                for n in names {
                    if self.custom_settings.len() > MAX_CUSTOM {
                        break;
                    }
                    if !self.custom_settings.contains(&n) {
                        self.custom_settings.push(n);
                    }
                }
                if self.custom_settings.len() <= MAX_CUSTOM {
                    return;
                }
                "too many custom settings"
            }
            Err(Unreadable) => "custom settings it can't name",
        };
        self.pin(why);
    }

    /// Sends `sql` (from [`crate::pool::restore_sql`]) now,
    /// its reply kept from the client but for the ParameterStatus reports
    /// it draws, which tell the client its settings are back.
    pub fn restore_startup_settings(&mut self, sql: &str, down: &mut Downstream) {
        self.restore_startup = false;
        // From NUL-terminated startup values.
        if frontend::query(sql, &mut self.out).is_ok() {
            down.expect.push_back(Expect::Restore);
        }
    }

    /// The rare effects of a client's Query, forwarded: a `DEALLOCATE ALL`
    /// (its names go once the server says it ran; it may not, in a failed
    /// transaction), a reset of startup settings.
    #[cold]
    pub(super) fn query_effects(&mut self, sql: &[u8], down: &mut Downstream) {
        down.expect
            .push_back(if std::mem::take(&mut self.drops_all) {
                Expect::DropsAll(Reply::UntilReady, self.statements_kept)
            } else {
                Expect::Pass(Reply::UntilReady)
            });
        if self.restore_startup {
            self.restore_behind(sql, down);
        }
    }

    /// Right behind a client's Query that resets settings, in the same
    /// write: the startup settings it took are back before anything the
    /// client sent after it runs (statements pipelined behind it). In the
    /// same transaction, so a rollback undoes both; refused in a failed
    /// one, it is sent again after the rollback (`restore_again`). Not
    /// behind a COPY, which would take the query for its data: there the
    /// relay restores once the Query is answered.
    pub(super) fn restore_behind(&mut self, sql: &[u8], down: &mut Downstream) {
        let copies = sql.windows(4).any(|w| w.eq_ignore_ascii_case(b"copy"));
        if let Some(restore) = self.startup.as_deref().and_then(crate::pool::restore_sql)
            && !copies
        {
            self.restore_startup_settings(&restore, down);
        }
    }

    pub(crate) fn pin(&mut self, why: &'static str) {
        if self.pinned.is_none() {
            tracing::debug!(parent: &self.span, reason = why, "client pinned to its server connection");
            metrics::counter!("pgtenant_pins_total", "reason" => why).increment(1);
            self.pinned = Some(why);
        }
    }
}

/// The names of prepared statements that reset settings, as the server
/// tells them apart: by their first 63 bytes (`NAMEDATALEN - 1`; a name
/// in another client encoding than UTF8 is cut after the server converts
/// it, which may differ), and at most [`Resetting::MAX`], so that a
/// session's memory stays bounded. A Close or DEALLOCATE takes one out, a
/// DISCARD ALL or DEALLOCATE ALL all, when sent: should the server fail
/// it, a RESET that statement runs later is not followed by the client's
/// startup settings (its own session only).
#[derive(Default)]
pub(super) struct Resetting {
    names: std::collections::HashSet<Box<[u8]>>,
}

impl Resetting {
    const MAX: usize = 1024;

    fn key(name: &[u8]) -> &[u8] {
        &name[..name.len().min(63)]
    }

    /// False if it is one too many.
    fn note(&mut self, name: &[u8], resets: bool) -> bool {
        let key = Self::key(name);
        if !resets {
            self.names.remove(key);
        } else if !self.names.contains(key) {
            if self.names.len() >= Self::MAX && !key.is_empty() {
                return false;
            }
            self.names.insert(key.into());
        }
        true
    }

    /// A Close of the statement `name` was sent.
    pub(super) fn closed(&mut self, name: &[u8]) {
        self.names.remove(Self::key(name));
    }

    /// A Query was sent: `DEALLOCATE name` drops one statement, one that
    /// drops them all (`drops_all`) every one.
    pub(super) fn dropped(&mut self, drops_all: bool, sql: &[u8]) {
        if drops_all {
            self.names.clear();
        } else if let Some(name) = super::super::prepared::deallocated_name(sql) {
            self.closed(name.as_bytes());
        }
    }

    fn resets(&self, name: &[u8]) -> bool {
        self.names.contains(Self::key(name))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past the limit the client is pinned and no more names are kept.
    #[test]
    fn many_custom_settings_pin_and_stop_being_recorded() {
        let mut up = Upstream::new(true, false, 1, tracing::Span::none());
        let sql: String = (0..1000).map(|i| format!("SET app.s{i} = 1;")).collect();
        up.note_custom_settings(sql.as_bytes());
        assert_eq!(up.pinned, Some("too many custom settings"));
        assert_eq!(up.custom_settings.len(), 65);
        up.note_custom_settings(b"SET app.more = 1");
        assert_eq!(up.custom_settings.len(), 65, "nothing recorded once pinned");
    }

    #[test]
    fn statements_that_reset_are_told_apart_as_the_server_does_and_bounded() {
        let mut r = Resetting::default();
        let long = [b'a'; 100];
        assert!(r.note(&long, true));
        // The server knows a statement by its name's first 63 bytes.
        assert!(r.resets(&long[..63]));
        assert!(!r.resets(&long[..62]));
        for i in 1..Resetting::MAX {
            assert!(r.note(format!("s{i}").as_bytes(), true));
        }
        assert!(!r.note(b"one too many", true), "past the bound");
        assert!(r.note(b"s1", true), "one known already");
        assert!(r.note(b"", true), "the unnamed statement always fits");
        assert!(r.note(b"", false));
        assert!(r.note(b"s1", false) && !r.resets(b"s1"));
        assert!(r.note(b"room again", true));
        assert!(!r.note(b"no room", true));
        r.closed(b"s2");
        assert!(r.note(b"no room", true), "a Close made room");
        r.dropped(false, b"DEALLOCATE S3");
        assert!(!r.resets(b"s3"), "unquoted: lowercased");
        r.dropped(false, b"DEALLOCATE \"S4\"");
        r.dropped(false, b"SELECT 1");
        assert!(r.resets(b"s4"), "quoted: as written");
        r.dropped(true, b"DISCARD ALL");
        assert!(r.is_empty());
    }
}
