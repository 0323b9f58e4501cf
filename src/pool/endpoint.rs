//! Where backend connections go.

use std::time::Duration;

use super::tls::BackendTlsPolicy;

/// Where backend connections go: the control plane's host, port and database.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub connect_timeout: Duration,
    pub tls: BackendTlsPolicy,
}

impl Endpoint {
    pub fn from_pg(
        pg: &tokio_postgres::Config,
        connect_timeout: Duration,
        tls: BackendTlsPolicy,
    ) -> Endpoint {
        let host = pg
            .get_hosts()
            .iter()
            .find_map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => Some(h.clone()),
                #[allow(unreachable_patterns)]
                _ => None,
            })
            .unwrap_or_else(|| "localhost".into());
        Endpoint {
            host,
            port: pg.get_ports().first().copied().unwrap_or(5432),
            dbname: pg
                .get_dbname()
                .or(pg.get_user())
                .unwrap_or("postgres")
                .to_owned(),
            connect_timeout,
            tls,
        }
    }
}
