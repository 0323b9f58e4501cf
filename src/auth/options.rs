//! What a client asks for in its startup packet, split into the API key
//! (never forwarded), harmless settings (applied on the backend with SET)
//! and things a tenant may not choose (refused).

use crate::error::ClientError;
use crate::protocol::startup::Params;

/// Startup-packet keys that are protocol fields, not server settings.
const PROTOCOL_FIELDS: &[&str] = &["user", "database", "options", "replication"];
/// Settings that would move the session out of its tenant.
const PINNED: &[&str] = &["search_path", "role", "session_authorization"];
pub const KEY_SETTING: &str = "pgtenant.api_key";

#[derive(Default)]
pub struct ClientRequest {
    pub user: String,
    pub database: String,
    pub key: Option<String>,
    /// Settings to apply on the backend, names lowercased.
    pub settings: Vec<(String, String)>,
}

/// Never the key, nor a setting's value or the database (free text a key
/// may be pasted into): a `{request:?}` in a log line must not leak it.
impl std::fmt::Debug for ClientRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRequest")
            .field("user", &self.user)
            .field("database", &self.database.len())
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field(
                "settings",
                &self.settings.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

pub fn split(params: &Params) -> Result<ClientRequest, ClientError> {
    // Free text, but required, as PostgreSQL requires it.
    if params.get("user").is_none_or(str::is_empty) {
        return Err(ClientError::NoUser);
    }
    let mut req = ClientRequest {
        user: user_shown(params),
        database: params.get("database").unwrap_or_default().to_owned(),
        ..Default::default()
    };
    if let Some(r) = params.get("replication")
        && !matches!(r, "false" | "0" | "off" | "no")
    {
        return Err(ClientError::ForbiddenOption("replication".into()));
    }
    for (name, value) in params.iter() {
        if !PROTOCOL_FIELDS.contains(&name) {
            add(&mut req, name, value)?;
        }
    }
    if let Some(opts) = params.get("options") {
        for (name, value) in parse_options(opts)? {
            add(&mut req, &name, &value)?;
        }
    }
    Ok(req)
}

fn add(req: &mut ClientRequest, name: &str, value: &str) -> Result<(), ClientError> {
    let lower = name.to_ascii_lowercase();
    if lower == KEY_SETTING {
        req.key = Some(value.to_owned());
        return Ok(());
    }
    let valid_name = !lower.is_empty()
        && lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    if !valid_name || PINNED.contains(&lower.as_str()) || lower.starts_with("pgtenant.") {
        return Err(ClientError::ForbiddenOption(shown(name)));
    }
    if crate::firewall::misread_under(&lower, value) {
        return Err(ClientError::ForbiddenOption(shown(name)));
    }
    // A key under a misspelt name (`pgtenant_api_key`, `--pgtenant-api-key`),
    // or pasted into another setting: SET would hand it to the server,
    // whose log and `pg_stat_activity` (`application_name`) show it.
    if crate::auth::key::appears_in(name) || crate::auth::key::appears_in(value) {
        return Err(ClientError::KeyInOption(shown(name)));
    }
    // PostgreSQL takes `seed` at startup and seeds nothing with it (only a
    // SET does); the proxy applies startup settings with SET: left out.
    if lower == "seed" {
        return Ok(());
    }
    req.settings.retain(|(n, _)| *n != lower);
    req.settings.push((lower, value.to_owned()));
    Ok(())
}

/// The user name as logs and `SHOW CLIENTS` show it: free text, kept
/// only for them, except that a key pasted there by mistake
/// (`postgresql://pgt_…@host/app`) is not shown; at most 63 bytes (cut at
/// a character's start), as PostgreSQL keeps.
pub fn user_shown(params: &Params) -> String {
    let user = params.get("user").unwrap_or_default();
    if crate::auth::key::prefixes(user).next().is_some() {
        return "<redacted>".into();
    }
    let mut end = user.len().min(63);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    crate::error::one_line(&user[..end]).into_owned()
}

/// What of a refused option may be echoed in errors and logs: the name
/// only, never a value — a mistyped option can carry the API key.
fn shown(word: &str) -> String {
    let name = word.split('=').next().unwrap_or_default();
    if crate::auth::key::prefixes(name).next().is_some() {
        return "<redacted>".into();
    }
    let name: String = name.chars().take(64).collect();
    crate::error::one_line(&name).into_owned()
}

/// Parses a libpq `options` string: whitespace-separated switches, where a
/// backslash escapes the next character. Only `-c name=value`,
/// `-cname=value` and `--name=value` are accepted.
fn parse_options(opts: &str) -> Result<Vec<(String, String)>, ClientError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = opts.chars();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.extend(chars.next());
                in_word = true;
            }
            c if c.is_ascii_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let assignment = if w == "-c" {
            it.next()
                .ok_or_else(|| ClientError::ForbiddenOption("-c".into()))?
        } else if let Some(rest) = w.strip_prefix("-c").or_else(|| w.strip_prefix("--")) {
            rest.to_owned()
        } else {
            return Err(ClientError::ForbiddenOption(shown(&w)));
        };
        let (name, value) = assignment
            .split_once('=')
            .ok_or_else(|| ClientError::ForbiddenOption(shown(&assignment)))?;
        // Postgres treats '-' in option names as '_'.
        out.push((name.replace('-', "_"), value.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pairs`, with a user unless they name one.
    fn params(pairs: &[(&str, &str)]) -> Params {
        let user = (!pairs.iter().any(|(k, _)| *k == "user")).then_some(("user", "app"));
        Params::from_pairs(user.iter().chain(pairs).copied())
    }

    #[test]
    fn a_user_is_required_and_a_key_there_is_not_shown() {
        for user in [None, Some("")] {
            let p = Params::from_pairs(user.map(|u| ("user", u)));
            assert!(matches!(split(&p), Err(ClientError::NoUser)), "{user:?}");
        }
        let r = split(&params(&[("user", "pgt_SECRETSECRET")])).unwrap();
        assert_eq!(r.user, "<redacted>");
        let long = "u".repeat(100);
        assert_eq!(split(&params(&[("user", &long)])).unwrap().user.len(), 63);
        let wide = "é".repeat(40); // 2 bytes each
        assert_eq!(split(&params(&[("user", &wide)])).unwrap().user.len(), 62);
        // Shown in logs: a newline must not start a line of the client's.
        let forged = "x\n2026-12-06T00:00:00Z INFO admin console session started";
        let shown = split(&params(&[("user", forged)])).unwrap().user;
        assert!(
            !shown.contains('\n') && shown.starts_with("x?2026"),
            "{shown}"
        );
    }

    #[test]
    fn key_from_options_is_extracted_and_settings_kept() {
        let r = split(&params(&[
            ("user", "app"),
            ("database", "db"),
            ("application_name", "psql"),
            (
                "options",
                "-c pgtenant.api_key=pgt_x  -cstatement_timeout=5s --work-mem=64MB -c seed=0.5",
            ),
            // Seeds nothing at startup on PostgreSQL; SET would.
            ("SEED", "0.1"),
        ]))
        .unwrap();
        assert_eq!(r.key.as_deref(), Some("pgt_x"));
        assert!(!format!("{r:?}").contains("pgt_x"), "{r:?}");
        assert_eq!(r.user, "app");
        assert_eq!(
            r.settings,
            vec![
                ("application_name".into(), "psql".into()),
                ("statement_timeout".into(), "5s".into()),
                ("work_mem".into(), "64MB".into()),
            ]
        );
    }

    #[test]
    fn escaped_spaces_stay_in_values() {
        let r = split(&params(&[("options", r"-c application_name=my\ app")])).unwrap();
        assert_eq!(
            r.settings,
            vec![("application_name".into(), "my app".into())]
        );
    }

    #[test]
    fn refused_options_never_echo_a_key() {
        for opts in [
            "-c pgtenant.api_key= pgt_SECRETSECRET",
            "pgt_SECRETSECRET",
            "-c pgt_SECRETSECRET",
            "--search_path=pgt_SECRETSECRET",
        ] {
            let e = split(&params(&[("options", opts)])).unwrap_err();
            assert!(!e.to_string().contains("SECRET"), "{opts}: {e}");
        }
    }

    /// A key under a misspelt name, or pasted into another setting, would
    /// be SET on the server (its log, `pg_stat_activity`): refused, and
    /// the error names the setting only. Text that merely starts like a
    /// key passes.
    #[test]
    fn a_key_in_any_setting_is_refused_unshown() {
        let key = crate::auth::key::generate();
        let opts = |o: &str| params(&[("options", &o.replace("KEY", &key))]);
        for p in [
            opts("-c pgtenant_api_key=KEY"),
            opts("--pgtenant-api-key=KEY"),
            opts("-c application_name=app-KEY"),
            opts("-c KEY=1"),
            params(&[("PGTENANT_API_KEY", &key)]),
            params(&[("application_name", &format!("{key} worker"))]),
        ] {
            let e = split(&p).unwrap_err();
            assert!(matches!(e, ClientError::KeyInOption(_)), "{e}");
            assert!(!e.to_string().contains(&key[4..]), "{e}");
            assert_eq!(e.sqlstate(), "28000");
        }
        let fine = split(&params(&[("application_name", "pgt_worker")])).unwrap();
        assert_eq!(fine.settings.len(), 1);
        let debug = format!("{:?}", split(&opts("-c pgtenant.api_key=KEY")).unwrap());
        assert!(!debug.contains(&key[4..]), "{debug}");
    }

    #[test]
    fn settings_the_firewall_reads_alike_pass() {
        for (k, v) in [
            ("client_encoding", "UTF8"),
            ("client_encoding", "SQL_ASCII"), // psql in a C locale
            ("client_encoding", "LATIN1"),
            ("client_encoding", "euc-jp"),
            ("standard_conforming_strings", "on"),
            ("standard_conforming_strings", "TRUE"),
            ("standard_conforming_strings", "1"),
        ] {
            let req = split(&params(&[(k, v)])).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
            assert_eq!(req.settings, [(k.to_owned(), v.to_owned())]);
        }
    }

    #[test]
    fn pinned_settings_are_refused() {
        for (k, v) in [
            ("search_path", "tenant_b"),
            ("options", "-c search_path=tenant_b"),
            ("options", "-c ROLE=postgres"),
            ("options", "--session-authorization=postgres"),
            ("options", "-d 5"),
            ("replication", "database"),
            ("options", "-c x;drop=1"),
            ("client_encoding", "SJIS"),
            ("client_encoding", "big5"),
            ("client_encoding", "WINDOWS932"),
            ("client_encoding", "Windows-949"),
            ("options", "-c client_encoding=shift_jis_2004"),
            ("options", "-c standard_conforming_strings=off"),
            ("options", "-c standard_conforming_strings=f"),
            ("options", "-c standard_conforming_strings=of"),
            ("standard_conforming_strings", "N"),
            ("standard_conforming_strings", "fals"),
        ] {
            assert!(
                matches!(
                    split(&params(&[(k, v)])),
                    Err(ClientError::ForbiddenOption(_))
                ),
                "{k}={v}"
            );
        }
    }
}
