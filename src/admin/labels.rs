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
use std::sync::{Arc, LazyLock, RwLock};

use metrics::SharedString;

/// The label of every tenant past the cap.
pub const OTHER: &str = "other";

struct Labels {
    cap: AtomicUsize,
    names: RwLock<HashMap<String, SharedString>>,
}

static LABELS: LazyLock<Labels> = LazyLock::new(|| Labels {
    cap: AtomicUsize::new(100),
    names: RwLock::new(HashMap::new()),
});

/// Sets the cap (from `admin.metrics_max_tenants`); called once at start.
/// Tenants labelled before keep their label.
pub fn set_cap(cap: usize) {
    LABELS.cap.store(cap, Ordering::Relaxed);
}

/// The metric label of tenant `name`: its name, or `other` past the cap.
/// Cheap after the first call for a tenant (a read lock and an Arc clone).
pub fn tenant_label(name: &str) -> SharedString {
    if let Some(l) = LABELS.names.read().expect("poisoned").get(name) {
        return l.clone();
    }
    let mut names = LABELS.names.write().expect("poisoned");
    if let Some(l) = names.get(name) {
        return l.clone();
    }
    if names.len() >= LABELS.cap.load(Ordering::Relaxed) {
        return SharedString::const_str(OTHER);
    }
    let label = SharedString::from_shared(Arc::<str>::from(name));
    names.insert(name.to_owned(), label.clone());
    label
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_past_the_cap_fold_into_other() {
        // One process-wide table: this is the only test that sets the cap.
        set_cap(2);
        let first = tenant_label("lbl_a");
        let second = tenant_label("lbl_b");
        assert_eq!((&*first, &*second), ("lbl_a", "lbl_b"));
        assert_eq!(&*tenant_label("lbl_c"), OTHER);
        assert_eq!(&*tenant_label("lbl_a"), "lbl_a", "a label is kept");
        set_cap(100);
        assert_eq!(&*tenant_label("lbl_c"), "lbl_c");
    }
}
