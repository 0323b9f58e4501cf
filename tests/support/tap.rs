//! A TCP relay between the proxy and PostgreSQL that records how each
//! connection starts and when the server's end of it closes, and can hold
//! that close back from the proxy for a while (a server slow to let go),
//! or a cancel request back from the server (a cancel slow to land).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
pub enum Event {
    /// A connection's first packet: its request code (SSLRequest, 3.0, …)
    /// and, for a plain startup, its user.
    Opened {
        id: usize,
        at: Instant,
        code: u32,
        user: Option<String>,
    },
    /// The server closed its end.
    ServerClosed { id: usize, at: Instant },
}

pub struct Tap {
    pub addr: SocketAddr,
    pub events: Arc<Mutex<Vec<Event>>>,
}

impl Tap {
    /// Relays to the server on `port`; each server close reaches the proxy
    /// `hold` later.
    pub async fn start(port: u16, hold: Duration) -> Tap {
        Tap::start_with(port, hold, Duration::ZERO).await
    }

    /// [`Tap::start`], and each cancel request reaches the server `delay`
    /// late.
    pub async fn start_with(port: u16, hold: Duration, delay: Duration) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let log = events.clone();
        tokio::spawn(async move {
            let mut next_id = 0;
            while let Ok((client, _)) = listener.accept().await {
                next_id += 1;
                tokio::spawn(relay(client, port, next_id, (hold, delay), log.clone()));
            }
        });
        Tap { addr, events }
    }

    /// `url` (a cluster URL) pointed at the tap.
    pub fn url(&self, url: &str, port: u16) -> String {
        url.replace(&format!("127.0.0.1:{port}"), &self.addr.to_string())
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

async fn relay(
    mut client: TcpStream,
    port: u16,
    id: usize,
    (hold, cancel_delay): (Duration, Duration),
    log: Arc<Mutex<Vec<Event>>>,
) {
    let Ok(len) = client.read_i32().await else {
        return;
    };
    let mut body = vec![0u8; (len.clamp(8, 10_000) - 4) as usize];
    if client.read_exact(&mut body).await.is_err() {
        return;
    }
    let code = u32::from_be_bytes(body[..4].try_into().unwrap());
    let params: Vec<&[u8]> = body[4..].split(|&b| b == 0).collect();
    let user = params
        .chunks(2)
        .find(|kv| kv[0] == b"user")
        .and_then(|kv| kv.get(1))
        .map(|u| String::from_utf8_lossy(u).into_owned());
    let at = Instant::now();
    log.lock()
        .unwrap()
        .push(Event::Opened { id, at, code, user });
    const CANCEL_REQUEST: u32 = 80877102;
    if code == CANCEL_REQUEST {
        tokio::time::sleep(cancel_delay).await;
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    if server.write_all(&len.to_be_bytes()).await.is_err() || server.write_all(&body).await.is_err()
    {
        return;
    }
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
        let _ = sw.shutdown().await;
    });
    let _ = tokio::io::copy(&mut sr, &mut cw).await;
    log.lock().unwrap().push(Event::ServerClosed {
        id,
        at: Instant::now(),
    });
    tokio::time::sleep(hold).await;
    let _ = cw.shutdown().await;
}
