//! Long statement texts are inspected off the event loop. pg_query reads
//! ~3.6 MB of SQL a second: on the loop (one thread by default), a
//! client's multi-megabyte `INSERT … VALUES` would hold every other
//! session of every tenant for the length of its parse. The relay hands
//! such texts to tokio's blocking pool and waits; the session's own
//! messages wait with it, nobody else's do.

use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::{Bytes, BytesMut};
use tokio::sync::Semaphore;

use super::live::KillMode;
use super::relay::Session;
use super::socket::peer_closed;
use super::upstream::{Inspector, Upstream};
use crate::error::ClientError;
use crate::lexical::{self, Lexed};
use crate::protocol::{self, read_cstr, tag};
use crate::tls::ClientStream;

/// Texts from this size whose verdict needs a parse go to the blocking
/// pool: pg_query reads ~3.6 MB a second (a release build, an `INSERT …
/// VALUES` of decimals), so the loop takes at most ~1 ms for a shorter
/// one, against tens of microseconds for the hand-off. (Texts the lexical
/// pre-check clears, or whose verdict is cached, stay on the loop.)
pub const LONG_TEXT: usize = 4 * 1024;

/// Texts from this size go whole, their lexical pass too.
const HUGE_TEXT: usize = 1 << 20;

/// A verdict reached off the loop, for the text at address `at` of `len`
/// bytes in the session's read buffer (which the buffer's owner leaves
/// in place until the verdict is used or dropped).
pub struct Ahead {
    at: usize,
    len: usize,
    pub lexed: Lexed,
    pub verdict: Result<(), Bytes>,
}

/// The verdict reached ahead for exactly this text, if any (taken).
pub fn take(aheads: &mut Vec<Ahead>, sql: &[u8]) -> Option<Ahead> {
    if aheads.is_empty() {
        return None;
    }
    let at = sql.as_ptr() as usize;
    let i = aheads
        .iter()
        .position(|a| a.at == at && a.len == sql.len())?;
    Some(aheads.swap_remove(i))
}

/// Whether the whole messages at the start of `inbuf` may hold a long
/// text: a cheap test for every batch (most are far shorter).
pub fn may_hold_long_text(inbuf: &[u8]) -> bool {
    inbuf.len() >= LONG_TEXT
}

/// The long Query and Parse texts among the whole messages that start
/// `inbuf`, as [`super::upstream::Upstream`] cuts them out (up to their
/// first NUL): (offset, length).
fn long_texts(inbuf: &[u8], max: usize) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut pos = 0;
    while let Ok(Some(h)) = protocol::header(&inbuf[pos..], max) {
        if inbuf.len() - pos < h.frame_len {
            break;
        }
        let body = &inbuf[pos + protocol::HEADER_LEN..pos + h.frame_len];
        if body.len() >= LONG_TEXT {
            let raw = match h.tag {
                tag::QUERY => Some(match body.split_last() {
                    Some((0, text)) => text,
                    _ => body,
                }),
                tag::PARSE => Some(read_cstr(body).map_or(body, |(_, rest)| rest)),
                _ => None,
            };
            if let Some(raw) = raw {
                let sql = read_cstr(raw).map_or(raw, |(s, _)| s);
                let at = sql.as_ptr() as usize - inbuf.as_ptr() as usize;
                found.push((at, sql.len()));
            }
        }
        pos += h.frame_len;
    }
    found
}

/// The verdicts on the long texts of the whole messages waiting in
/// `up`'s buffer, into `up.ahead`: each needing a parse is read off the
/// loop. Meanwhile the session can still be killed at once, or its client
/// leave (false).
pub(super) async fn read_ahead(
    s: &Session<'_>,
    client: &ClientStream,
    up: &mut Upstream,
    max: usize,
) -> Result<bool, ClientError> {
    if !s.inspector.reads_text() {
        return Ok(true);
    }
    let rename = up.renames();
    let base = up.inbuf.as_ptr() as usize;
    let mut parse = Vec::new();
    for (at, len) in long_texts(&up.inbuf, max) {
        if len < HUGE_TEXT {
            let sql = &up.inbuf[at..at + len];
            let lexed = lexical::scan(sql, rename);
            if let Some(verdict) = s.inspector.inspect_cheap(sql, &lexed) {
                let at = base + at;
                up.ahead.push(Ahead {
                    at,
                    len,
                    lexed,
                    verdict,
                });
                continue;
            }
        }
        parse.push((at, len));
    }
    if parse.is_empty() {
        return Ok(true);
    }
    let Some(inspector) = s.inspector.detached() else {
        return Ok(true);
    };
    let job = inspect(std::mem::take(&mut up.inbuf), parse, rename, inspector);
    // An order to end "when idle" waits for the statement's end, as in
    // the relay.
    let killed = std::future::poll_fn(|cx| s.kill.poll_order(cx, Some(KillMode::WhenIdle)));
    tokio::select! {
        biased;
        done = with_permit(&s.ctx.parsers, job) => {
            let (inbuf, ahead) = done.ok_or(ClientError::Shutdown)?;
            up.inbuf = inbuf;
            up.ahead.extend(ahead);
            Ok(true)
        }
        () = killed => Err(ClientError::Terminated(s.kill.reason())),
        () = peer_closed(client, &s.ctx.timers) => Ok(false),
    }
}

