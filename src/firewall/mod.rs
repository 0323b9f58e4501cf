//! Statement firewall: decides, per SQL text and tenant, whether the relay
//! forwards a query to the tenant's backend.
//!
//! The backend role of each tenant is the real guarantee (its privileges);
//! this firewall is defence in depth and gives clear errors early. It
//! refuses text that names another tenant's schema or changes the session's
//! identity or routing (rules and ids in [`rules`]).
//!
//! Pipeline for [`Firewall::check`]:
//! 1. `precheck`: plain DML with no `.`/`"`/escapes/sensitive words cannot
//!    be refused by the walker, so it needs neither a parse nor the cache.
//!    It stops at the first byte that disqualifies a text, and it runs
//!    first because texts that pass it are often unique (`WHERE id = 42`):
//!    caching them would only churn the cache.
//! 2. The verdict cache, keyed by the SQL text, holds a tenant-independent
//!    analysis (schemas named + refusals that hold for everyone); a hit costs
//!    a hash, a lock and a string compare, and allocates nothing.
//! 3. On a miss, pg_query (PostgreSQL's own grammar) parses the text and
//!    `walk` inspects every node of the tree.
//! 4. The per-tenant decision compares the recorded schemas with the
//!    tenant's schema.
//!
//! Text that does not parse is forwarded only when provably harmless (the
//! client then gets the server's own syntax error); anything the walker
//! cannot classify is refused.
//!
//! Decisions worth knowing (details in the files named):
//! - `pg_temp` (the session's own temporary schema) is allowed; `pg_temp_N`,
//!   `pg_toast` and every other schema are not (`rules`).
//! - Function arguments that name objects are checked when they are string
//!   constants (`nextval('s.q')`, `to_regclass('s.t')`, `'s.t'::regclass`);
//!   a computed name (`nextval(x || '.q')`) or an OID cannot be resolved
//!   statically and is forwarded: the backend role's privileges decide
//!   (`calls`).
//! - `RESET ALL`/`DISCARD ALL`/`RESET ROLE` are forwarded; `SET ROLE x`,
//!   `SET SESSION AUTHORIZATION x` and `SET search_path` to foreign schemas
//!   are refused (`settings`); `LISTEN/NOTIFY` are refused for now (`stmt`).
//! - `DO` blocks and PL/pgSQL bodies are forwarded after checking the SQL
//!   they contain statically (`plpgsql`).
//! - Every pg_query call is serialised (`parse`): libpg_query swaps the
//!   process's stderr during a parse.

mod calls;
#[doc(hidden)]
pub mod corpus;
mod flatten;
mod names;
mod parse;
mod plpgsql;
mod precheck;
pub mod rules;
mod settings;
mod stmt;
mod tree;
mod walk;

pub use settings::misread_under;

#[cfg(test)]
mod tests;

use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use lru::LruCache;
use serde::Deserialize;

use crate::lexical::{self, Lexed};
use walk::Analysis;

/// What the relay does with a refusal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Refused text is answered with an error and not forwarded.
    #[default]
    Enforce,
    /// Refused text is logged and counted, but forwarded.
    Monitor,
    /// The firewall is not consulted.
    Off,
}

/// Firewall policy, the same for every tenant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Schemas every tenant may use, besides pg_catalog and
    /// information_schema (always allowed), e.g. `"extensions"`: what a
    /// tenant may read or write in them is up to PostgreSQL's grants, but
    /// it cannot create, alter or drop objects in them.
    pub shared_schemas: Vec<String>,
    /// Whether tenants may run CREATE/ALTER/DROP EXTENSION (into their own
    /// schema only).
    pub allow_create_extension: bool,
}

/// Why a text was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// Stable rule id (see [`rules`]), also the metric label.
    pub rule: &'static str,
    /// Full text for the client: `pgtenant: <rule id>: <what and why>`.
    /// Names at most the offending object, never more of the SQL.
    pub message: String,
    /// What to do instead.
    pub hint: String,
}

/// Texts longer than this are checked but not cached, so the cache's
/// memory stays bounded by `capacity * MAX_CACHED_SQL`.
const MAX_CACHED_SQL: usize = 16 * 1024;

/// Cache shards: few enough that small capacities stay exact.
const SHARDS: usize = 8;
/// Below this capacity a single shard keeps the LRU exact.
const MIN_SHARDED_CAPACITY: usize = 256;

struct Entry {
    sql: Box<str>,
    analysis: Arc<Analysis>,
}

/// Keys are already SipHash values: hash them as themselves.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type Shard = Mutex<LruCache<u64, Entry, BuildHasherDefault<IdHasher>>>;

/// The statement firewall: policy plus a bounded LRU verdict cache.
pub struct Firewall {
    policy: Policy,
    shards: Box<[Shard]>,
    /// Keyed SipHash: clients cannot aim collisions at the cache.
    hasher: RandomState,
    precheck: bool,
    /// Registered on first use (the recorder may be installed after this
    /// firewall is built): no registry lookup per check.
    counters: OnceLock<Counters>,
}

struct Counters {
    fastpath: metrics::Counter,
    repeat: metrics::Counter,
    hit: metrics::Counter,
    miss: metrics::Counter,
}

impl Counters {
    fn new() -> Counters {
        Counters {
            fastpath: metrics::counter!("pgtenant_firewall_fastpath_total"),
            repeat: metrics::counter!("pgtenant_firewall_repeats_total"),
            hit: metrics::counter!("pgtenant_firewall_cache_total", "result" => "hit"),
            miss: metrics::counter!("pgtenant_firewall_cache_total", "result" => "miss"),
        }
    }
}

