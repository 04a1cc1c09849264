//! Client side of the push protocol, for ztunnel and waypoints.
//!
//! ```no_run
//! # async fn demo() {
//! use mesh_common::model::ProxyKind;
//! use mesh_common::xds::client::{XdsClient, XdsClientConfig};
//! use mesh_common::xds::transport::Endpoint;
//! let cfg = XdsClientConfig::new(
//!     Endpoint::plaintext("127.0.0.1:15012".parse().unwrap()),
//!     "node-1",
//!     ProxyKind::Ztunnel,
//! );
//! // The handler sees the proposed state; Err(..) NACKs and keeps the old one.
//! let client = XdsClient::start(cfg, |u: &mesh_common::xds::client::Update<'_>| {
//!     println!("{} {} -> {} workloads", u.type_, u.version, u.state.workloads.len());
//!     Ok(())
//! });
//! client.wait_synced(std::time::Duration::from_secs(5)).await.unwrap();
//! let state = client.last_good();
//! # drop(state);
//! # }
//! ```

use super::frame::{self, FrameDecoder};
use super::transport::{self, Endpoint, ResponseBody, TransportError};
use super::{ClientMessage, Delta, KnownResources};
use crate::model::{
    Authorization, ProxyKind, Resource, ResourceType, Service, WaypointConfig, Workload,
};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Default first reconnect delay.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Default reconnect delay cap.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connection-level failure.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Protocol violation or stream failure.
    #[error("push stream failed: {0}")]
    Stream(String),
    /// The operator answered a request with an error status.
    #[error("operator answered {status} for {what}: {body}")]
    Status {
        /// What was requested.
        what: String,
        /// HTTP status.
        status: http::StatusCode,
        /// Response text.
        body: String,
    },
    /// A downloaded module's digest differs from the requested one.
    #[error(
        "module digest mismatch: asked for sha256 {expected}, got {actual}; refusing to load it"
    )]
    DigestMismatch {
        /// Requested digest.
        expected: String,
        /// Digest of the bytes received.
        actual: String,
    },
    /// Not synced in time.
    #[error("not synced with the operator after {0:?}: {1}")]
    NotSynced(Duration, String),
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct XdsClientConfig {
    /// Operator endpoint.
    pub endpoint: Endpoint,
    /// Node or instance name.
    pub node: String,
    /// Proxy kind (decides the subscribed types).
    pub proxy: ProxyKind,
    /// Keys wanted (a waypoint: `["<ns>/<name>"]`); empty ⇒ all.
    pub resource_names: Vec<String>,
    /// First reconnect delay; doubles per failure up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Reconnect delay cap.
    pub max_backoff: Duration,
}

