//! The startup exchange against a real PostgreSQL behind the proxy: what
//! a client sends before it is logged in, malformed or not, gets what
//! PostgreSQL would answer, and hurts no other client.

mod support;

use std::time::Duration;

use bytes::BytesMut;
use support::registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn malformed_startup_packets_do_not_hurt_other_clients() {
    let reg = registry();
    let t = reg.create_tenant("garbage");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[("PGTENANT_LOGIN_TIMEOUT_MS", "2000")]);
    let packets: Vec<Vec<u8>> = vec![
        0i32.to_be_bytes().to_vec(),
        (i32::MIN).to_be_bytes().to_vec(),
        i32::MAX.to_be_bytes().to_vec(),
        [&100i32.to_be_bytes()[..], &[0, 3, 0, 0]].concat(), // truncated
        [&8i32.to_be_bytes()[..], &[0x12, 0x34, 0x56, 0x78]].concat(), // garbage version
        [
            &16i32.to_be_bytes()[..],
            &0x0003_0000i32.to_be_bytes(),
            b"user\0\0\0\0",
        ]
        .concat(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    ];
    for p in &packets {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(p).await.unwrap();
        let mut reply = Vec::new();
        // Either an ErrorResponse then close, or a close (truncated: at the login timeout).
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut reply)).await;
        assert!(r.is_ok(), "proxy neither answered nor closed for {p:?}");
        assert!(
            reply.is_empty() || reply[0] == b'E',
            "unexpected reply {reply:?}"
        );
    }
    let c = proxy.client_ok(&key).await;
    assert_eq!(
        c.query_one("SELECT 2", &[]).await.unwrap().get::<_, i32>(0),
        2
    );
}

/// A startup packet of protocol `version` (major << 16 | minor).
fn startup_packet(version: i32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    [&(body.len() as i32 + 4).to_be_bytes()[..], &body].concat()
}

/// What PostgreSQL answers at startup, the proxy answers: a client asking
/// for a newer minor version or a `_pq_.` option learns that 3.0 without
/// them is spoken (the version whole, as libpq 18 checks it: a 0 there is a
/// downgrade it refuses); a startup without a user gets 28000; a message
/// other than the password gets 08P01; a second GSSENCRequest no second 'N'
/// (0A000: its code read as a protocol version); a CancelRequest of the
/// wrong length a close without a word.
#[tokio::test]
async fn startup_answers_match_postgresql() {
    use support::raw;
    let reg = registry();
    let t = reg.create_tenant("startup");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[]);
    let opts = format!("-c pgtenant.api_key={key}");
    let error_code = |body: &[u8]| String::from_utf8_lossy(body).into_owned();

    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let p = [
        ("user", "app"),
        ("database", "app"),
        ("options", opts.as_str()),
        ("_pq_.fancy", "1"),
    ];
    s.write_all(&startup_packet(0x0003_0002, &p)).await.unwrap();
    let (tag, body) = raw::read_msg(&mut s).await.unwrap();
    assert_eq!(tag, b'v', "NegotiateProtocolVersion first");
    assert_eq!(&body[..4], &0x0003_0000i32.to_be_bytes(), "{body:?}");
    assert_eq!(&body[4..8], &1i32.to_be_bytes());
    assert_eq!(&body[8..], b"_pq_.fancy\0");
    assert_eq!(raw::tags_until_ready(&mut s).await.as_bytes()[0], b'R');
    raw::query(&mut s, "SELECT 1").await;
    assert_eq!(raw::until_ready(&mut s).await, None);

    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let p = [("database", "app"), ("options", opts.as_str())];
    s.write_all(&startup_packet(0x0003_0000, &p)).await.unwrap();
    let (tag, body) = raw::read_msg(&mut s).await.unwrap();
    assert_eq!(tag, b'E');
    assert!(
        error_code(&body).contains("C28000"),
        "{}",
        error_code(&body)
    );

    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let p = [("user", "app"), ("database", "app")];
    s.write_all(&startup_packet(0x0003_0000, &p)).await.unwrap();
    assert_eq!(raw::read_msg(&mut s).await.unwrap().0, b'R');
    raw::query(&mut s, "SELECT 1").await;
    let (tag, body) = raw::read_msg(&mut s).await.unwrap();
    assert_eq!(tag, b'E');
    assert!(
        error_code(&body).contains("C08P01"),
        "{}",
        error_code(&body)
    );

    let gssenc = &[8i32.to_be_bytes(), 80877104i32.to_be_bytes()].concat()[..];
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(gssenc).await.unwrap();
    assert_eq!(s.read_u8().await.unwrap(), b'N');
    s.write_all(gssenc).await.unwrap();
    let (tag, body) = raw::read_msg(&mut s).await.unwrap();
    assert_eq!(tag, b'E', "a second GSSENCRequest is refused");
    assert!(
        error_code(&body).contains("C0A000"),
        "{}",
        error_code(&body)
    );

    for secret_len in [0usize, 2, 8] {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        let len = (12 + secret_len) as i32;
        let cancel = [&len.to_be_bytes()[..], &80877102i32.to_be_bytes(), &[7; 4]].concat();
        s.write_all(&[&cancel[..], &vec![9; secret_len]].concat())
            .await
            .unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).await.unwrap();
        assert!(reply.is_empty(), "{} secret bytes: {reply:?}", secret_len);
    }
}

