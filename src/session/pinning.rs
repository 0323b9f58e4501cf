//! Transaction mode: statements whose effect outlives the transaction.
//!
//! A client that runs one of these keeps its server connection for the
//! rest of its session (it is "pinned"), so session state never reaches
//! another client and nothing the client relies on is lost. The check is
//! lexical and errs on the side of pinning: a false positive costs only
//! pooling efficiency for that one client. State changed from inside a
//! function body is not seen; it stays within the tenant (pools are per
//! tenant) and on that server connection, as with PgBouncer's transaction
//! mode.

use super::split::{after_comment, statements};
use crate::keyword::{contains, pack};
use crate::lexical::{EFFECT_WORDS, Lexed};

/// What a statement does to session state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Effect {
    /// It creates state that outlives the transaction: why.
    pub pins: Option<&'static str>,
    /// It may drop the server's prepared statements (DISCARD, DEALLOCATE).
    pub drops_statements: bool,
    /// It drops every prepared statement (`DEALLOCATE ALL`, `DISCARD
    /// ALL`): the client's names too.
    pub drops_all: bool,
    /// It may change session settings (SET, RESET, set_config, DISCARD
    /// ALL): the proxy reads them back and replays them on the client's
    /// next connection.
    pub changes_settings: bool,
    /// It may return settings to their reset values (RESET, DISCARD ALL,
    /// SET … TO DEFAULT): the client's startup settings are given back
    /// (see `session::restore`).
    pub resets: bool,
    /// It seeds the server's random() sequence (`setseed`, the `seed`
    /// setting), which no reset undoes: the connection is closed when its
    /// client is done with it (in transaction mode the client is pinned,
    /// and keeps its sequence).
    pub reseeds: bool,
    /// It deallocates one statement by name (`DEALLOCATE x`, not `ALL`):
    /// in transaction mode the server knows the client's by other names,
    /// so the proxy runs it (see `Upstream::bind_deallocate`).
    pub deallocates: bool,
}

