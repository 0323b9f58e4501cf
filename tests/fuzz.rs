//! Client input the proxy never trusts: well-formed conversations
//! (simple and extended queries, COPY, a refused statement, a failed
//! transaction, settings and their reset, DEALLOCATE, a Query inside a
//! pipeline, a goodbye mid-pipeline) mutated at random (bytes changed, lengths lied about,
//! messages cut, dropped, repeated, reordered or invented), sent by many
//! clients at once, in both pool modes, against a real PostgreSQL. Every
//! reply must be a well-framed backend message, every error must carry a
//! SQLSTATE and a message, the proxy must not panic, and no server
//! connection may reach a later client in a transaction, an aborted one, a
//! COPY or waiting for a Sync. The mutations are seeded: a failure names
//! the seed and the bytes sent.

mod support;

use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use support::{raw, registry};

/// Clients at once, and conversations each, per pool mode. For a longer
/// hunt: `FUZZ_ROUNDS=2000 FUZZ_SEED=7 cargo test --test fuzz`.
const CLIENTS: u64 = 8;
const ROUNDS: u64 = 40;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
/// How long a mutated conversation may take to be answered: one whose
/// lengths promise more than was sent waits for bytes that never come.
const ANSWER_WITHIN: Duration = Duration::from_millis(400);

/// xorshift64*: small, seeded, enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Well-formed conversations, each a list of whole messages.
fn conversations() -> Vec<Vec<Vec<u8>>> {
    fn msg(build: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut b = BytesMut::new();
        build(&mut b);
        b.to_vec()
    }
    let query = |sql: &'static str| msg(|b| frontend::query(sql, b).unwrap());
    let parse =
        |name: &'static str, sql: &'static str| msg(|b| frontend::parse(name, sql, [], b).unwrap());
    let bind = |statement: &'static str| {
        msg(|b| {
            frontend::bind(
                "",
                statement,
                [0],
                [Some(b"5".to_vec())],
                |v: Option<Vec<u8>>, buf| match v {
                    Some(v) => {
                        buf.extend_from_slice(&v);
                        Ok(postgres_protocol::IsNull::No)
                    }
                    None => Ok(postgres_protocol::IsNull::Yes),
                },
                [0],
                b,
            )
            .map_err(|_| ())
            .unwrap()
        })
    };
    // Of a statement without parameters.
    let bind_bare = |statement: &'static str| {
        msg(|b| {
            frontend::bind(
                "",
                statement,
                [],
                [],
                |_: (), _| Ok(postgres_protocol::IsNull::Yes),
                [],
                b,
            )
            .map_err(|_| ())
            .unwrap()
        })
    };
    let execute = || msg(|b| frontend::execute("", 0, b).unwrap());
    let describe =
        |kind: u8, name: &'static str| msg(|b| frontend::describe(kind, name, b).unwrap());
    let close = |name: &'static str| msg(|b| frontend::close(b'S', name, b).unwrap());
    let sync = || msg(frontend::sync);
    let flush = || msg(frontend::flush);
    let copy_data = |data: &'static [u8]| msg(|b| frontend::CopyData::new(data).unwrap().write(b));
    let copy_done = || msg(frontend::copy_done);
    let copy_fail = || msg(|b| frontend::copy_fail("no", b).unwrap());
    // The function-call message, to a large-object function by OID.
    let fn_call = || {
        let mut m = vec![b'F', 0, 0, 0, 0];
        m.extend_from_slice(&952i32.to_be_bytes()); // lo_open
        m.extend_from_slice(&[0, 0, 0, 2]);
        for v in [0i32, 0x20000] {
            m.extend_from_slice(&4i32.to_be_bytes());
            m.extend_from_slice(&v.to_be_bytes());
        }
        m.extend_from_slice(&[0, 0]);
        let len = (m.len() - 1) as i32;
        m[1..5].copy_from_slice(&len.to_be_bytes());
        m
    };
    vec![
        vec![query("SELECT 1")],
        vec![query("BEGIN; SELECT x FROM fuzzed; COMMIT")],
        vec![
            parse("", "SELECT $1::int"),
            bind(""),
            describe(b'P', ""),
            execute(),
            sync(),
        ],
        vec![
            parse("named", "SELECT $1::int + 1"),
            describe(b'S', "named"),
            sync(),
            bind("named"),
            execute(),
            close("named"),
            sync(),
        ],
        vec![
            parse("", "SELECT $1::int"),
            bind(""),
            execute(),
            flush(),
            sync(),
        ],
        vec![
            query("COPY fuzzed FROM STDIN"),
            copy_data(b"1\n2\n"),
            copy_done(),
        ],
        vec![
            query("COPY fuzzed FROM STDIN"),
            copy_data(b"3\n"),
            copy_fail(),
        ],
        vec![
            parse("", "COPY fuzzed FROM STDIN"),
            bind(""),
            execute(),
            sync(),
            copy_data(b"4\n"),
            copy_done(),
            sync(),
        ],
        vec![query("COPY fuzzed TO STDOUT")],
        vec![query("SELECT * FROM pg_catalog.pg_authid")],
        vec![query("BEGIN"), query("SELECT 1/0"), query("SELECT 1")],
        vec![query("BEGIN"), fn_call(), query("ROLLBACK")],
        vec![
            query("BEGIN"),
            parse("", "SELECT nope"),
            bind(""),
            execute(),
            sync(),
        ],
        // Settings read back and given back, statements dropped.
        vec![query("SET application_name = 'fuzz'; RESET ALL")],
        vec![query("SET statement_timeout = 5000"), query("DISCARD ALL")],
        vec![parse("gone", "SELECT 2"), sync(), query("DEALLOCATE gone")],
        vec![
            parse("gone", "SELECT 2"),
            parse("", "DEALLOCATE gone"),
            bind_bare(""),
            describe(b'P', ""),
            execute(),
            parse("gone", "SELECT 3"),
            sync(),
        ],
        // A Query inside an unsynced pipeline; a goodbye mid-pipeline.
        vec![
            parse("", "SELECT $1::int"),
            bind(""),
            execute(),
            query("SELECT 2"),
            sync(),
        ],
        vec![
            parse("", "SELECT $1::int"),
            bind(""),
            execute(),
            msg(frontend::terminate),
        ],
    ]
}

