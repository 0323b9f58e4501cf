//! The untagged first packets of a connection: SSLRequest, GSSENCRequest,
//! CancelRequest and StartupMessage.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::read_cstr;

pub const SSL_REQUEST: i32 = 80877103;
pub const GSSENC_REQUEST: i32 = 80877104;
pub const CANCEL_REQUEST: i32 = 80877102;
/// Same bound as Postgres' MAX_STARTUP_PACKET_LENGTH.
pub const MAX_STARTUP_LEN: usize = 10_000;

#[derive(Debug, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    Cancel {
        pid: i32,
        secret: i32,
    },
    /// Protocol 3.x; `minor` > 0 is answered with NegotiateProtocolVersion.
    Startup {
        minor: u16,
        params: Params,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid length of startup packet ({0})")]
    BadLength(i32),
    #[error("unsupported frontend protocol {0}.{1}: server supports 3.0")]
    UnsupportedVersion(u16, u16),
    #[error("invalid startup packet layout: {0}")]
    Malformed(&'static str),
    /// Bytes behind an SSLRequest or GSSENCRequest, sent before its answer.
    #[error("received unencrypted data after {0}")]
    UnencryptedAhead(&'static str),
    /// PostgreSQL logs this one and closes without a word.
    #[error("invalid length of cancel request ({0} bytes)")]
    BadCancel(usize),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Startup parameters in the order the client sent them: their text in
/// one string, as the packet has it (`name\0value\0…`, as UTF-8), and
/// where each pair lies in it: three allocations a login instead of one
/// per name and value. Boxed: a session's future holds it in several of
/// its states, and the two vectors inline took that future from under
/// 4 KiB to 4,160 bytes, the allocator's next size class up (+1.4 KiB
/// per idle client; see the idle footprint in `bench/README.md`).
#[derive(Default, Clone, PartialEq, Eq)]
pub struct Params(Box<Pairs>);

#[derive(Default, Clone, PartialEq, Eq)]
struct Pairs {
    text: String,
    /// `text[name.0..name.1]`, `text[name.1 + 1..value_end]`.
    at: Vec<((u32, u32), u32)>,
}

impl Params {
    /// `pairs` in order (tests and tools; a NUL in them would split one).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Params {
        let mut text = String::new();
        for (name, value) in pairs {
            debug_assert!(!name.is_empty() && !name.contains('\0') && !value.contains('\0'));
            text.extend([name, "\0", value, "\0"]);
        }
        Params::index(text)
    }

    /// Locates the pairs in `text`, pairs of NUL-terminated strings.
    fn index(text: String) -> Params {
        debug_assert!(
            u32::try_from(text.len()).is_ok(),
            "a startup packet is small"
        );
        // A driver sends a few: user, database, application_name,
        // client_encoding and the like.
        let mut at = Vec::with_capacity(8);
        let mut nuls = memchr::memchr_iter(0, text.as_bytes());
        let mut start = 0;
        while let (Some(mid), Some(end)) = (nuls.next(), nuls.next()) {
            at.push(((start as u32, mid as u32), end as u32));
            start = end + 1;
        }
        Params(Box::new(Pairs { text, at }))
    }

    /// (name, value) in the order sent.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let Pairs { text, at } = &*self.0;
        at.iter().map(|&((start, mid), end)| {
            let (start, mid, end) = (start as usize, mid as usize, end as usize);
            (&text[start..mid], &text[mid + 1..end])
        })
    }

    /// The first value sent under `name`.
    #[inline]
    pub fn get(&self, name: &str) -> Option<&str> {
        // Names compared as bytes; only the value found is sliced.
        let Pairs { text, at } = &*self.0;
        let ((_, mid), end) = at.iter().find(|((start, mid), _)| {
            text.as_bytes().get(*start as usize..*mid as usize) == Some(name.as_bytes())
        })?;
        text.get(*mid as usize + 1..*end as usize)
    }

    /// Keeps only the parameters `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        if self.iter().all(|(k, _)| keep(k)) {
            return;
        }
        let kept: Vec<_> = self.iter().filter(|(k, _)| keep(k)).collect();
        *self = Params::from_pairs(kept);
    }
}

/// Names only: values may hold an API key (`options`, a misnamed
/// setting), and no name shaped like one.
impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |k| match crate::auth::key::prefixes(k).next() {
            Some(_) => "<redacted>",
            None => k,
        };
        f.debug_list()
            .entries(self.iter().map(|(k, _)| shown(k)))
            .finish()
    }
}

/// Room for a startup packet in one read: a user, a database and a few
/// settings, a key among them, take a fraction of it.
const FIRST_READ: usize = 512;

