//! Per-tenant traffic totals: what `SHOW STATS` prints and what the
//! `pgtenant_transactions_total`, `pgtenant_queries_total` and
//! `pgtenant_client_bytes_total` counters count.
//!
//! Sessions add their totals when they end (and long sessions may add
//! deltas on the way), never per message: the relay's hot path stays free
//! of metric calls.

use std::collections::HashMap;
use std::sync::Mutex;

use metrics::Counter;

use super::labels::{OTHER, TenantLabels};

/// Traffic of one session, or one part of it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Bytes read from the client.
    pub bytes_in: u64,
    /// Bytes written to the client.
    pub bytes_out: u64,
    pub transactions: u64,
    pub queries: u64,
}

/// A tenant's totals since the proxy started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TenantTotals {
    pub sessions: u64,
    pub traffic: Totals,
}

#[derive(Default)]
pub struct Stats {
    tenants: Mutex<HashMap<String, Entry>>,
    /// The tenant label of every metric, these counters' and the gauges'.
    pub labels: TenantLabels,
}

struct Entry {
    totals: TenantTotals,
    /// This tenant's counters, registered at its first session: a
    /// `counter!` with a tenant label allocates its key on every call.
    counters: [Counter; 4],
    /// Folded into `tenant="other"`, at this count of cap changes: a
    /// raised cap gives the tenant its own counters from then on, as its
    /// gauges get its name.
    folded_at: Option<usize>,
}

impl Entry {
    fn new(tenant: &str, labels: &TenantLabels) -> Entry {
        let changes = labels.cap_changes();
        let label = labels.get(tenant);
        let folded_at = (&*label == OTHER && tenant != OTHER).then_some(changes);
        let count = |name: &'static str| metrics::counter!(name, "tenant" => label.clone());
        let bytes = |direction: &'static str| {
            metrics::counter!(
                "pgtenant_client_bytes_total",
                "tenant" => label.clone(),
                "direction" => direction
            )
        };
        Entry {
            totals: TenantTotals::default(),
            counters: [
                count("pgtenant_transactions_total"),
                count("pgtenant_queries_total"),
                bytes("in"),
                bytes("out"),
            ],
            folded_at,
        }
    }
}

impl Stats {
    fn with_tenant<R>(&self, tenant: &str, f: impl FnOnce(&mut Entry) -> R) -> R {
        let mut map = self.tenants.lock().expect("poisoned");
        if let Some(e) = map.get_mut(tenant) {
            if e.folded_at
                .is_some_and(|at| at != self.labels.cap_changes())
            {
                *e = Entry {
                    totals: e.totals,
                    ..Entry::new(tenant, &self.labels)
                };
            }
            return f(e);
        }
        f(map
            .entry(tenant.to_owned())
            .or_insert_with(|| Entry::new(tenant, &self.labels)))
    }

    /// Adds traffic of a running or ended session of `tenant`.
    pub fn add(&self, tenant: &str, d: Totals) {
        if d == Totals::default() {
            return;
        }
        self.with_tenant(tenant, |e| {
            let t = &mut e.totals.traffic;
            t.bytes_in += d.bytes_in;
            t.bytes_out += d.bytes_out;
            t.transactions += d.transactions;
            t.queries += d.queries;
            let values = [d.transactions, d.queries, d.bytes_in, d.bytes_out];
            for (c, v) in e.counters.iter().zip(values) {
                if v > 0 {
                    c.increment(v);
                }
            }
        });
    }

    /// Counts a session of `tenant` that ended (its traffic goes to `add`).
    pub fn session_ended(&self, tenant: &str) {
        self.with_tenant(tenant, |e| e.totals.sessions += 1);
    }

    /// Every tenant's totals, sorted by tenant name.
    pub fn snapshot(&self) -> Vec<(String, TenantTotals)> {
        let map = self.tenants.lock().expect("poisoned");
        let mut v: Vec<_> = map.iter().map(|(k, e)| (k.clone(), e.totals)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_per_tenant() {
        let s = Stats::default();
        let t = Totals {
            bytes_in: 10,
            bytes_out: 20,
            transactions: 2,
            queries: 3,
        };
        s.add("a", t);
        s.add("a", t);
        s.session_ended("a");
        s.add("b", Totals::default());
        let snap = s.snapshot();
        assert_eq!(snap.len(), 1, "an empty delta creates nothing");
        assert_eq!(snap[0].1.sessions, 1);
        assert_eq!(snap[0].1.traffic.transactions, 4);
        assert_eq!(snap[0].1.traffic.bytes_out, 40);
    }

    /// Folded into `other` under a cap of one; a raised cap (a reload)
    /// gives the tenant counters of its own, its totals kept.
    #[test]
    fn a_raised_cap_gives_a_folded_tenant_its_own_counters() {
        let s = Stats::default();
        s.labels.set_cap(1);
        s.session_ended("first");
        s.session_ended("second");
        assert_eq!(s.tenants.lock().unwrap()["second"].folded_at, Some(1));
        s.labels.set_cap(1);
        s.session_ended("second");
        assert_eq!(s.tenants.lock().unwrap()["second"].folded_at, Some(1));
        s.labels.set_cap(5);
        s.session_ended("second");
        let map = s.tenants.lock().unwrap();
        assert_eq!(map["second"].folded_at, None);
        assert_eq!(map["second"].totals.sessions, 3);
        assert_eq!(map["first"].folded_at, None);
    }
}
