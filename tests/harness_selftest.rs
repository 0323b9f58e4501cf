//! Checks the integration-test harness itself (tests/support).

mod support;

use tokio_postgres::error::SqlState;

#[tokio::test]
async fn superuser_connects_over_tcp_with_password() {
    let client = support::cluster().connect("postgres").await;
    let row = client.query_one("SELECT 1", &[]).await.expect("SELECT 1");
    assert_eq!(row.get::<_, i32>(0), 1);
}

#[tokio::test]
async fn wrong_password_is_refused() {
    let cluster = support::cluster();
    let url = format!(
        "postgres://postgres:wrong@127.0.0.1:{}/postgres",
        cluster.port
    );
    let err = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok(_) => panic!("connected with a wrong password: authentication is not enforced"),
        Err(err) => err,
    };
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err}");
}

#[tokio::test]
async fn server_runs_with_test_settings() {
    let client = support::cluster().connect("postgres").await;
    for (name, expected) in [
        ("fsync", "off"),
        ("synchronous_commit", "off"),
        ("max_connections", "300"),
        ("listen_addresses", "127.0.0.1"),
        ("password_encryption", "scram-sha-256"),
    ] {
        let row = client
            .query_one("SELECT current_setting($1)", &[&name])
            .await
            .expect("current_setting");
        assert_eq!(row.get::<_, String>(0), expected, "setting {name}");
    }
}

#[test]
fn psql_runs_sql_and_returns_stdout() {
    let cluster = support::cluster();
    assert_eq!(cluster.psql("postgres", "SELECT 40 + 2"), "42\n");
    assert!(
        cluster
            .psql("postgres", "SELECT version()")
            .starts_with("PostgreSQL ")
    );
}

#[test]
#[should_panic(expected = "psql -d postgres")]
fn psql_panics_on_sql_error() {
    support::cluster().psql("postgres", "SELECT * FROM no_such_table");
}

#[test]
fn server_log_is_readable() {
    // Empty is fine (log_min_messages = warning); the file must exist though.
    let tail = support::cluster().log_tail();
    assert!(!tail.starts_with("(cannot read"), "{tail}");
}

#[test]
fn pgtenant_binary_runs() {
    let output = support::pgtenant_cli(&["--help"], &[]);
    assert!(output.status.success(), "{output:?}");
}
