//! CancelRequest routing. Each client gets a (pid, secret) pair of the
//! proxy's own; the backend's real pair never leaves the proxy. A cancel
//! is forwarded only when both halves match.

// Keys the proxy draws itself: foldhash (randomly seeded) costs a
// fraction of SipHash at every login and goodbye.
use foldhash::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
/// A cancel that races with the end of a transaction may still be on its
/// way to the server just left: that server is not handed to another
/// client until the cancel has landed (see [`InFlight`]).
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
    pub in_flight: Arc<InFlight>,
}

/// Backends (by pid) a forwarded cancel is on its way to. The pool hands
/// none of them to a client until the server has taken the request: it
/// closes the cancel's connection once it has signalled the backend, and
/// a signal that finds the backend idle is ignored. Otherwise a cancel
/// racing the end of its statement (a driver's timeout) could stop the
/// next client's statement on that connection (PgBouncer's can).
#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    pids: Mutex<Vec<i32>>,
}

impl InFlight {
    /// Whether a cancel is on its way to backend `pid`: one load when no
    /// cancel is (at every checkout).
    #[inline]
    pub fn holds(&self, pid: i32) -> bool {
        self.count.load(Ordering::SeqCst) != 0 && self.pids.lock().contains(&pid)
    }

    fn add(self: &Arc<Self>, pid: i32) -> Sending {
        self.pids.lock().push(pid);
        self.count.fetch_add(1, Ordering::SeqCst);
        Sending {
            in_flight: self.clone(),
            pid,
        }
    }
}

/// A cancel on its way to backend `pid`, until dropped.
pub struct Sending {
    in_flight: Arc<InFlight>,
    pid: i32,
}

impl Drop for Sending {
    fn drop(&mut self) {
        let mut pids = self.in_flight.pids.lock();
        if let Some(i) = pids.iter().position(|&p| p == self.pid) {
            pids.swap_remove(i);
        }
        self.in_flight.count.fetch_sub(1, Ordering::Release);
    }
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
    /// Detaching takes no lock; see [`CancelMap::resolve`] for why the
    /// order of the two stores is enough.
    pub fn set_backend(&self, backend: Option<BackendKey>) {
        match backend {
            Some(b) => {
                let mut key = self.backend.backend.lock();
                *key = Some(b);
                self.backend.attached.store(true, Ordering::SeqCst);
            }
            None => self.backend.attached.store(false, Ordering::SeqCst),
        }
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

    /// The backend to cancel, if `secret` is right for `pid`, noted as
    /// one a cancel is on its way to until the guard is dropped.
    ///
    /// Noted first, then found attached (all sequentially consistent):
    /// a client that detaches after that finds it noted at the pool's
    /// next checkout, and one that detached before is not cancelled. The
    /// key's lock keeps the client from attaching elsewhere meanwhile.
    pub fn resolve(&self, pid: i32, secret: i32) -> Option<(BackendKey, Sending)> {
        let map = self.inner.lock();
        let e = map.get(&pid)?;
        // Both are random 32-bit values; a timing difference on one
        // comparison reveals nothing usable, but keep it branch-free anyway.
        if (e.secret ^ secret) != 0 {
            return None;
        }
        let key = e.backend.backend.lock();
        let to = (*key)?;
        let sending = self.in_flight.add(to.pid);
        e.backend
            .attached
            .load(Ordering::SeqCst)
            .then_some((to, sending))
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
        Ok::<_, String>(stream)
    };
    let mut stream = match timers.timeout(ep.connect_timeout, send).await {
        Ok(r) => r?,
        Err(_) => return Err(format!("no connection within {:?}", ep.connect_timeout)),
    };
    // PostgreSQL closes the connection once it has signalled the backend:
    // from then on the cancel can't reach a later statement. (Sent
    // either way: a server that keeps it open is not waited for long.)
    let _ = timers
        .timeout(LANDED_WITHIN, stream.read(&mut [0u8; 1]))
        .await;
    Ok(())
}

/// How long a forwarded cancel's backend is kept from the pool at most.
const LANDED_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

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
        let (to, sending) = map.resolve(pid, secret).unwrap();
        assert_eq!(to.pid, 42);
        // Held from the pool until the cancel has landed.
        assert!(map.in_flight.holds(42) && !map.in_flight.holds(43));
        let again = map.resolve(pid, secret).unwrap().1;
        drop(sending);
        assert!(
            map.in_flight.holds(42),
            "a second cancel is still on its way"
        );
        drop(again);
        assert!(!map.in_flight.holds(42));
        assert!(map.resolve(pid, secret.wrapping_add(1)).is_none());
        client.set_backend(None);
        assert!(map.resolve(pid, secret).is_none(), "between transactions");
        client.set_backend(Some(key));
        drop(client);
        assert!(map.resolve(pid, secret).is_none());
    }
}
