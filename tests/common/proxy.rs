//! A TCP proxy that misbehaves on purpose, for fault tests: between two
//! nodes it drops, stalls, slices and resets connections according to its
//! current mode, and forwards faithfully once healed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the proxy did to connections, for the test's report.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub connections: AtomicU64,
    pub dropped: AtomicU64,
    pub stalled: AtomicU64,
    pub sliced: AtomicU64,
    pub reset: AtomicU64,
}

pub struct ChaosProxy {
    pub addr: SocketAddr,
    upstream: Arc<Mutex<Option<SocketAddr>>>,
    healed: Arc<AtomicBool>,
    pub counts: Arc<FaultCounts>,
    task: JoinHandle<()>,
}

/// What happens to one connection while the proxy is unhealed: it always
/// ends after `limit` bytes (so faults force reconnects), by a close or a
/// reset, and may be sliced into small pieces or stall on the way.
#[derive(Clone, Copy)]
struct Fault {
    limit: u64,
    reset: bool,
    slice: bool,
    stall: Option<(u64, Duration)>,
}

impl ChaosProxy {
    /// Listens on 127.0.0.1; faults are drawn from `seed`.
    pub async fn start(seed: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let healed = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(FaultCounts::default());
        let task = tokio::spawn({
            let (upstream, healed, counts) = (upstream.clone(), healed.clone(), counts.clone());
            async move {
                let mut rng = StdRng::seed_from_u64(seed);
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    counts.connections.fetch_add(1, Ordering::Relaxed);
                    let Some(target) = *upstream.lock().unwrap() else {
                        continue;
                    };
                    let fault = (!healed.load(Ordering::Relaxed)).then(|| {
                        let limit = rng.random_range(50..15_000);
                        Fault {
                            limit,
                            reset: rng.random_bool(0.5),
                            slice: rng.random_bool(0.3),
                            stall: rng.random_bool(0.3).then(|| {
                                (
                                    rng.random_range(0..limit),
                                    Duration::from_millis(rng.random_range(100..1500)),
                                )
                            }),
                        }
                    });
                    if let Some(f) = fault {
                        counts
                            .sliced
                            .fetch_add(u64::from(f.slice), Ordering::Relaxed);
                        counts
                            .stalled
                            .fetch_add(u64::from(f.stall.is_some()), Ordering::Relaxed);
                    }
                    let seed = rng.random::<u64>();
                    let counts = counts.clone();
                    tokio::spawn(async move {
                        if let Ok(server) = TcpStream::connect(target).await {
                            let _ = client.set_nodelay(true);
                            let _ = server.set_nodelay(true);
                            pipe(client, server, fault, seed, &counts).await;
                        }
                    });
                }
            }
        });
        Self {
            addr,
            upstream,
            healed,
            counts,
            task,
        }
    }

    pub fn set_upstream(&self, addr: SocketAddr) {
        *self.upstream.lock().unwrap() = Some(addr);
    }

    /// From now on, new connections are forwarded faithfully. Faulty ones
    /// already open keep their fault (and soon die of it).
    pub fn heal(&self) {
        self.healed.store(true, Ordering::Relaxed);
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways; the fault applies to the total bytes in both directions.
async fn pipe(
    client: TcpStream,
    server: TcpStream,
    fault: Option<Fault>,
    seed: u64,
    counts: &FaultCounts,
) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let total = Arc::new(AtomicU64::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let limit = fault.map(|f| f.limit);
    let stall = fault.and_then(|f| f.stall);
    let slice = fault.is_some_and(|f| f.slice);
    let one_way = |mut from: OwnedReadHalf, mut to: OwnedWriteHalf, seed: u64| {
        let (total, stop) = (total.clone(), stop.clone());
        async move {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut buf = vec![0u8; 16 * 1024];
            let mut stalled = false;
            let mut tripped = false;
            loop {
                let n = tokio::select! {
                    _ = stop.cancelled() => break,
                    r = from.read(&mut buf) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    },
                };
                let so_far = total.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                if limit.is_some_and(|l| so_far >= l) {
                    tripped = true;
                    stop.cancel();
                    break;
                }
                if let Some((at, d)) = stall
                    && !stalled
                    && so_far >= at
                {
                    stalled = true;
                    tokio::time::sleep(d).await;
                }
                let ok = if slice {
                    let mut rest = &buf[..n];
                    let mut ok = true;
                    while ok && !rest.is_empty() {
                        let k = rng.random_range(1..=rest.len().min(64));
                        ok = to.write_all(&rest[..k]).await.is_ok();
                        rest = &rest[k..];
                        if rng.random_range(0..8) == 0 {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                    ok
                } else {
                    to.write_all(&buf[..n]).await.is_ok()
                };
                if !ok {
                    break;
                }
            }
            stop.cancel();
            (from, to, tripped)
        }
    };
    let (up, down) = tokio::join!(one_way(cr, sw, seed), one_way(sr, cw, seed ^ 1));
    let tripped = up.2 || down.2;
    let (cr, sw, sr, cw) = (up.0, up.1, down.0, down.1);
    if !tripped {
        return;
    }
    if fault.is_some_and(|f| f.reset) {
        counts.reset.fetch_add(1, Ordering::Relaxed);
        // SO_LINGER 0: closing sends RST instead of FIN. (Deprecated in
        // tokio because a blocking linger stalls the thread; zero does not.)
        for s in [cr.reunite(cw), sr.reunite(sw)].into_iter().flatten() {
            #[allow(deprecated)]
            let _ = s.set_linger(Some(Duration::ZERO));
        }
    } else {
        counts.dropped.fetch_add(1, Ordering::Relaxed);
    }
}
