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
        client_at(self.addr.port(), key, db).await
    }

    /// Like [`Proxy::client`], panicking with the proxy's log on failure.
    pub async fn client_ok(&self, key: &str) -> Client {
        self.client(key)
            .await
            .unwrap_or_else(|e| panic!("login failed: {e:?}\nproxy log:\n{}", self.log()))
    }
}

/// A client of the proxy on `port` (for tasks that can't borrow the
/// [`Proxy`]); connects within 5 s or fails.
pub async fn client_at(port: u16, key: &str, db: &str) -> Result<Client, Error> {
    let (client, conn) = config_at(port, key, db).connect(NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Connection settings for a client of the proxy on `port`, to add to.
pub fn config_at(port: u16, key: &str, db: &str) -> tokio_postgres::Config {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(port)
        .user("app")
        .password(key)
        .dbname(db)
        .connect_timeout(std::time::Duration::from_secs(5));
    cfg
}

/// The SQLSTATE of an error, or a description when it has none.
pub fn sqlstate(e: &Error) -> String {
    e.code()
        .map(|c| c.code().to_owned())
        .unwrap_or_else(|| format!("no SQLSTATE: {e:?}"))
}
