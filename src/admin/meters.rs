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
    logins: [Counter; LOGIN_OUTCOMES.len()],
}

/// `outcome` label values of `pgtenant_logins_total` for tenant clients.
const LOGIN_OUTCOMES: [&str; 4] = ["ok", "invalid_key", "tenant_inactive", "registry_error"];

#[derive(Debug, Clone, Copy)]
pub enum LoginOutcome {
    Ok = 0,
    InvalidKey = 1,
    TenantInactive = 2,
    RegistryError = 3,
}

impl Meters {
    pub fn get(&self) -> &Handles {
        self.0.get_or_init(|| Handles {
            clients_active: metrics::gauge!("pgtenant_clients_active"),
            logins: LOGIN_OUTCOMES
                .map(|outcome| metrics::counter!("pgtenant_logins_total", "outcome" => outcome)),
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
    fn each_outcome_has_its_own_label() {
        let names = [
            LoginOutcome::Ok,
            LoginOutcome::InvalidKey,
            LoginOutcome::TenantInactive,
            LoginOutcome::RegistryError,
        ]
        .map(|o| LOGIN_OUTCOMES[o as usize]);
        assert_eq!(names, LOGIN_OUTCOMES);
    }
}
