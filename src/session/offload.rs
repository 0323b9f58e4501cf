//! Long statement texts are inspected off the event loop. pg_query reads
//! ~3.6 MB of SQL a second: on the loop (one thread by default), a
//! client's multi-megabyte `INSERT … VALUES` would hold every other
//! session of every tenant for the length of its parse. The relay hands
//! such texts to tokio's blocking pool and waits; the session's own
//! messages wait with it, nobody else's do.

use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;

use super::live::KillMode;
use super::relay::Session;
use super::socket::peer_closed;
use super::upstream::Upstream;
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

/// A long text among the waiting messages: where it lies in the buffer,
/// and for a Parse's, where the next Sync starts (a refused Parse has the
/// messages up to it dropped, as the server drops them after an error).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Text {
    at: usize,
    len: usize,
    parse: bool,
    /// `usize::MAX`: no Sync follows yet.
    sync: usize,
}

/// The long Query and Parse texts among the whole messages that start
/// `inbuf`, as [`super::upstream::Upstream`] cuts them out (up to their
/// first NUL), up to a Terminate or a message that ends the session.
/// `skipping`: the session drops messages up to the next Sync.
fn long_texts(inbuf: &[u8], max: usize, mut skipping: bool) -> Vec<Text> {
    let mut found: Vec<Text> = Vec::new();
    let mut waiting_for_sync = 0; // the last texts, with no Sync yet
    let mut pos = 0;
    while let Ok(Some(h)) = protocol::client_header(&inbuf[pos..], max) {
        if inbuf.len() - pos < h.frame_len || h.tag == tag::TERMINATE {
            break;
        }
        let body = &inbuf[pos + protocol::HEADER_LEN..pos + h.frame_len];
        let raw = match h.tag {
            tag::QUERY => match body.split_last() {
                Some((0, text)) => Some(text),
                _ => Some(body),
            },
            tag::PARSE => Some(read_cstr(body).map_or(body, |(_, rest)| rest)),
            tag::SYNC => {
                skipping = false;
                let n = found.len();
                for t in &mut found[n - waiting_for_sync..] {
                    t.sync = pos;
                }
                waiting_for_sync = 0;
                None
            }
            _ => None,
        };
        if let Some(raw) = raw.filter(|r| r.len() >= LONG_TEXT && !skipping) {
            let sql = read_cstr(raw).map_or(raw, |(s, _)| s);
            if sql.len() >= LONG_TEXT {
                let at = sql.as_ptr() as usize - inbuf.as_ptr() as usize;
                let (len, parse) = (sql.len(), h.tag == tag::PARSE);
                let sync = usize::MAX;
                found.push(Text {
                    at,
                    len,
                    parse,
                    sync,
                });
                waiting_for_sync += 1;
            }
        }
        pos += h.frame_len;
    }
    found
}

/// A text's words and verdict, if they can be reached here.
type Reader<'a> = dyn FnMut(&[u8]) -> Option<(Lexed, Result<(), Bytes>)> + 'a;

/// Reads `texts` in order from `inbuf` (whose address is `base`) into
/// `out`, past those that a refused Parse before them drops (`skip_to`:
/// texts before it are dropped); stops where `read` can't. Returns the
/// number of texts done.
fn read_in_order(
    texts: &[Text],
    inbuf: &[u8],
    base: usize,
    skip_to: &mut usize,
    read: &mut Reader<'_>,
    out: &mut Vec<Ahead>,
) -> usize {
    for (i, t) in texts.iter().enumerate() {
        if t.at < *skip_to {
            continue;
        }
        let Some((lexed, verdict)) = read(&inbuf[t.at..t.at + t.len]) else {
            return i;
        };
        // (A refused Query skips nothing: it is answered alone.)
        if verdict.is_err() && t.parse {
            *skip_to = t.sync;
        }
        let (at, len) = (base + t.at, t.len);
        out.push(Ahead {
            at,
            len,
            lexed,
            verdict,
        });
    }
    texts.len()
}