/// One to three changes to a conversation; returns its bytes.
fn mutate(conv: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut msgs = conv.to_vec();
    for _ in 0..1 + rng.below(3) {
        let i = rng.below(msgs.len());
        match rng.below(9) {
            0 => {
                let m = &mut msgs[i];
                if !m.is_empty() {
                    let at = rng.below(m.len());
                    m[at] = rng.next() as u8;
                }
            }
            1 => {
                let m = &mut msgs[i];
                if !m.is_empty() {
                    let at = rng.below(m.len());
                    m[at] = [0, 0xff, b'Q', b'P', b'S', b'd', b'c', b'X'][rng.below(8)];
                }
            }
            2 => {
                // The length field lies.
                let m = &mut msgs[i];
                let real = m.len() as i32 - 1;
                let lie = [
                    0,
                    3,
                    4,
                    5,
                    -1,
                    i32::MIN,
                    i32::MAX,
                    0x4000_0000,
                    real - 1,
                    real + 1,
                ][rng.below(10)];
                if m.len() >= 5 {
                    m[1..5].copy_from_slice(&lie.to_be_bytes());
                }
            }
            3 => {
                let m = &mut msgs[i];
                let keep = rng.below(m.len());
                m.truncate(keep);
            }
            4 => {
                msgs.remove(i);
                if msgs.is_empty() {
                    break;
                }
            }
            5 => {
                let m = msgs[i].clone();
                msgs.insert(i, m);
            }
            6 => {
                let j = rng.below(msgs.len());
                msgs.swap(i, j);
            }
            7 => {
                // A message of any type, with a short body of any bytes.
                let body: Vec<u8> = (0..rng.below(12)).map(|_| rng.next() as u8).collect();
                let mut m = vec![rng.next() as u8];
                m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
                m.extend_from_slice(&body);
                msgs.insert(i, m);
            }
            _ => {
                // A string's NUL taken away, or one more put in.
                let m = &mut msgs[i];
                if let Some(at) = m.iter().skip(5).position(|&b| b == 0) {
                    m.remove(at + 5);
                } else {
                    m.push(0);
                }
            }
        }
    }
    msgs.concat()
}