/// A client may send its first query right behind its password, before
/// the proxy answers: it is kept and answered, not lost.
#[tokio::test]
async fn a_query_sent_behind_the_password_is_answered() {
    use support::raw;
    let reg = registry();
    let t = reg.create_tenant("eager");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[]);
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let p = [("user", "app"), ("database", "app")];
    s.write_all(&startup_packet(0x0003_0000, &p)).await.unwrap();
    assert_eq!(raw::read_msg(&mut s).await.unwrap().0, b'R');
    raw::send(&mut s, |b| {
        postgres_protocol::message::frontend::password_message(key.as_bytes(), b).unwrap();
        postgres_protocol::message::frontend::query("SELECT 41 + 1", b).unwrap();
    })
    .await;
    let hello = raw::tags_until_ready(&mut s).await;
    assert!(hello.starts_with('R') && hello.ends_with('Z'), "{hello}");
    let rows = answer(&mut s).await;
    assert!(rows.len() == 1 && rows[0].ends_with(b"42"), "{rows:?}");
}

/// The rows of the answer to the query a test sent.
async fn answer(s: &mut TcpStream) -> Vec<Vec<u8>> {
    use support::raw;
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut rows = Vec::new();
        loop {
            let (tag, body) = raw::read_msg(s).await.expect("reply");
            match tag {
                b'D' => rows.push(body),
                b'Z' => return rows,
                b'E' => panic!("{}", String::from_utf8_lossy(&body)),
                _ => {}
            }
        }
    })
    .await
    .expect("the query sent ahead was lost")
}

/// The startup packet is read with what follows it, ~512 bytes at a time:
/// what the client sent on without waiting (its password, its first
/// query, the key in the startup packet and a query) is kept, whichever
/// way it is cut up, a tenant's or the admin console's. Sent after an
/// SSLRequest or GSSENCRequest before its answer, though, it was not
/// encrypted: PostgreSQL refuses it (08P01), and so does the proxy.
#[tokio::test]
async fn what_comes_with_the_startup_packet_is_kept() {
    use support::raw;
    const ADMIN: &str = "admin-password-for-startup";
    let reg = registry();
    let t = reg.create_tenant("ahead");
    let key = reg.issue_key(&t);
    let proxy = reg.proxy(&[("PGTENANT_ADMIN_PASSWORD", ADMIN)]);
    let tenant = |with: &str| format!("-c pgtenant.api_key={with}");
    let (by_key, by_admin) = (tenant(&key), tenant(ADMIN));
    // Longer than a read: the first one ends inside the query.
    let query = format!("SELECT 6 * 7 -- {}", "x".repeat(600));
    let cases: [(&str, Option<&str>, Option<&str>, &str); 4] = [
        ("app", None, Some(&key), &query),
        ("app", Some(&by_key), None, &query),
        ("pgtenant", None, Some(ADMIN), "SHOW TENANTS"),
        ("pgtenant", Some(&by_admin), None, "SHOW TENANTS"),
    ];
    for (db, options, password, sql) in cases {
        let mut params = vec![("user", "app"), ("database", db)];
        params.extend(options.map(|o| ("options", o)));
        let startup = startup_packet(0x0003_0000, &params);
        let mut sent = BytesMut::from(&startup[..]);
        if let Some(p) = password {
            postgres_protocol::message::frontend::password_message(p.as_bytes(), &mut sent)
                .unwrap();
        }
        postgres_protocol::message::frontend::query(sql, &mut sent).unwrap();
        // All at once; cut inside the startup packet, right after it, and
        // inside what follows.
        for cut in [sent.len(), 3, 30, startup.len(), startup.len() + 7] {
            let mut s = TcpStream::connect(proxy.addr).await.unwrap();
            s.write_all(&sent[..cut]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.write_all(&sent[cut..]).await.unwrap();
            let hello = raw::tags_until_ready(&mut s).await;
            assert!(hello.starts_with('R') && hello.ends_with('Z'), "{hello}");
            let rows = answer(&mut s).await;
            let expected: &[u8] = if db == "app" { b"42" } else { b"ahead" };
            assert!(
                rows.iter()
                    .any(|r| r.windows(expected.len()).any(|w| w == expected)),
                "{db}, cut at {cut}: {rows:?}"
            );
        }
    }
    for code in [80877103i32, 80877104] {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        let request = [8i32.to_be_bytes(), code.to_be_bytes()].concat();
        let params = [("user", "app"), ("database", "app"), ("options", &by_key)];
        let startup = startup_packet(0x0003_0000, &params);
        s.write_all(&[request, startup].concat()).await.unwrap();
        assert_eq!(s.read_u8().await.unwrap(), b'N');
        let (tag, body) = raw::read_msg(&mut s).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert_eq!(tag, b'E', "{text}");
        assert!(
            text.contains("C08P01") && text.contains("received unencrypted data after"),
            "{text}"
        );
    }
}
