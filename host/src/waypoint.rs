//! The waypoint process as a library: binds the listeners, runs the
//! configuration source and applier, serves until shutdown, drains.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use waypoint::config::file::FileSource;
//! use waypoint::waypoint::{Options, Waypoint};
//! let w = Waypoint::start(Options::local(), Box::new(FileSource::new("/etc/waypoint.yaml"))).await?;
//! w.wait_ready(std::time::Duration::from_secs(10)).await?;
//! // ... serve until SIGTERM, then:
//! w.shutdown().await;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mesh_common::hbone::{HboneClient, HboneConfig};
use mesh_common::model::WaypointConfig;
use mesh_common::tls::{self, RotatingCert};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState, LogControl, Role};
use crate::cluster::ClusterSet;
use crate::config::ConfigSource;
use crate::config::apply::Applier;
use crate::config::chains::{ChainMap, FilterChains};
use crate::filter::{FilterRuntime, RuntimeConfig};
use crate::proxy::listener::{self, Drain};
use crate::proxy::{Proxy, Snapshot};
use crate::telemetry::{AccessLogSink, DEFAULT_CLUSTER_ID, Telemetry};
use crate::upstream::{Connector, HboneUpstream};
use crate::workers::{self, WorkerListeners, Workers};

/// Default drain time (Istio's `terminationDrainDuration`).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the waypoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error(
        "cannot listen on {addr} ({what}): {source}; is another waypoint or ztunnel running, or pass a different address"
    )]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Which listener.
        what: &'static str,
        /// Cause.
        source: std::io::Error,
    },
    /// HBONE needs a certificate.
    #[error(
        "the HBONE listener needs the waypoint's certificate: pass --cert-chain, --key and --roots, or disable it with --hbone-addr off"
    )]
    NoCertificate,
    /// TLS setup failed.
    #[error("TLS setup: {0}")]
    Tls(#[from] tls::TlsError),
    /// The WebAssembly runtime could not start.
    #[error("filter runtime: {0}")]
    Runtime(String),
    /// The access log file could not be opened.
    #[error("cannot open access log {path}: {source}")]
    AccessLog {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// No configuration arrived in time.
    #[error(
        "no configuration was applied within {0:?}; check the config source (admin /config_dump shows the last error)"
    )]
    NotReady(Duration),
}

/// Where access logs go.
#[derive(Debug, Clone, Default)]
pub enum AccessLogTarget {
    /// Standard output.
    #[default]
    Stdout,
    /// Append to a file.
    File(PathBuf),
}

/// Process settings (from flags; tests build them directly).
#[derive(Clone)]
pub struct Options {
    /// HBONE listener (15008); `None` disables it.
    pub hbone_addr: Option<SocketAddr>,
    /// Plain HTTP listener (15080); `None` disables it.
    pub http_addr: Option<SocketAddr>,
    /// Admin (15000).
    pub admin_addr: Option<SocketAddr>,
    /// Prometheus (15020).
    pub metrics_addr: Option<SocketAddr>,
    /// Readiness (15021).
    pub ready_addr: Option<SocketAddr>,
    /// The waypoint's workload certificate (HBONE in and out).
    pub cert: Option<Arc<RotatingCert>>,
    /// How long shutdown waits for connections to finish.
    pub drain_timeout: Duration,
    /// Access log destination.
    pub access_log: AccessLogTarget,
    /// `source_cluster`/`destination_cluster` label value.
    pub cluster_id: String,
    /// Seed for the filters' `random` capability (tests).
    pub random_seed: Option<u64>,
    /// WebAssembly runtime settings.
    pub runtime: RuntimeConfig,
    /// Log control for the admin endpoint.
    pub log: Option<LogControl>,
    /// Data-plane worker threads, each with its own runtime and listeners
    /// ([`crate::workers`]); 0 serves the proxy listeners on the caller's
    /// runtime instead (tests, embedding).
    pub workers: usize,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("hbone_addr", &self.hbone_addr)
            .field("http_addr", &self.http_addr)
            .field("admin_addr", &self.admin_addr)
            .field("metrics_addr", &self.metrics_addr)
            .field("ready_addr", &self.ready_addr)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

/// One worker per CPU the process may use (Envoy's `--concurrency`).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn addr(s: &str) -> Option<SocketAddr> {
    s.parse().ok()
}

impl Options {
    /// The standard ports on all interfaces (admin on localhost).
    pub fn standard() -> Self {
        Options {
            hbone_addr: addr("0.0.0.0:15008"),
            http_addr: addr("0.0.0.0:15080"),
            admin_addr: addr("127.0.0.1:15000"),
            metrics_addr: addr("0.0.0.0:15020"),
            ready_addr: addr("0.0.0.0:15021"),
            cert: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            access_log: AccessLogTarget::Stdout,
            cluster_id: DEFAULT_CLUSTER_ID.into(),
            random_seed: None,
            runtime: RuntimeConfig::default(),
            log: None,
            workers: default_workers(),
        }
    }