/// What a conversation got back.
#[derive(Default)]
struct Answer {
    /// Error SQLSTATEs, in order.
    codes: Vec<String>,
    /// The sentinel query's row came back.
    sentinel: bool,
}

/// Reads well-framed backend messages until the sentinel's ReadyForQuery,
/// the proxy closes, or `until`. Panics on anything malformed, and on
/// another round's sentinel (a reply that went to the wrong client).
async fn read_answer(s: &mut TcpStream, until: Instant, mark: &str, case: &str) -> Answer {
    let mut a = Answer::default();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        // Every whole message in `buf`.
        while buf.len() >= 5 {
            let tag = buf[0];
            let len = i32::from_be_bytes(buf[1..5].try_into().unwrap());
            assert!(
                (4..=(1 << 30)).contains(&len),
                "{case}: reply {:?} framed with length {len}",
                tag as char
            );
            let len = len as usize;
            if buf.len() < 1 + len {
                break;
            }
            let body = buf[5..1 + len].to_vec();
            buf.drain(..1 + len);
            check_message(tag, &body, &mut a, mark, case);
            if tag == b'Z' && a.sentinel {
                return a;
            }
        }
        match timeout_at(until, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => {
                assert!(
                    buf.is_empty() || Instant::now() >= until,
                    "{case}: closed mid-message: {buf:?}"
                );
                return a;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn check_message(tag: u8, body: &[u8], a: &mut Answer, mark: &str, case: &str) {
    const BACKEND: &[u8] = b"RKSZTDCIEN123ntsAGHdcWVv";
    assert!(
        BACKEND.contains(&tag),
        "{case}: unknown reply type {:?} {body:?}",
        tag as char
    );
    match tag {
        b'E' | b'N' => {
            let fields = fields(body);
            let code = fields
                .iter()
                .find(|(k, _)| *k == b'C')
                .map(|(_, v)| v.clone());
            let text = fields
                .iter()
                .find(|(k, _)| *k == b'M')
                .map(|(_, v)| v.clone());
            let code =
                code.unwrap_or_else(|| panic!("{case}: an error without a SQLSTATE: {body:?}"));
            assert!(
                code.len() == 5 && code.bytes().all(|b| b.is_ascii_alphanumeric()),
                "{case}: SQLSTATE {code:?}"
            );
            assert!(
                text.is_some_and(|t| !t.is_empty()),
                "{case}: an error without a message: {body:?}"
            );
            assert_ne!(code, "XX000", "{case}: an internal error: {:?}", fields);
            if tag == b'E' {
                a.codes.push(code);
            }
        }
        b'Z' => assert!(
            body.len() == 1 && b"ITE".contains(&body[0]),
            "{case}: ReadyForQuery {body:?}"
        ),
        b'D' if body.windows(9).any(|w| w == b"sentinel ") => {
            assert!(
                body.ends_with(mark.as_bytes()),
                "{case}: another round's reply {body:?}"
            );
            a.sentinel = true;
        }
        _ => {}
    }
}

fn fields(body: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some((&k, tail)) = rest.split_first() {
        if k == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        out.push((k, String::from_utf8_lossy(&tail[..end]).into_owned()));
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    out
}

/// One client's rounds: log in, send a mutated conversation and the
/// sentinel behind it (a Sync first, for a pipeline), read what comes;
/// once the sentinel is answered, say goodbye: nothing more may come.
async fn client(
    addr: std::net::SocketAddr,
    key: String,
    seed: u64,
    mode: &'static str,
) -> Vec<String> {
    let convs = conversations();
    let mut rng = Rng(seed);
    let mut seen = Vec::new();
    for round in 0..knob("FUZZ_ROUNDS", ROUNDS) {
        let which = rng.below(convs.len());
        let bytes = mutate(&convs[which], &mut rng);
        let case = format!("{mode} seed {seed} round {round} conversation {which}: sent {bytes:?}");
        let (mut s, _, _) = raw::startup(addr, &key).await;
        if std::env::var("FUZZ_TRACE").is_ok() {
            eprintln!("TRACE port {} {case}", s.local_addr().unwrap().port());
        }
        let mark = format!("sentinel {seed} {round}");
        let mut tail = BytesMut::new();
        frontend::sync(&mut tail);
        frontend::query(&format!("SELECT '{mark}'"), &mut tail).unwrap();
        // Closed on us: fine, as long as what came was sound.
        if s.write_all(&bytes).await.is_ok() {
            let _ = s.write_all(&tail).await;
        }
        let a = read_answer(&mut s, Instant::now() + ANSWER_WITHIN, &mark, &case).await;
        if a.sentinel {
            let mut goodbye = BytesMut::new();
            frontend::terminate(&mut goodbye);
            let _ = s.write_all(&goodbye).await;
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
            assert!(
                rest.is_empty(),
                "{case}: after the sentinel's reply: {rest:?}"
            );
        }
        seen.extend(a.codes);
        seen.push(if a.sentinel { "answered" } else { "unanswered" }.to_owned());
    }
    seen
}

/// Each server connection a later client gets is outside any transaction
/// (in one, `now()` is its start, before this statement's), answers a
/// simple query at once (not skipping to a Sync, nor in a COPY), and the
/// table the conversations wrote to is readable (no lock left held).
async fn every_connection_is_clean(proxy: &support::Proxy, key: &str, mode: &str) {
    let probes = (0..CLIENTS).map(|_| async {
        let c = proxy.client_ok(key).await;
        // A simple query: an Execute moves statement_timestamp() on.
        let rows = tokio::time::timeout(
            Duration::from_secs(10),
            c.simple_query(
                "SELECT now() = statement_timestamp(), (SELECT count(*) FROM fuzzed) >= 0, \
                 pg_sleep(0.3)::text",
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("{mode}: a later client's query hung"))
        .unwrap_or_else(|e| panic!("{mode}: a later client's query failed: {e}"));
        let row = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_owned()),
            _ => None,
        });
        assert_eq!(
            row.as_deref(),
            Some("t"),
            "{mode}: a later client found a transaction open"
        );
    });
    futures_util::future::join_all(probes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutated_client_messages_never_hurt_the_proxy_or_a_later_client() {
    let reg = registry();
    let t = reg.create_tenant("fuzz");
    let key = reg.issue_key(&t);
    for mode in ["session", "transaction"] {
        let proxy = reg.proxy(&[
            ("PGTENANT_POOL_MODE", mode),
            ("PGTENANT_POOL_SIZE", "8"),
            ("PGTENANT_QUERY_WAIT_TIMEOUT_MS", "5000"),
        ]);
        let setup = proxy.client_ok(&key).await;
        setup
            .batch_execute("CREATE TABLE IF NOT EXISTS fuzzed (x int)")
            .await
            .unwrap();
        drop(setup);
        let base = knob("FUZZ_SEED", 0x9e37_79b9_7f4a_7c15);
        let clients = (0..CLIENTS).map(|i| {
            let seed = base ^ ((i + 1) * 0x1000_0001);
            tokio::spawn(client(proxy.addr, key.clone(), seed, mode))
        });
        // What came back, by SQLSTATE (and whether the sentinel was
        // answered): shown with --nocapture, to see what the rounds reach.
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        for r in futures_util::future::join_all(clients).await {
            let codes = r.unwrap_or_else(|e| panic!("{mode}: {e}\nproxy log:\n{}", proxy.log()));
            for c in codes {
                *seen.entry(c).or_default() += 1;
            }
        }
        eprintln!("{mode}: {seen:?}");
        // Sessions the proxy is still closing give their connections back.
        tokio::time::sleep(Duration::from_millis(500)).await;
        every_connection_is_clean(&proxy, &key, mode).await;
        let log = proxy.log();
        assert!(
            !log.contains("panicked"),
            "{mode}: the proxy panicked:\n{log}"
        );
    }
}
