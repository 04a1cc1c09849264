//! Push protocol over real HTTP/2 on loopback: ACK/NACK, incremental
//! delivery, reconnection and resync, TLS, name filtering, module download.

use bytes::Bytes;
use mesh_common::model::{ProxyKind, Resource, WaypointConfig, Workload};
use mesh_common::xds::client::{XdsClient, XdsClientConfig, fetch_module};
use mesh_common::xds::server::XdsServer;
use mesh_common::xds::store::ConfigStore;
use mesh_common::xds::transport::{self, Endpoint, full};
use parking_lot::Mutex;
use sha2::Digest;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

fn wl(name: &str, node: &str) -> Workload {
    Workload {
        uid: format!("Kubernetes//Pod/ns/{name}"),
        name: name.into(),
        namespace: "ns".into(),
        service_account: "sa".into(),
        node: node.into(),
        addresses: vec!["10.0.0.1".parse().unwrap()],
        ..Default::default()
    }
}

struct Operator {
    addr: SocketAddr,
    server: Arc<XdsServer>,
    stop: CancellationToken,
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start_operator(
    store: Arc<ConfigStore>,
    addr: Option<SocketAddr>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Operator {
    let listener = TcpListener::bind(addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = XdsServer::new(store);
    let stop = CancellationToken::new();
    let srv = server.clone();
    let module = Bytes::from_static(b"\0asm fake module");
    let digest = hex::encode(sha2::Sha256::digest(&module));
    let handler: transport::Handler = Arc::new(move |req, _info| {
        let srv = srv.clone();
        let module = module.clone();
        let digest = digest.clone();
        Box::pin(async move {
            let path = req.uri().path().to_string();
            if path == "/v1/xds" {
                srv.handle(req)
            } else if path == format!("/v1/modules/{digest}") {
                full(http::StatusCode::OK, "application/wasm", module)
            } else if path == "/v1/modules/0000" {
                // wrong bytes for the digest asked
                full(http::StatusCode::OK, "application/wasm", module)
            } else {
                full(http::StatusCode::NOT_FOUND, "text/plain", "not found")
            }
        })
    });
    tokio::spawn(transport::serve(listener, tls, handler, stop.clone()));
    Operator { addr, server, stop }
}

fn client_cfg(addr: SocketAddr, proxy: ProxyKind) -> XdsClientConfig {
    let mut c = XdsClientConfig::new(Endpoint::plaintext(addr), "node-1", proxy);
    c.initial_backoff = Duration::from_millis(20);
    c.max_backoff = Duration::from_millis(200);
    c
}

/// Records every update the client applied: (type, upserted, removed).
type Log = Arc<Mutex<Vec<(String, Vec<String>, Vec<String>)>>>;

fn recording_client(cfg: XdsClientConfig, reject_node: Option<&'static str>) -> (XdsClient, Log) {
    let log: Log = Arc::default();
    let l = log.clone();
    let client = XdsClient::start(cfg, move |u: &mesh_common::xds::client::Update<'_>| {
        if let Some(bad) = reject_node
            && u.state.workloads.values().any(|w| w.node == bad)
        {
            return Err(format!("workload on unknown node {bad}"));
        }
        l.lock()
            .push((u.type_.to_string(), u.upserted.to_vec(), u.removed.to_vec()));
        Ok(())
    });
    (client, log)
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn initial_sync_then_incremental_deltas() {
    let store = ConfigStore::new();
    store
        .update([wl("a", "n1"), wl("b", "n1"), wl("c", "n1")], [])
        .unwrap();
    store.set_ready();
    let op = start_operator(store.clone(), None, None).await;
    let (client, log) = recording_client(client_cfg(op.addr, ProxyKind::Ztunnel), None);
    client.wait_synced(WAIT).await.unwrap();
    assert_eq!(client.last_good().workloads.len(), 3);
    // the three subscribed types arrived, workloads with 3 upserts
    let first: Vec<_> = log.lock().clone();
    assert_eq!(first.len(), 3);
    assert_eq!(first.iter().find(|e| e.0 == "Workload").unwrap().1.len(), 3);

    // change one resource: exactly that one is sent
    log.lock().clear();
    store.update([wl("b", "n2")], []).unwrap();
    eventually("delta for b", || !log.lock().is_empty()).await;
    assert_eq!(
        log.lock().clone(),
        vec![(
            "Workload".to_string(),
            vec!["Kubernetes//Pod/ns/b".to_string()],
            vec![]
        )]
    );
    assert_eq!(
        client.last_good().workloads["Kubernetes//Pod/ns/b"].node,
        "n2"
    );

    // removal
    log.lock().clear();
    store
        .update::<Workload>([], ["Kubernetes//Pod/ns/a".to_string()])
        .unwrap();
    eventually("removal of a", || !log.lock().is_empty()).await;
    assert_eq!(log.lock()[0].2, vec!["Kubernetes//Pod/ns/a".to_string()]);
    assert_eq!(client.last_good().workloads.len(), 2);

    // unchanged upsert: nothing pushed
    log.lock().clear();
    store.update([wl("c", "n1")], []).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(log.lock().is_empty());

    // the server saw the ACKs
    eventually("server sees acks", || {
        op.server.clients().iter().all(|c| c.synced())
    })
    .await;
    let status = op.server.clients();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].node, "node-1");
    assert!(status[0].last_nack.is_none());
}

#[tokio::test]
async fn nack_keeps_previous_version() {
    let store = ConfigStore::new();
    store.update([wl("a", "n1")], []).unwrap();
    store.set_ready();
    let op = start_operator(store.clone(), None, None).await;
    let (client, _log) =
        recording_client(client_cfg(op.addr, ProxyKind::Ztunnel), Some("bad-node"));
    client.wait_synced(WAIT).await.unwrap();
    let good_version =
        client.last_good().versions[&mesh_common::model::ResourceType::Workload].clone();

    store
        .update([wl("a", "bad-node"), wl("x", "n1")], [])
        .unwrap();
    eventually("nack reported to the server", || {
        op.server
            .clients()
            .first()
            .is_some_and(|c| c.last_nack.is_some())
    })
    .await;
    let nack = op.server.clients()[0].last_nack.clone().unwrap();
    assert!(nack.error.contains("bad-node"), "{nack:?}");
    // the proxy still serves the previous version, without the new workload
    let state = client.last_good();
    assert_eq!(state.workloads["Kubernetes//Pod/ns/a"].node, "n1");
    assert!(!state.workloads.contains_key("Kubernetes//Pod/ns/x"));
    assert_eq!(
        state.versions[&mesh_common::model::ResourceType::Workload],
        good_version
    );
    assert_eq!(client.status().borrow().nacks, 1);

    // fixing the resource delivers both changes together
    store.update([wl("a", "n3")], []).unwrap();
    eventually("fixed config applied", || {
        client
            .last_good()
            .workloads
            .get("Kubernetes//Pod/ns/a")
            .is_some_and(|w| w.node == "n3")
    })
    .await;
    assert!(
        client
            .last_good()
            .workloads
            .contains_key("Kubernetes//Pod/ns/x")
    );
    eventually("nack cleared", || {
        op.server.clients()[0].last_nack.is_none()
    })
    .await;
}

#[tokio::test]
async fn reconnect_resyncs_only_differences_and_keeps_last_good_meanwhile() {
    let store = ConfigStore::new();
    store
        .update((0..50).map(|i| wl(&format!("w{i}"), "n1")), [])
        .unwrap();
    store.set_ready();
    let op = start_operator(store, None, None).await;
    let addr = op.addr;
    let (client, log) = recording_client(client_cfg(addr, ProxyKind::Ztunnel), None);
    client.wait_synced(WAIT).await.unwrap();
    drop(op); // operator goes away

    eventually("client notices", || !client.status().borrow().connected).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        client.last_good().workloads.len(),
        50,
        "last good kept while the operator is away"
    );

