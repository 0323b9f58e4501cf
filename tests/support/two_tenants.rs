//! Two tenants with a table each, for the firewall's tests: what one may
//! not reach of the other's.

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use super::registry;

pub struct Two {
    pub a: String,
    pub b: String,
    pub key_a: String,
    pub marker_b: String,
}

/// Tenants A and B, each with a table `t` holding a marker row.
pub async fn two_tenants() -> Two {
    let reg = registry();
    let (a, b) = (reg.create_tenant("fwa"), reg.create_tenant("fwb"));
    let (key_a, key_b) = (reg.issue_key(&a), reg.issue_key(&b));
    let marker_b = format!("marker-b-{b}");
    let proxy = reg.proxy(&[("PGTENANT_FIREWALL_MODE", "off")]);
    for (key, marker) in [
        (&key_a, format!("marker-a-{a}")),
        (&key_b, marker_b.clone()),
    ] {
        let c = proxy.client_ok(key).await;
        c.batch_execute(&format!(
            "CREATE TABLE t (secret text); INSERT INTO t VALUES ('{marker}');
             CREATE SEQUENCE s; CREATE TYPE mytype AS (x int);"
        ))
        .await
        .unwrap();
    }
    Two {
        a: format!("tenant_{a}"),
        b: format!("tenant_{b}"),
        key_a,
        marker_b,
    }
}

/// A's own role, straight to PostgreSQL: the reference behaviour.
pub async fn direct_as(role: &str) -> Client {
    let reg = registry();
    let secret = &reg
        .env
        .iter()
        .find(|(k, _)| k == "PGTENANT_BACKEND_SECRET")
        .unwrap()
        .1;
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(super::cluster().port)
        .user(role)
        .password(pgtenant::registry::admin::role_password(secret, role))
        .dbname(&reg.db);
    let (c, conn) = cfg
        .connect(NoTls)
        .await
        .expect("direct login as the tenant role");
    tokio::spawn(conn);
    c
}

pub fn rows(msgs: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

/// `{A}`, `{B}` and `{BU}` (B upper-case) in `sql` replaced by the tenants' schemas.
pub fn fill(sql: &str, two: &Two) -> String {
    sql.replace("{A}", &two.a)
        .replace("{BU}", &two.b.to_uppercase())
        .replace("{B}", &two.b)
}
