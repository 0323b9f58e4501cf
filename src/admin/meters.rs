//! Handles of the metrics every client connection touches.
//!
//! A `counter!` call hashes its key, takes the recorder's lock and
//! allocates a handle; at thousands of connections per second that shows
//! in a profile. These are registered once, at first use (after
//! [`super::start`] installed the recorder), and then only incremented.

use std::sync::OnceLock;

use metrics::{Counter, Gauge};

#[derive(Default)]
pub struct Meters(OnceLock<Handles>);

pub struct Handles {
    pub clients_active: Gauge,
    /// `pgtenant_logins_total`, one per [`LoginOutcome`], in `ALL` order.
    logins: [Counter; LoginOutcome::ALL.len()],
}

/// How a tenant client's login ended (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    Ok,
    InvalidKey,
    TenantInactive,
    RegistryError,
}

impl LoginOutcome {
    const ALL: [LoginOutcome; 4] = [
        LoginOutcome::Ok,
        LoginOutcome::InvalidKey,
        LoginOutcome::TenantInactive,
        LoginOutcome::RegistryError,
    ];

    fn label(self) -> &'static str {
        match self {
            LoginOutcome::Ok => "ok",
            LoginOutcome::InvalidKey => "invalid_key",
            LoginOutcome::TenantInactive => "tenant_inactive",
            LoginOutcome::RegistryError => "registry_error",
        }
    }
}

impl Meters {
    pub fn get(&self) -> &Handles {
        self.0.get_or_init(|| Handles {
            clients_active: metrics::gauge!("pgtenant_clients_active"),
            logins: LoginOutcome::ALL
                .map(|o| metrics::counter!("pgtenant_logins_total", "outcome" => o.label())),
        })
    }
}

impl Handles {
    pub fn login(&self, outcome: LoginOutcome) {
        self.logins[outcome as usize].increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_indexes_its_own_counter() {
        for (i, o) in LoginOutcome::ALL.into_iter().enumerate() {
            assert_eq!(o as usize, i, "{o:?} must sit at its own index in ALL");
        }
    }
}
