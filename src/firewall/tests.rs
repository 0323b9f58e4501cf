//! Table-driven corpus: every rule, every quoting trick, real client queries.
//! Tenant under test: schema `tenant_a`; the other tenant: `tenant_b`;
//! shared schema: `extensions`.

use super::corpus::*;
use super::rules::*;
use super::*;

fn rule_of(fw: &Firewall, sql: &str) -> Option<&'static str> {
    fw.check(sql, TENANT).err().map(|r| r.rule)
}

/// Runs the corpus with and without the lexical pre-check and reports all
/// mismatches at once.
#[test]
fn corpus() {
    let corpus = cases();
    assert!(corpus.len() >= 200, "corpus has {} cases", corpus.len());
    let mut bad = Vec::new();
    for fw in [
        Firewall::new(policy(), 1000),
        Firewall::new(policy(), 0).without_precheck(),
    ] {
        for &(sql, want) in &corpus {
            let got = rule_of(&fw, sql);
            if got != want {
                bad.push(format!("{sql:?}: want {want:?}, got {got:?}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn client_catalog_queries_pass() {
    let fw = Firewall::new(policy(), 100).without_precheck();
    for sql in PSQL15.iter().chain(DRIVERS) {
        assert_eq!(fw.check(sql, TENANT), Ok(()), "{sql}");
    }
}

#[test]
fn the_other_tenant_sees_the_mirror_image() {
    // One cached analysis, two tenants, opposite verdicts.
    let fw = Firewall::new(policy(), 100);
    let sql = "SELECT * FROM tenant_b.t JOIN t USING (id)";
    assert_eq!(rule_of(&fw, sql), X);
    assert_eq!(fw.check(sql, "tenant_b"), Ok(()));
    assert_eq!(rule_of(&fw, sql), X);
    let both = "SELECT * FROM tenant_a.t, tenant_b.t";
    assert_eq!(rule_of(&fw, both), X);
    assert_eq!(fw.check(both, "tenant_b").unwrap_err().rule, CROSS_SCHEMA);
    // Tenant-independent refusals hold for everyone.
    assert_eq!(fw.check("SET ROLE x", "tenant_b").unwrap_err().rule, ROLE);
}

#[test]
fn refusal_text_names_only_the_object() {
    let fw = Firewall::new(policy(), 10);
    let r = fw
        .check(
            "SELECT secret_column FROM tenant_b.t WHERE x = 'pw'",
            TENANT,
        )
        .unwrap_err();
    assert_eq!(
        r.message,
        "pgtenant: cross_schema: relation \"tenant_b.t\" is outside your schema \"tenant_a\""
    );
    assert_eq!(
        r.hint,
        "Refer to your own tables without a schema name; your session's search_path is already your schema."
    );
    assert_eq!(r.to_string(), r.message);
    for (sql, _) in cases() {
        if let Err(r) = fw.check(sql, TENANT) {
            assert!(
                r.message.starts_with(&format!("pgtenant: {}: ", r.rule)),
                "{}",
                r.message
            );
            assert!(!r.hint.is_empty());
            assert!(ALL.contains(&r.rule));
            assert!(!r.message.contains("secret"));
        }
    }
    let r = fw
        .check("SELECT 'tenant_b.s'::regclass", TENANT)
        .unwrap_err();
    assert!(r.message.contains("\"tenant_b.s\""), "{}", r.message);
    let r = fw
        .check("SET search_path = a, tenant_b", TENANT)
        .unwrap_err();
    assert_eq!(
        r.message,
        "pgtenant: search_path: search_path entry \"a\" is outside your schema \"tenant_a\""
    );
}

#[test]
fn shared_schemas_come_from_the_policy() {
    let sql = "SELECT extensions.f(), x FROM extensions.t";
    let strict = Firewall::new(Policy::default(), 10);
    assert_eq!(rule_of(&strict, sql), X);
    let shared = Firewall::new(policy(), 10);
    assert_eq!(rule_of(&shared, sql), OK);
    // Used as the grants allow (rows), never changed (objects).
    assert_eq!(rule_of(&shared, "INSERT INTO extensions.t VALUES (1)"), OK);
    assert_eq!(rule_of(&shared, "DROP TABLE extensions.t"), X);
    assert_eq!(
        rule_of(&shared, "SELECT * FROM pg_stat_get_progress_info('VACUUM')"),
        OTH
    );
    // Creating a table there is DDL, whichever spelling.
    assert_eq!(rule_of(&shared, "CREATE TABLE extensions.n AS SELECT 1"), X);
    assert_eq!(rule_of(&shared, "SELECT 1 AS x INTO extensions.n"), X);
    assert_eq!(rule_of(&shared, "SELECT 1 AS x INTO tenant_a.n"), OK);
    assert_eq!(rule_of(&shared, "SELECT 1 AS x INTO n"), OK);
}

#[test]
fn extensions_when_the_policy_allows_them() {
    let fw = Firewall::new(
        Policy {
            allow_create_extension: true,
            ..policy()
        },
        10,
    );
    assert_eq!(rule_of(&fw, "CREATE EXTENSION hstore"), OK);
    assert_eq!(rule_of(&fw, "CREATE EXTENSION hstore SCHEMA tenant_a"), OK);
    assert_eq!(rule_of(&fw, "CREATE EXTENSION hstore SCHEMA tenant_b"), EXT);
    assert_eq!(
        rule_of(&fw, "CREATE EXTENSION hstore SCHEMA extensions"),
        EXT
    );
    assert_eq!(rule_of(&fw, "ALTER EXTENSION hstore UPDATE"), OK);
    assert_eq!(rule_of(&fw, "DROP EXTENSION hstore"), OK);
    assert_eq!(rule_of(&fw, "ALTER EXTENSION hstore ADD FUNCTION f()"), EXT);
}

#[test]
fn cache_is_bounded_and_keyed_by_text() {
    let fw = Firewall::new(policy(), 2).without_precheck();
    for i in 0..50 {
        let ok = format!("SELECT * FROM t WHERE id = {i}");
        let bad = format!("SELECT * FROM tenant_b.t WHERE id = {i}");
        assert_eq!(fw.check(&ok, TENANT), Ok(()));
        assert_eq!(rule_of(&fw, &bad), X);
        // Hits give the same verdicts.
        assert_eq!(fw.check(&ok, TENANT), Ok(()));
        assert_eq!(rule_of(&fw, &bad), X);
    }
    let total: usize = fw.shards.iter().map(|s| s.lock().unwrap().len()).sum();
    assert!(total <= 2, "{total}");
    // Huge texts are checked but not cached.
    let big = format!("SELECT {} FROM tenant_b.t", "1, ".repeat(10_000) + "1");
    assert_eq!(rule_of(&fw, &big), X);
    let total: usize = fw.shards.iter().map(|s| s.lock().unwrap().len()).sum();
    assert!(total <= 2);
    // Large capacities shard; each shard stays bounded.
    let fw = Firewall::new(policy(), 1000).without_precheck();
    assert_eq!(fw.shards.len(), SHARDS);
    for i in 0..3000 {
        assert_eq!(fw.check(&format!("SELECT {i} FROM t"), TENANT), Ok(()));
    }
    let total: usize = fw.shards.iter().map(|s| s.lock().unwrap().len()).sum();
    assert!(total <= 1000, "{total}");
}

#[test]
fn precheck_and_full_parse_agree_on_generated_dml() {
    // Texts that take the fast path must get the same verdict from the walker.
    let fast = Firewall::new(policy(), 0);
    let slow = Firewall::new(policy(), 0).without_precheck();
    let words = [
        "select", "id", "from", "t", "where", "v", "=", "1", "and", "in", "(", ")", "join", "u",
        "on", ",", "*", "group", "by", "order", "limit", "2", "'x'", "$1", "--", "/*", "*/", ";",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        let mut sql = String::from("SELECT");
        for _ in 0..(seed % 12) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            sql.push(' ');
            sql.push_str(words[(seed % words.len() as u64) as usize]);
        }
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        assert_eq!(fast.check(&sql, TENANT), slow.check(&sql, TENANT), "{sql}");
    }
}

#[test]
fn firewall_is_shareable_across_tasks() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Firewall>();
    assert_send_sync::<std::sync::Arc<Refusal>>();
}

#[test]
fn modes_and_policy_deserialize() {
    assert_eq!(
        serde_json::from_str::<Mode>("\"enforce\"").unwrap(),
        Mode::Enforce
    );
    assert_eq!(
        serde_json::from_str::<Mode>("\"monitor\"").unwrap(),
        Mode::Monitor
    );
    assert_eq!(serde_json::from_str::<Mode>("\"off\"").unwrap(), Mode::Off);
    assert!(serde_json::from_str::<Mode>("\"Enforce\"").is_err());
    assert_eq!(Mode::default(), Mode::Enforce);
    let p: Policy = serde_json::from_str(r#"{"shared_schemas": ["extensions"]}"#).unwrap();
    assert_eq!(p, policy());
    let p: Policy = serde_json::from_str("{}").unwrap();
    assert_eq!(p, Policy::default());
    assert!(!p.allow_create_extension);
}

#[test]
fn unknown_or_broken_input_is_refused_not_guessed() {
    let fw = Firewall::new(policy(), 0).without_precheck();
    // A NUL byte cannot reach the parser.
    assert_eq!(rule_of(&fw, "SELECT * FROM tenant_b.t\0"), UNC);
    // Deeper than pg_query's decoder allows, with a qualified name inside.
    let deep = format!("SELECT {}tenant_b.x{}", "f(".repeat(300), ")".repeat(300));
    assert!(
        matches!(rule_of(&fw, &deep), UNC | UNP),
        "{:?}",
        rule_of(&fw, &deep)
    );
    // Without one, too: the server parses what pg_query's decoder can't,
    // so nothing it holds can be assumed to fail there.
    let deep = format!("SELECT {}1{}", "f(".repeat(300), ")".repeat(300));
    assert_eq!(rule_of(&fw, &deep), UNC);
    // (A single plain statement like that still passes the lexical fast
    // path, which needs no parse.)
    let fast = Firewall::new(policy(), 0);
    assert_eq!(rule_of(&fast, &deep), OK);
    // A second statement behind a comment was forwarded unread with it.
    for hidden in [
        "SET standard_conforming_strings = off",
        "LISTEN other_tenant",
        "SET search_path = public",
    ] {
        let sql = format!(
            "SELECT {}1{}; /**/ {hidden}",
            "abs(".repeat(120),
            ")".repeat(120)
        );
        assert_eq!(rule_of(&fast, &sql), UNC, "{hidden}");
        assert_eq!(rule_of(&fw, &sql), UNC, "{hidden}");
    }
    // A syntax error is forwarded (the client sees the server's own error)
    // only as one plain statement without names: a second statement, or
    // a first one behind a comment, may parse on an older server.
    for sql in ["SELEC 1; /**/ SET x.y = 1", "/**/ SELEC 1", "(SELEC 1"] {
        assert_eq!(rule_of(&fw, sql), UNP, "{sql}");
    }
    assert_eq!(rule_of(&fw, "SELEC 1"), OK);
}

#[test]
fn concurrent_checks_agree() {
    let fw = std::sync::Arc::new(Firewall::new(policy(), 64).without_precheck());
    let handles: Vec<_> = (0..4)
        .map(|k| {
            let fw = fw.clone();
            std::thread::spawn(move || {
                let corpus = cases();
                for i in 0..200 {
                    let (sql, want) = corpus[(i * 7 + k) % corpus.len()];
                    assert_eq!(rule_of(&fw, sql), want, "{sql}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// A recorder that sums counters by `name{label=value,...}`.
#[derive(Default)]
struct Counts(std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>);

struct Slot(
    std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>,
    String,
);

impl metrics::CounterFn for Slot {
    fn increment(&self, v: u64) {
        *self.0.lock().unwrap().entry(self.1.clone()).or_default() += v;
    }
    fn absolute(&self, v: u64) {
        self.0.lock().unwrap().insert(self.1.clone(), v);
    }
}

impl metrics::Recorder for Counts {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        metrics::Counter::from_arc(std::sync::Arc::new(Slot(self.0.clone(), name)))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[test]
fn metrics_count_cache_results_and_refusals() {
    let rec = Counts::default();
    metrics::with_local_recorder(&rec, || {
        let fw = Firewall::new(policy(), 10);
        for _ in 0..3 {
            let _ = fw.check("SELECT * FROM tenant_b.t", TENANT);
            let _ = fw.check("SET ROLE x", TENANT);
            let _ = fw.check("SELECT 1", TENANT);
        }
    });
    let got = rec.0.lock().unwrap().clone();
    let get = |k: &str| got.get(k).copied().unwrap_or(0);
    assert_eq!(
        get("pgtenant_firewall_cache_total{result=miss}"),
        2,
        "{got:?}"
    );
    assert_eq!(
        get("pgtenant_firewall_cache_total{result=hit}"),
        4,
        "{got:?}"
    );
    // Cleared by the precheck every time, without touching the cache.
    assert_eq!(get("pgtenant_firewall_fastpath_total{}"), 3, "{got:?}");
    // Refusals are the session's to count (`session::inspect`).
    assert!(
        !got.keys()
            .any(|k| k.starts_with("pgtenant_firewall_verdicts_total")),
        "{got:?}"
    );
}

/// The verdict without a parse: what the pre-check clears, and what the
/// cache holds (never a text longer than it keeps); the same verdict as
/// the full check.
#[test]
fn cheap_verdicts_never_parse() {
    use crate::lexical::scan;
    let fw = Firewall::new(policy(), 100);
    let cheap = |sql: &str| fw.check_cheap(sql, &scan(sql.as_bytes(), false), TENANT);
    assert!(matches!(cheap("SELECT a FROM t WHERE b = 1"), Some(Ok(()))));
    let refused = "SELECT a FROM tenant_b.t";
    assert!(cheap(refused).is_none(), "not parsed yet");
    assert!(fw.check(refused, TENANT).is_err());
    assert!(matches!(cheap(refused), Some(Err(r)) if r.rule == CROSS_SCHEMA));
    let allowed = "SELECT a FROM tenant_a.t";
    fw.check(allowed, TENANT).unwrap();
    assert!(matches!(cheap(allowed), Some(Ok(()))));
    let long = format!(
        "SELECT a FROM tenant_a.t WHERE b IN ({}0)",
        "1.5, ".repeat(4000)
    );
    fw.check(&long, TENANT).unwrap();
    assert!(cheap(&long).is_none(), "longer than the cache keeps");
}
