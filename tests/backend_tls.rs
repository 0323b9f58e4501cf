//! TLS between pgtenant and PostgreSQL (`backend.tls`), against a server
//! with a certificate from a test CA (its own test binary: it turns SSL on
//! for its cluster).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use support::{registry, sqlstate};

fn write_owned_by_server(path: &Path, contents: &str, mode: u32) {
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    // As root, the server runs as `postgres` and must own its key file.
    let id = |flag: &str| {
        let out = std::process::Command::new("id")
            .args([flag, "postgres"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .ok()
    };
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .unwrap()
        .stdout
        == b"0\n";
    if root {
        std::os::unix::fs::chown(path, id("-u"), id("-g")).unwrap();
    }
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// Turns SSL on for this binary's cluster, once, with a certificate for
/// 127.0.0.1 and localhost signed by a test CA; the CA's PEM file.
fn server_ssl() -> &'static Path {
    static CA: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, pem) = CA.get_or_init(|| {
        let cluster = support::cluster();
        let good_ca = ca("pgtenant test CA");
        let server_key = KeyPair::generate().unwrap();
        let server_cert = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap()
            .signed_by(&server_key, &good_ca)
            .unwrap();
        let (crt, pem_key) = (
            cluster.dir.join("server.crt"),
            cluster.dir.join("server.key"),
        );
        write_owned_by_server(&crt, &server_cert.pem(), 0o644);
        write_owned_by_server(&pem_key, &server_key.serialize_pem(), 0o600);
        // ALTER SYSTEM refuses multi-statement strings: one at a time.
        for sql in [
            "ALTER SYSTEM SET ssl = on".to_owned(),
            format!("ALTER SYSTEM SET ssl_cert_file = '{}'", crt.display()),
            format!("ALTER SYSTEM SET ssl_key_file = '{}'", pem_key.display()),
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            cluster.psql("postgres", &sql);
        }
        // The reload is asynchronous: wait until new sessions see SSL on.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while cluster.psql("postgres", "SHOW ssl").trim() != "on" {
            assert!(std::time::Instant::now() < deadline, "SSL never came on");
            std::thread::sleep(Duration::from_millis(20));
        }
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, good_ca.pem()).unwrap();
        (dir, pem)
    });
    pem
}

#[tokio::test]
async fn verify_full_against_the_right_ca_and_a_clear_error_against_a_wrong_one() {
    let cluster = support::cluster();
    let reg = registry();
    let t = reg.create_tenant("btls");
    let key = reg.issue_key(&t);
    let good = server_ssl();
    let su = cluster.connect("postgres").await;

    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.pem");
    std::fs::write(&wrong, ca("some other CA").pem()).unwrap();

    // verify-full with the right CA: logins work and the backend session is encrypted.
    let proxy = reg.proxy(&[
        ("PGTENANT_BACKEND_TLS", "verify-full"),
        ("PGTENANT_BACKEND_TLS_CA", good.to_str().unwrap()),
    ]);
    let c = proxy.client_ok(&key).await;
    assert!(
        encrypted(&su, &c).await,
        "the backend session is not encrypted"
    );

    // The wrong CA: refused, with a message that says why.
    let proxy = reg.proxy(&[
        ("PGTENANT_BACKEND_TLS", "verify-full"),
        ("PGTENANT_BACKEND_TLS_CA", wrong.to_str().unwrap()),
    ]);
    // The registry lookup is the first backend connection and fails its
    // handshake: the client is refused, the operator's log says why.
    let e = proxy.client(&key).await.unwrap_err();
    assert_eq!(sqlstate(&e), "57P03", "{e:?}");
    let log = proxy.log();
    assert!(
        log.contains("invalid peer certificate") && log.contains("UnknownIssuer"),
        "{log}"
    );

    // require: encrypted without verification, like libpq.
    let proxy = reg.proxy(&[("PGTENANT_BACKEND_TLS", "require")]);
    let c = proxy.client_ok(&key).await;
    assert!(encrypted(&su, &c).await);
}

/// Is the backend session serving `c` encrypted? (Asked as superuser: the
/// firewall keeps tenants out of pg_stat_ssl.)
async fn encrypted(su: &tokio_postgres::Client, c: &tokio_postgres::Client) -> bool {
    let pid: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    su.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = $1", &[&pid])
        .await
        .unwrap()
        .get(0)
}

/// A cancel request carries the backend's (pid, secret): whoever reads it
/// can cancel every later query on that connection. With backend TLS on,
/// it goes encrypted like the connections themselves. A tap between the
/// proxy and PostgreSQL sees how every connection starts.
#[tokio::test]
async fn cancel_requests_reach_the_server_encrypted() {
    let cluster = support::cluster();
    let reg = registry();
    server_ssl();
    let tap = support::tap::Tap::start(cluster.port, Duration::ZERO).await;
    let url = tap.url(&cluster.url(&reg.db), cluster.port);
    let t = reg.create_tenant("btlscancel");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[
        ("PGTENANT_BACKEND_URL", url.as_str()),
        ("PGTENANT_BACKEND_TLS", "require"),
    ]);
    let c = proxy.client_ok(&key).await;
    let token = c.cancel_token();
    let sleeping = tokio::spawn(async move { c.simple_query("SELECT pg_sleep(30)").await });
    let su = cluster.connect("postgres").await;
    support::until_running(&su, "SELECT pg_sleep(30)").await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), sleeping)
        .await
        .expect("the cancel did not reach the query")
        .unwrap()
        .unwrap_err();
    assert_eq!(sqlstate(&e), "57014", "{e:?}");
    const SSL_REQUEST: u32 = 80877103;
    const CANCEL_REQUEST: u32 = 80877102;
    let words: Vec<u32> = tap
        .events()
        .into_iter()
        .filter_map(|e| match e {
            support::tap::Event::Opened { code, .. } => Some(code),
            _ => None,
        })
        .collect();
    assert!(
        !words.contains(&CANCEL_REQUEST),
        "a cancel request went in the clear: {words:?}"
    );
    assert!(
        words.iter().all(|w| *w == SSL_REQUEST),
        "every connection starts with SSLRequest: {words:?}"
    );
}
