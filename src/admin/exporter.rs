//! The Prometheus recorder: installed once per process, rendered on
//! scrape. Gauges that describe the present (connections by tenant and
//! state) are computed at scrape time from the pools and live sessions
//! instead of being kept up to date on every change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics::SharedString;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::context::Context;

/// Latency buckets (seconds) for every `*_seconds` histogram.
const BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `metrics` crate's recorder is one per process, so is its handle.
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder (once per process) and returns its handle; None
/// if another recorder was installed first (a test harness, an embedder).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .expect("BUCKETS is not empty");
            match builder.install_recorder() {
                Ok(h) => {
                    describe();
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE.get().and_then(Option::as_ref)
}

/// Histograms are drained into their buckets by upkeep; without the
/// exporter's own listener, someone has to run it.
pub async fn upkeep(handle: &'static PrometheusHandle, timers: crate::timer::Timers) {
    let mut tick = timers.interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

/// The scrape body: live gauges refreshed, then everything rendered.
pub fn render(ctx: &Context) -> String {
    let Some(h) = handle() else {
        return String::new();
    };
    ctx.stats
        .labels
        .set_cap(ctx.cfg().admin.metrics_max_tenants);
    update_connection_gauges(ctx);
    h.render()
}

type Series = (&'static str, SharedString, &'static str);

/// What one scrape leaves for the next (in the context, per proxy).
#[derive(Default)]
pub struct Scrapes {
    /// Series set by the previous scrape, so that a tenant whose
    /// connections all went away reads 0 instead of its last value.
    previous: Mutex<BTreeSet<Series>>,
}

const CLIENTS: &str = "pgtenant_client_connections";
const SERVERS: &str = "pgtenant_server_connections";

fn update_connection_gauges(ctx: &Context) {
    let mut now: BTreeMap<Series, f64> = BTreeMap::new();
    let mut waiting: BTreeMap<SharedString, f64> = BTreeMap::new();
    for p in ctx.pools.stats() {
        let l = ctx.stats.labels.get(&p.tenant.name);
        *now.entry((SERVERS, l.clone(), "active")).or_default() += p.active as f64;
        *now.entry((SERVERS, l.clone(), "idle")).or_default() += p.idle as f64;
        *waiting.entry(l).or_default() += p.waiting as f64;
    }
    let mut clients: BTreeMap<SharedString, f64> = BTreeMap::new();
    for s in ctx.sessions.snapshot() {
        *clients
            .entry(ctx.stats.labels.get(&s.tenant.name))
            .or_default() += 1.0;
    }
    for (l, w) in waiting {
        // A waiting client is a live session too: active = the others.
        let n = clients.remove(&l).unwrap_or(0.0);
        now.insert((CLIENTS, l.clone(), "active"), (n - w).max(0.0));
        now.insert((CLIENTS, l, "waiting"), w);
    }
    for (l, n) in clients {
        now.insert((CLIENTS, l.clone(), "active"), n);
        now.insert((CLIENTS, l, "waiting"), 0.0);
    }
    let mut prev = ctx.scrapes.previous.lock().expect("poisoned");
    for gone in prev.iter().filter(|s| !now.contains_key(*s)) {
        metrics::gauge!(gone.0, "tenant" => gone.1.clone(), "state" => gone.2).set(0.0);
    }
    for ((name, l, state), v) in &now {
        metrics::gauge!(*name, "tenant" => l.clone(), "state" => *state).set(*v);
    }
    *prev = now.into_keys().collect();
}

/// `pgtenant_firewall_verdicts_total` by (rule, outcome), largest first:
/// the admin console's `SHOW FIREWALL`. The recorder is the one place
/// those counts live, so they are read back from its rendering.
pub fn firewall_verdicts() -> Vec<(String, String, u64)> {
    let Some(h) = handle() else {
        return Vec::new();
    };
    let mut rows: Vec<(String, String, u64)> = h
        .render()
        .lines()
        .filter_map(|l| l.strip_prefix("pgtenant_firewall_verdicts_total{"))
        .filter_map(|l| {
            let (labels, value) = l.rsplit_once("} ")?;
            let value = value.trim().parse::<f64>().ok()? as u64;
            Some((label(labels, "rule")?, label(labels, "outcome")?, value))
        })
        .collect();
    rows.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    rows
}

/// The value of `name="…"` in a rendered label set (our values have no
/// quotes or backslashes: rule ids and fixed words).
fn label(labels: &str, name: &str) -> Option<String> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let len = labels[start..].find('"')?;
    Some(labels[start..start + len].to_owned())
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        CLIENTS,
        "Client connections by tenant and state (active, waiting)."
    );
    describe_gauge!(
        SERVERS,
        "Backend connections by tenant and state (active, idle)."
    );
    describe_counter!(
        "pgtenant_pool_checkouts_total",
        "Backend connections lent to clients (per transaction in transaction mode)."
    );
    describe_histogram!(
        "pgtenant_pool_wait_seconds",
        "Time clients waited for a free connection of their tenant's pool (checkouts that found one at once are not sampled)."
    );
    describe_counter!("pgtenant_transactions_total", "Transactions by tenant.");
    describe_counter!("pgtenant_queries_total", "Queries by tenant.");
    describe_counter!(
        "pgtenant_client_bytes_total",
        "Bytes between clients and the proxy by tenant and direction (in: from clients)."
    );
    describe_counter!("pgtenant_logins_total", "Login attempts by outcome.");
    describe_counter!(
        "pgtenant_logins_throttled_total",
        "Login attempts refused unseen because their source failed too often."
    );
    describe_counter!(
        "pgtenant_firewall_verdicts_total",
        "Statements the firewall refused, by rule and outcome."
    );
    describe_counter!(
        "pgtenant_firewall_cache_total",
        "Firewall verdict cache lookups by result (hit, miss), for texts the lexical precheck could not clear."
    );
    describe_counter!(
        "pgtenant_firewall_fastpath_total",
        "Texts the firewall's lexical precheck cleared without a parse or a cache lookup."
    );
    describe_gauge!(
        "pgtenant_prepared_statements",
        "Named statements prepared on the backend connections, all together (transaction mode)."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_read_back() {
        let l = r#"outcome="refused",rule="foreign_schema""#;
        assert_eq!(label(l, "rule").as_deref(), Some("foreign_schema"));
        assert_eq!(label(l, "outcome").as_deref(), Some("refused"));
        assert_eq!(label(l, "tenant"), None);
    }
}
