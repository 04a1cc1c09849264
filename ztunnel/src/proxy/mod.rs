//! The per-workload proxy: for one local workload, the outbound (15001),
//! plaintext inbound (15006) and HBONE inbound (15008) listeners, an HBONE
//! client pool dialing from the workload's network namespace, and the
//! workload's certificate.

mod inbound;
mod outbound;

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use mesh_common::hbone::{Dialer, HboneClient, HboneServer};
use mesh_common::identity::SpiffeId;
use mesh_common::model::Workload;
use mesh_common::tls::RotatingCert;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::authz::ConnTracker;
use crate::certs::{CertError, CertManager};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::netns::{Netns, NetnsError, connect_socket, listen_socket};
use crate::registry::Registry;

/// Errors starting a workload proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The workload's identity is malformed.
    #[error("workload {uid} has an invalid identity: {msg}")]
    Identity {
        /// Workload.
        uid: String,
        /// Cause.
        msg: String,
    },
    /// The workload has no IP address.
    #[error("workload {0} has no address")]
    NoAddress(String),
    /// No certificate.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// Could not bind a listener.
    #[error("cannot listen on {addr} for workload {uid}: {source} (port already in use?)")]
    Bind {
        /// Workload.
        uid: String,
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: io::Error,
    },
    /// Network namespace trouble.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// TLS configuration.
    #[error(transparent)]
    Tls(#[from] mesh_common::tls::TlsError),
}

/// Shared by every workload proxy of this ztunnel.
pub struct ProxyInputs {
    /// Configuration.
    pub cfg: Config,
    /// Mesh state.
    pub registry: Arc<Registry>,
    /// Certificates.
    pub certs: Arc<CertManager>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Live inbound connections.
    pub tracker: Arc<ConnTracker>,
}

/// Creates sockets where the workload lives.
pub trait Sockets: Send + Sync + 'static {
    /// A listening socket bound to `addr`.
    fn listen(&self, addr: SocketAddr) -> io::Result<std::net::TcpListener>;
    /// An unconnected socket to reach `dst` with.
    fn socket_for(&self, dst: SocketAddr) -> io::Result<std::net::TcpStream>;
}

/// Sockets in ztunnel's own network namespace (shared mode). Outgoing
/// sockets are bound to the workload's IP when it has the same address
/// family as the destination, so peers see the workload as the source.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostSockets {
    /// Source address for outgoing connections.
    pub source_ip: Option<IpAddr>,
}

impl Sockets for HostSockets {
    fn listen(&self, addr: SocketAddr) -> io::Result<std::net::TcpListener> {
        listen_socket(addr)
    }
    fn socket_for(&self, dst: SocketAddr) -> io::Result<std::net::TcpStream> {
        let s = connect_socket(dst, false)?;
        if let Some(ip) = self.source_ip.filter(|ip| ip.is_ipv4() == dst.is_ipv4()) {
            socket2::SockRef::from(&s).bind(&SocketAddr::new(ip, 0).into())?;
        }
        Ok(s)
    }
}

/// Sockets inside a pod's network namespace, marked so capture skips them.
#[derive(Debug, Clone)]
pub struct NetnsSockets(pub Arc<Netns>);

impl Sockets for NetnsSockets {
    fn listen(&self, addr: SocketAddr) -> io::Result<std::net::TcpListener> {
        self.0
            .run(move || listen_socket(addr))
            .map_err(io::Error::other)?
    }
    fn socket_for(&self, dst: SocketAddr) -> io::Result<std::net::TcpStream> {
        self.0
            .run(move || connect_socket(dst, true))
            .map_err(io::Error::other)?
    }
}

/// Connects to `dst` with a socket from `sockets`.
pub async fn connect(
    sockets: &dyn Sockets,
    dst: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let sock = TcpSocket::from_std_stream(sockets.socket_for(dst)?);
    match tokio::time::timeout(timeout, sock.connect(dst)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connect to {dst} timed out"),
        )),
    }
}

struct SocketsDialer(Arc<dyn Sockets>, Duration);