/// Reads the next startup packet from `r` through `buf`, in one read when
/// it fits in [`FIRST_READ`] (a read of its length word first, then of the
/// rest, costs a system call more per connection). What the client sent
/// after it stays in `buf`.
pub async fn read_startup<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
) -> Result<StartupPacket, StartupError> {
    loop {
        let want = match buf.first_chunk::<4>().map(|l| i32::from_be_bytes(*l)) {
            Some(len) if !(8..=MAX_STARTUP_LEN as i32).contains(&len) => {
                return Err(StartupError::BadLength(len));
            }
            Some(len) if buf.len() >= len as usize => {
                let packet = buf.split_to(len as usize);
                return parse(&packet[4..]);
            }
            Some(len) => len as usize,
            None => FIRST_READ,
        };
        buf.reserve(want - buf.len());
        if r.read_buf(buf).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
}

/// Parses a startup packet body (everything after the length word).
pub fn parse(body: &[u8]) -> Result<StartupPacket, StartupError> {
    let code = i32::from_be_bytes(body[..4].try_into().expect("caller checked len >= 8"));
    let rest = &body[4..];
    match code {
        SSL_REQUEST => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST => {
            if rest.len() != 8 {
                return Err(StartupError::BadCancel(body.len() + 4));
            }
            Ok(StartupPacket::Cancel {
                pid: i32::from_be_bytes(rest[..4].try_into().expect("len checked")),
                secret: i32::from_be_bytes(rest[4..].try_into().expect("len checked")),
            })
        }
        _ => {
            let (major, minor) = ((code as u32 >> 16) as u16, (code as u32 & 0xffff) as u16);
            if major != 3 {
                return Err(StartupError::UnsupportedVersion(major, minor));
            }
            Ok(StartupPacket::Startup {
                minor,
                params: parse_params(rest)?,
            })
        }
    }
}

fn parse_params(body: &[u8]) -> Result<Params, StartupError> {
    // Checked first, copied once: pairs of NUL-terminated strings, then
    // a final NUL.
    let mut rest = body;
    loop {
        let (name, after) = read_cstr(rest).ok_or(StartupError::Malformed("missing terminator"))?;
        if name.is_empty() {
            if !after.is_empty() {
                return Err(StartupError::Malformed("data after the final terminator"));
            }
            break;
        }
        (_, rest) = read_cstr(after).ok_or(StartupError::Malformed("parameter without a value"))?;
    }
    let pairs = &body[..body.len() - 1];
    // PostgreSQL takes any bytes here (a client in a LATIN1 locale sends
    // its application_name so); names are checked later, and values reach
    // the server as UTF-8, so what isn't is replaced (never a NUL: one is
    // never part of a bad sequence).
    Ok(Params::index(match std::str::from_utf8(pairs) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(pairs).into_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: i32, payload: &[u8]) -> Vec<u8> {
        let mut v = ((payload.len() + 8) as i32).to_be_bytes().to_vec();
        v.extend_from_slice(&code.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    async fn read(bytes: Vec<u8>) -> Result<StartupPacket, StartupError> {
        read_startup(&mut bytes.as_slice(), &mut BytesMut::new()).await
    }

    #[tokio::test]
    async fn reads_a_packet_and_keeps_what_follows() {
        let mut sent = packet(SSL_REQUEST, b"");
        let long = [
            b"user\0bob\0application_name\0".as_slice(),
            &[b'a'; 900],
            b"\0\0",
        ]
        .concat();
        sent.extend(packet(196608, &long));
        sent.extend(b"p\0\0\0\x08key\0");
        // One byte per read, and all at once.
        for chunk in [1, sent.len()] {
            let mut r = tokio_test_reader(&sent, chunk);
            let mut buf = BytesMut::new();
            let p = read_startup(&mut r, &mut buf).await.unwrap();
            assert_eq!(p, StartupPacket::SslRequest);
            let p = read_startup(&mut r, &mut buf).await.unwrap();
            let StartupPacket::Startup { params, .. } = p else {
                panic!("{p:?}")
            };
            assert_eq!(params.get("application_name").map(str::len), Some(900));
            // The password message a client sent on without waiting.
            let mut rest = buf.to_vec();
            r.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, b"p\0\0\0\x08key\0");
        }
        // Cut short: an end of file, which nobody is told of.
        let mut buf = BytesMut::new();
        let cut = &sent[..sent.len() - 20];
        let mut r = tokio_test_reader(cut, 7);
        read_startup(&mut r, &mut buf).await.unwrap();
        assert!(matches!(
            read_startup(&mut r, &mut buf).await,
            Err(StartupError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof
        ));
    }

    /// `bytes` read at most `chunk` at a time.
    fn tokio_test_reader(bytes: &[u8], chunk: usize) -> impl AsyncRead + Unpin + '_ {
        struct Chunks<'a>(&'a [u8], usize);
        impl AsyncRead for Chunks<'_> {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let n = self.1.min(self.0.len()).min(buf.remaining());
                buf.put_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                std::task::Poll::Ready(Ok(()))
            }
        }
        Chunks(bytes, chunk)
    }

    #[tokio::test]
    async fn parses_startup_params() {
        let p = read(packet(196608, b"user\0bob\0database\0db\0\0"))
            .await
            .unwrap();
        let StartupPacket::Startup { minor: 0, params } = p else {
            panic!("{p:?}")
        };
        assert_eq!(params.get("user"), Some("bob"));
        assert_eq!(params.get("database"), Some("db"));
    }

    #[tokio::test]
    async fn parses_special_requests() {
        assert_eq!(
            read(packet(SSL_REQUEST, b"")).await.unwrap(),
            StartupPacket::SslRequest
        );
        assert_eq!(
            read(packet(CANCEL_REQUEST, &[0, 0, 0, 7, 0, 0, 0, 9]))
                .await
                .unwrap(),
            StartupPacket::Cancel { pid: 7, secret: 9 }
        );
    }

    #[tokio::test]
    async fn keeps_params_in_order_with_empty_values_and_bad_bytes_replaced() {
        let p = read(packet(
            196608,
            b"user\0bob\0options\0\0application_name\0caf\xe9\0_pq_.x\0y\0user\0eve\0\0",
        ))
        .await
        .unwrap();
        let StartupPacket::Startup { mut params, .. } = p else {
            panic!("{p:?}")
        };
        let all: Vec<_> = params.iter().collect();
        assert_eq!(
            all,
            [
                ("user", "bob"),
                ("options", ""),
                ("application_name", "caf\u{fffd}"),
                ("_pq_.x", "y"),
                ("user", "eve"),
            ]
        );
        assert_eq!(params.get("user"), Some("bob"), "the first one counts");
        assert_eq!(params.get("options"), Some(""));
        assert_eq!(params.get("database"), None);
        // A value is never shown: it may be a key.
        assert_eq!(
            format!("{params:?}"),
            r#"["user", "options", "application_name", "_pq_.x", "user"]"#
        );
        params.retain(|k| !k.starts_with("_pq_."));
        let kept: Vec<_> = params.iter().map(|(k, _)| k).collect();
        assert_eq!(kept, ["user", "options", "application_name", "user"]);
        assert_eq!(params.get("application_name"), Some("caf\u{fffd}"));
        // A bad byte in a name, and a character cut short by its NUL.
        let p = read(packet(196608, b"n\xffame\0v\xc3\0pgt_abc\0x\0\0"))
            .await
            .unwrap();
        let StartupPacket::Startup { params: odd, .. } = p else {
            panic!("{p:?}")
        };
        let all: Vec<_> = odd.iter().collect();
        assert_eq!(all, [("n\u{fffd}ame", "v\u{fffd}"), ("pgt_abc", "x")]);
        assert_eq!(format!("{odd:?}"), "[\"n\u{fffd}ame\", \"<redacted>\"]");
        // No parameters at all.
        let p = read(packet(196608, b"\0")).await.unwrap();
        let StartupPacket::Startup { params, .. } = p else {
            panic!("{p:?}")
        };
        assert_eq!(params.iter().count(), 0);
        assert_eq!(params, Params::default());
    }

    #[tokio::test]
    async fn rejects_bad_packets() {
        assert!(matches!(
            read(vec![0, 0, 0, 0]).await,
            Err(StartupError::BadLength(0))
        ));
        assert!(matches!(
            read(vec![0x80, 0, 0, 0]).await,
            Err(StartupError::BadLength(_))
        ));
        assert!(matches!(
            read(vec![0, 0, 0, 20, 0, 3]).await,
            Err(StartupError::Io(_))
        ));
        assert!(matches!(
            read(packet(0x0002_0000, b"\0")).await,
            Err(StartupError::UnsupportedVersion(2, 0))
        ));
        for body in [b"user\0bob".as_slice(), b"user\0", b"user\0bob\0\0x", b""] {
            assert!(
                matches!(
                    read(packet(196608, body)).await,
                    Err(StartupError::Malformed(_))
                ),
                "{body:?}"
            );
        }
        assert!(matches!(
            read(packet(CANCEL_REQUEST, &[0, 0, 0, 7])).await,
            Err(StartupError::BadCancel(12))
        ));
    }

    #[tokio::test]
    async fn takes_parameters_that_are_not_utf8_as_postgres_does() {
        let p = read(packet(196608, b"user\0bob\0application_name\0Caf\xe9\0\0"))
            .await
            .unwrap();
        let StartupPacket::Startup { params, .. } = p else {
            panic!("{p:?}")
        };
        assert_eq!(params.get("application_name"), Some("Caf\u{fffd}"));
    }
}