impl XdsClientConfig {
    /// Settings with default backoff and no name filter.
    pub fn new(endpoint: Endpoint, node: impl Into<String>, proxy: ProxyKind) -> Self {
        XdsClientConfig {
            endpoint,
            node: node.into(),
            proxy,
            resource_names: Vec::new(),
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

/// Resources of one type by key. Shared between states: a delta copies
/// only the map of its own type.
pub type ResourceMap<T> = Arc<BTreeMap<String, Arc<T>>>;

/// The configuration a proxy holds: everything received and accepted.
/// Cloning is cheap (each map is shared until modified).
#[derive(Debug, Clone, Default)]
pub struct MeshState {
    /// Workloads by uid.
    pub workloads: ResourceMap<Workload>,
    /// Services by `namespace/hostname`.
    pub services: ResourceMap<Service>,
    /// L4 policies by `namespace/name`.
    pub authorizations: ResourceMap<Authorization>,
    /// Waypoint configs by `namespace/name`.
    pub waypoints: ResourceMap<WaypointConfig>,
    /// Version last applied per type.
    pub versions: BTreeMap<ResourceType, String>,
    hashes: BTreeMap<ResourceType, Arc<BTreeMap<String, String>>>,
}

impl MeshState {
    fn known(&self) -> BTreeMap<ResourceType, KnownResources> {
        self.versions
            .iter()
            .map(|(t, v)| {
                (
                    *t,
                    KnownResources {
                        version: v.clone(),
                        resources: self
                            .hashes
                            .get(t)
                            .map(|h| (**h).clone())
                            .unwrap_or_default(),
                    },
                )
            })
            .collect()
    }

    fn apply(&mut self, delta: &Delta) -> Result<(Vec<String>, Vec<String>), String> {
        fn apply_map<T: Resource>(map: &mut ResourceMap<T>, delta: &Delta) -> Result<(), String> {
            let map = Arc::make_mut(map);
            for e in &delta.upserts {
                let v: T = serde_json::from_value(e.resource.clone())
                    .map_err(|err| format!("{} {}: {err}", T::TYPE, e.key))?;
                map.insert(e.key.clone(), Arc::new(v));
            }
            for k in &delta.removals {
                map.remove(k);
            }
            Ok(())
        }
        match delta.type_ {
            ResourceType::Workload => apply_map(&mut self.workloads, delta)?,
            ResourceType::Service => apply_map(&mut self.services, delta)?,
            ResourceType::Authorization => apply_map(&mut self.authorizations, delta)?,
            ResourceType::WaypointConfig => apply_map(&mut self.waypoints, delta)?,
        }
        let hashes = Arc::make_mut(self.hashes.entry(delta.type_).or_default());
        for e in &delta.upserts {
            hashes.insert(e.key.clone(), e.hash.clone());
        }
        for k in &delta.removals {
            hashes.remove(k);
        }
        self.versions.insert(delta.type_, delta.version.clone());
        Ok((
            delta.upserts.iter().map(|e| e.key.clone()).collect(),
            delta.removals.clone(),
        ))
    }
}

/// A delta about to be applied, handed to the [`Handler`].
#[derive(Debug)]
pub struct Update<'a> {
    /// Resource type.
    pub type_: ResourceType,
    /// Version.
    pub version: &'a str,
    /// Keys added or changed.
    pub upserted: &'a [String],
    /// Keys removed.
    pub removed: &'a [String],
    /// The full state with this delta applied (not yet committed).
    pub state: &'a MeshState,
}

/// Applies updates. `Err` refuses the update: it is NACKed with the message
/// and the previous state stays current.
pub trait Handler: Send + Sync + 'static {
    /// Apply (or refuse) an update.
    fn apply(&self, update: &Update<'_>) -> Result<(), String>;

    /// Like [`Handler::apply`], for a proxy that puts a configuration in
    /// effect asynchronously (the waypoint compiles filter modules): `Ok(Some(rx))`
    /// defers the ACK until `rx` resolves (`Err` then NACKs), so an ACK
    /// always means "serving this version". The client waits at most
    /// [`DEFERRED_APPLY_TIMEOUT`]. The default applies synchronously.
    fn apply_deferred(&self, update: &Update<'_>) -> Result<Option<Settled>, String> {
        self.apply(update).map(|()| None)
    }
}

/// Resolves when a deferred update is in effect (see [`Handler::apply_deferred`]).
pub type Settled = tokio::sync::oneshot::Receiver<Result<(), String>>;

/// How long the client waits for a deferred update before NACKing it.
pub const DEFERRED_APPLY_TIMEOUT: Duration = Duration::from_secs(120);

impl<F> Handler for F
where
    F: Fn(&Update<'_>) -> Result<(), String> + Send + Sync + 'static,
{
    fn apply(&self, update: &Update<'_>) -> Result<(), String> {
        self(update)
    }
}

/// Connection status of the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStatus {
    /// A stream is open.
    pub connected: bool,
    /// Every subscribed type was received on the current stream.
    pub synced: bool,
    /// Streams opened so far.
    pub connects: u64,
    /// Deltas accepted.
    pub acks: u64,
    /// Deltas refused.
    pub nacks: u64,
    /// Last connection error.
    pub last_error: Option<String>,
    /// Last refusal message.
    pub last_nack: Option<String>,
}

/// A running push client. Dropping it stops the background task.
#[derive(Debug)]
pub struct XdsClient {
    state: Arc<ArcSwap<MeshState>>,
    status: watch::Receiver<ClientStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for XdsClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl XdsClient {
    /// Start with an empty state.
    pub fn start(config: XdsClientConfig, handler: impl Handler) -> Self {
        Self::start_with_state(config, handler, MeshState::default())
    }

    /// Start with a state restored from elsewhere (its versions and hashes
    /// are sent on subscribe, so only differences are transferred).
    pub fn start_with_state(
        config: XdsClientConfig,
        handler: impl Handler,
        initial: MeshState,
    ) -> Self {
        let state = Arc::new(ArcSwap::from_pointee(initial));
        let (status_tx, status) = watch::channel(ClientStatus::default());
        let task = tokio::spawn(run(config, Arc::new(handler), state.clone(), status_tx));
        XdsClient {
            state,
            status,
            task,
        }
    }

    /// The last state the handler accepted (kept while the operator is away).
    pub fn last_good(&self) -> Arc<MeshState> {
        self.state.load_full()
    }

    /// Connection status updates.
    pub fn status(&self) -> watch::Receiver<ClientStatus> {
        self.status.clone()
    }

    /// Wait until the current stream has delivered every subscribed type.
    pub async fn wait_synced(&self, timeout: Duration) -> Result<(), ClientError> {
        let mut rx = self.status.clone();
        match tokio::time::timeout(timeout, rx.wait_for(|s| s.synced)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ClientError::NotSynced(
                timeout,
                self.status
                    .borrow()
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "no error recorded".into()),
            )),
        }
    }
}

async fn run(
    config: XdsClientConfig,
    handler: Arc<dyn Handler>,
    state: Arc<ArcSwap<MeshState>>,
    status: watch::Sender<ClientStatus>,
) {
    let mut backoff = config.initial_backoff;
    loop {
        status.send_modify(|s| s.connects += 1);
        let result = stream_once(&config, &*handler, &state, &status).await;
        let had_sync = status.borrow().synced;
        status.send_modify(|s| {
            s.connected = false;
            s.synced = false;
            s.last_error = Some(match &result {
                Ok(()) => "operator closed the stream".to_string(),
                Err(e) => e.to_string(),
            });
        });
        if had_sync {
            backoff = config.initial_backoff;
        }
        tracing::info!(error = ?result.err().map(|e| e.to_string()), retry_in = ?backoff, "push stream lost; keeping last good configuration");
        let jitter = rand::random_range(0.8..1.2);
        tokio::time::sleep(backoff.mul_f64(jitter)).await;
        backoff = (backoff * 2).min(config.max_backoff);
    }
}

async fn stream_once(
    config: &XdsClientConfig,
    handler: &dyn Handler,
    state: &ArcSwap<MeshState>,
    status: &watch::Sender<ClientStatus>,
) -> Result<(), ClientError> {
    let mut conn = transport::connect(&config.endpoint).await?;
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
    let subscribe = ClientMessage::Subscribe {
        node: config.node.clone(),
        proxy: config.proxy,
        resource_names: config.resource_names.clone(),
        known: state.load().known(),
    };
    let send = |m: &ClientMessage| -> Result<Frame<Bytes>, ClientError> {
        frame::encode(m)
            .map(Frame::data)
            .map_err(|e| ClientError::Stream(e.to_string()))
    };
    tx.send(Ok(send(&subscribe)?))
        .await
        .map_err(|_| ClientError::Stream("request stream closed".into()))?;
    let body: ResponseBody = StreamBody::new(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|f| (f, rx))
    }))
    .boxed();
    let req = Request::post(config.endpoint.uri_for(super::XDS_PATH)?)
        .header(http::header::CONTENT_TYPE, super::CONTENT_TYPE)
        .body(body)
        .map_err(|e| ClientError::Stream(e.to_string()))?;
    let resp = conn.send_request(req).await.map_err(TransportError::Http)?;
    if !resp.status().is_success() {
        return Err(ClientError::Status {
            what: super::XDS_PATH.into(),
            status: resp.status(),
            body: String::new(),
        });
    }
    status.send_modify(|s| {
        s.connected = true;
        s.last_error = None;
    });
    let wanted = ResourceType::for_proxy(config.proxy);
    let mut seen: HashMap<ResourceType, bool> = HashMap::new();
    let mut body = resp.into_body();
    let mut dec = FrameDecoder::default();
    loop {
        let delta = loop {
            if let Some(d) = dec
                .next_message::<Delta>()
                .map_err(|e| ClientError::Stream(e.to_string()))?
            {
                break d;
            }
            match body.frame().await {
                None => return Ok(()),
                Some(Err(e)) => return Err(ClientError::Stream(e.to_string())),
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        dec.push(&d);
                    }
                }
            }
        };
        let mut proposed = (**state.load()).clone();
        let outcome = proposed.apply(&delta).and_then(|(up, rm)| {
            handler.apply_deferred(&Update {
                type_: delta.type_,
                version: &delta.version,
                upserted: &up,
                removed: &rm,
                state: &proposed,
            })
        });
        let outcome = match outcome {
            Ok(Some(settled)) => {
                match tokio::time::timeout(DEFERRED_APPLY_TIMEOUT, settled).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(_)) => {
                        Err("the proxy dropped the update before applying it".to_string())
                    }
                    Err(_) => Err(format!(
                        "not in effect after {}s",
                        DEFERRED_APPLY_TIMEOUT.as_secs()
                    )),
                }
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        let reply = match outcome {
            Ok(()) => {
                state.store(Arc::new(proposed));
                seen.insert(delta.type_, true);
                let synced = wanted.iter().all(|t| seen.contains_key(t));
                status.send_modify(|s| {
                    s.acks += 1;
                    s.synced = synced;
                });
                ClientMessage::Ack {
                    type_: delta.type_,
                    version: delta.version,
                    nonce: delta.nonce,
                }
            }
            Err(error) => {
                tracing::warn!(type_ = %delta.type_, version = %delta.version, %error, "configuration rejected; keeping last good");
                // A refused initial delta still counts as "received" for sync:
                // the proxy has decided what to serve (its last good state).
                seen.insert(delta.type_, true);
                let synced = wanted.iter().all(|t| seen.contains_key(t));
                status.send_modify(|s| {
                    s.nacks += 1;
                    s.synced = synced;
                    s.last_nack = Some(error.clone());
                });
                ClientMessage::Nack {
                    type_: delta.type_,
                    version: delta.version,
                    nonce: delta.nonce,
                    error,
                }
            }
        };
        tx.send(Ok(send(&reply)?))
            .await
            .map_err(|_| ClientError::Stream("request stream closed".into()))?;
    }
}

