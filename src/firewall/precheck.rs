//! Cheap lexical checks on the raw text, before (or instead of) a parse.
//!
//! Why a text without these things cannot be refused by the walker:
//! - a qualified name needs a `.` (in an identifier chain, `OPERATOR(s.op)`
//!   or a string such as `'s.t'`) — or an escape that produces one inside a
//!   string: `E'\056'` needs `\`, `U&'!002E' UESCAPE '!'` needs `U&`;
//! - a quoted identifier (`"Tenant_B"`) needs `"`;
//! - every function, relation and type name the walker acts on is listed in
//!   `rules` and matched here as a whole word (and every `pg_` word counts),
//!   so a text mentioning none of them calls none of them;
//! - statements other than plain DML/transaction control are excluded by the
//!   first word, and a second statement by refusing any inner `;`.
//!
//! The facts come from [`crate::lexical`], whose one pass also serves the
//! session-effect check.

use crate::lexical::{Lead, Lexed};

/// For text the grammar rejects: true when forwarding it cannot reach
/// another schema even if the server's grammar accepts it (it may be an
/// older or newer PostgreSQL than pg_query's). Typos in one plain
/// statement stay forwarded so the client sees the server's own syntax
/// error; a second statement, or a first word hidden behind a comment or
/// a parenthesis, can't be told apart from a statement the server runs,
/// and so is refused. `l` must come from a whole-text scan
/// (`session_facts`).
pub(crate) fn inert_on_parse_failure(l: &Lexed) -> bool {
    !l.suspicious_char
        && !l.sensitive_word
        && l.lead != Lead::Other
        && !l.odd_start
        && !l.second_statement
}

#[cfg(test)]
mod tests {
    fn trivially_safe(sql: &str) -> bool {
        crate::lexical::scan(sql.as_bytes(), false).firewall_fast_path()
    }

    fn inert_on_parse_failure(sql: &str) -> bool {
        super::inert_on_parse_failure(&crate::lexical::scan(sql.as_bytes(), true))
    }

    #[test]
    fn fast_path_accepts_plain_oltp() {
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 4242;",
            "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, CURRENT_TIMESTAMP)",
            "BEGIN",
            "commit;",
            "  select 1 ;  ",
            "WITH x AS (SELECT 1) SELECT * FROM x",
        ] {
            assert!(trivially_safe(sql), "{sql}");
        }
    }

    #[test]
    fn fast_path_rejects_anything_interesting() {
        for sql in [
            "SELECT * FROM tenant_b.t",
            "SELECT * FROM \"Tenant_B\"",
            "SELECT E'\\056'",
            "SELECT U&'!002E' UESCAPE '!'",
            "SELECT u&'x'",
            "SELECT pg_read_file('x')",
            "SELECT * FROM PG_STAT_ACTIVITY",
            "SELECT DBLINK_EXEC('x')",
            "SELECT 'tenant_b'::regnamespace",
            "SELECT to_regnamespace('tenant_b')",
            "SELECT set_config('search_path','tenant_b',false)",
            "SELECT 1; SET search_path = tenant_b",
            "SET search_path = tenant_b",
            "LISTEN x",
            "(SELECT 1)",
            "/* c */ SELECT 1",
            "SELECT 1.5",
            "SELECT ts_stat('x')",
        ] {
            assert!(!trivially_safe(sql), "{sql}");
        }
    }

    #[test]
    fn unparsable_text() {
        // Typos stay forwarded: the client sees the server's error.
        assert!(inert_on_parse_failure("SELEC 1"));
        assert!(inert_on_parse_failure("SELECT FROM WHERE"));
        // Anything that could name a schema or is not plain DML is not.
        assert!(!inert_on_parse_failure("SELEC * FROM tenant_b.t"));
        assert!(!inert_on_parse_failure("SET ROLE system_user"));
        assert!(!inert_on_parse_failure("SELECT 1; GRANT x"));
        assert!(!inert_on_parse_failure("SELEC pg_sleep(1)"));
        // A statement the lexical pass can't read as one: after a comment
        // or a parenthesis, or a second one.
        assert!(!inert_on_parse_failure("/**/ SET x = 1"));
        assert!(!inert_on_parse_failure("(SELEC 1"));
        assert!(!inert_on_parse_failure("SELEC 1; /**/ LISTEN c"));
        assert!(!inert_on_parse_failure("SELEC 1; SELEC 2"));
    }
}
