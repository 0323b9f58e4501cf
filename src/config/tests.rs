use super::*;
use std::collections::HashMap;

fn load(file: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, file).unwrap();
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load_with(Some(&path), |k| env.get(k).cloned())
}

const URL: &str = "[backend]\nurl = \"postgres://admin@127.0.0.1:5432/app\"\n";

#[test]
fn env_overrides_file() {
    let c = load(
        &format!("{URL}[pool]\npool_size = 3\n"),
        &[
            ("PGTENANT_POOL_SIZE", "7"),
            ("PGTENANT_LISTEN_ADDR", "0.0.0.0:7000"),
        ],
    )
    .unwrap();
    assert_eq!(c.pool.pool_size, 7);
    assert_eq!(c.listen_addr.port(), 7000);
}

#[test]
fn errors_name_the_key() {
    let e = load(&format!("{URL}[pool]\npool_size = \"many\"\n"), &[]).unwrap_err();
    assert!(e.to_string().contains("pool.pool_size"), "{e}");
    let e = load(&format!("{URL}[pool]\npool_sise = 1\n"), &[]).unwrap_err();
    assert!(e.to_string().contains("pool_sise"), "{e}");
    let e = load(URL, &[("PGTENANT_TLS_MODE", "require")]).unwrap_err();
    assert!(e.to_string().contains("tls.mode"), "{e}");
    let e = load(URL, &[("PGTENANT_TLS_MODE", "sometimes")]).unwrap_err();
    assert!(e.to_string().contains("tls.mode"), "{e}");
    let e = load("", &[]).unwrap_err();
    assert!(e.to_string().contains("backend.url"), "{e}");
    let e = load(URL, &[("PGTENANT_POOL_SIZE", "x")]).unwrap_err();
    assert!(e.to_string().contains("pool.pool_size"), "{e}");
}