/// The verdicts on the long texts of the whole messages waiting in
/// `up`'s buffer, into `up.ahead`: those that need a parse are reached
/// off the loop. `skipping`: the session drops messages up to the next
/// Sync. Meanwhile the session can still be killed at once, or its client
/// leave (false).
pub(super) async fn read_ahead(
    s: &Session<'_>,
    client: &ClientStream,
    up: &mut Upstream,
    max: usize,
    skipping: bool,
) -> Result<bool, ClientError> {
    // Keyed by where texts lie: none may be left from a pass before.
    debug_assert!(up.ahead.is_empty());
    if !s.inspector.reads_text() {
        return Ok(true);
    }
    let texts = long_texts(&up.inbuf, max, skipping);
    let rename = up.renames();
    let base = up.inbuf.as_ptr() as usize;
    let mut skip_to = 0;
    let mut cheap = |sql: &[u8]| {
        if sql.len() >= HUGE_TEXT {
            return None;
        }
        let lexed = lexical::scan(sql, rename);
        let verdict = s.inspector.inspect_cheap(sql, &lexed)?;
        Some((lexed, verdict))
    };
    let done = read_in_order(
        &texts,
        &up.inbuf,
        base,
        &mut skip_to,
        &mut cheap,
        &mut up.ahead,
    );
    if done == texts.len() {
        return Ok(true);
    }
    let Some(inspector) = s.inspector.detached() else {
        return Ok(true);
    };
    let mut rest = texts;
    rest.drain(..done);
    let inbuf = std::mem::take(&mut up.inbuf);
    let job = async {
        // Held until the parse ends, also if the session does not wait
        // for it: past the cores, each thread that parses would take CPU
        // from the event loop.
        let permit = s.ctx.parsers.clone().acquire_owned().await.ok()?;
        let parse = move || {
            let _permit = permit;
            let mut read = |sql: &[u8]| {
                let lexed = lexical::scan(sql, rename);
                Some((lexed, inspector.inspect(sql, &lexed)))
            };
            let mut aheads = Vec::new();
            // The firewall catches its own panics; this keeps the buffer
            // if anything else here panics (what was not read is then
            // read on the loop).
            let _ = catch_unwind(AssertUnwindSafe(|| {
                read_in_order(&rest, &inbuf, base, &mut skip_to, &mut read, &mut aheads)
            }));
            (inbuf, aheads)
        };
        tokio::task::spawn_blocking(parse).await.ok()
    };
    // An order to end "when idle" waits for the statement's end, as in
    // the relay.
    let killed = std::future::poll_fn(|cx| s.kill.poll_order(cx, Some(KillMode::WhenIdle)));
    tokio::select! {
        biased;
        done = job => {
            let (inbuf, ahead) = done.ok_or(ClientError::Shutdown)?;
            up.inbuf = inbuf;
            up.ahead.extend(ahead);
            Ok(true)
        }
        () = killed => Err(ClientError::Terminated(s.kill.reason())),
        () = peer_closed(client, &s.ctx.timers) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

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
        // Long messages whose texts are short: many parameter types, and
        // an inner NUL.
        let mut types = b"s2\0SELECT $1\0".to_vec();
        types.extend(std::iter::repeat_n(0u8, LONG_TEXT));
        message(&mut b, tag::PARSE, &types);
        message(&mut b, tag::QUERY, format!("SELECT 1\0{long}\0").as_bytes());
        // Not whole: not read.
        let whole = b.len();
        message(&mut b, tag::QUERY, format!("{long}\0").as_bytes());
        b.truncate(b.len() - 10);
        let got = long_texts(&b, usize::MAX, false);
        let texts: Vec<&[u8]> = got.iter().map(|t| &b[t.at..t.at + t.len]).collect();
        assert_eq!(texts, vec![long.as_bytes(); 3]);
        assert!(got.iter().all(|t| t.at + t.len < whole));
        assert_eq!(
            got.iter().map(|t| t.parse).collect::<Vec<_>>(),
            [false, true, false]
        );
    }

    /// As the server drops the messages up to the next Sync after an
    /// error (and the proxy after a refusal): texts a refused Parse
    /// drops are not read, nor those before the first Sync of a session
    /// that skips already, nor anything after a Terminate.
    #[test]
    fn texts_a_refusal_drops_are_not_read() {
        let text = |c: char| format!("{}\0", c.to_string().repeat(LONG_TEXT));
        let parse =
            |b: &mut BytesMut, c| message(b, tag::PARSE, format!("\0{}\0\0", text(c)).as_bytes());
        let mut b = BytesMut::new();
        parse(&mut b, 'a');
        message(&mut b, tag::QUERY, text('b').as_bytes());
        parse(&mut b, 'c');
        message(&mut b, tag::SYNC, b"");
        parse(&mut b, 'd');
        message(&mut b, tag::QUERY, text('e').as_bytes());
        message(&mut b, tag::TERMINATE, b"");
        message(&mut b, tag::QUERY, text('f').as_bytes());
        let first = |t: &Text| b[t.at] as char;
        let found = long_texts(&b, usize::MAX, false);
        let names: String = found.iter().map(first).collect();
        assert_eq!(names, "abcde");
        let skipping: String = long_texts(&b, usize::MAX, true).iter().map(first).collect();
        assert_eq!(skipping, "de");
        // Refuse what starts with `refused`; returns what was read.
        let read = |refused: &str| {
            let mut read = |sql: &[u8]| {
                let v = if refused.contains(sql[0] as char) {
                    Err(Bytes::new())
                } else {
                    Ok(())
                };
                Some((Lexed::default(), v))
            };
            let (mut out, mut skip_to) = (Vec::new(), 0);
            read_in_order(&found, &b, 0, &mut skip_to, &mut read, &mut out);
            out.iter().map(|a| b[a.at] as char).collect::<String>()
        };
        assert_eq!(read(""), "abcde");
        // A refused Parse drops what comes up to its Sync; a refused Query
        // drops nothing; past the Sync, no Sync: the rest.
        assert_eq!(read("a"), "ade");
        assert_eq!(read("b"), "abcde");
        assert_eq!(read("d"), "abcd");
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
