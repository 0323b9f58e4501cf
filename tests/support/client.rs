//! tokio-postgres clients through a [`Proxy`].

use tokio_postgres::{Client, Error, NoTls};

use super::Proxy;

impl Proxy {
    /// A client of database `app` with `key` as the password.
    pub async fn client(&self, key: &str) -> Result<Client, Error> {
        self.client_db(key, "app").await
    }

    /// A client of database `db` with `key` as the password.
    pub async fn client_db(&self, key: &str, db: &str) -> Result<Client, Error> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(self.addr.port())
            .user("app")
            .password(key)
            .dbname(db);
        let (client, conn) = cfg.connect(NoTls).await?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// Like [`Proxy::client`], panicking with the proxy's log on failure.
    pub async fn client_ok(&self, key: &str) -> Client {
        self.client(key)
            .await
            .unwrap_or_else(|e| panic!("login failed: {e:?}\nproxy log:\n{}", self.log()))
    }
}

/// The SQLSTATE of an error, or a description when it has none.
pub fn sqlstate(e: &Error) -> String {
    e.code()
        .map(|c| c.code().to_owned())
        .unwrap_or_else(|| format!("no SQLSTATE: {e:?}"))
}