/// Reads the session effects of a (possibly multi-statement) SQL text.
/// Statements that only clear state (RESET, UNLISTEN, DISCARD, CLOSE,
/// advisory unlocks — what pools like asyncpg's send on release) don't pin.
/// `lexed`: the text's words, read once for this and the firewall; nearly
/// every text is decided by them, and only the rest is decoded (lossily:
/// this reading is lexical).
pub fn session_effect(sql: &[u8], lexed: &Lexed) -> Effect {
    if !lexed.may_have_session_effect() {
        return Effect::default();
    }
    let sql = String::from_utf8_lossy(sql);
    let mut e = Effect::default();
    let (mut do_read, mut role_change, mut do_executes) = (false, false, false);
    for (start, end) in statements(&sql) {
        let (stmt, rest) = (&sql[start..end], &sql[start..]);
        let mut words = words(stmt);
        let Some(first) = words.next() else { continue };
        let is = |w: &str, k: &str| w.eq_ignore_ascii_case(k);
        // A DO block's body holds `;`s: the first one is read to the end
        // of the text, which covers any later one (once: a text of many
        // blocks must not be read once per block).
        let read_do = is(first, "do") && !do_read;
        do_read |= read_do;
        // SELECT … INTO TEMP t creates a temporary table too. (The words
        // pass sees INTO only where SELECT or WITH came first; after a
        // comment or a parenthesis it can't tell which came first.)
        if (lexed.into || lexed.odd_start)
            && (is(first, "select") || is(first, "with"))
            && selects_into_temp(stmt)
        {
            e.pins = e.pins.or(Some("temporary table"));
        }
        if !has_effect_word(first.as_bytes()) {
            continue;
        }
        let second = words.next().unwrap_or("");
        // SET LOCAL / SET TRANSACTION / SET CONSTRAINTS end with the transaction.
        if is(first, "set") && !ends_with_transaction(stmt, second) {
            e.changes_settings = true;
            role_change |= sets_a_role(stmt);
            e.resets |= self::words(stmt).last().is_some_and(|w| is(w, "default"));
        }
        let pins = if is(first, "listen") {
            Some("LISTEN")
        } else if is(first, "prepare") {
            Some("PREPARE")
        } else if is(first, "load") {
            Some("LOAD")
        } else if is(first, "declare") && contains_word(stmt, "hold") {
            Some("WITH HOLD cursor")
        } else if (is(first, "create") && words_before(stmt, 6).any(is_temp))
            // EXPLAIN ANALYZE runs it; a DO block's body too.
            || (is(first, "explain") && (creates_temp(stmt) || selects_into_temp(stmt)))
            || (read_do && creates_temp(rest))
        {
            Some("temporary table")
        } else if read_do && self::words(rest).any(|w| is(w, "execute")) {
            // Dynamic SQL: what it runs (a temporary table, a setting, a
            // LISTEN, a seed) can't be read from here.
            do_executes = true;
            Some("dynamic SQL in a DO block")
        } else {
            None
        };
        e.pins = e.pins.or(pins);
        // What drops the proxy's own statements (`pgt_…`): DISCARD ALL,
        // DEALLOCATE ALL, or one of them by name (DISCARD PLANS, TEMP or
        // SEQUENCES, and the client's own SQL-level names, do not).
        if is(first, "discard") && is(second, "all") {
            e.drops_statements = true;
            e.drops_all = true;
            e.changes_settings = true;
            e.resets = true;
        }
        if is(first, "deallocate") {
            let target = if is(second, "prepare") {
                words.next().unwrap_or("")
            } else {
                second
            };
            e.drops_all |= is(target, "all");
            e.deallocates |= !target.is_empty() && !is(target, "all");
            e.drops_statements |=
                is(target, "all") || target.get(..4).is_some_and(|p| is(p, "pgt_"));
        }
        if is(first, "reset") {
            e.changes_settings = true;
            e.resets = true;
        }
        // `SET [LOCAL] seed`: seeded at once, and for good.
        e.reseeds |= (is(first, "set") || read_do) && names_seed(if read_do { rest } else { stmt });
        // A DO block runs its body now: if the body may change a setting,
        // it is read back (and a custom one, which can't be named from
        // here, pins the client: see `super::custom`).
        if read_do
            && self::words(rest).any(|w| is(w, "set") || is(w, "reset") || is(w, "set_config"))
        {
            e.changes_settings = true;
            role_change |= self::words(rest).any(names_a_role);
            e.resets |= self::words(rest).any(|w| is(w, "reset") || is(w, "default"));
        }
    }
    // The firewall lets a search_path name pg_temp: first there, it makes
    // an unqualified CREATE TABLE temporary (SET, SET LOCAL, set_config,
    // in a DO block). The table outlives the setting, and PostgreSQL
    // looks in pg_temp first for every later client of the connection.
    // Anywhere in the path pins (errs on pinning; it is rare).
    let (mut path, mut temp) = (false, false);
    for w in words(&sql) {
        path |= w.eq_ignore_ascii_case("search_path");
        temp |= is_temp_schema(w);
        if path && temp {
            e.pins = e.pins.or(Some("temporary table"));
            break;
        }
    }
    if lexed.advisory_lock {
        e.pins = e.pins.or(Some("session advisory lock"));
    }
    // A name spelled in escapes (`U&"\0073eed"`, `E'se\145d'`) can't be
    // read here; nor what a DO block's EXECUTE runs: both count.
    e.reseeds |= lexed.setseed
        || lexed.unicode_escape
        || (lexed.set_config && (names_seed(&sql) || sql.contains('\\')))
        || do_executes;
    if e.reseeds {
        e.pins = e.pins.or(Some("random seed"));
    }
    if lexed.unicode_escape {
        // A name in escapes may be any function's: read as one that acts.
        e.pins = e.pins.or(Some("unicode-escaped name"));
    }
    e.changes_settings |= lexed.set_config;
    // The role isn't in pg_settings, so it is neither read back nor reset
    // for the next client: a role change pins (the firewall refuses it in
    // `enforce` mode; this is for `monitor` and `off`).
    if role_change || (lexed.set_config && words(&sql).any(names_a_role)) {
        e.pins = e.pins.or(Some("role change"));
    }
    e
}

/// Transaction mode: a setting that acts on the server connection while it
/// idles, when it is no longer the client's: `idle_session_timeout` would
/// end it in the pool, under the next client; or that may have left
/// something there: a `search_path` through `pg_temp` (a temporary table).
/// Such a client keeps its connection, as PostgreSQL's own session would
/// be.
pub fn settings_pin(settings: &[(String, String)]) -> Option<&'static str> {
    // Read back in milliseconds; as a startup option, with any unit.
    let zero = |v: &str| {
        let n = v.trim().trim_start_matches(['+', '-']);
        let digits = n.trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == ' ');
        digits.parse::<f64>() == Ok(0.0)
    };
    let idle_timeout = |(n, v): &(String, String)| n == "idle_session_timeout" && !zero(v);
    if settings.iter().any(idle_timeout) {
        return Some("idle_session_timeout");
    }
    // (See `session_effect`: set where the proxy could not read it.)
    let temp_path = |(n, v): &(String, String)| n == "search_path" && words(v).any(is_temp_schema);
    settings.iter().any(temp_path).then_some("temporary table")
}

