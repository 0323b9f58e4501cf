//! Bounded tenant labels for metrics: every labelled tenant is one more
//! time series per metric, so only the first `admin.metrics_max_tenants`
//! tenants seen get their own label; the rest share `tenant="other"`.
//!
//! A label, once given, stays for the life of the process: series must
//! not change meaning between scrapes. A real tenant named `other` shares
//! the folded series (tenant names can't be made to avoid it: `other` is a
//! valid name).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use metrics::SharedString;

/// The label of every tenant past the cap.
pub const OTHER: &str = "other";

/// The labels given so far; one per process, in [`super::stats::Stats`].
pub struct TenantLabels {
    cap: AtomicUsize,
    /// Bumped when the cap changes: a tenant folded into `other` before
    /// may get its own label now (see [`TenantLabels::cap_changes`]).
    changes: AtomicUsize,
    names: RwLock<HashMap<String, SharedString>>,
}

impl Default for TenantLabels {
    fn default() -> Self {
        TenantLabels {
            cap: AtomicUsize::new(crate::config::AdminConfig::default().metrics_max_tenants),
            changes: AtomicUsize::new(0),
            names: RwLock::new(HashMap::new()),
        }
    }
}

impl TenantLabels {
    /// Sets the cap (from `admin.metrics_max_tenants`, at start and on
    /// reload). Tenants labelled before keep their label.
    pub fn set_cap(&self, cap: usize) {
        if self.cap.swap(cap, Ordering::Relaxed) != cap {
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many times the cap changed: whoever holds an `other` label
    /// asks [`TenantLabels::get`] again when this moved.
    pub fn cap_changes(&self) -> usize {
        self.changes.load(Ordering::Relaxed)
    }

    /// The metric label of tenant `name`: its name, or `other` past the
    /// cap. Cheap after the first call for a tenant (a read lock and an
    /// Arc clone).
    pub fn get(&self, name: &str) -> SharedString {
        if let Some(l) = self.names.read().expect("poisoned").get(name) {
            return l.clone();
        }
        let mut names = self.names.write().expect("poisoned");
        if let Some(l) = names.get(name) {
            return l.clone();
        }
        if names.len() >= self.cap.load(Ordering::Relaxed) {
            return SharedString::const_str(OTHER);
        }
        let label = SharedString::from_shared(Arc::<str>::from(name));
        names.insert(name.to_owned(), label.clone());
        label
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_past_the_cap_fold_into_other() {
        let labels = TenantLabels::default();
        labels.set_cap(2);
        let first = labels.get("lbl_a");
        let second = labels.get("lbl_b");
        assert_eq!((&*first, &*second), ("lbl_a", "lbl_b"));
        assert_eq!(&*labels.get("lbl_c"), OTHER);
        assert_eq!(&*labels.get("lbl_a"), "lbl_a", "a label is kept");
        labels.set_cap(100);
        assert_eq!(&*labels.get("lbl_c"), "lbl_c");
    }
}