    // a new operator process: fresh store, same content except two changes
    let store2 = ConfigStore::new();
    let mut items: Vec<Workload> = (0..50).map(|i| wl(&format!("w{i}"), "n1")).collect();
    items.retain(|w| w.name != "w7");
    items[0].node = "n9".into();
    let changed_key = items[0].key();
    store2.update(items, []).unwrap();
    // not ready yet: a connecting proxy must not be told to drop anything
    let op2 = start_operator(store2.clone(), Some(addr), None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client.last_good().workloads.len(), 50);
    log.lock().clear();
    store2.set_ready();
    client.wait_synced(WAIT).await.unwrap();
    eventually("resync", || client.last_good().workloads.len() == 49).await;
    let entries = log.lock().clone();
    let wl_delta = entries.iter().find(|e| e.0 == "Workload").unwrap();
    assert_eq!(
        wl_delta.1,
        vec![changed_key],
        "only the changed workload is resent"
    );
    assert_eq!(wl_delta.2, vec!["Kubernetes//Pod/ns/w7".to_string()]);
    assert!(client.status().borrow().connects >= 2);
    drop(op2);
}

#[tokio::test]
async fn waypoint_receives_only_its_own_config() {
    let store = ConfigStore::new();
    let wp = |name: &str| WaypointConfig {
        name: name.into(),
        namespace: "shop".into(),
        identity: format!("spiffe://cluster.local/ns/shop/sa/{name}"),
        ..Default::default()
    };
    store.update([wp("waypoint"), wp("other")], []).unwrap();
    store.update([wl("a", "n1")], []).unwrap();
    store.set_ready();
    let op = start_operator(store.clone(), None, None).await;
    let mut cfg = client_cfg(op.addr, ProxyKind::Waypoint);
    cfg.resource_names = vec!["shop/waypoint".into()];
    let (client, log) = recording_client(cfg, None);
    client.wait_synced(WAIT).await.unwrap();
    let st = client.last_good();
    assert_eq!(
        st.waypoints.keys().collect::<Vec<_>>(),
        vec!["shop/waypoint"]
    );
    assert!(st.workloads.is_empty());
    log.lock().clear();
    let mut changed = wp("other");
    changed.identity = "x".into();
    store.update([changed], []).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(log.lock().is_empty(), "other waypoint's change not sent");
    let mut mine = wp("waypoint");
    mine.trust_domain = "example.org".into();
    store.update([mine], []).unwrap();
    eventually("own change", || !log.lock().is_empty()).await;
    assert_eq!(
        client.last_good().waypoints["shop/waypoint"].trust_domain,
        "example.org"
    );
}