impl std::fmt::Debug for Firewall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Firewall")
            .field("policy", &self.policy)
            .field("shards", &self.shards.len())
            .field("precheck", &self.precheck)
            .finish()
    }
}

impl Firewall {
    /// A firewall whose cache holds up to `cache_capacity` analysed texts
    /// (0 disables the cache).
    pub fn new(policy: Policy, cache_capacity: usize) -> Firewall {
        let n = if cache_capacity == 0 {
            0
        } else if cache_capacity < MIN_SHARDED_CAPACITY {
            1
        } else {
            SHARDS
        };
        let shards = (0..n)
            .map(|_| {
                let cap =
                    NonZeroUsize::new(cache_capacity.div_ceil(n)).unwrap_or(NonZeroUsize::MIN);
                Mutex::new(LruCache::with_hasher(cap, BuildHasherDefault::default()))
            })
            .collect();
        Firewall {
            policy,
            shards,
            hasher: RandomState::new(),
            precheck: true,
            counters: OnceLock::new(),
        }
    }

    /// Disables the lexical fast path, so every text is parsed (tests and
    /// benchmarks of the parse path).
    pub fn without_precheck(mut self) -> Firewall {
        self.precheck = false;
        self
    }

    /// The policy this firewall enforces.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Verdict for one SQL text (may hold several statements) for the tenant
    /// whose schema is `tenant_schema`. Ok(()) = forward it. Err = refuse
    /// the whole text.
    pub fn check(&self, sql: &str, tenant_schema: &str) -> Result<(), Arc<Refusal>> {
        self.check_lexed(sql, &lexical::scan(sql.as_bytes(), false), tenant_schema)
    }

    /// [`Firewall::check`] of a text whose words were already read (the
    /// relay reads them once for the firewall and the session-effect check).
    pub fn check_lexed(
        &self,
        sql: &str,
        lexed: &Lexed,
        tenant_schema: &str,
    ) -> Result<(), Arc<Refusal>> {
        if self.clears(lexed) {
            return Ok(());
        }
        let counters = self.counters.get_or_init(Counters::new);
        // Refusals are counted where the session decides what they become.
        self.analysis(sql, counters).verdict(tenant_schema)
    }

    /// [`Firewall::check_lexed`] if it needs no parse: the pre-check
    /// clears the text, or its analysis is cached. None: it needs one.
    pub fn check_cheap(
        &self,
        sql: &str,
        lexed: &Lexed,
        tenant_schema: &str,
    ) -> Option<Result<(), Arc<Refusal>>> {
        if self.clears(lexed) {
            return Some(Ok(()));
        }
        // Longer texts are never cached.
        if self.shards.is_empty() || sql.len() > MAX_CACHED_SQL {
            return None;
        }
        let counters = self.counters.get_or_init(Counters::new);
        let a = self.cached(sql, self.hasher.hash_one(sql), counters)?;
        Some(a.verdict(tenant_schema))
    }

    /// Whether the pre-check alone accepts a text with these words (see
    /// `precheck`), without reading the text again.
    pub fn clears(&self, lexed: &Lexed) -> bool {
        if self.precheck && lexed.firewall_fast_path() {
            self.counters
                .get_or_init(Counters::new)
                .fastpath
                .increment(1);
            true
        } else {
            false
        }
    }

    /// Whether texts the lexical pre-check clears skip the parse.
    pub fn prechecks(&self) -> bool {
        self.precheck
    }

    /// A session repeated a text it had cleared (see `session::repeats`):
    /// counted, not looked at.
    pub fn note_repeat(&self) {
        self.counters.get_or_init(Counters::new).repeat.increment(1);
    }

    /// The cached analysis of a text the precheck could not clear.
    fn analysis(&self, sql: &str, counters: &Counters) -> Arc<Analysis> {
        if self.shards.is_empty() {
            counters.miss.increment(1);
            return Arc::new(self.analyze(sql));
        }
        let h = self.hasher.hash_one(sql);
        if let Some(a) = self.cached(sql, h, counters) {
            return a;
        }
        counters.miss.increment(1);
        let a = Arc::new(self.analyze(sql));
        if sql.len() <= MAX_CACHED_SQL {
            let e = Entry {
                sql: sql.into(),
                analysis: a.clone(),
            };
            self.shard(h)
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .put(h, e);
        }
        a
    }

    /// The analysis cached for `sql`, whose hash is `h` (a hit is counted).
    fn cached(&self, sql: &str, h: u64, counters: &Counters) -> Option<Arc<Analysis>> {
        let mut lru = self.shard(h).lock().unwrap_or_else(PoisonError::into_inner);
        let e = lru.get(&h).filter(|e| &*e.sql == sql)?;
        let a = e.analysis.clone();
        drop(lru);
        counters.hit.increment(1);
        Some(a)
    }

    fn shard(&self, h: u64) -> &Shard {
        &self.shards[(h >> 32) as usize % self.shards.len()]
    }

    /// The full analysis: pg_query's parse and the walk.
    fn analyze(&self, sql: &str) -> Analysis {
        // A bug in the walker must refuse the text, not take the relay down.
        catch_unwind(AssertUnwindSafe(|| walk::analyze(sql, &self.policy))).unwrap_or_else(|_| {
            tracing::error!("firewall: internal error while checking a statement");
            Analysis::refused(
                rules::UNCLASSIFIED,
                format_args!("internal error while checking the statement"),
            )
        })
    }
}