/// `SET LOCAL …`, `SET TRANSACTION …`, `SET CONSTRAINTS …`: ends with
/// the transaction. Not `SET local.x = 1` (a custom setting of that
/// prefix), nor `SET "local" …`, which name a setting.
fn ends_with_transaction(stmt: &str, second: &str) -> bool {
    if !["local", "transaction", "constraints"]
        .iter()
        .any(|k| second.eq_ignore_ascii_case(k))
    {
        return false;
    }
    // The text around the word, as written (`words` drops quotes and
    // dots): `second` is a slice of `stmt`.
    let at = second.as_ptr() as usize - stmt.as_ptr() as usize;
    let before = stmt[..at].trim_end();
    let after = stmt[at + second.len()..].trim_start();
    !before.ends_with('"') && !after.starts_with('.')
}

/// `SET [SESSION] ROLE r`, `SET [SESSION] SESSION AUTHORIZATION r`, `SET
/// role TO r`: a role change, unless back to the login role (`NONE`,
/// `DEFAULT`: Npgsql's reset when a connection goes back to its pool).
fn sets_a_role(stmt: &str) -> bool {
    let is = |w: Option<&str>, k: &str| w.is_some_and(|w| w.eq_ignore_ascii_case(k));
    let mut w = words(stmt).skip(1).peekable();
    let mut next = w.next();
    // `SET SESSION ROLE`, `SET SESSION SESSION AUTHORIZATION`: a scope.
    if is(next, "session") && (is(w.peek().copied(), "session") || is(w.peek().copied(), "role")) {
        next = w.next();
    }
    let named = if is(next, "role") {
        true
    } else {
        is(next, "session") && is(w.next(), "authorization")
    };
    if !named {
        return false;
    }
    let mut target = w.next();
    if is(target, "to") {
        target = w.next();
    }
    !(is(target, "none") || is(target, "default"))
}

/// The `seed` setting, or `setseed()` (SET, set_config, a DO block).
fn names_seed(text: &str) -> bool {
    words(text).any(|w| w.eq_ignore_ascii_case("seed") || w.eq_ignore_ascii_case("setseed"))
}

fn names_a_role(w: &str) -> bool {
    w.eq_ignore_ascii_case("role") || w.eq_ignore_ascii_case("authorization")
}

/// `pg_temp`, or a session's temporary schema by its own name (`pg_temp_3`).
fn is_temp_schema(w: &str) -> bool {
    let b = w.as_bytes();
    b.len() >= 7
        && b[..7].eq_ignore_ascii_case(b"pg_temp")
        && (b.len() == 7 || (b[7] == b'_' && b.len() > 8 && b[8..].iter().all(u8::is_ascii_digit)))
}

/// A word that makes a CREATE temporary (the temporary schema, too).
fn is_temp(w: &str) -> bool {
    w.eq_ignore_ascii_case("temp") || w.eq_ignore_ascii_case("temporary") || is_temp_schema(w)
}

/// `create` and a temporary word anywhere in `text` (errs on pinning).
fn creates_temp(text: &str) -> bool {
    contains_word(text, "create") && words(text).any(is_temp)
}

/// `… INTO [LOCAL|GLOBAL] TEMP[ORARY] …` or `… INTO [TABLE] pg_temp.t` in
/// a SELECT: a temporary word among the three after INTO.
fn selects_into_temp(stmt: &str) -> bool {
    let mut since_into = usize::MAX;
    for w in words(stmt) {
        since_into = since_into.saturating_add(1);
        if since_into <= 3 && is_temp(w) {
            return true;
        }
        if w.eq_ignore_ascii_case("into") {
            since_into = 0;
        }
    }
    false
}

fn has_effect_word(first: &[u8]) -> bool {
    contains(&EFFECT_WORDS, pack(first))
}

/// Words of a statement, skipping comments and punctuation.
fn words(stmt: &str) -> impl Iterator<Item = &str> {
    let mut rest = stmt;
    std::iter::from_fn(move || {
        loop {
            rest = rest.trim_start_matches(|c: char| {
                !c.is_ascii_alphanumeric() && c != '_' && c != '-' && c != '/'
            });
            if let Some(r) = rest.strip_prefix("--") {
                rest = r.split_once(['\n', '\r']).map_or("", |(_, r)| r);
            } else if rest.starts_with("/*") {
                rest = after_comment(rest);
            } else if rest.starts_with(['-', '/']) {
                rest = &rest[1..];
            } else {
                break;
            }
        }
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(rest.len());
        let (w, r) = rest.split_at(end.max(1));
        rest = r;
        Some(w)
    })
}

fn words_before(stmt: &str, n: usize) -> impl Iterator<Item = &str> {
    words(stmt).take(n)
}

fn contains_word(stmt: &str, w: &str) -> bool {
    words(stmt).any(|x| x.eq_ignore_ascii_case(w))
}

#[cfg(test)]
mod tests;
