//! A small TCP fault proxy between r2-sync and a server (PostgreSQL or S3). It can be taken
//! down (live connections cut, new ones dropped), cut every connection after some bytes of
//! answer, stall answers, or slow them to a rate; it counts the connections it accepted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Default)]
struct Faults {
    /// Close each connection after this many bytes from the server (0 = never).
    cut_after: AtomicU64,
    /// Bytes per second from the server (0 = unlimited).
    rate: AtomicU64,
    /// Hold every answer back while set.
    stall: AtomicBool,
    accepted: AtomicU64,
}

pub struct Proxy {
    pub addr: SocketAddr,
    down: Arc<watch::Sender<bool>>,
    faults: Arc<Faults>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, _) = watch::channel(false);
        let down = Arc::new(tx);
        let faults = Arc::new(Faults::default());
        let (state, shared) = (Arc::clone(&down), Arc::clone(&faults));
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                shared.accepted.fetch_add(1, Ordering::Relaxed);
                if *state.borrow() {
                    drop(client);
                    continue;
                }
                let mut watch = state.subscribe();
                let faults = Arc::clone(&shared);
                tokio::spawn(async move {
                    let Ok(upstream) = TcpStream::connect(target).await else {
                        return;
                    };
                    drop(client.set_nodelay(true));
                    tokio::select! {
                        () = relay(client, upstream, faults) => {}
                        _ = watch.wait_for(|down| *down) => {}
                    }
                });
            }
        });
        Self {
            addr,
            down,
            faults,
            task,
        }
    }

    /// Cuts every live connection and refuses new ones until [`Proxy::up`].
    pub fn down(&self) {
        self.down.send_replace(true);
    }

    pub fn up(&self) {
        self.down.send_replace(false);
    }

    pub fn cut_after(&self, bytes: u64) {
        self.faults.cut_after.store(bytes, Ordering::Relaxed);
    }

    pub fn rate(&self, bytes_per_sec: u64) {
        self.faults.rate.store(bytes_per_sec, Ordering::Relaxed);
    }

    pub fn stall(&self, on: bool) {
        self.faults.stall.store(on, Ordering::Relaxed);
    }

    /// Connections accepted so far (including refused ones while down).
    pub fn accepted(&self) -> u64 {
        self.faults.accepted.load(Ordering::Relaxed)
    }
}

/// Client→server verbatim; server→client through the faults.
async fn relay(client: TcpStream, upstream: TcpStream, faults: Arc<Faults>) {
    let (mut client_rd, mut client_wr) = client.into_split();
    let (mut up_rd, mut up_wr) = upstream.into_split();
    let requests = async {
        drop(tokio::io::copy(&mut client_rd, &mut up_wr).await);
        drop(up_wr.shutdown().await);
    };
    let answers = async {
        let mut buf = vec![0u8; 16 << 10];
        let mut sent = 0u64;
        loop {
            while faults.stall.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let Ok(n) = up_rd.read(&mut buf).await else { return };
            if n == 0 {
                drop(client_wr.shutdown().await);
                return;
            }
            let cut = faults.cut_after.load(Ordering::Relaxed);
            let n = if cut > 0 {
                n.min((cut - sent.min(cut)) as usize)
            } else {
                n
            };
            if client_wr.write_all(&buf[..n]).await.is_err() {
                return;
            }
            sent += n as u64;
            if cut > 0 && sent >= cut {
                return; // dropping both halves resets the connection mid-answer
            }
            let rate = faults.rate.load(Ordering::Relaxed);
            if rate > 0 {
                tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
            }
        }
    };
    tokio::select! {
        () = requests => {}
        () = answers => {}
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
