//! Postgres v3 wire protocol: just enough framing to relay raw messages and
//! to speak the handful of messages the proxy originates itself.
//!
//! The relay never decodes rows: it reads a 5-byte header (tag + length) and
//! moves the bytes on. Everything here works on borrowed slices so that the
//! per-message path does not allocate.

pub mod startup;
mod write;

pub use write::*;

/// Header of every message after the startup packet: tag byte + i32 length
/// (the length counts itself but not the tag).
pub const HEADER_LEN: usize = 5;

/// Frontend message tags the proxy cares about.
pub mod tag {
    pub const QUERY: u8 = b'Q';
    pub const PARSE: u8 = b'P';
    pub const BIND: u8 = b'B';
    pub const DESCRIBE: u8 = b'D';
    pub const EXECUTE: u8 = b'E';
    pub const CLOSE: u8 = b'C';
    pub const SYNC: u8 = b'S';
    pub const FLUSH: u8 = b'H';
    pub const FUNCTION_CALL: u8 = b'F';
    pub const TERMINATE: u8 = b'X';
    pub const PASSWORD: u8 = b'p';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_FAIL: u8 = b'f';
    /// Backend tags.
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const AUTHENTICATION: u8 = b'R';
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
}

/// A parsed message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub tag: u8,
    /// Length of the whole frame, tag included.
    pub frame_len: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("invalid message length {0}")]
    BadLength(i32),
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("invalid frontend message type {0}")]
    UnknownType(u8),
    #[error("unexpected message type 0x{0:02X} during COPY from stdin")]
    DuringCopy(u8),
}

/// Message types a client may send once logged in: PostgreSQL ends the
/// session at any other, and so does the proxy, before it reaches a
/// server connection that would otherwise be closed under the next
/// client.
#[inline]
pub fn is_frontend_message(tag: u8) -> bool {
    CLIENT_LIMITS[tag as usize] != 0 // one load on the per-message path
}

/// PostgreSQL's limit on the length of a client's control messages
/// (`PQ_SMALL_MESSAGE_LIMIT`), in frame bytes: a Sync or Describe longer
/// than that is refused at its header, not waited for.
pub const SMALL_MESSAGE_LIMIT: usize = 10_000 + 1;

/// Per message type: 0 if no client may send it, 1 if it is a small
/// control message, 2 otherwise (statements, binds, COPY data, which
/// `max_message_bytes` bounds). COPY's CopyDone and CopyFail count as
/// large: PostgreSQL reads them so outside a COPY.
static CLIENT_LIMITS: [u8; 256] = {
    let mut t = [0u8; 256];
    let (small, large) = (b"CDEHSX", b"QPBFdcf");
    let mut i = 0;
    while i < small.len() {
        t[small[i] as usize] = 1;
        i += 1;
    }
    let mut i = 0;
    while i < large.len() {
        t[large[i] as usize] = 2;
        i += 1;
    }
    t
};

/// A client's message header, refused where PostgreSQL refuses it: a type
/// no client sends at its first byte, a length past its type's limit at
/// the header (not once that many bytes have come).
#[inline]
pub fn client_header(buf: &[u8], max_len: usize) -> Result<Option<Header>, FrameError> {
    let Some(&tag) = buf.first() else {
        return Ok(None);
    };
    let limit = match CLIENT_LIMITS[tag as usize] {
        0 => return Err(FrameError::UnknownType(tag)),
        1 => SMALL_MESSAGE_LIMIT.min(max_len),
        _ => max_len,
    };
    header(buf, limit)
}

/// Reads the header at the start of `buf`, if all 5 bytes are there.
#[inline]
pub fn header(buf: &[u8], max_len: usize) -> Result<Option<Header>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(FrameError::BadLength(len));
    }
    let frame_len = len as usize + 1;
    if frame_len > max_len {
        return Err(FrameError::TooLarge {
            len: frame_len,
            max: max_len,
        });
    }
    Ok(Some(Header {
        tag: buf[0],
        frame_len,
    }))
}

/// Splits a NUL-terminated string off the front of `buf`.
pub fn read_cstr(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    // Names are short, mostly empty (unnamed statements and portals): a
    // plain loop finds their NUL before memchr has set up; long texts go
    // to memchr.
    const SHORT: usize = 16;
    let nul = match buf.iter().take(SHORT).position(|&b| b == 0) {
        Some(i) => i,
        None => SHORT + memchr::memchr(0, buf.get(SHORT..)?)?,
    };
    Some((&buf[..nul], &buf[nul + 1..]))
}

