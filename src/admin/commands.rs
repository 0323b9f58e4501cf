//! The admin console's commands: parsing and execution. Results are
//! plain row sets of text columns (column names follow PgBouncer's where
//! the concept is the same) or a command tag; [`super::console`] writes
//! them.

use super::{control, show};
use crate::context::Context;
use crate::registry::admin::{NameKind, validate_name};
use crate::session::live::KillMode;

pub const HELP: &str = "commands: SHOW TENANTS | POOLS | CLIENTS | SERVERS | STATS | CONFIG | FIREWALL, \
     PAUSE [tenant], RESUME [tenant], KILL tenant, RELOAD, SHUTDOWN";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Show(Show),
    Pause(Option<String>),
    Resume(Option<String>),
    Kill(String),
    Reload,
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    Tenants,
    Pools,
    Clients,
    Servers,
    Stats,
    Config,
    Firewall,
}

pub type Row = Vec<Option<String>>;

/// What one command produced.
#[derive(Debug)]
pub enum Reply {
    Rows {
        columns: &'static [&'static str],
        rows: Vec<Row>,
    },
    Done {
        tag: &'static str,
        notice: Option<String>,
    },
    Error {
        code: &'static str,
        message: String,
        hint: Option<&'static str>,
    },
}

fn syntax(message: String) -> Reply {
    Reply::Error {
        code: "42601",
        message,
        hint: Some(HELP),
    }
}

/// One statement (no `;`), case-insensitive keywords; a tenant name may
/// be quoted.
pub fn parse(sql: &str) -> Result<Command, Reply> {
    let words: Vec<&str> = sql.split_whitespace().collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
    let tenant = |i: usize| -> Result<String, Reply> {
        let name = words[i].trim_matches(|c| c == '"' || c == '\'');
        validate_name(NameKind::Tenant, name).map_err(|e| syntax(e.to_string()))?;
        Ok(name.to_owned())
    };
    Ok(match upper.as_slice() {
        ["SHOW", what] => Command::Show(match *what {
            "TENANTS" => Show::Tenants,
            "POOLS" => Show::Pools,
            "CLIENTS" => Show::Clients,
            "SERVERS" => Show::Servers,
            "STATS" => Show::Stats,
            "CONFIG" => Show::Config,
            "FIREWALL" => Show::Firewall,
            _ => return Err(syntax(unknown("SHOW item", words[1]))),
        }),
        ["PAUSE"] => Command::Pause(None),
        ["PAUSE", _] => Command::Pause(Some(tenant(1)?)),
        ["RESUME"] => Command::Resume(None),
        ["RESUME", _] => Command::Resume(Some(tenant(1)?)),
        ["KILL", _] => Command::Kill(tenant(1)?),
        ["RELOAD"] => Command::Reload,
        ["SHUTDOWN"] => Command::Shutdown,
        _ => {
            let first = words.first().copied().unwrap_or("");
            return Err(syntax(unknown("admin console command", first)));
        }
    })
}

/// "unknown `what`", naming the word only if it is a plain one: the text
/// may be anything, even a key pasted by mistake.
fn unknown(what: &str, word: &str) -> String {
    let plain = word.len() <= 16 && word.bytes().all(|b| b.is_ascii_alphabetic());
    if plain && !word.is_empty() {
        format!("unknown {what} \"{word}\"")
    } else {
        format!("unknown {what}")
    }
}

pub async fn execute(ctx: &Context, cmd: &Command) -> Reply {
    match cmd {
        Command::Show(what) => show::show(ctx, *what).await,
        Command::Pause(t) => {
            ctx.pools.pause(t.as_deref());
            done(
                "PAUSE",
                format!(
                    "new transactions of {} wait until RESUME; running ones finish",
                    whom(t)
                ),
            )
        }
        Command::Resume(t) => {
            ctx.pools.resume(t.as_deref());
            done("RESUME", format!("{} resumed", whom(t)))
        }
        Command::Kill(t) => {
            let reason =
                format!("pgtenant: sessions of tenant \"{t}\" were killed by an administrator");
            let n = ctx
                .sessions
                .kill_where(|s| s.tenant.name == *t, KillMode::Now, &reason);
            done("KILL", format!("{n} session(s) of tenant \"{t}\" killed"))
        }
        Command::Reload => match control::reload(ctx) {
            Ok(report) => done("RELOAD", report),
            Err(e) => Reply::Error {
                code: "F0000",
                message: e,
                hint: Some("the running configuration is kept"),
            },
        },
        Command::Shutdown => match control::shutdown(ctx) {
            Ok(m) => done("SHUTDOWN", m),
            Err(e) => Reply::Error {
                code: "57P01",
                message: e,
                hint: None,
            },
        },
    }
}

fn done(tag: &'static str, notice: String) -> Reply {
    Reply::Done {
        tag,
        notice: Some(notice),
    }
}

fn whom(t: &Option<String>) -> String {
    match t {
        Some(t) => format!("tenant \"{t}\""),
        None => "all tenants".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_case_insensitively() {
        assert_eq!(parse("show pools").unwrap(), Command::Show(Show::Pools));
        assert_eq!(
            parse("  SHOW   Stats ").unwrap(),
            Command::Show(Show::Stats)
        );
        assert_eq!(parse("pause").unwrap(), Command::Pause(None));
        assert_eq!(
            parse("PAUSE \"acme\"").unwrap(),
            Command::Pause(Some("acme".into()))
        );
        assert_eq!(parse("kill acme").unwrap(), Command::Kill("acme".into()));
        assert_eq!(parse("RELOAD").unwrap(), Command::Reload);
        for bad in [
            "SHOW ME",
            "KILL",
            "KILL Robert'); DROP",
            "SELECT 1",
            "PAUSE a b",
        ] {
            match parse(bad) {
                Err(Reply::Error { code, .. }) => assert_eq!(code, "42601", "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_commands_are_not_echoed_whole() {
        let Err(Reply::Error { message, .. }) =
            parse("pgt_secretkeymaterial_that_is_long and more")
        else {
            panic!()
        };
        assert!(!message.contains("pgt_"), "{message}");
        let Err(Reply::Error { message, .. }) = parse("select 1") else {
            panic!()
        };
        assert!(message.contains("\"select\""), "{message}");
    }
}