    /// Every listener on an ephemeral localhost port, no HBONE, the proxy
    /// served on the caller's runtime (tests).
    pub fn local() -> Self {
        Options {
            workers: 0,
            hbone_addr: None,
            http_addr: addr("127.0.0.1:0"),
            admin_addr: addr("127.0.0.1:0"),
            metrics_addr: addr("127.0.0.1:0"),
            ready_addr: addr("127.0.0.1:0"),
            ..Options::standard()
        }
    }
}

/// Addresses actually bound.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bound {
    /// HBONE.
    pub hbone: Option<SocketAddr>,
    /// Plain HTTP.
    pub http: Option<SocketAddr>,
    /// Admin.
    pub admin: Option<SocketAddr>,
    /// Metrics.
    pub metrics: Option<SocketAddr>,
    /// Readiness.
    pub ready: Option<SocketAddr>,
}

/// A running waypoint.
pub struct Waypoint {
    proxy: Arc<Proxy>,
    applier: Arc<Applier>,
    bound: Bound,
    drain: Drain,
    stop: CancellationToken,
    drain_timeout: Duration,
    tasks: Vec<JoinHandle<()>>,
    workers: Workers,
    ready: watch::Receiver<bool>,
    admin: AdminState,
}

impl std::fmt::Debug for Waypoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waypoint")
            .field("bound", &self.bound)
            .finish_non_exhaustive()
    }
}

async fn bind(
    a: Option<SocketAddr>,
    what: &'static str,
) -> Result<Option<TcpListener>, StartError> {
    match a {
        None => Ok(None),
        Some(addr) => TcpListener::bind(addr)
            .await
            .map(Some)
            .map_err(|source| StartError::Bind { addr, what, source }),
    }
}

/// `n` sockets of one proxy listener (empty when it is disabled).
fn bind_proxy(
    a: Option<SocketAddr>,
    n: usize,
    what: &'static str,
) -> Result<Vec<std::net::TcpListener>, StartError> {
    match a {
        None => Ok(Vec::new()),
        Some(addr) => {
            workers::bind_group(addr, n).map_err(|source| StartError::Bind { addr, what, source })
        }
    }
}

fn first_addr(l: &[std::net::TcpListener]) -> Option<SocketAddr> {
    l.first().and_then(|l| l.local_addr().ok())
}