#[test]
fn errors_never_quote_a_secret() {
    for file in [
        "[backend]\nsecret = \"s3cr3t\\qvalue\"\n",
        "[admin]\npassword = \"s3cr3t\n",
        "[backend]\nurl = \"postgres://u:s3cr3t@h/db\\x\"\n",
    ] {
        let msg = load(file, &[]).unwrap_err().to_string();
        assert!(!msg.contains("s3cr3t"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }
    let msg = load(&format!("{URL}[admin]\npassword = 1234567\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(!msg.contains("1234567"), "{msg}");
    assert!(msg.contains("admin.password"), "{msg}");
    let msg = load("backend = \"postgres://u:s3cr3t@h/db\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        !msg.contains("s3cr3t") && msg.contains("must be a table"),
        "{msg}"
    );
    // A secret in the wrong setting, from the file or the environment.
    for value in ["postgres://u:s3cr3t@h", "s3cr3t, expected one of"] {
        let msg = load(&format!("{URL}[tls]\nmode = \"{value}\"\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(!msg.contains("s3cr3t") && msg.contains("tls.mode"), "{msg}");
        assert!(msg.contains("expected one of"), "{msg}");
    }
    for var in [
        "PGTENANT_POOL_SIZE",
        "PGTENANT_AUTH_ALLOW_PLAINTEXT_PASSWORD",
    ] {
        let msg = load(URL, &[(var, "s3cr3t")]).unwrap_err().to_string();
        assert!(!msg.contains("s3cr3t") && msg.contains(var), "{msg}");
    }
    // A misspelt key under a secret's table is still named.
    let msg = load(&format!("{URL}urll = 1\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("urll"), "{msg}");
    // Other lines keep the parser's reason.
    let msg = load("[pool]\npool_size = = 3\n", &[])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("line 2"), "{msg}");
    assert!(
        msg.len() > "config file x is not valid TOML: line 2, column 1: ".len(),
        "{msg}"
    );
}

#[test]
fn zero_timeouts_that_would_refuse_everything_are_refused() {
    for (var, key) in [
        ("PGTENANT_LOGIN_TIMEOUT_MS", "login_timeout_ms"),
        (
            "PGTENANT_BACKEND_CONNECT_TIMEOUT_MS",
            "backend.connect_timeout_ms",
        ),
        (
            "PGTENANT_QUERY_WAIT_TIMEOUT_MS",
            "pool.query_wait_timeout_ms",
        ),
    ] {
        let msg = load(URL, &[(var, "0")]).unwrap_err().to_string();
        assert!(msg.contains(key), "{msg}");
    }
    // As PgBouncer's server_idle_timeout: 0 is no limit.
    for var in [
        "PGTENANT_SERVER_IDLE_TIMEOUT_MS",
        "PGTENANT_SERVER_LIFETIME_MS",
    ] {
        assert!(load(URL, &[(var, "0")]).is_ok(), "{var}");
    }
}

#[test]
fn a_backend_url_must_be_one_tcp_host_without_sslmode() {
    for url in [
        "postgres://u@%2Frun%2Fpostgresql/db",
        "postgres://u@a:5432,b:5432/db",
        "postgres://u@127.0.0.1/db?sslmode=require",
        "postgres://u@127.0.0.1/db?sslmode=disable",
        "postgres://u@127.0.0.1/db?hostaddr=10.0.0.1",
        "postgres://u@127.0.0.1/db?channel_binding=require",
    ] {
        let msg = load("", &[("PGTENANT_BACKEND_URL", url)])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("backend.url"), "{url}: {msg}");
    }
    let ok = "postgres://u@127.0.0.1:5433/db?sslmode=prefer";
    assert!(load("", &[("PGTENANT_BACKEND_URL", ok)]).is_ok());
}

#[test]
fn a_backend_url_with_its_own_connect_timeout_points_to_ours() {
    let url = "postgres://u:p@127.0.0.1:5432/db?connect_timeout=10";
    let e = load("", &[("PGTENANT_BACKEND_URL", url)]).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("backend.connect_timeout_ms"), "{msg}");
    assert!(
        !msg.contains("u:p@"),
        "the URL (a password) is not echoed: {msg}"
    );
}

#[test]
fn every_numeric_and_boolean_env_name_maps_to_a_real_key() {
    // deny_unknown_fields turns a mistyped path in ENV into an error here.
    for &(var, key, kind) in ENV {
        let value = match kind {
            // min_idle is bounded by pool_size (20 by default).
            Kind::Int if key.ends_with("min_idle") => "3",
            Kind::Int => "4242",
            Kind::Float => "4.5",
            Kind::Bool => "true",
            Kind::Str | Kind::List => continue,
        };
        load(URL, &[(var, value)]).unwrap_or_else(|e| panic!("{var} -> {key}: {e}"));
    }
}

#[test]
fn tenant_overrides_fall_back_to_pool_defaults() {
    let c = load(
        &format!("{URL}[pool]\npool_size = 7\n[pool.tenants.acme]\nmode = \"transaction\"\nmin_idle = 2\n"),
        &[],
    )
    .unwrap();
    let acme = c.pool.for_tenant("acme");
    assert_eq!(
        (acme.mode, acme.pool_size, acme.min_idle),
        (PoolMode::Transaction, 7, 2)
    );
    assert_eq!(c.pool.for_tenant("globex").mode, PoolMode::Session);
    let e = load(&format!("{URL}[pool.tenants.acme]\nmin_idle = 50\n"), &[]).unwrap_err();
    assert!(e.to_string().contains("pool.tenants.acme.min_idle"), "{e}");
}

#[test]
fn metrics_stay_on_loopback_unless_public() {
    let e = load(URL, &[("PGTENANT_METRICS_ADDR", "0.0.0.0:9187")]).unwrap_err();
    assert!(e.to_string().contains("admin.metrics_addr"), "{e}");
    let c = load(
        URL,
        &[
            ("PGTENANT_METRICS_ADDR", "0.0.0.0:9187"),
            ("PGTENANT_METRICS_PUBLIC", "true"),
            ("PGTENANT_AUTH_FAILED_LOGIN_RATE_PER_SEC", "0.5"),
        ],
    )
    .unwrap();
    assert_eq!(c.admin.metrics_addr.unwrap().port(), 9187);
    assert_eq!(c.auth.failed_login_rate_per_sec, 0.5);
    let e = load(URL, &[("PGTENANT_ADMIN_PASSWORD", "short")]).unwrap_err();
    assert!(e.to_string().contains("admin.password"), "{e}");
    assert!(!e.to_string().contains("short"), "{e}");
}

#[test]
fn secrets_are_redacted_in_debug() {
    let c = load(
        "[backend]\nurl = \"postgres://admin:hunter2@h/db\"\nsecret = \"0123456789abcdefXYZ\"\n",
        &[],
    )
    .unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("hunter2") && !dbg.contains("XYZ"), "{dbg}");
}

/// The example file and the README's table are the reference: every
/// setting that has an environment variable appears in both, by key and
/// by variable.
#[test]
fn every_setting_is_documented() {
    let root = env!("CARGO_MANIFEST_DIR");
    let example = std::fs::read_to_string(format!("{root}/config/pgtenant.toml")).unwrap();
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    for (var, key, _) in ENV {
        let name = key.rsplit('.').next().unwrap();
        let in_example = example.lines().any(|l| {
            let l = l.trim_start_matches(['#', ' ']);
            l.starts_with(name) && l[name.len()..].trim_start().starts_with('=')
        });
        assert!(in_example, "{key} is not in config/pgtenant.toml");
        assert!(
            example.contains(var),
            "{var} is not in config/pgtenant.toml"
        );
        assert!(
            readme.contains(&format!("`{key}`")),
            "{key} is not in README.md"
        );
        assert!(readme.contains(var), "{var} is not in README.md");
    }
}

#[test]
fn counts_past_any_deployment_are_refused_before_they_reach_a_semaphore() {
    for (file, key) in [
        (
            format!("{URL}[pool]\nmax_backend_connections = 9223372036854775807\n"),
            "pool.max_backend_connections",
        ),
        (
            format!("{URL}[pool]\nmax_client_connections_per_tenant = 2000000\n"),
            "pool.max_client_connections_per_tenant",
        ),
        (
            format!("{URL}[pool.tenants.acme]\nmax_client_connections = 2000000\n"),
            "pool.tenants.acme.max_client_connections",
        ),
        // Caches: sized up front by the LRU crate (the firewall's), or once
        // per server connection.
        (
            format!("{URL}[firewall]\ncache_capacity = 1000000000000\n"),
            "firewall.cache_capacity",
        ),
        (
            format!("{URL}[pool]\nprepared_statements_per_connection = 1000000000000\n"),
            "pool.prepared_statements_per_connection",
        ),
    ] {
        let e = load(&file, &[]).unwrap_err().to_string();
        assert!(e.contains(key) && e.contains("at most"), "{e}");
    }
    let e = load(
        &format!("{URL}[pool]\nprepared_statements_per_connection = 0\n"),
        &[],
    );
    let e = e.unwrap_err().to_string();
    assert!(
        e.contains("prepared_statements_per_connection") && e.contains("at least 1"),
        "{e}"
    );
    assert!(load(&format!("max_client_connections = 1000000\n{URL}"), &[]).is_ok());
}

/// The example file spells out the defaults and nothing else (the Docker
/// image runs without it, so that a forgotten PGTENANT_BACKEND_URL says
/// "required"): loaded, it is no file at all plus its backend URL.
#[test]
fn example_config_is_valid_and_holds_only_the_defaults() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/pgtenant.toml"))
            .unwrap();
    let example = load(&text, &[]).unwrap();
    assert_eq!(example.listen_addr.port(), 6432);
    let url = example.backend.url.0.clone();
    let bare = load("", &[("PGTENANT_BACKEND_URL", &url)]).unwrap();
    assert_eq!(format!("{example:?}"), format!("{bare:?}"));
    let err = load("", &[]).unwrap_err().to_string();
    assert!(err.contains("required"), "{err}");
}
