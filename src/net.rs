//! Options of the proxy's TCP sockets, to clients and servers alike.

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

/// Keepalive probes after this long without traffic…
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// …this often, and the peer is given up after this many unanswered.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 6;

/// A server connection's socket: no Nagle delay (every write is a whole
/// batch already), and keepalive.
pub fn configure(tcp: &TcpStream) {
    tcp.set_nodelay(true).ok();
    keep_alive(&SockRef::from(tcp));
}

/// Keepalive: a peer that vanished without a word (a host gone, a NAT or
/// load balancer that forgot the connection) is found within about two
/// minutes of quiet, not the kernel's two hours, so that what waits on it
/// is given back: the server connection an idle-in-transaction client
/// holds, the client a silently dropped server connection would hang.
/// Set on the listening socket, clients' sockets inherit it (Linux) at no
/// cost per connection. (No TCP_USER_TIMEOUT: it also ends connections
/// whose peer just stops reading for a while, as a server running a long
/// query does.)
pub fn keep_alive(sock: &SockRef<'_>) {
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    if let Err(e) = sock.set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "TCP keepalive not set");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_keepalive(sock: &SockRef<'_>) {
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(sock.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), KEEPALIVE_PROBES);
    }

    #[tokio::test]
    async fn server_sockets_and_accepted_clients_keep_alive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        keep_alive(&SockRef::from(&listener));
        let out = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        configure(&out);
        assert!(out.nodelay().unwrap());
        assert_keepalive(&SockRef::from(&out));
        let (accepted, _) = listener.accept().await.unwrap();
        assert_keepalive(&SockRef::from(&accepted));
    }
}
