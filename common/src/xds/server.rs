//! Server side of the push protocol: one task per proxy stream.

use super::frame::{self, FrameDecoder};
use super::store::{ConfigStore, DiffResult};
use super::transport::{ResponseBody, full};
use super::{ClientMessage, KnownResources};
use crate::model::{ProxyKind, ResourceType};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;
use tokio::sync::{mpsc, watch};

/// Frames buffered per stream before the sender waits for the proxy.
const STREAM_BUFFER: usize = 16;

/// A refused delta, as reported by the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NackInfo {
    /// Resource type.
    #[serde(rename = "type")]
    pub type_: ResourceType,
    /// Refused version.
    pub version: String,
    /// The proxy's error.
    pub error: String,
}

/// What the operator knows about one connected proxy.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientStatus {
    /// Stream id (unique per operator run).
    pub id: u64,
    /// Node / instance name from the subscription.
    pub node: String,
    /// Proxy kind.
    pub proxy: ProxyKind,
    /// Subscribed names (empty = all).
    pub resource_names: Vec<String>,
    /// When the stream was opened.
    pub connected_at: SystemTime,
    /// Last acknowledged version per type.
    pub acked: BTreeMap<ResourceType, String>,
    /// The last NACK, cleared by a later ACK of the same type.
    pub last_nack: Option<NackInfo>,
    /// Number of deltas sent.
    pub deltas_sent: u64,
}

impl ClientStatus {
    /// Has the proxy acknowledged every type it subscribes to?
    pub fn synced(&self) -> bool {
        ResourceType::for_proxy(self.proxy)
            .iter()
            .all(|t| self.acked.contains_key(t))
    }
}

/// Push protocol server.
pub struct XdsServer {
    store: Arc<ConfigStore>,
    clients: Mutex<BTreeMap<u64, ClientStatus>>,
    clients_tx: watch::Sender<u64>,
    next_id: AtomicU64,
    nonce: AtomicU64,
}

impl std::fmt::Debug for XdsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdsServer").finish_non_exhaustive()
    }
}

enum Base {
    /// Initial sync: what the proxy said it holds.
    Known(BTreeMap<String, String>),
    /// Synced to this revision.
    Rev(u64),
}

struct Inflight {
    nonce: String,
    revision: u64,
    /// Size of the frame sent (large ones are trimmed from the heap once
    /// acknowledged, see [`crate::mem::trim_soon`]).
    bytes: usize,
}

/// A delta at least this large asks for a heap trim once acknowledged.
const TRIM_AFTER_BYTES: usize = 1 << 20;

struct TypeState {
    ty: ResourceType,
    base: Base,
    inflight: Option<Inflight>,
}

impl XdsServer {
    /// A server publishing `store`.
    pub fn new(store: Arc<ConfigStore>) -> Arc<Self> {
        Arc::new(XdsServer {
            store,
            clients: Mutex::new(BTreeMap::new()),
            clients_tx: watch::channel(0).0,
            next_id: AtomicU64::new(1),
            nonce: AtomicU64::new(1),
        })
    }

    /// The published store.
    pub fn store(&self) -> &Arc<ConfigStore> {
        &self.store
    }

    /// Connected proxies.
    pub fn clients(&self) -> Vec<ClientStatus> {
        self.clients.lock().values().cloned().collect()
    }

    /// Bumped whenever a proxy connects, disconnects, ACKs or NACKs.
    pub fn watch_clients(&self) -> watch::Receiver<u64> {
        self.clients_tx.subscribe()
    }

    fn clients_changed(&self) {
        self.clients_tx.send_modify(|v| *v += 1);
    }

