//! Data-plane worker threads: Envoy's worker model.
//!
//! Each worker is an OS thread running its own current-thread Tokio
//! runtime, with its own listening sockets on the proxy ports (joined in a
//! `SO_REUSEPORT` group, so the kernel spreads new connections over the
//! workers). A connection, its requests, its filter calls and the upstream
//! connections it opens stay on one thread: nothing on the request path
//! wakes another thread. With a work-stealing runtime on two vCPUs the
//! waypoint spent a third of its CPU moving tasks and waking the other
//! worker (BENCHMARKS.md, "thread per core").
//!
//! What the workers share (configuration snapshot, clusters, breakers,
//! outlier detection, filter instance pools, metrics) is thread-safe and
//! lives in the `Proxy`. The control plane (config source, applier,
//! admin endpoints) runs on the caller's runtime.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;

use crate::proxy::Proxy;
use crate::proxy::listener::{self, Drain};

/// Backlog of each listening socket.
const BACKLOG: i32 = 1024;

thread_local! {
    static WORKER: Cell<u32> = const { Cell::new(0) };
}

/// The worker this thread is (1, 2, ...), or 0 off the worker threads.
/// Upstream pools use it to hand a request a connection driven by the
/// same thread.
pub fn current() -> u32 {
    WORKER.with(Cell::get)
}

fn socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s)
}

/// Binds `n` listening sockets on `addr` (a port of 0 is resolved once
/// and shared). Another process already listening on the address is an
/// error, as with a single socket: a probe without `SO_REUSEPORT` is bound
/// first, and would fail against any listener there.
pub fn bind_group(addr: SocketAddr, n: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let probe = socket(addr, false)?;
    if n <= 1 {
        return Ok(vec![probe.into()]);
    }
    let resolved = probe
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("listener has no IP address"))?;
    drop(probe);
    (0..n)
        .map(|_| socket(resolved, true).map(Into::into))
        .collect()
}

/// Labels of [`Accepted`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AcceptLabels {
    /// `1`, `2`, ... (`0`: the caller's runtime, no worker threads).
    pub worker: u32,
    /// `hbone` or `http`.
    pub listener: &'static str,
}

/// Connections accepted per worker and listener. `SO_REUSEPORT` spreads
/// connections by a hash of their addresses, not by load, and an HBONE
/// connection from a node proxy carries many streams: an uneven count here
/// explains one busy core.
#[derive(Clone, Debug, Default)]
pub struct Accepted(Family<AcceptLabels, Counter>);

impl Accepted {
    /// Registers `waypoint_worker_connections_accepted_total`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "waypoint_worker_connections_accepted",
            "Downstream connections accepted, per worker thread and listener",
            self.0.clone(),
        );
    }

    /// The counter of one worker's listener.
    pub fn counter(&self, worker: u32, listener: &'static str) -> Counter {
        self.0
            .get_or_create(&AcceptLabels { worker, listener })
            .clone()
    }
}

/// What one worker serves.
pub struct WorkerListeners {
    /// Plain HTTP (15080).
    pub http: Option<std::net::TcpListener>,
    /// HBONE (15008) and its TLS configuration.
    pub hbone: Option<(std::net::TcpListener, Arc<rustls::ServerConfig>)>,
}

/// The running workers.
#[derive(Debug, Default)]
pub struct Workers {
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts one thread per entry of `listeners`. They accept until
    /// `drain.stop_accept`, and exit (dropping what still runs) when `stop`
    /// is cancelled.
    pub fn start(
        proxy: &Arc<Proxy>,
        listeners: Vec<WorkerListeners>,
        drain: &Drain,
        stop: &CancellationToken,
        accepted: &Accepted,
    ) -> std::io::Result<Workers> {
        let mut threads = Vec::with_capacity(listeners.len());
        for (i, l) in listeners.into_iter().enumerate() {
            let id = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (proxy, drain, stop) = (proxy.clone(), drain.clone(), stop.clone());
            let accepted = accepted.clone();
            let t = std::thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || {
                    WORKER.with(|w| w.set(id));
                    rt.block_on(serve(proxy, l, drain, stop, accepted));
                    rt.shutdown_timeout(Duration::from_secs(1));
                })?;
            threads.push(t);
        }
        Ok(Workers { threads })
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// True when the listeners run on the caller's runtime instead.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Waits for the threads to exit (after `stop` was cancelled).
    pub async fn join(self) {
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::error!("a worker thread panicked");
                }
            }
        })
        .await;
    }
}

async fn serve(
    proxy: Arc<Proxy>,
    l: WorkerListeners,
    drain: Drain,
    stop: CancellationToken,
    accepted: Accepted,
) {
    let id = current();
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(http) = l.http {
        match tokio::net::TcpListener::from_std(http) {
            Ok(http) => {
                tasks.spawn(listener::serve_plain(
                    proxy.clone(),
                    http,
                    drain.clone(),
                    accepted.counter(id, "http"),
                ));
            }
            Err(e) => tracing::error!(error = %e, "worker cannot register its HTTP listener"),
        }
    }
    if let Some((hbone, tls)) = l.hbone {
        match tokio::net::TcpListener::from_std(hbone) {
            Ok(hbone) => {
                tasks.spawn(listener::serve_hbone(
                    proxy,
                    hbone,
                    tls,
                    drain,
                    accepted.counter(id, "hbone"),
                ));
            }
            Err(e) => tracing::error!(error = %e, "worker cannot register its HBONE listener"),
        }
    }
    stop.cancelled().await;
    tasks.abort_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_shares_one_resolved_port() {
        let g = bind_group("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        assert_eq!(g.len(), 3);
        let port = g[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert!(g.iter().all(|l| l.local_addr().unwrap().port() == port));
    }

    #[test]
    fn an_address_in_use_is_refused() {
        // Another process's listener (no SO_REUSEPORT) ...
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = other.local_addr().unwrap();
        assert!(bind_group(addr, 1).is_err());
        assert!(bind_group(addr, 2).is_err());
        // ... and another group with SO_REUSEPORT (same user) alike.
        let g = bind_group("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        assert!(bind_group(g[0].local_addr().unwrap(), 2).is_err());
    }

    #[test]
    fn off_the_workers_the_id_is_zero() {
        assert_eq!(current(), 0);
    }
}