impl Dialer for SocketsDialer {
    fn dial(
        &self,
        addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>> {
        let (sockets, timeout) = (self.0.clone(), self.1);
        Box::pin(async move { connect(sockets.as_ref(), addr, timeout).await })
    }
}

/// Listener addresses of a running workload proxy.
#[derive(Debug, Clone, Copy)]
pub struct ListenAddrs {
    /// Outbound capture.
    pub outbound: SocketAddr,
    /// Plaintext inbound.
    pub inbound_plaintext: SocketAddr,
    /// HBONE.
    pub hbone: SocketAddr,
}

/// The proxy serving one local workload.
pub struct WorkloadProxy {
    uid: String,
    identity: SpiffeId,
    inputs: Arc<ProxyInputs>,
    sockets: Arc<dyn Sockets>,
    client: HboneClient,
    cert: Arc<RotatingCert>,
    stop: CancellationToken,
    addrs: ListenAddrs,
}

impl std::fmt::Debug for WorkloadProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadProxy")
            .field("uid", &self.uid)
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

impl WorkloadProxy {
    /// Gets the workload's certificate, binds its listeners on `bind_ip`
    /// through `sockets`, and starts serving.
    pub async fn start(
        inputs: Arc<ProxyInputs>,
        wl: &Workload,
        sockets: Arc<dyn Sockets>,
        bind_ip: IpAddr,
    ) -> Result<Arc<Self>, ProxyError> {
        let identity = SpiffeId::parse(&wl.identity()).map_err(|e| ProxyError::Identity {
            uid: wl.uid.clone(),
            msg: e.to_string(),
        })?;
        if wl.addresses.is_empty() {
            return Err(ProxyError::NoAddress(wl.uid.clone()));
        }
        let cert = inputs.certs.get(&identity).await?;
        let cfg = &inputs.cfg;
        let bind = |port: u16| {
            let addr = SocketAddr::new(bind_ip, port);
            sockets
                .listen(addr)
                .and_then(TcpListener::from_std)
                .map_err(|source| ProxyError::Bind {
                    uid: wl.uid.clone(),
                    addr,
                    source,
                })
        };
        let hbone_l = bind(cfg.hbone_port)?;
        let outbound_l = bind(cfg.outbound_port)?;
        let plaintext_l = bind(cfg.inbound_plaintext_port)?;
        let local = |l: &TcpListener| {
            l.local_addr().map_err(|source| ProxyError::Bind {
                uid: wl.uid.clone(),
                addr: SocketAddr::new(bind_ip, 0),
                source,
            })
        };
        let addrs = ListenAddrs {
            outbound: local(&outbound_l)?,
            inbound_plaintext: local(&plaintext_l)?,
            hbone: local(&hbone_l)?,
        };
        let dialer = Arc::new(SocketsDialer(sockets.clone(), cfg.hbone.connect_timeout));
        let proxy = Arc::new(Self {
            uid: wl.uid.clone(),
            identity,
            client: HboneClient::with_dialer(cfg.hbone.clone(), dialer),
            inputs: inputs.clone(),
            sockets,
            cert: cert.clone(),
            stop: CancellationToken::new(),
            addrs,
        });
        let tls = mesh_common::tls::server_config(cert)?;
        let server = HboneServer::new(hbone_l, tls, cfg.hbone.clone());
        let p = proxy.clone();
        tokio::spawn(server.run(
            move |req| {
                let p = p.clone();
                async move { p.serve_hbone(req).await }
            },
            proxy.stop.clone(),
        ));
        tokio::spawn(proxy.clone().accept_outbound(outbound_l));
        tokio::spawn(proxy.clone().accept_plaintext(plaintext_l));
        Ok(proxy)
    }

    /// The workload uid.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The workload identity.
    pub fn identity(&self) -> &SpiffeId {
        &self.identity
    }

    /// Listener addresses.
    pub fn addrs(&self) -> ListenAddrs {
        self.addrs
    }

    /// Live pooled HBONE connections.
    pub fn pooled_connections(&self) -> usize {
        self.client.connection_count()
    }

    /// Closes pooled HBONE connections (new streams open new ones).
    pub fn clear_pool(&self) {
        self.client.clear();
    }

    /// Stops the listeners and closes pooled connections. Connections
    /// already proxied run to completion.
    pub fn stop(&self) {
        self.stop.cancel();
        self.client.clear();
    }
}
