//! Reads the server's side of a control-plane login and refuses a
//! cleartext password request where it may not be answered.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};

use crate::protocol::tag;

/// Reads the server's side of the login, message by message, until it is
/// over, and fails the read that carries a cleartext password request
/// where one may not be answered: tokio-postgres never sees it.
pub(super) struct PasswordGuard {
    pub(super) cleartext_ok: bool,
    pub(super) done: bool,
    /// The next byte answers the SSLRequest: 'S' hands the login over to
    /// the TLS layer (and its own guard), anything else leaves it here.
    ssl_reply: bool,
    /// Type, length and the first four bytes of the body (the request code).
    head: [u8; 9],
    have: usize,
    /// Body bytes of the current message still to pass.
    skip: usize,
}

impl PasswordGuard {
    pub(super) fn new(cleartext_ok: bool, ssl_reply: bool) -> PasswordGuard {
        PasswordGuard {
            cleartext_ok,
            done: false,
            ssl_reply,
            head: [0; 9],
            have: 0,
            skip: 0,
        }
    }

    /// A read from `stream`, watched: the read that carries a refused
    /// request fails.
    pub(super) fn read<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(stream).poll_read(cx, buf))?;
        if !self.done {
            self.scan(&buf.filled()[before..])?;
        }
        Poll::Ready(Ok(()))
    }

    pub(super) fn scan(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if self.ssl_reply && !bytes.is_empty() {
            self.ssl_reply = false;
            self.done = bytes[0] == b'S';
            bytes = &bytes[1..];
        }
        while !self.done && !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            // The header first, then (for a request) its code.
            let want = if self.have < 5 { 5 } else { 9 };
            let n = (want - self.have).min(bytes.len());
            self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < want {
                continue;
            }
            let len = u32::from_be_bytes(self.head[1..5].try_into().expect("4 bytes")) as usize;
            match (self.head[0], self.have) {
                // Sent before the login: the server's minor protocol version.
                (tag::NEGOTIATE_PROTOCOL_VERSION, 5) if len >= 4 => {
                    self.skip = len - 4;
                    self.have = 0;
                }
                (tag::AUTHENTICATION, 5) if len >= 8 => {}
                (tag::AUTHENTICATION, 9) => {
                    let code = i32::from_be_bytes(self.head[5..9].try_into().expect("4 bytes"));
                    if code == 0 {
                        self.done = true;
                    } else if code == 3 && !self.cleartext_ok {
                        self.done = true;
                        return Err(io::Error::new(
                            io::ErrorKind::PermissionDenied,
                            "the server asked for the password in cleartext over a \
                             connection that may be read or intercepted; use \
                             scram-sha-256 in pg_hba.conf, or backend.tls = verify-ca \
                             or verify-full",
                        ));
                    }
                    self.skip = len - 8;
                    self.have = 0;
                }
                // An error, or a malformed message: the login is over
                // either way, and tokio-postgres says why.
                _ => self.done = true,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(code: i32, body: &[u8]) -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend_from_slice(&(8 + body.len() as u32).to_be_bytes());
        m.extend_from_slice(&code.to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    /// Every way of cutting the bytes into reads gives the same verdict.
    fn verdict(bytes: &[u8], cleartext_ok: bool) -> Vec<bool> {
        (1..=bytes.len())
            .map(|step| {
                let mut g = PasswordGuard::new(cleartext_ok, false);
                bytes.chunks(step).all(|c| g.scan(c).is_ok())
            })
            .collect()
    }

    #[test]
    fn a_cleartext_request_fails_the_read_unless_allowed() {
        let mut login = vec![b'v', 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0];
        login.extend(auth(3, b""));
        assert!(verdict(&login, false).iter().all(|ok| !ok));
        assert!(verdict(&login, true).iter().all(|ok| *ok));
    }

    #[test]
    fn proofs_of_the_password_pass() {
        let mut scram = auth(10, b"SCRAM-SHA-256\0\0");
        scram.extend(auth(11, b"r=abc,s=def,i=4096"));
        scram.extend(auth(12, b"v=xyz"));
        scram.extend(auth(0, b""));
        assert!(verdict(&scram, false).iter().all(|ok| *ok));
        assert!(verdict(&auth(5, b"salt"), false).iter().all(|ok| *ok));
    }

    #[test]
    fn the_guard_stops_once_the_login_is_over() {
        // After AuthenticationOk the stream is the session's; a row that
        // happens to look like a request is data.
        let mut ok = auth(0, b"");
        ok.extend(auth(3, b""));
        assert!(verdict(&ok, false).iter().all(|ok| *ok));
        let mut refused = vec![b'E', 0, 0, 0, 5, 0];
        refused.extend(auth(3, b""));
        assert!(verdict(&refused, false).iter().all(|ok| *ok));
        // A request too short to hold its code: malformed, for
        // tokio-postgres to refuse; nothing after it is read as a request.
        let mut short = vec![b'R', 0, 0, 0, 4];
        short.extend(auth(3, b""));
        assert!(verdict(&short, false).iter().all(|ok| *ok));
    }

    #[test]
    fn after_an_sslrequest_only_a_refusal_keeps_the_guard_here() {
        // 'N': the login goes on in the clear, still watched.
        let mut plain = vec![b'N'];
        plain.extend(auth(3, b""));
        let mut g = PasswordGuard::new(false, true);
        assert!(g.scan(&plain).is_err());
        // 'S': what follows is TLS records, for the guard above TLS.
        let mut tls = vec![b'S'];
        tls.extend(auth(3, b""));
        let mut g = PasswordGuard::new(false, true);
        assert!(g.scan(&tls).is_ok() && g.done);
    }
}
