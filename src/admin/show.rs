//! The console's `SHOW` commands: one row set each, built from the live
//! state (pools, sessions, totals, recorder) or, for `SHOW TENANTS`, the
//! registry.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::commands::{Reply, Row, Show};
use super::{exporter, show_config};
use crate::context::Context;

fn v(x: impl ToString) -> Option<String> {
    Some(x.to_string())
}

pub async fn show(ctx: &Context, what: Show) -> Reply {
    let (columns, rows): (&'static [&'static str], Vec<Row>) = match what {
        Show::Tenants => match tenants(ctx).await {
            Ok(rows) => (
                &[
                    "tenant",
                    "schema",
                    "role",
                    "active",
                    "users",
                    "active_keys",
                    "clients",
                    "created_at",
                ],
                rows,
            ),
            Err(message) => {
                return Reply::Error {
                    code: "57P03",
                    message,
                    hint: None,
                };
            }
        },
        Show::Pools => (
            &[
                "tenant",
                "user",
                "cl_active",
                "cl_waiting",
                "sv_active",
                "sv_idle",
                "maxwait",
                "maxwait_us",
                "pool_mode",
                "pool_size",
                "paused",
            ],
            pools(ctx),
        ),
        Show::Clients => (
            &[
                "tenant",
                "user",
                "state",
                "addr",
                "port",
                "connect_time",
                "key_id",
            ],
            ctx.sessions
                .snapshot()
                .into_iter()
                .map(|s| {
                    vec![
                        v(&s.tenant.name),
                        v(&s.user),
                        v("active"),
                        v(s.peer.ip()),
                        v(s.peer.port()),
                        v(utc(ago(s.started.elapsed()))),
                        v(s.key_id),
                    ]
                })
                .collect(),
        ),
        Show::Servers => (
            &[
                "tenant",
                "user",
                "state",
                "addr",
                "port",
                "connect_time",
                "idle_s",
                "remote_pid",
            ],
            servers(ctx),
        ),
        Show::Stats => (
            &[
                "tenant",
                "total_session_count",
                "total_xact_count",
                "total_query_count",
                "total_received",
                "total_sent",
            ],
            ctx.stats
                .snapshot()
                .into_iter()
                .map(|(t, s)| {
                    vec![
                        v(t),
                        v(s.sessions),
                        v(s.traffic.transactions),
                        v(s.traffic.queries),
                        v(s.traffic.bytes_in),
                        v(s.traffic.bytes_out),
                    ]
                })
                .collect(),
        ),
        Show::Config => (
            &["key", "value"],
            show_config::rows(&format!("{:?}", **ctx.cfg()))
                .into_iter()
                .map(|(k, val)| vec![v(k), v(val)])
                .collect(),
        ),
        Show::Firewall => (
            &["rule", "outcome", "count"],
            exporter::firewall_verdicts()
                .into_iter()
                .map(|(rule, outcome, n)| vec![v(rule), v(outcome), v(n)])
                .collect(),
        ),
    };
    Reply::Rows { columns, rows }
}

async fn tenants(ctx: &Context) -> Result<Vec<Row>, String> {
    let list = ctx
        .registry
        .list_tenants()
        .await
        .map_err(|e| e.to_string())?;
    let mut clients: BTreeMap<String, usize> = BTreeMap::new();
    for s in ctx.sessions.snapshot() {
        *clients.entry(s.tenant.name.clone()).or_default() += 1;
    }
    Ok(list
        .into_iter()
        .map(|t| {
            let n = clients.get(&t.name).copied().unwrap_or(0);
            vec![
                v(&t.name),
                v(&t.schema),
                v(&t.role),
                v(t.active),
                v(t.users),
                v(t.active_keys),
                v(n),
                v(&t.created_at),
            ]
        })
        .collect())
}

fn pools(ctx: &Context) -> Vec<Row> {
    let mut clients: BTreeMap<String, usize> = BTreeMap::new();
    for s in ctx.sessions.snapshot() {
        *clients.entry(s.tenant.name.clone()).or_default() += 1;
    }
    let mut stats = ctx.pools.stats();
    stats.sort_by(|a, b| a.tenant.name.cmp(&b.tenant.name));
    stats
        .into_iter()
        .map(|p| {
            let n = clients.get(&p.tenant.name).copied().unwrap_or(0);
            let wait = p.max_wait;
            vec![
                v(&p.tenant.name),
                v(&p.tenant.role),
                v(n.saturating_sub(p.waiting)),
                v(p.waiting),
                v(p.active),
                v(p.idle),
                v(wait.as_secs()),
                v(wait.subsec_micros()),
                v(format!("{:?}", p.mode).to_lowercase()),
                v(p.size),
                v(p.paused),
            ]
        })
        .collect()
}

/// Idle connections one by one; connections lent to sessions are owned
/// by them, so only their count is known (pid and age unknown: NULL).
fn servers(ctx: &Context) -> Vec<Row> {
    let mut stats = ctx.pools.stats();
    stats.sort_by(|a, b| a.tenant.name.cmp(&b.tenant.name));
    let mut rows = Vec::new();
    for p in stats {
        for s in &p.idle_servers {
            rows.push(vec![
                v(&p.tenant.name),
                v(&p.tenant.role),
                v("idle"),
                v(s.addr.ip()),
                v(s.addr.port()),
                v(utc(ago(s.age))),
                v(s.idle_for.as_secs()),
                v(s.pid),
            ]);
        }
        for _ in 0..p.active {
            rows.push(vec![
                v(&p.tenant.name),
                v(&p.tenant.role),
                v("active"),
                None,
                None,
                None,
                None,
                None,
            ]);
        }
    }
    rows
}

fn ago(d: Duration) -> SystemTime {
    SystemTime::now().checked_sub(d).unwrap_or(UNIX_EPOCH)
}

/// `YYYY-MM-DD HH:MM:SS UTC` without a date crate (Howard Hinnant's
/// days-to-civil algorithm).
pub fn utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_661); // 2000-02-29
        assert_eq!(utc(t), "2000-02-29 01:01:01 UTC");
    }
}