    /// Handle `POST /v1/xds`: answer at once with a streaming body and run
    /// the protocol in a task until either side goes away.
    pub fn handle(self: &Arc<Self>, req: Request<Incoming>) -> Response<ResponseBody> {
        if req.method() != http::Method::POST {
            return full(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "use POST for the push stream\n",
            );
        }
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(STREAM_BUFFER);
        let this = self.clone();
        let body = req.into_body();
        tokio::spawn(async move {
            let id = this.next_id.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = this.run_stream(id, body, tx).await {
                tracing::debug!(stream = id, error = %e, "push stream ended");
            }
            if this.clients.lock().remove(&id).is_some() {
                this.clients_changed();
            }
        });
        let stream =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
        let mut resp = Response::new(StreamBody::new(stream).boxed());
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(super::CONTENT_TYPE),
        );
        resp
    }

    async fn run_stream(
        &self,
        id: u64,
        mut body: Incoming,
        tx: mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
    ) -> Result<(), String> {
        let mut dec = FrameDecoder::default();
        let (node, proxy, names, known) = match next_message(&mut body, &mut dec).await? {
            Some(ClientMessage::Subscribe {
                node,
                proxy,
                resource_names,
                known,
            }) => (node, proxy, resource_names, known),
            Some(_) => return Err("first message must be Subscribe".into()),
            None => return Ok(()),
        };
        tracing::info!(stream = id, %node, ?proxy, "proxy subscribed");
        self.clients.lock().insert(
            id,
            ClientStatus {
                id,
                node,
                proxy,
                resource_names: names.clone(),
                connected_at: SystemTime::now(),
                acked: BTreeMap::new(),
                last_nack: None,
                deltas_sent: 0,
            },
        );
        self.clients_changed();
        let name_set: HashSet<String> = names.into_iter().collect();
        let visible = move |k: &str| name_set.is_empty() || name_set.contains(k);
        let mut known = known;
        let mut states: Vec<TypeState> = ResourceType::for_proxy(proxy)
            .iter()
            .map(|ty| TypeState {
                ty: *ty,
                base: Base::Known(
                    known
                        .remove(ty)
                        .map(|k: KnownResources| k.resources)
                        .unwrap_or_default(),
                ),
                inflight: None,
            })
            .collect();

        // Wait for a complete translation before the initial sync, reading
        // (and ignoring) anything the proxy sends meanwhile.
        let ready = self.store.ready();
        tokio::pin!(ready);
        loop {
            tokio::select! {
                _ = &mut ready => break,
                m = next_message(&mut body, &mut dec) => if m?.is_none() { return Ok(()) },
            }
        }
        let mut rev_rx = self.store.watch();
        rev_rx.mark_unchanged();
        for st in &mut states {
            self.push(id, st, &visible, &tx, true).await?;
        }
        loop {
            tokio::select! {
                changed = rev_rx.changed() => {
                    if changed.is_err() { return Ok(()) }
                    for st in &mut states {
                        if st.inflight.is_none() {
                            self.push(id, st, &visible, &tx, false).await?;
                        }
                    }
                }
                msg = next_message(&mut body, &mut dec) => {
                    let Some(msg) = msg? else { return Ok(()) };
                    let (ty, nonce, version, nack) = match msg {
                        ClientMessage::Ack { type_, version, nonce } => (type_, nonce, version, None),
                        ClientMessage::Nack { type_, version, nonce, error } => (type_, nonce, version, Some(error)),
                        ClientMessage::Subscribe { .. } => return Err("duplicate Subscribe".into()),
                    };
                    let Some(st) = states.iter_mut().find(|s| s.ty == ty) else { continue };
                    let Some(infl) = st.inflight.take_if(|i| i.nonce == nonce) else {
                        tracing::debug!(stream = id, %ty, %nonce, "stale ACK/NACK ignored");
                        continue;
                    };
                    if infl.bytes >= TRIM_AFTER_BYTES {
                        // The frame's buffer is gone by now (sent and read).
                        crate::mem::trim_soon();
                    }
                    match nack {
                        None => {
                            st.base = Base::Rev(infl.revision);
                            self.update_status(id, |c| {
                                c.acked.insert(ty, version);
                                if c.last_nack.as_ref().is_some_and(|n| n.type_ == ty) {
                                    c.last_nack = None;
                                }
                            });
                        }
                        Some(error) => {
                            tracing::warn!(stream = id, %ty, %version, %error, "proxy rejected configuration; it keeps its previous version");
                            self.update_status(id, |c| {
                                c.last_nack = Some(NackInfo { type_: ty, version, error });
                            });
                        }
                    }
                    // Changes that arrived while the delta was in flight.
                    if self.store.revision() > infl.revision {
                        self.push(id, st, &visible, &tx, false).await?;
                    }
                }
            }
        }
    }

    fn update_status(&self, id: u64, f: impl FnOnce(&mut ClientStatus)) {
        if let Some(c) = self.clients.lock().get_mut(&id) {
            f(c);
        }
        self.clients_changed();
    }

    /// Compute and send the next delta of one type. `always` sends even an
    /// empty delta (initial sync).
    async fn push(
        &self,
        id: u64,
        st: &mut TypeState,
        visible: &(dyn Fn(&str) -> bool + Send + Sync),
        tx: &mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
        always: bool,
    ) -> Result<(), String> {
        let diff = match &st.base {
            Base::Known(k) => self.store.diff_known(st.ty, k, visible),
            Base::Rev(r) => self.store.diff_since(st.ty, *r, visible),
        };
        if !always && diff.upserts.is_empty() && diff.removals.is_empty() {
            // Nothing of ours changed: advance the base so later diffs stay small.
            if let Base::Rev(_) = st.base {
                st.base = Base::Rev(diff.revision);
            }
            return Ok(());
        }
        let nonce = self.nonce.fetch_add(1, Ordering::Relaxed).to_string();
        let bytes = encode_delta(st.ty, &nonce, &diff);
        st.inflight = Some(Inflight {
            nonce,
            revision: diff.revision,
            bytes: bytes.len(),
        });
        tx.send(Ok(Frame::data(bytes)))
            .await
            .map_err(|_| "proxy went away".to_string())?;
        self.update_status(id, |c| c.deltas_sent += 1);
        Ok(())
    }
}

/// Serialize a delta from pre-serialized resources (no re-encoding).
fn encode_delta(ty: ResourceType, nonce: &str, diff: &DiffResult) -> Bytes {
    let cap = 128
        + diff
            .upserts
            .iter()
            .map(|(k, e)| k.len() + e.json.len() + 64)
            .sum::<usize>();
    let mut s = String::with_capacity(cap);
    let q = |v: &str| serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into());
    let _ = write!(
        s,
        "{{\"type\":{},\"version\":\"{}\",\"nonce\":{},\"upserts\":[",
        q(ty.as_str()),
        diff.revision,
        q(nonce)
    );
    for (i, (k, e)) in diff.upserts.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            "{{\"key\":{},\"hash\":{},\"resource\":{}}}",
            q(k),
            q(&e.hash),
            e.json
        );
    }
    s.push_str("],\"removals\":[");
    for (i, k) in diff.removals.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&q(k));
    }
    s.push_str("]}");
    frame::encode_raw(s.as_bytes())
}

async fn next_message(
    body: &mut Incoming,
    dec: &mut FrameDecoder,
) -> Result<Option<ClientMessage>, String> {
    loop {
        if let Some(m) = dec
            .next_message::<ClientMessage>()
            .map_err(|e| e.to_string())?
        {
            return Ok(Some(m));
        }
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    dec.push(&data);
                }
            }
        }
    }
}