/// Download a module from the operator (`GET /v1/modules/<sha256>`) and
/// check its digest.
pub async fn fetch_module(endpoint: &Endpoint, sha256: &str) -> Result<Bytes, ClientError> {
    let mut conn = transport::connect(endpoint).await?;
    let uri = endpoint.uri_for(&format!("{}{sha256}", super::MODULES_PATH_PREFIX))?;
    let empty: ResponseBody = http_body_util::Empty::new().boxed();
    let req = Request::get(uri)
        .body(empty)
        .map_err(|e| ClientError::Stream(e.to_string()))?;
    let resp = conn.send_request(req).await.map_err(TransportError::Http)?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Stream(e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        return Err(ClientError::Status {
            what: format!("module {sha256}"),
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    let actual = hex::encode(Sha256::digest(&bytes));
    if !actual.eq_ignore_ascii_case(sha256) {
        return Err(ClientError::DigestMismatch {
            expected: sha256.to_string(),
            actual,
        });
    }
    Ok(bytes)
}

/// Ask the operator's CA to sign a CSR (`POST /v1/csr`). `token` is the
/// bearer credential (node bootstrap token or ServiceAccount token).
pub async fn request_certificate(
    endpoint: &Endpoint,
    token: Option<&str>,
    request: &super::CsrRequest,
) -> Result<crate::ca::IssuedCert, ClientError> {
    let mut conn = transport::connect(endpoint).await?;
    let body = serde_json::to_vec(request).map_err(|e| ClientError::Stream(e.to_string()))?;
    let mut req = Request::post(endpoint.uri_for(super::CSR_PATH)?)
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(http_body_util::Full::new(Bytes::from(body)).boxed())
        .map_err(|e| ClientError::Stream(e.to_string()))?;
    let resp = conn.send_request(req).await.map_err(TransportError::Http)?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Stream(e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        return Err(ClientError::Status {
            what: "certificate".into(),
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Stream(format!("bad CA answer: {e}")))
}
