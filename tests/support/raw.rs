//! A minimal raw protocol client, for what drivers won't do on purpose.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Logs in with `key`: the connection, and its cancel pid and secret.
pub async fn startup(addr: std::net::SocketAddr, key: &str) -> (TcpStream, i32, i32) {
    startup_with(addr, key, &[]).await
}

/// Logs in with `key` and startup parameters `extra` (`application_name`, …).
pub async fn startup_with(
    addr: std::net::SocketAddr,
    key: &str,
    extra: &[(&str, &str)],
) -> (TcpStream, i32, i32) {
    let mut s = send_startup_with(addr, key, extra).await;
    let (mut pid, mut secret) = (0, 0);
    loop {
        let (tag, body) = read_msg(&mut s).await.expect("startup reply");
        match tag {
            b'K' => {
                pid = i32::from_be_bytes(body[..4].try_into().unwrap());
                secret = i32::from_be_bytes(body[4..8].try_into().unwrap());
            }
            b'Z' => return (s, pid, secret),
            b'E' => panic!("login failed: {}", String::from_utf8_lossy(&body)),
            _ => {}
        }
    }
}

/// A startup message with `key` in its options, its reply left unread.
pub async fn send_startup(addr: std::net::SocketAddr, key: &str) -> TcpStream {
    send_startup_with(addr, key, &[]).await
}

async fn send_startup_with(
    addr: std::net::SocketAddr,
    key: &str,
    extra: &[(&str, &str)],
) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = BytesMut::new();
    let opts = format!("-c pgtenant.api_key={key}");
    let params = [
        ("user", "raw"),
        ("database", "app"),
        ("options", opts.as_str()),
    ];
    postgres_protocol::message::frontend::startup_message(
        params.iter().chain(extra).copied(),
        &mut buf,
    )
    .unwrap();
    s.write_all(&buf).await.unwrap();
    s
}

pub async fn read_msg<S: AsyncRead + Unpin>(s: &mut S) -> Option<(u8, Vec<u8>)> {
    let tag = s.read_u8().await.ok()?;
    let len = s.read_i32().await.ok()?;
    let mut body = vec![0; len as usize - 4];
    s.read_exact(&mut body).await.ok()?;
    Some((tag, body))
}

pub async fn query(s: &mut TcpStream, sql: &str) {
    let mut buf = BytesMut::new();
    postgres_protocol::message::frontend::query(sql, &mut buf).unwrap();
    s.write_all(&buf).await.unwrap();
}

/// Reads to ReadyForQuery; returns the SQLSTATE of an error, if any.
pub async fn until_ready(s: &mut TcpStream) -> Option<String> {
    let mut err = None;
    loop {
        let (tag, body) = read_msg(s).await.expect("server reply");
        match tag {
            b'E' => err = Some(String::from_utf8_lossy(&body).into_owned()),
            b'Z' => return err,
            _ => {}
        }
    }
}

pub async fn cancel(addr: std::net::SocketAddr, pid: i32, secret: i32) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = BytesMut::new();
    postgres_protocol::message::frontend::cancel_request(pid, secret, &mut buf);
    s.write_all(&buf).await.unwrap();
    let _ = s.read_u8().await; // the proxy closes without a reply
}

/// Writes the messages `build` encodes, in one write.
pub async fn send<S: AsyncWrite + Unpin>(s: &mut S, build: impl FnOnce(&mut BytesMut)) {
    let mut buf = BytesMut::new();
    build(&mut buf);
    s.write_all(&buf).await.unwrap();
    s.flush().await.unwrap(); // a TLS stream may hold it until then
}

/// Reads to ReadyForQuery; returns every message's tag, in order.
pub async fn tags_until_ready(s: &mut TcpStream) -> String {
    let mut tags = String::new();
    loop {
        let (tag, _) = read_msg(s).await.expect("server reply");
        tags.push(tag as char);
        if tag == b'Z' {
            return tags;
        }
    }
}

/// Bind of `statement` (no parameters, the unnamed portal, results in
/// `format`: 0 text, 1 binary), then Execute: what a driver sends to run a
/// prepared statement.
pub fn bind_execute(b: &mut BytesMut, statement: &str, format: i16) {
    postgres_protocol::message::frontend::bind(
        "",
        statement,
        [],
        [],
        |_: (), _| Ok(postgres_protocol::IsNull::Yes),
        [format],
        b,
    )
    .map_err(|_| ())
    .unwrap();
    postgres_protocol::message::frontend::execute("", 0, b).unwrap();
}

