//! The control plane as a role that is not superuser, as managed
//! PostgreSQL gives: it manages tenants once it is a member of their
//! roles, which `tenant create` grants it, and `init --grant-roles-to`
//! grants it for roles made by another (a superuser, before). And two
//! registries of one cluster, whose roles share one namespace.

mod support;

use support::lifecycle::*;
use support::{Proxy, registry};

/// The shared registry exists (so `tenant_default` is taken cluster-wide).
fn registry_created(reg: &support::Registry) {
    assert_eq!(reg.db, "pgtenant_test");
}

/// A CLI's environment.
type Env = Vec<(String, String)>;

/// A role that may create roles and owns its registry's database, and
/// the environment of a CLI run as it, and as the superuser.
fn control_plane(name: &str) -> (Env, Env) {
    let cluster = support::cluster();
    cluster.psql(
        "postgres",
        &format!("CREATE ROLE {name}_admin LOGIN CREATEROLE PASSWORD '{name}-admin-password'"),
    );
    cluster.psql(
        "postgres",
        &format!("CREATE DATABASE {name}_registry OWNER {name}_admin"),
    );
    let secret = (
        "PGTENANT_BACKEND_SECRET".to_owned(),
        format!("0123456789abcdef-{name}"),
    );
    let own = vec![
        (
            "PGTENANT_BACKEND_URL".to_owned(),
            format!(
                "postgres://{name}_admin:{name}-admin-password@127.0.0.1:{}/{name}_registry",
                cluster.port
            ),
        ),
        secret.clone(),
    ];
    let su = vec![
        (
            "PGTENANT_BACKEND_URL".to_owned(),
            cluster.url(&format!("{name}_registry")),
        ),
        secret,
    ];
    (own, su)
}

/// Managed PostgreSQL gives no superuser: a control-plane role with
/// CREATEROLE that owns its database runs the registry, tenants, their
/// sessions and their removal.
#[tokio::test]
async fn a_control_plane_role_that_is_not_superuser_manages_tenants() {
    registry_created(registry());
    let (env_owned, _) = control_plane("cp");
    let env = env_of(&env_owned);
    ok(&env, &["init", "--role-prefix", "cp_"]);
    ok(&env, &["tenant", "create", "acme"]);
    let (_, key) = issue(&env, "acme", &[]);
    let mut penv = env.clone();
    penv.push(("PGTENANT_REGISTRY_REFRESH_INTERVAL_MS", LONG));
    let p = Proxy::start(&penv);
    let s = open_ok(&p, &key).await;
    s.client
        .batch_execute("CREATE TABLE notes (x int); INSERT INTO notes VALUES (1)")
        .await
        .unwrap();
    let who: String = s
        .client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "cp_tenant_acme");
    drop(s);
    ok(&env, &["tenant", "drop", "acme", "--yes"]);
    let su = superuser("cp_registry").await;
    let left: i64 = su
        .query_one(
            "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_acme')
                  + (SELECT count(*) FROM pg_roles WHERE rolname = 'cp_tenant_acme')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the dropped tenant left its schema or role");
}

/// Tenant roles a superuser made (as `tenant create` did before it
/// granted them to the role running it) are not the control plane's: it
/// can't drop them until a superuser's `init --grant-roles-to` makes it a
/// member of each.
#[tokio::test]
async fn init_grants_tenant_roles_another_role_made_to_the_control_plane() {
    registry_created(registry());
    let (own, su) = control_plane("cpg");
    let (own, su) = (env_of(&own), env_of(&su));
    ok(&own, &["init", "--role-prefix", "cpg_"]);
    ok(&su, &["tenant", "create", "made_by_su"]);
    fails(&own, &["tenant", "drop", "made_by_su", "--yes"], "42501");
    let out = ok(&su, &["init", "--grant-roles-to", "cpg_admin"]);
    assert!(out.contains("2 tenant roles granted to cpg_admin"), "{out}");
    ok(&own, &["tenant", "drop", "made_by_su", "--yes"]);
    fails(
        &su,
        &["init", "--grant-roles-to", "no_such_role"],
        "no_such_role",
    );
}

/// Another registry of the cluster (or anyone) makes the tenant's role
/// while `tenant create` runs, after it looked: the same message as when
/// the role was there before, and nothing made.
#[tokio::test]
async fn a_role_made_meanwhile_elsewhere_gets_the_clis_message() {
    let env = own_registry("race_registry", "race_");
    let env = env_of(&env);
    // Made, not yet committed: the CLI's look finds nothing, and its
    // CREATE ROLE waits on this transaction.
    let other = superuser("postgres").await;
    other
        .batch_execute("BEGIN; CREATE ROLE race_tenant_acme")
        .await
        .unwrap();
    let cli = {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        std::thread::spawn(move || {
            fails(
                &env_of(&env),
                &["tenant", "create", "acme"],
                "already exists",
            )
        })
    };
    // (Looked at from outside the transaction: inside, the activity seen
    // is a snapshot.)
    let watch = superuser("postgres").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting: i64 = watch
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                  WHERE wait_event_type = 'Lock' AND query LIKE '%CREATE ROLE%race_tenant_acme%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the CLI never got to CREATE ROLE"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    other.batch_execute("COMMIT").await.unwrap();
    let line = cli.join().unwrap();
    assert!(
        line.contains("role \"race_tenant_acme\" already exists"),
        "{line}"
    );
    let made: i64 = superuser("race_registry")
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM pgtenant.tenants WHERE name = 'acme') \
                  + (SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_acme')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(made, 0, "a failed create left its tenant or schema");
    other
        .batch_execute("DROP ROLE race_tenant_acme")
        .await
        .unwrap();
}