/// Transaction status carried by ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    Idle,
    InTransaction,
    Failed,
}

impl TxStatus {
    pub fn from_byte(b: u8) -> Option<TxStatus> {
        match b {
            b'I' => Some(TxStatus::Idle),
            b'T' => Some(TxStatus::InTransaction),
            b'E' => Some(TxStatus::Failed),
            _ => None,
        }
    }
}

/// The fields of an ErrorResponse/NoticeResponse body that the proxy reads
/// (when a backend refuses a login or a reset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    pub severity: String,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ErrorFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.code)
    }
}

impl ErrorFields {
    pub fn parse(mut body: &[u8]) -> ErrorFields {
        let mut out = ErrorFields::default();
        while let Some((&field, rest)) = body.split_first() {
            if field == 0 {
                break;
            }
            let Some((value, rest)) = read_cstr(rest) else {
                break;
            };
            let value = String::from_utf8_lossy(value).into_owned();
            match field {
                b'V' => out.severity = value,
                b'S' if out.severity.is_empty() => out.severity = value,
                b'C' => out.code = value,
                b'M' => out.message = value,
                _ => {}
            }
            body = rest;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_header_is_refused_at_its_first_bad_byte() {
        let max = 1 << 20;
        assert!(matches!(client_header(b"", max), Ok(None)));
        assert!(matches!(client_header(b"Q", max), Ok(None)));
        assert!(matches!(
            client_header(b"z", max),
            Err(FrameError::UnknownType(b'z'))
        ));
        // A Sync of 16 KiB: refused at its header, as PostgreSQL does.
        assert!(matches!(
            client_header(b"S\0\0\x40\0", max),
            Err(FrameError::TooLarge {
                max: SMALL_MESSAGE_LIMIT,
                ..
            })
        ));
        let h = client_header(b"Q\0\0\x40\0", max).unwrap().unwrap();
        assert_eq!(h.frame_len, 0x4001);
        assert!(matches!(
            client_header(b"Q\0\0\x40\0", 100),
            Err(FrameError::TooLarge { .. })
        ));
        for t in b"QPBDECSHFXdcf" {
            assert!(is_frontend_message(*t));
        }
        assert!(!is_frontend_message(b'Z') && !is_frontend_message(0));
    }

    #[test]
    fn a_cstr_ends_at_its_first_nul_short_or_long() {
        assert_eq!(read_cstr(b"\0rest"), Some((&b""[..], &b"rest"[..])));
        assert_eq!(read_cstr(b"P0_1\0\0"), Some((&b"P0_1"[..], &b"\0"[..])));
        assert_eq!(read_cstr(b""), None);
        assert_eq!(read_cstr(b"no nul"), None);
        // Around the end of the short loop.
        for len in 14..20 {
            let mut b = vec![b'x'; len];
            assert_eq!(read_cstr(&b), None, "{len}");
            b.extend_from_slice(b"\0y\0");
            let (s, rest) = read_cstr(&b).unwrap();
            assert_eq!((s.len(), rest), (len, &b"y\0"[..]), "{len}");
        }
        let long = [&[b'x'; 300][..], b"\0"].concat();
        assert_eq!(
            read_cstr(&long).map(|(s, r)| (s.len(), r.len())),
            Some((300, 0))
        );
    }

    #[test]
    fn header_needs_five_bytes() {
        assert_eq!(header(b"Q\0\0\0", 100), Ok(None));
        assert_eq!(
            header(b"Q\0\0\0\x09select", 100),
            Ok(Some(Header {
                tag: b'Q',
                frame_len: 10
            }))
        );
    }

    #[test]
    fn header_rejects_bad_lengths() {
        assert_eq!(header(b"Q\0\0\0\x03", 100), Err(FrameError::BadLength(3)));
        assert_eq!(
            header(b"Q\xff\xff\xff\xff", 100),
            Err(FrameError::BadLength(-1))
        );
        assert_eq!(
            header(b"Q\0\0\x01\0", 100),
            Err(FrameError::TooLarge { len: 257, max: 100 })
        );
    }

    #[test]
    fn error_fields_parse() {
        let body = b"SFATAL\0VFATAL\0C28P01\0Mbad\0\0";
        let f = ErrorFields::parse(body);
        assert_eq!(f.severity, "FATAL");
        assert_eq!(f.code, "28P01");
        assert_eq!(f.message, "bad");
    }
}
