//! A TCP proxy for fault tests: it forwards bytes between its clients and one
//! upstream address, and can cut every connection it carries at once (what
//! the client sees when a NATS server's network drops: bytes in flight are
//! lost and the client reconnects). It can also slow the way back to the
//! client down, like a slow link: then bytes are always in flight, so every
//! cut loses some.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Forwards `127.0.0.1:<port>` to an upstream address until dropped.
pub(crate) struct TcpProxy {
    addr: SocketAddr,
    /// While set, new connections are closed at once (the network is down).
    blocked: Arc<std::sync::atomic::AtomicBool>,
    cuts: watch::Sender<u64>,
    connections: Arc<AtomicU64>,
    listener: JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free port and forwards each connection to `upstream`
    /// (`host:port`).
    pub(crate) async fn start(upstream: &str) -> Self {
        Self::start_with_limit(upstream, None).await
    }

    /// Like [`TcpProxy::start`], forwarding at most `bytes_per_ms` from the
    /// upstream to each client when given.
    pub(crate) async fn start_with_limit(upstream: &str, bytes_per_ms: Option<usize>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (cuts, _) = watch::channel(0u64);
        let connections = Arc::new(AtomicU64::new(0));
        let blocked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let upstream = upstream.to_owned();
        let task = {
            let (cuts, connections, blocked) = (cuts.clone(), connections.clone(), blocked.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else { continue };
                    if blocked.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let mut cut = cuts.subscribe();
                    cut.mark_unchanged();
                    connections.fetch_add(1, Ordering::Relaxed);
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
                        // Whichever ends first; both sockets are dropped with
                        // whatever they had buffered.
                        match bytes_per_ms {
                            None => tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                _ = cut.changed() => {}
                            },
                            Some(limit) => {
                                let (mut client_read, mut client_write) = client.split();
                                let (mut server_read, mut server_write) = server.split();
                                tokio::select! {
                                    _ = tokio::io::copy(&mut client_read, &mut server_write) => {}
                                    _ = slow_copy(&mut server_read, &mut client_write, limit) => {}
                                    _ = cut.changed() => {}
                                }
                            }
                        }
                    });
                }
            })
        };
        TcpProxy { addr, blocked, cuts, connections, listener: task }
    }

    /// The proxy's address as a NATS URL.
    pub(crate) fn nats_url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Cuts every connection open now; new ones are accepted as before.
    pub(crate) fn cut_all(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Cuts every connection and refuses new ones until [`TcpProxy::unblock`]:
    /// the clients are cut off for as long as the test wants.
    pub(crate) fn block(&self) {
        self.blocked.store(true, Ordering::SeqCst);
        self.cut_all();
    }

    /// Lets connections through again.
    pub(crate) fn unblock(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }

    /// Runs `work` while cutting every connection every `period`; returns
    /// its output and how many cuts happened.
    pub(crate) async fn cutting_every<T>(
        &self,
        period: std::time::Duration,
        work: impl Future<Output = T>,
    ) -> (T, u32) {
        let mut cuts = 0;
        let cutting = async {
            loop {
                tokio::time::sleep(period).await;
                self.cut_all();
                cuts += 1;
            }
        };
        let output = tokio::select! {
            output = work => output,
            () = cutting => unreachable!("the cutting never ends"),
        };
        (output, cuts)
    }

    /// How many connections the proxy has accepted.
    pub(crate) fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.listener.abort();
        self.cut_all();
    }
}

/// Copies at most `limit` bytes per millisecond until either side ends.
async fn slow_copy<R, W>(from: &mut R, to: &mut W, limit: usize) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; limit.max(1)];
    loop {
        let n = from.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buffer[..n]).await?;
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// `host:port` of a `nats://host:port` URL.
pub(crate) fn host_port(url: &str) -> &str {
    url.strip_prefix("nats://").unwrap_or(url)
}

#[tokio::test]
async fn the_proxy_forwards_bytes_and_cuts_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An echo server upstream.
    let echo = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let echo_addr = echo.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = socket.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    let proxy = TcpProxy::start(&echo_addr).await;
    let mut client = TcpStream::connect(proxy.addr).await.expect("connect");
    client.write_all(b"ping").await.expect("write");
    let mut answer = [0u8; 4];
    client.read_exact(&mut answer).await.expect("read");
    assert_eq!(&answer, b"ping");
    proxy.cut_all();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), client.read_to_end(&mut rest))
        .await
        .expect("the cut connection ends");
    assert!(read.map_or(true, |n| n == 0), "nothing arrives after the cut");
    assert_eq!(proxy.connections(), 1);
}