/// Parse, Bind and Execute of `sql` as the unnamed statement, then Flush
/// (no Sync): what pipelining drivers and cursors send to read results
/// before ending the implicit transaction.
pub fn run_unsynced(b: &mut BytesMut, sql: &str) {
    postgres_protocol::message::frontend::parse("", sql, [], b).unwrap();
    bind_execute(b, "", 1);
    postgres_protocol::message::frontend::flush(b);
}

/// The tags of the next `n` messages.
pub async fn tags<S: AsyncRead + Unpin>(s: &mut S, n: usize) -> String {
    let mut tags = String::new();
    for _ in 0..n {
        let (tag, _) = read_msg(s).await.expect("server reply");
        tags.push(tag as char);
    }
    tags
}

/// A new tenant's transaction-mode proxy (`pool_size` connections), and a
/// client logged in to it.
pub async fn tx_session(tenant: &str, pool_size: &str) -> (super::Proxy, TcpStream) {
    let reg = super::registry();
    let key = reg.issue_key(&reg.create_tenant(tenant));
    let proxy = reg.proxy(&[
        ("PGTENANT_POOL_MODE", "transaction"),
        ("PGTENANT_POOL_SIZE", pool_size),
    ]);
    let (s, _, _) = startup(proxy.addr, &key).await;
    (proxy, s)
}

/// Parse of `sql` as statement `name`, then Sync: a bare prepare
/// (libpq's `PQprepare`).
pub fn prepares<'a>(name: &'a str, sql: &'a str) -> impl FnOnce(&mut BytesMut) + 'a {
    move |b| {
        postgres_protocol::message::frontend::parse(name, sql, [], b).unwrap();
        postgres_protocol::message::frontend::sync(b);
    }
}

/// Bind and Execute of `statement`, then Sync.
pub fn runs(statement: &'static str) -> impl FnOnce(&mut BytesMut) {
    move |b| {
        bind_execute(b, statement, 0);
        postgres_protocol::message::frontend::sync(b);
    }
}

/// Runs `statement` (one row of one column) and returns its value.
pub async fn value_of(s: &mut TcpStream, statement: &'static str) -> String {
    send(s, runs(statement)).await;
    let mut value = None;
    loop {
        match read_msg(s).await.expect("a reply") {
            // DataRow: 1 column, its length, its text.
            (b'D', body) => value = Some(String::from_utf8_lossy(&body[6..]).into_owned()),
            (b'E', body) => panic!("{statement}: {}", String::from_utf8_lossy(&body)),
            (b'Z', _) => return value.expect("a row"),
            _ => {}
        }
    }
}

/// Bind of `statement` (no parameters) to `portal`.
pub fn bind_portal(b: &mut BytesMut, portal: &str, statement: &str) {
    postgres_protocol::message::frontend::bind(
        portal,
        statement,
        [],
        [],
        |_: (), _| Ok(postgres_protocol::IsNull::Yes),
        [],
        b,
    )
    .map_err(|_| ())
    .unwrap();
}

/// `messages` behind a Parse the server fails, then Sync: the server
/// skips them all, and answers the error and ReadyForQuery only.
pub async fn behind_an_error(s: &mut TcpStream, messages: impl FnOnce(&mut BytesMut)) {
    send(s, |b| {
        postgres_protocol::message::frontend::parse("", "SELECT nope", [], b).unwrap();
        messages(b);
        postgres_protocol::message::frontend::sync(b);
    })
    .await;
    assert_eq!(tags_until_ready(s).await, "EZ");
}

/// Sends what `build` writes and reads to ReadyForQuery: the reply holds
/// an error with SQLSTATE `code`.
pub async fn fails_with(s: &mut TcpStream, code: &str, build: impl FnOnce(&mut BytesMut)) {
    send(s, build).await;
    let err = until_ready(s).await;
    assert!(
        err.as_deref().is_some_and(|e| e.contains(code)),
        "{code} expected: {err:?}"
    );
}
