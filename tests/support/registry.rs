//! The pgtenant registry database of this test binary, driven through the CLI.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use super::Proxy;

/// Database holding the registry (and the tenant schemas).
const REGISTRY_DB: &str = "pgtenant_test";

/// PostgreSQL's identifier limit (NAMEDATALEN - 1), which the schema
/// `tenant_<name>` must fit in.
const MAX_IDENTIFIER_LEN: usize = 63;

pub struct Registry {
    pub db: String,
    /// `PGTENANT_BACKEND_URL` and `PGTENANT_BACKEND_SECRET` for every CLI call
    /// and proxy of this test binary.
    pub env: Vec<(String, String)>,
}

static REGISTRY: OnceLock<Result<Registry, String>> = OnceLock::new();

/// The registry of this test binary: created on first use in the test cluster
/// (starting the cluster if needed) and initialised with `pgtenant init`.
pub fn registry() -> &'static Registry {
    super::init_once(&REGISTRY, "the test registry", Registry::create)
}

impl Registry {
    /// Creates a tenant with a unique name `<prefix>_<counter><4 hex>` and returns
    /// the name; its schema is `tenant_<name>`. The random part keeps names unique
    /// across test binaries sharing a cluster, the counter within one binary.
    pub fn create_tenant(&self, prefix: &str) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(1);
        assert!(
            is_identifier(prefix),
            "tenant prefix {prefix:?} must match [a-z][a-z0-9_]*"
        );
        let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}_{counter}{}", super::random_hex(4));
        assert!(
            "tenant_".len() + name.len() <= MAX_IDENTIFIER_LEN,
            "tenant name {name:?} is too long for a schema name; use a shorter prefix"
        );
        self.cli(&["tenant", "create", &name]);
        name
    }

    /// Issues a key for `tenant` and returns it.
    pub fn issue_key(&self, tenant: &str) -> String {
        let key = self
            .cli(&["key", "issue", "--tenant", tenant])
            .trim()
            .to_owned();
        assert!(
            !key.is_empty(),
            "`pgtenant key issue --tenant {tenant}` printed no key"
        );
        key
    }

    /// Starts a proxy backed by this registry; `extra_env` is applied last.
    pub fn proxy(&self, extra_env: &[(&str, &str)]) -> Proxy {
        let mut env = self.env_refs();
        env.extend_from_slice(extra_env);
        Proxy::start(&env)
    }

    /// A proxy that requires TLS, with a fresh self-signed certificate (kept
    /// in the returned directory); `extra_env` is applied last.
    pub fn tls_proxy(&self, extra_env: &[(&str, &str)]) -> (Proxy, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".into(), "127.0.0.1".into()];
        let ck = rcgen::generate_simple_self_signed(names).unwrap();
        let (cert, pkey) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&pkey, ck.signing_key.serialize_pem()).unwrap();
        let mut env = vec![
            ("PGTENANT_TLS_MODE", "require"),
            ("PGTENANT_TLS_CERT", cert.to_str().unwrap()),
            ("PGTENANT_TLS_KEY", pkey.to_str().unwrap()),
        ];
        env.extend_from_slice(extra_env);
        (self.proxy(&env), dir)
    }

    /// Runs a pgtenant CLI command against this registry; panics with its output
    /// on failure, returns its stdout otherwise.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = super::pgtenant_cli(args, &self.env_refs());
        if !output.status.success() {
            panic!(
                "{}",
                super::describe_output(&format!("pgtenant {}", args.join(" ")), &output)
            );
        }
        String::from_utf8(output.stdout).expect("pgtenant prints UTF-8 on stdout")
    }

    pub fn env_refs(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect()
    }

    fn create() -> Registry {
        let cluster = super::cluster();
        cluster.psql("postgres", &format!("CREATE DATABASE {REGISTRY_DB}"));
        let registry = Registry {
            db: REGISTRY_DB.to_owned(),
            env: vec![
                ("PGTENANT_BACKEND_URL".to_owned(), cluster.url(REGISTRY_DB)),
                // Any string of >= 16 chars; random per test binary.
                ("PGTENANT_BACKEND_SECRET".to_owned(), super::random_hex(32)),
            ],
        };
        registry.cli(&["init"]);
        registry
    }
}

/// `[a-z][a-z0-9_]*`, the tenant name syntax.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