fn tls_pair() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ck = rcgen::generate_simple_self_signed(vec!["operator.test".to_string()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

#[tokio::test]
async fn tls_stream_and_module_download() {
    let (server_tls, client_tls) = tls_pair();
    let store = ConfigStore::new();
    store.update([wl("a", "n1")], []).unwrap();
    store.set_ready();
    let op = start_operator(store, None, Some(server_tls)).await;
    let endpoint = Endpoint {
        uri: format!("https://127.0.0.1:{}", op.addr.port())
            .parse()
            .unwrap(),
        tls: Some(client_tls),
        server_name: Some("operator.test".into()),
    };
    let mut cfg = client_cfg(op.addr, ProxyKind::Ztunnel);
    cfg.endpoint = endpoint.clone();
    let (client, _log) = recording_client(cfg, None);
    client.wait_synced(WAIT).await.unwrap();
    assert_eq!(client.last_good().workloads.len(), 1);

    let module = b"\0asm fake module";
    let digest = hex::encode(sha2::Sha256::digest(module));
    let got = fetch_module(&endpoint, &digest).await.unwrap();
    assert_eq!(&got[..], module);
    let err = fetch_module(&endpoint, "0000").await.unwrap_err();
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    let err = fetch_module(&endpoint, "ffff").await.unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    // wrong server name is refused
    let bad = Endpoint {
        server_name: Some("evil.test".into()),
        ..endpoint
    };
    assert!(fetch_module(&bad, &digest).await.is_err());
}
