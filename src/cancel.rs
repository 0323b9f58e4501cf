//! CancelRequest routing. Each client gets a (pid, secret) pair of the
//! proxy's own; the backend's real pair never leaves the proxy. A cancel
//! is forwarded only when both halves match.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::pool::Endpoint;
use crate::pool::tls::negotiate;
use crate::timer::Timers;

/// Where a client's queries currently run.
#[derive(Debug, Clone, Copy)]
pub struct BackendKey {
    pub addr: SocketAddr,
    pub pid: i32,
    pub secret: i32,
}

/// Where one client's queries run now. Shared between the map (for
/// cancels) and the client's session (which re-points it per transaction
/// without touching the map).
type Slot = Arc<SlotInner>;

/// In transaction mode a client attaches to and detaches from a server at
/// every transaction: detaching is one atomic store, not a second lock.
/// A cancel that races with the end of a transaction may still reach the
/// server just left (it may already serve another client): a cancel is
/// sent over a new connection after the lookup anyway, so no lookup can
/// close that window; PgBouncer has the same one.
#[derive(Default)]
struct SlotInner {
    attached: AtomicBool,
    backend: Mutex<Option<BackendKey>>,
}

struct Entry {
    secret: i32,
    backend: Slot,
}

#[derive(Default)]
pub struct CancelMap {
    inner: Mutex<HashMap<i32, Entry>>,
}

/// A client's (pid, secret), registered until dropped.
pub struct CancelKey<'a> {
    map: &'a CancelMap,
    pub pid: i32,
    pub secret: i32,
    backend: Slot,
}

impl CancelKey<'_> {
    /// Points this client's cancels at `backend` (None: nothing runs).
    pub fn set_backend(&self, backend: Option<BackendKey>) {
        let attached = backend.is_some();
        if attached {
            *self.backend.backend.lock() = backend;
        }
        self.backend.attached.store(attached, Ordering::Release);
    }
}

impl Drop for CancelKey<'_> {
    fn drop(&mut self) {
        self.map.inner.lock().remove(&self.pid);
    }
}

impl CancelMap {
    /// Allocates a fresh, unused (pid, secret) for a client.
    pub fn register(&self) -> CancelKey<'_> {
        let mut map = self.inner.lock();
        loop {
            let pid = rand::random_range(1..i32::MAX);
            if let std::collections::hash_map::Entry::Vacant(v) = map.entry(pid) {
                let secret = rand::random();
                let backend = Slot::default();
                v.insert(Entry {
                    secret,
                    backend: backend.clone(),
                });
                return CancelKey {
                    map: self,
                    pid,
                    secret,
                    backend,
                };
            }
        }
    }

    /// The backend to cancel, if `secret` is right for `pid`.
    pub fn resolve(&self, pid: i32, secret: i32) -> Option<BackendKey> {
        let map = self.inner.lock();
        let e = map.get(&pid)?;
        // Both are random 32-bit values; a timing difference on one
        // comparison reveals nothing usable, but keep it branch-free anyway.
        if (e.secret ^ secret) != 0 {
            return None;
        }
        if !e.backend.attached.load(Ordering::Acquire) {
            return None;
        }
        *e.backend.backend.lock()
    }
}

/// Sends a CancelRequest for `key` to its server, encrypted as the
/// backend connections are (`backend.tls`): the pair is as good as a
/// password for every later query on that connection to whoever reads it
/// on the way. Bounded by the connect timeout: a server that drops
/// packets must not hold the caller for minutes.
pub async fn send_cancel(key: BackendKey, ep: &Endpoint, timers: &Timers) -> Result<(), String> {
    let send = async {
        let tcp = TcpStream::connect(key.addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut stream = negotiate(ep, tcp).await.map_err(|e| e.to_string())?;
        let mut buf = BytesMut::with_capacity(16);
        postgres_protocol::message::frontend::cancel_request(key.pid, key.secret, &mut buf);
        stream.write_all(&buf).await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        // Postgres closes the connection once it has read the request.
        stream.shutdown().await.ok();
        Ok(())
    };
    match timers.timeout(ep.connect_timeout, send).await {
        Ok(r) => r,
        Err(_) => Err(format!("no connection within {:?}", ep.connect_timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_needs_the_right_secret() {
        let map = CancelMap::default();
        let client = map.register();
        let (pid, secret) = (client.pid, client.secret);
        let key = BackendKey {
            addr: "127.0.0.1:1".parse().unwrap(),
            pid: 42,
            secret: 7,
        };
        assert!(map.resolve(pid, secret).is_none(), "no backend yet");
        client.set_backend(Some(key));
        assert_eq!(map.resolve(pid, secret).unwrap().pid, 42);
        assert!(map.resolve(pid, secret.wrapping_add(1)).is_none());
        client.set_backend(None);
        assert!(map.resolve(pid, secret).is_none(), "between transactions");
        client.set_backend(Some(key));
        drop(client);
        assert!(map.resolve(pid, secret).is_none());
    }
}
