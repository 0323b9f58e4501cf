//! Statement firewall costs: the lexical precheck on a pgbench statement, a
//! cached verdict, an uncached OLTP statement (full parse + walk) and a
//! ~2 KB ORM-style query.
//!
//! Run: cargo bench --bench firewall -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pgtenant::firewall::{Firewall, Policy};

const TENANT: &str = "tenant_a";
const QUALIFIED: &str = "SELECT abalance FROM tenant_a.pgbench_accounts WHERE aid = 4242;";

/// An ORM-style query: CTE, joins, many qualified columns, ~2 KB.
const ORM: &str = r#"WITH recent_orders AS (
    SELECT o.id, o.customer_id, o.created_at, o.status, o.total_cents, o.currency
    FROM tenant_a.orders AS o
    WHERE o.created_at >= $1 AND o.status IN ('paid', 'shipped', 'delivered')
), order_totals AS (
    SELECT ro.customer_id, count(*) AS order_count, sum(ro.total_cents) AS total_cents
    FROM recent_orders AS ro
    GROUP BY ro.customer_id
)
SELECT c.id AS customer_id, c.email AS customer_email, c.first_name AS customer_first_name,
       c.last_name AS customer_last_name, c.created_at AS customer_created_at,
       c.updated_at AS customer_updated_at, c.locale AS customer_locale,
       a.id AS address_id, a.line1 AS address_line1, a.line2 AS address_line2,
       a.city AS address_city, a.postal_code AS address_postal_code, a.country AS address_country,
       ro.id AS order_id, ro.created_at AS order_created_at, ro.status AS order_status,
       ro.total_cents AS order_total_cents, ro.currency AS order_currency,
       li.id AS line_item_id, li.quantity AS line_item_quantity, li.unit_cents AS line_item_unit_cents,
       p.id AS product_id, p.sku AS product_sku, p.name AS product_name, p.category AS product_category,
       ot.order_count AS customer_order_count, ot.total_cents AS customer_total_cents,
       coalesce(d.percent, 0) AS discount_percent,
       CASE WHEN ot.total_cents > 100000 THEN 'gold' WHEN ot.total_cents > 10000 THEN 'silver' ELSE 'bronze' END AS tier
FROM customers AS c
JOIN addresses AS a ON a.customer_id = c.id AND a.is_default
JOIN recent_orders AS ro ON ro.customer_id = c.id
JOIN line_items AS li ON li.order_id = ro.id
JOIN tenant_a.products AS p ON p.id = li.product_id
LEFT JOIN order_totals AS ot ON ot.customer_id = c.id
LEFT JOIN LATERAL (
    SELECT dd.percent FROM discounts AS dd
    WHERE dd.customer_id = c.id AND dd.valid_until > now()
    ORDER BY dd.percent DESC LIMIT 1
) AS d ON true
WHERE c.deleted_at IS NULL
  AND c.id = ANY($2::bigint[])
  AND EXISTS (SELECT 1 FROM subscriptions AS s WHERE s.customer_id = c.id AND s.active)
ORDER BY c.id, ro.created_at DESC, li.id
LIMIT 500 OFFSET $3"#;

fn policy() -> Policy {
    Policy {
        shared_schemas: vec!["extensions".into()],
        allow_create_extension: false,
    }
}

fn benches(c: &mut Criterion) {
    assert!(ORM.len() > 1900, "ORM query is {} bytes", ORM.len());

    // Plain DML without qualified names, a different literal every time:
    // the lexical precheck clears it before the cache (the relay's path).
    let texts: Vec<String> = (0..4096)
        .map(|i| format!("SELECT abalance FROM pgbench_accounts WHERE aid = {i};"))
        .collect();
    let firewall = Firewall::new(policy(), 10_000);
    let mut i = 0;
    c.bench_function("precheck/pgbench_select", |b| {
        b.iter(|| {
            i = (i + 1) % texts.len();
            firewall.check(black_box(&texts[i]), black_box(TENANT))
        })
    });

    // Cache hit: a text the precheck can't clear (it names a schema) is
    // looked up by text, then decided per tenant.
    firewall.check(QUALIFIED, TENANT).unwrap();
    c.bench_function("cached_verdict/qualified_select", |b| {
        b.iter(|| firewall.check(black_box(QUALIFIED), black_box(TENANT)))
    });

    // No precheck, no cache: the full parse + walk of every text.
    let uncached = Firewall::new(policy(), 0).without_precheck();
    c.bench_function("uncached/pgbench_select", |b| {
        b.iter(|| {
            i = (i + 1) % texts.len();
            uncached.check(black_box(&texts[i]), black_box(TENANT))
        })
    });

    c.bench_function("uncached/orm_2kb", |b| {
        b.iter(|| uncached.check(black_box(ORM), black_box(TENANT)))
    });
    firewall.check(ORM, TENANT).unwrap();
    c.bench_function("cached_verdict/orm_2kb", |b| {
        b.iter(|| firewall.check(black_box(ORM), black_box(TENANT)))
    });
}

criterion_group!(firewall, benches);
criterion_main!(firewall);
