//! What the proxy reads of a server's messages outside the relay: the
//! rows of its own control queries, and the parameters the server reports.

use std::borrow::Cow;

use bytes::{Buf, BytesMut};

use super::server::{ServerError, bad};
use crate::protocol::{self, read_cstr};

pub(super) fn parse_data_row(mut body: &[u8]) -> Result<Vec<String>, ServerError> {
    if body.len() < 2 {
        return Err(bad("short DataRow"));
    }
    let n = body.get_i16();
    let mut cols = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        if body.len() < 4 {
            return Err(bad("short DataRow"));
        }
        let len = body.get_i32();
        if len < 0 {
            cols.push(String::new());
            continue;
        }
        let len = len as usize;
        if body.len() < len {
            return Err(bad("short DataRow"));
        }
        cols.push(String::from_utf8_lossy(&body[..len]).into_owned());
        body.advance(len);
    }
    Ok(cols)
}

/// The parameters a server reported (ParameterStatus), the latest value of
/// each, in the order first reported.
///
/// Every client that logs in over the connection is sent them all, so
/// they are also kept as those ParameterStatus messages, encoded again
/// only after a report changed them (a SET of a reported setting): one
/// copy per login instead of a message built per parameter.
#[derive(Default)]
pub struct ServerParams {
    list: Vec<(String, String)>,
    /// `list` as ParameterStatus messages; empty when stale.
    wire: BytesMut,
}

impl ServerParams {
    /// Applies a ParameterStatus body (`name\0value\0`).
    pub fn record(&mut self, body: &[u8]) {
        let Some((name, rest)) = read_cstr(body) else {
            return;
        };
        let Some((value, _)) = read_cstr(rest) else {
            return;
        };
        let (name, value) = (text(name), text(value));
        match self.list.iter_mut().find(|(n, _)| *n == name) {
            Some(p) if p.1 == value => return,
            Some(p) => p.1 = value.into_owned(),
            None => self.list.push((name.into_owned(), value.into_owned())),
        }
        self.wire.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.list.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The value reported for `name`, matched exactly.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|&(n, _)| n == name).map(|(_, v)| v)
    }

    /// All of them, as the ParameterStatus messages a client is sent.
    pub fn messages(&mut self) -> &[u8] {
        if self.wire.is_empty() {
            for (n, v) in &self.list {
                protocol::parameter_status_read(&mut self.wire, n, v);
            }
        }
        &self.wire
    }

    /// All of them as messages into `buf`, with the value in `wanted` (a
    /// client's settings, names lowercase) instead where it names one.
    pub fn write_with(&self, buf: &mut BytesMut, wanted: &[(String, String)]) {
        for (n, v) in &self.list {
            let v = wanted
                .iter()
                .find(|(w, _)| w.eq_ignore_ascii_case(n))
                .map_or(v, |(_, w)| w);
            protocol::parameter_status_read(buf, n, v);
        }
    }
}

/// A server's text, as UTF-8 (what is not, replaced); valid, it is only
/// borrowed.
fn text(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, value: &str) -> Vec<u8> {
        [name.as_bytes(), b"\0", value.as_bytes(), b"\0"].concat()
    }

    /// What a client must be sent: one ParameterStatus per parameter, as
    /// the protocol writer builds them.
    fn expected(pairs: &[(&str, &str)]) -> BytesMut {
        let mut b = BytesMut::new();
        for (n, v) in pairs {
            protocol::parameter_status(&mut b, n, v);
        }
        b
    }

    #[test]
    fn the_messages_follow_every_report() {
        let mut p = ServerParams::default();
        assert!(p.messages().is_empty());
        p.record(&report("server_version", "15.18"));
        p.record(&report("application_name", ""));
        let first = expected(&[("server_version", "15.18"), ("application_name", "")]);
        assert_eq!(p.messages(), &first[..]);
        // The same value again changes nothing; a new one is sent in place.
        p.record(&report("application_name", ""));
        assert_eq!(p.messages(), &first[..]);
        p.record(&report("application_name", "pgbench"));
        assert_eq!(
            p.messages(),
            &expected(&[("server_version", "15.18"), ("application_name", "pgbench")])[..]
        );
        assert_eq!(p.get("application_name"), Some("pgbench"));
        assert_eq!(p.get("Application_Name"), None);
        // Not valid UTF-8: replaced, as before; a report cut short: ignored.
        p.record(b"client_encoding\0\xff\0");
        p.record(b"TimeZone\0UTC");
        assert_eq!(
            p.messages(),
            &expected(&[
                ("server_version", "15.18"),
                ("application_name", "pgbench"),
                ("client_encoding", "\u{fffd}"),
            ])[..]
        );
        assert_eq!(p.iter().count(), 3);
        // A client's own values, for settings still to be SET.
        let mut buf = BytesMut::new();
        p.write_with(&mut buf, &[("application_name".into(), "app".into())]);
        assert_eq!(
            buf,
            expected(&[
                ("server_version", "15.18"),
                ("application_name", "app"),
                ("client_encoding", "\u{fffd}"),
            ])
        );
    }
}