impl Waypoint {
    /// Binds every listener and starts serving; requests get 404/503 until
    /// the first configuration is applied.
    pub async fn start(
        opts: Options,
        source: Box<dyn ConfigSource>,
    ) -> Result<Waypoint, StartError> {
        if opts.hbone_addr.is_some() && opts.cert.is_none() {
            return Err(StartError::NoCertificate);
        }
        let runtime = FilterRuntime::new(opts.runtime.clone())
            .map_err(|e| StartError::Runtime(format!("{e:#}")))?;
        let sink = match &opts.access_log {
            AccessLogTarget::Stdout => AccessLogSink::stdout(),
            AccessLogTarget::File(p) => {
                AccessLogSink::file(p).map_err(|source| StartError::AccessLog {
                    path: p.clone(),
                    source,
                })?
            }
        };
        let telemetry = Telemetry::new(sink, opts.cluster_id.clone());
        let connector = Connector::new(opts.cert.as_ref().map(|c| HboneUpstream {
            client: Arc::new(HboneClient::new(HboneConfig::default())),
            cert: c.clone(),
        }));
        let empty = Snapshot::new(
            "none".into(),
            Arc::new(WaypointConfig::default()),
            ClusterSet::default(),
            ChainMap::empty(&runtime),
        );
        let proxy = Proxy::new(empty, telemetry, connector);
        let mut registry = Registry::default();
        runtime.metrics().register(&mut registry);
        let chains = FilterChains::new(runtime, opts.random_seed);
        let applier = Applier::new(proxy.clone(), chains, source.describe());
        applier.register(&mut registry);
        let accepted = workers::Accepted::default();
        accepted.register(&mut registry);
        let ready = applier.ready();

        let sockets = opts.workers.max(1);
        let hbone = bind_proxy(opts.hbone_addr, sockets, "HBONE")?;
        let http = bind_proxy(opts.http_addr, sockets, "plain HTTP")?;
        let admin_l = bind(opts.admin_addr, "admin").await?;
        let metrics_l = bind(opts.metrics_addr, "metrics").await?;
        let ready_l = bind(opts.ready_addr, "readiness").await?;
        let local = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        let bound = Bound {
            hbone: first_addr(&hbone),
            http: first_addr(&http),
            admin: local(&admin_l),
            metrics: local(&metrics_l),
            ready: local(&ready_l),
        };
        let tls = match &opts.cert {
            Some(cert) if !hbone.is_empty() => Some(tls::server_config(cert.clone())?),
            _ => None,
        };

        let stop = CancellationToken::new();
        let drain = Drain::default();
        let mut tasks = Vec::new();
        let (tx, rx) = mpsc::channel(64);
        tasks.push(tokio::spawn(source.run(tx, stop.clone())));
        tasks.push(tokio::spawn(applier.clone().run(rx)));
        // A listener or thread that fails to start stops what already runs.
        let started = (|| -> Result<Workers, StartError> {
            Ok(if opts.workers == 0 {
                let tokio_listener = |l: std::net::TcpListener| {
                    let addr = l.local_addr().ok();
                    TcpListener::from_std(l).map_err(|source| StartError::Bind {
                        addr: addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
                        what: "proxy",
                        source,
                    })
                };
                for l in http {
                    tasks.push(tokio::spawn(listener::serve_plain(
                        proxy.clone(),
                        tokio_listener(l)?,
                        drain.clone(),
                        accepted.counter(0, "http"),
                    )));
                }
                if let Some(tls) = &tls {
                    for l in hbone {
                        tasks.push(tokio::spawn(listener::serve_hbone(
                            proxy.clone(),
                            tokio_listener(l)?,
                            tls.clone(),
                            drain.clone(),
                            accepted.counter(0, "hbone"),
                        )));
                    }
                }
                Workers::default()
            } else {
                let mut http = http.into_iter();
                let mut hbone = hbone.into_iter();
                let per_worker = (0..opts.workers)
                    .map(|_| WorkerListeners {
                        http: http.next(),
                        hbone: hbone.next().zip(tls.clone()),
                    })
                    .collect();
                Workers::start(&proxy, per_worker, &drain, &stop, &accepted).map_err(|e| {
                    StartError::Runtime(format!("cannot start the worker threads: {e}"))
                })?
            })
        })();
        let workers = match started {
            Ok(w) => w,
            Err(e) => {
                stop.cancel();
                for t in &tasks {
                    t.abort();
                }
                return Err(e);
            }
        };
        let admin_state = AdminState {
            proxy: proxy.clone(),
            applier: applier.clone(),
            registry: Arc::new(Mutex::new(registry)),
            ready: ready.clone(),
            log: opts.log.clone(),
        };
        for (l, role) in [
            (admin_l, Role::Admin),
            (metrics_l, Role::Metrics),
            (ready_l, Role::Readiness),
        ] {
            if let Some(l) = l {
                tasks.push(tokio::spawn(admin::serve(
                    admin_state.clone(),
                    role,
                    l,
                    stop.clone(),
                )));
            }
        }
        tracing::info!(?bound, workers = workers.len(), "waypoint started");
        Ok(Waypoint {
            workers,
            proxy,
            applier,
            bound,
            drain,
            stop,
            drain_timeout: opts.drain_timeout,
            tasks,
            ready,
            admin: admin_state,
        })
    }

    /// Bound addresses.
    pub fn bound(&self) -> Bound {
        self.bound
    }

    /// The request path.
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// Configuration status.
    pub fn applier(&self) -> &Arc<Applier> {
        &self.applier
    }

    /// The admin endpoints' state (metrics text, readiness).
    pub fn admin(&self) -> &AdminState {
        &self.admin
    }

    /// Waits for the first applied configuration.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), StartError> {
        let mut rx = self.ready.clone();
        match tokio::time::timeout(timeout, rx.wait_for(|r| *r)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(StartError::NotReady(timeout)),
        }
    }

    /// Graceful drain: readiness fails, listeners close, connections finish
    /// their in-flight requests (up to the drain timeout), then everything
    /// stops.
    pub async fn shutdown(mut self) {
        tracing::info!(inflight = self.proxy.inflight().count(), "draining");
        self.proxy.set_draining();
        self.drain.stop_accept.cancel();
        self.drain.drain.cancel();
        self.drain.tracker.close();
        let waited = tokio::time::timeout(self.drain_timeout, async {
            self.drain.tracker.wait().await;
            self.proxy.inflight().idle().await;
        })
        .await;
        if waited.is_err() {
            tracing::warn!(
                inflight = self.proxy.inflight().count(),
                "drain timeout reached; closing remaining connections"
            );
        }
        self.stop.cancel();
        for t in self.tasks.drain(..) {
            t.abort();
        }
        std::mem::take(&mut self.workers).join().await;
        tracing::info!("waypoint stopped");
    }
}

impl Drop for Waypoint {
    /// Dropped without [`shutdown`](Self::shutdown): stop at once (the
    /// worker threads would otherwise serve on).
    fn drop(&mut self) {
        self.stop.cancel();
        for t in &self.tasks {
            t.abort();
        }
    }
}
