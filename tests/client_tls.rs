//! Clients over TLS, and clients that come when the proxy is full: the
//! refusal reaches them in the protocol they asked for (after the TLS
//! handshake, as PostgreSQL sends it), and a cancel request still reaches
//! its query.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres_protocol::message::frontend;
use support::raw::{read_msg, send};
use support::{Proxy, registry, sqlstate};
use tokio::net::TcpStream;

fn psql_through(proxy: &Proxy, key: &str, sslmode: &str, sql: &str) -> std::process::Output {
    psql_commands(proxy, key, sslmode, &[sql])
}

/// psql with one `-c` per command: each its own Query message.
fn psql_commands(proxy: &Proxy, key: &str, sslmode: &str, sqls: &[&str]) -> std::process::Output {
    let psql = support::cluster().bindir.join("psql");
    let psql = if psql.exists() { psql } else { "psql".into() };
    std::process::Command::new(psql)
        .arg(format!(
            "host=127.0.0.1 port={} user=app dbname=app sslmode={sslmode}",
            proxy.addr.port()
        ))
        .arg("-XAtq")
        .args(sqls.iter().flat_map(|sql| ["-c", sql]))
        .env("PGPASSWORD", key)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("run psql")
}

#[tokio::test]
async fn tls_required_works_with_a_self_signed_cert_and_refuses_plaintext() {
    let reg = registry();
    let t = reg.create_tenant("tls");
    let key = reg.issue_key(&t);
    let (proxy, _certs) = registry().tls_proxy(&[]);

    let out = psql_through(&proxy, &key, "require", "SELECT current_user");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("tenant_{t}")
    );

    let out = psql_through(&proxy, &key, "disable", "SELECT 1");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only TLS connections"), "{err}");
}

/// Transaction mode over TLS: the connection goes back to the pool after
/// each reply, a short one written first (in the same pass) and a long one
/// (past 16 KiB) left in the session's buffer to follow; every byte of
/// both reaches the client, in order.
#[tokio::test]
async fn tls_clients_in_transaction_mode_get_short_and_long_replies_whole() {
    let reg = registry();
    let t = reg.create_tenant("tlstx");
    let key = reg.issue_key(&t);
    let (proxy, _certs) = registry().tls_proxy(&[("PGTENANT_POOL_MODE", "transaction")]);

    let out = psql_commands(
        &proxy,
        &key,
        "require",
        &[
            "SELECT 1",
            "SELECT repeat('ab', 60000)",
            "SELECT 2",
            "SELECT string_agg(g::text, ',') FROM generate_series(1, 20000) g",
            "SELECT 3",
        ],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let series = (1..=20000)
        .map(|g| g.to_string())
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(lines.len(), 5, "{stdout:.200}");
    assert_eq!(lines[0], "1");
    assert_eq!(lines[1], "ab".repeat(60000));
    assert_eq!(lines[2], "2");
    assert_eq!(lines[3], series);
    assert_eq!(lines[4], "3");
}

/// With every `max_client_connections` slot taken, a new client still has
/// its startup read: a cancel request reaches the running query, the admin
/// console answers, a login gets 53300, and a TLS client gets it after the
/// handshake, where libpq reads it (an error sent in place of the answer
/// to its SSLRequest is refused as a protocol violation).
#[tokio::test]
async fn a_full_proxy_forwards_cancels_serves_the_console_and_refuses_with_53300() {
    let reg = registry();
    let t = reg.create_tenant("full");
    let key = reg.issue_key(&t);
    let (proxy, _certs) = registry().tls_proxy(&[
        ("PGTENANT_TLS_MODE", "allow"),
        ("PGTENANT_MAX_CLIENT_CONNECTIONS", "1"),
        ("PGTENANT_ADMIN_PASSWORD", "console-password"),
    ]);
    // The harness's readiness probe may hold the one slot a moment longer.
    let deadline = Instant::now() + Duration::from_secs(5);
    let busy = loop {
        match proxy.client(&key).await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(sqlstate(&e), "53300", "{e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    let cancel = busy.cancel_token();
    let running = tokio::spawn(async move { busy.simple_query("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let e = proxy.client(&key).await.expect_err("the proxy is full");
    assert_eq!(sqlstate(&e), "53300", "{e:?}");
    let out = psql_through(&proxy, &key, "require", "SELECT 1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("too many client connections"), "{err}");
    let console = proxy
        .client_db("console-password", "pgtenant")
        .await
        .expect("the admin console is reachable when the proxy is full");
    console.simple_query("SHOW POOLS").await.unwrap();
    drop(console);

    cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the cancel reached the query")
        .unwrap()
        .expect_err("the query was cancelled");
    assert_eq!(sqlstate(&e), "57014", "{e:?}");
}

/// A TLS connection that starts with its ClientHello, as libpq 17 makes
/// with `sslnegotiation=direct`; `alpn`: whether it names "postgresql".
async fn direct_tls(
    proxy: &Proxy,
    certs: &std::path::Path,
    alpn: bool,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let pem = std::fs::read(certs.join("cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if alpn {
        cfg.alpn_protocols = vec![b"postgresql".to_vec()];
    }
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// PostgreSQL 17's direct TLS: a client that sends its ClientHello first
/// and names "postgresql" in ALPN logs in and runs a query; one that does
/// not name it is refused (as PostgreSQL refuses it) over TLS.
#[tokio::test]
async fn direct_tls_with_alpn_logs_in_and_without_it_is_refused() {
    let reg = registry();
    let t = reg.create_tenant("direct");
    let key = reg.issue_key(&t);
    let (proxy, certs) = registry().tls_proxy(&[]);

    let mut s = direct_tls(&proxy, certs.path(), true).await;
    send(&mut s, |b| {
        frontend::startup_message([("user", "app"), ("database", "app")], b).unwrap()
    })
    .await;
    let (tag, body) = read_msg(&mut s).await.expect("a password request");
    assert_eq!(
        (tag, &body[..]),
        (b'R', &3i32.to_be_bytes()[..]),
        "{body:?}"
    );
    send(&mut s, |b| {
        frontend::password_message(key.as_bytes(), b).unwrap()
    })
    .await;
    loop {
        let (tag, body) = read_msg(&mut s).await.expect("login reply");
        assert_ne!(tag, b'E', "{}", String::from_utf8_lossy(&body));
        if tag == b'Z' {
            break;
        }
    }
    send(&mut s, |b| {
        frontend::query("SELECT current_user", b).unwrap()
    })
    .await;
    let mut rows = Vec::new();
    loop {
        let (tag, body) = read_msg(&mut s).await.expect("query reply");
        if tag == b'D' {
            rows.push(String::from_utf8_lossy(&body[6..]).into_owned());
        }
        if tag == b'Z' {
            break;
        }
    }
    assert_eq!(rows, vec![format!("tenant_{t}")]);

    let mut s = direct_tls(&proxy, certs.path(), false).await;
    let (tag, body) = read_msg(&mut s).await.expect("a refusal");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(tag, b'E', "{text}");
    assert!(text.contains("ALPN"), "{text}");
}