/// `job` once one of `parsers`' permits is free: past the cores, each
/// thread that parses would take CPU from the event loop. (A session
/// killed meanwhile gives its permit back before its parse ends.)
async fn with_permit<T>(parsers: &Semaphore, job: impl Future<Output = Option<T>>) -> Option<T> {
    let _permit = parsers.acquire().await.ok()?;
    job.await
}

/// Lends `inbuf` to a thread of the blocking pool, which reads and
/// inspects its `texts` (`rename`: words as transaction mode reads them).
/// Gives the buffer back, unmoved, with the verdicts; None if the pool is
/// gone (the runtime is shutting down).
async fn inspect(
    inbuf: BytesMut,
    texts: Vec<(usize, usize)>,
    rename: bool,
    inspector: Box<dyn Inspector>,
) -> Option<(BytesMut, Vec<Ahead>)> {
    let job = move || {
        let base = inbuf.as_ptr() as usize;
        // The firewall catches its own panics; this one keeps the buffer
        // if anything else in the reading panics (its texts are then read
        // again on the loop).
        let aheads = catch_unwind(AssertUnwindSafe(|| {
            texts
                .iter()
                .map(|&(at, len)| {
                    let sql = &inbuf[at..at + len];
                    let lexed = lexical::scan(sql, rename);
                    let verdict = inspector.inspect(sql, &lexed);
                    Ahead {
                        at: base + at,
                        len,
                        lexed,
                        verdict,
                    }
                })
                .collect()
        }))
        .unwrap_or_default();
        (inbuf, aheads)
    };
    tokio::task::spawn_blocking(job).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn message(b: &mut BytesMut, t: u8, body: &[u8]) {
        b.put_u8(t);
        b.put_i32(body.len() as i32 + 4);
        b.put_slice(body);
    }

    #[test]
    fn finds_long_query_and_parse_texts_as_the_relay_cuts_them() {
        let long = "x".repeat(LONG_TEXT);
        let mut b = BytesMut::new();
        message(&mut b, tag::QUERY, b"SELECT 1\0");
        message(&mut b, tag::QUERY, format!("{long}\0").as_bytes());
        // A Parse: name, text, parameter count.
        message(&mut b, tag::PARSE, format!("s1\0{long}\0\0\0").as_bytes());
        // Long, but no text: a Bind's parameters.
        message(&mut b, tag::BIND, long.as_bytes());
        // A Query whose text stops at an inner NUL.
        message(&mut b, tag::QUERY, format!("{long}\0tail\0").as_bytes());
        // Not whole: not read.
        let whole = b.len();
        message(&mut b, tag::QUERY, format!("{long}\0").as_bytes());
        b.truncate(b.len() - 10);
        let got = long_texts(&b, usize::MAX);
        let texts: Vec<&[u8]> = got.iter().map(|&(at, n)| &b[at..at + n]).collect();
        assert_eq!(texts, vec![long.as_bytes(); 3]);
        assert!(got.iter().all(|&(at, n)| at + n < whole));
    }

    #[test]
    fn a_verdict_is_taken_only_for_its_own_text() {
        let buf = b"SELECT 1; SELECT 1".to_vec();
        let mut aheads = vec![Ahead {
            at: buf.as_ptr() as usize,
            len: 8,
            lexed: Lexed::default(),
            verdict: Ok(()),
        }];
        // Same bytes elsewhere, or a longer text at the same place: not it.
        assert!(take(&mut aheads, &buf[10..]).is_none());
        assert!(take(&mut aheads, &buf[..9]).is_none());
        assert!(take(&mut aheads, &buf[..8]).is_some());
        assert!(aheads.is_empty());
    }
}
