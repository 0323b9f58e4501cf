//! Builders for the backend messages the proxy sends to clients itself.
//! Each appends one complete frame to `buf`.

use bytes::{BufMut, Bytes, BytesMut};

/// Appends `tag`, a length placeholder, the body written by `f`, then
/// patches the length in.
#[inline]
fn frame(buf: &mut BytesMut, tag: u8, f: impl FnOnce(&mut BytesMut)) {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_i32(0);
    f(buf);
    let len = (buf.len() - at) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn cstr(buf: &mut BytesMut, s: &str) {
    // A NUL inside would end the field early; none of our texts have one,
    // but never let one through from a backend or config string.
    if s.as_bytes().contains(&0) {
        buf.extend(s.bytes().filter(|&b| b != 0));
    } else {
        buf.put_slice(s.as_bytes());
    }
    buf.put_u8(0);
}

pub fn auth_ok(buf: &mut BytesMut) {
    frame(buf, b'R', |b| b.put_i32(0));
}

pub fn auth_cleartext(buf: &mut BytesMut) {
    frame(buf, b'R', |b| b.put_i32(3));
}

pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    frame(buf, b'S', |b| {
        cstr(b, name);
        cstr(b, value);
    });
}

/// [`parameter_status`] of a name and value read up to a NUL (a server's
/// report, a startup setting), which can hold none: without the search for
/// one, as every login writes all of a server's parameters.
pub fn parameter_status_read(buf: &mut BytesMut, name: &str, value: &str) {
    debug_assert!(!name.contains('\0') && !value.contains('\0'));
    frame(buf, b'S', |b| {
        for s in [name, value] {
            b.put_slice(s.as_bytes());
            b.put_u8(0);
        }
    });
}

pub fn backend_key_data(buf: &mut BytesMut, pid: i32, secret: i32) {
    frame(buf, b'K', |b| {
        b.put_i32(pid);
        b.put_i32(secret);
    });
}

pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    frame(buf, b'Z', |b| b.put_u8(status));
}

/// NegotiateProtocolVersion: we speak 3.0 and none of the `_pq_` options.
/// The version goes whole (major << 16 | minor), as PostgreSQL sends it:
/// libpq 18 takes anything below 3.0 for a downgrade it must refuse.
pub fn negotiate_protocol_version(buf: &mut BytesMut, unknown: &[&str]) {
    frame(buf, b'v', |b| {
        b.put_i32(3 << 16);
        b.put_i32(unknown.len() as i32);
        for o in unknown {
            cstr(b, o);
        }
    });
}

/// Severity of an error the proxy raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The session continues.
    Error,
    /// The proxy closes the connection after sending it.
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// An ERROR on its own, to answer a message with (or to swap in for the
/// server's answer).
pub fn error(code: &str, message: &str, hint: Option<&str>) -> Bytes {
    let mut buf = BytesMut::new();
    error_response(&mut buf, Severity::Error, code, message, hint);
    buf.freeze()
}

pub fn error_response(
    buf: &mut BytesMut,
    severity: Severity,
    code: &str,
    message: &str,
    hint: Option<&str>,
) {
    frame(buf, b'E', |b| {
        b.put_u8(b'S');
        cstr(b, severity.as_str());
        b.put_u8(b'V');
        cstr(b, severity.as_str());
        b.put_u8(b'C');
        cstr(b, code);
        b.put_u8(b'M');
        cstr(b, message);
        if let Some(h) = hint {
            b.put_u8(b'H');
            cstr(b, h);
        }
        b.put_u8(0);
    });
}

/// Type OID of `text`: every column the proxy describes itself is text.
const TEXT_OID: i32 = 25;

/// RowDescription of text columns in text format.
pub fn row_description(buf: &mut BytesMut, columns: &[&str]) {
    frame(buf, b'T', |b| {
        b.put_i16(columns.len() as i16);
        for c in columns {
            cstr(b, c);
            b.put_i32(0); // table OID
            b.put_i16(0); // column number
            b.put_i32(TEXT_OID);
            b.put_i16(-1); // variable size
            b.put_i32(-1); // no type modifier
            b.put_i16(0); // text format
        }
    });
}

/// DataRow; `None` is SQL NULL.
pub fn data_row<S: AsRef<str>>(buf: &mut BytesMut, values: &[Option<S>]) {
    frame(buf, b'D', |b| {
        b.put_i16(values.len() as i16);
        for v in values {
            match v {
                Some(v) => {
                    b.put_i32(v.as_ref().len() as i32);
                    b.extend_from_slice(v.as_ref().as_bytes());
                }
                None => b.put_i32(-1),
            }
        }
    });
}

pub fn command_complete(buf: &mut BytesMut, tag: &str) {
    frame(buf, b'C', |b| cstr(b, tag));
}

pub fn empty_query_response(buf: &mut BytesMut) {
    frame(buf, b'I', |_| {});
}

/// NoticeResponse: information that is not an error.
pub fn notice_response(buf: &mut BytesMut, message: &str) {
    frame(buf, b'N', |b| {
        for (field, value) in [
            (b'S', "NOTICE"),
            (b'V', "NOTICE"),
            (b'C', "00000"),
            (b'M', message),
        ] {
            b.put_u8(field);
            cstr(b, value);
        }
        b.put_u8(0);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ErrorFields, header};

    #[test]
    fn error_response_round_trips() {
        let mut buf = BytesMut::new();
        error_response(&mut buf, Severity::Fatal, "28P01", "no", Some("try again"));
        let h = header(&buf, 1 << 20).unwrap().unwrap();
        assert_eq!(h.tag, b'E');
        assert_eq!(h.frame_len, buf.len());
        let f = ErrorFields::parse(&buf[5..]);
        assert_eq!((f.severity.as_str(), f.code.as_str()), ("FATAL", "28P01"));
        assert_eq!(f.message, "no");
    }

    #[test]
    fn frames_have_exact_lengths() {
        let mut buf = BytesMut::new();
        parameter_status(&mut buf, "a", "bc");
        ready_for_query(&mut buf, b'I');
        assert_eq!(&buf[..], b"S\0\0\0\x09a\0bc\0Z\0\0\0\x05I");
    }

    #[test]
    fn negotiate_protocol_version_names_3_0_whole() {
        let mut buf = BytesMut::new();
        negotiate_protocol_version(&mut buf, &["_pq_.x"]);
        assert_eq!(&buf[..], b"v\0\0\0\x13\0\x03\0\0\0\0\0\x01_pq_.x\0");
    }

    #[test]
    fn a_nul_inside_a_text_is_dropped() {
        let mut buf = BytesMut::new();
        parameter_status(&mut buf, "a", "b\0c");
        assert_eq!(&buf[..], b"S\0\0\0\x09a\0bc\0");
    }

    #[test]
    fn row_set_frames_have_exact_bytes() {
        let mut buf = BytesMut::new();
        row_description(&mut buf, &["a"]);
        assert_eq!(
            &buf[..],
            b"T\0\0\0\x1a\0\x01a\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0"
        );
        buf.clear();
        data_row(&mut buf, &[Some("x"), None]);
        assert_eq!(&buf[..], b"D\0\0\0\x0f\0\x02\0\0\0\x01x\xff\xff\xff\xff");
        buf.clear();
        command_complete(&mut buf, "SHOW");
        empty_query_response(&mut buf);
        assert_eq!(&buf[..], b"C\0\0\0\x09SHOW\0I\0\0\0\x04");
    }
}
