//! The firewall's statement corpus: (SQL, expected rule id or OK) for the
//! tenant whose schema is `tenant_a`, the other tenant being `tenant_b`
//! and `extensions` a shared schema. Shared by the unit tests (verdicts)
//! and `tests/firewall.rs` (the same statements through a real proxy).
//! One file per family of statements.

mod admin;
mod clients;
mod ddl;
mod statements;

pub use clients::{DRIVERS, PSQL15};

use super::Policy;
use super::rules::*;

pub const OK: Option<&str> = None;
pub const X: Option<&str> = Some(CROSS_SCHEMA);
pub const SP: Option<&str> = Some(SEARCH_PATH);
pub const ROL: Option<&str> = Some(ROLE);
pub const SA: Option<&str> = Some(SESSION_AUTHORIZATION);
pub const SET: Option<&str> = Some(SETTINGS);
pub const SDDL: Option<&str> = Some(SCHEMA_DDL);
pub const RDDL: Option<&str> = Some(ROLE_DDL);
pub const GR: Option<&str> = Some(GRANT);
pub const EXT: Option<&str> = Some(EXTENSION);
pub const LD: Option<&str> = Some(LOAD);
pub const ADM: Option<&str> = Some(CLUSTER_ADMIN);
pub const FILES: Option<&str> = Some(SERVER_FILES);
pub const DYN: Option<&str> = Some(DYNAMIC_SQL);
pub const OTH: Option<&str> = Some(OTHER_TENANTS);
pub const LN: Option<&str> = Some(LISTEN_NOTIFY);
pub const UNC: Option<&str> = Some(UNCLASSIFIED);
pub const UNP: Option<&str> = Some(UNPARSABLE);

pub const TENANT: &str = "tenant_a";

pub fn policy() -> Policy {
    Policy {
        shared_schemas: vec!["extensions".into()],
        allow_create_extension: false,
    }
}

/// Every (sql, expected rule id or OK) case for tenant `tenant_a`.
pub fn cases() -> Vec<(&'static str, Option<&'static str>)> {
    [statements::CASES, ddl::CASES, admin::CASES].concat()
}
