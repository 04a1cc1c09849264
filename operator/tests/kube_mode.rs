//! Kubernetes mode against a mock API server (tower-test): list/watch of
//! core kinds and CRs → translation → push to a connected proxy; statuses
//! written back with server-side apply; waypoint objects applied and the
//! waypoint bound once its Service has an address; CSRs authenticated with
//! TokenReview. The mock answers like kube-apiserver (list items without
//! apiVersion/kind, watch streams of JSON events).

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use mesh_common::ca::generate_csr;
use mesh_common::identity::SpiffeId;
use mesh_common::model::ProxyKind;
use mesh_common::xds::CsrRequest;
use mesh_common::xds::client::{XdsClient, XdsClientConfig, request_certificate};
use mesh_common::xds::transport::{Endpoint, ResponseBody};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

type Watchers = Mutex<Vec<(String, mpsc::Sender<Result<Frame<Bytes>, Infallible>>)>>;

#[derive(Default)]
struct MockApi {
    /// collection path (`/api/v1/pods`) → objects.
    objects: Mutex<BTreeMap<String, Vec<Value>>>,
    watchers: Watchers,
    /// (method, path, query, body)
    requests: Mutex<Vec<(String, String, String, Value)>>,
    rv: AtomicU64,
}

fn collection_of(path: &str) -> String {
    // /api/v1/namespaces/shop/pods/x → /api/v1/pods ; /apis/g/v/namespaces/n/plural → /apis/g/v/plural
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (prefix, rest) = if parts[0] == "api" {
        (parts[..2].join("/"), &parts[2..])
    } else {
        (parts[..3].join("/"), &parts[3..])
    };
    let plural = if rest.len() >= 3 && rest[0] == "namespaces" {
        rest[2]
    } else {
        rest[0]
    };
    format!("/{prefix}/{plural}")
}

impl MockApi {
    fn add(&self, collection: &str, mut obj: Value) {
        let rv = self.rv.fetch_add(1, Ordering::SeqCst) + 1;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let mut objs = self.objects.lock();
        let list = objs.entry(collection.into()).or_default();
        let key = |o: &Value| {
            (
                o["metadata"]["namespace"].clone(),
                o["metadata"]["name"].clone(),
            )
        };
        let ty = if let Some(pos) = list.iter().position(|o| key(o) == key(&obj)) {
            list[pos] = obj.clone();
            "MODIFIED"
        } else {
            list.push(obj.clone());
            "ADDED"
        };
        drop(objs);
        let ev = Bytes::from(format!("{}\n", json!({"type": ty, "object": obj})));
        self.watchers
            .lock()
            .retain(|(c, tx)| c != collection || tx.try_send(Ok(Frame::data(ev.clone()))).is_ok());
    }

    fn handle(&self, method: &str, path: &str, query: &str, body: Value) -> Response<ResponseBody> {
        self.requests
            .lock()
            .push((method.into(), path.into(), query.into(), body.clone()));
        let ok = |v: Value| {
            Response::builder()
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(Bytes::from(v.to_string())).boxed())
                .unwrap()
        };
        if method == "POST" && path.ends_with("/tokenreviews") {
            let token = body["spec"]["token"].as_str().unwrap_or("");
            let status = match token.strip_prefix("sa-token-") {
                Some(sa) => {
                    json!({"authenticated": true, "user": {"username": format!("system:serviceaccount:shop:{sa}")}})
                }
                None => json!({"authenticated": false, "error": "invalid token"}),
            };
            return ok(
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": body["spec"], "status": status}),
            );
        }
        let coll = collection_of(path);
        if method == "PATCH" {
            let name = path
                .trim_end_matches("/status")
                .rsplit('/')
                .next()
                .unwrap()
                .to_string();
            let existing = self.objects.lock().get(&coll).and_then(|l| {
                l.iter()
                    .find(|o| o["metadata"]["name"] == json!(name))
                    .cloned()
            });
            let mut obj = existing.unwrap_or_else(|| body.clone());
            if path.ends_with("/status") {
                obj["status"] = body["status"].clone();
            } else {
                // An applied object: the API server stores it (allocating a ClusterIP).
                obj = body.clone();
                obj["metadata"]["uid"] = json!(format!("uid-{name}"));
                if coll == "/api/v1/services" {
                    obj["spec"]["clusterIP"] = json!("10.96.50.5");
                    obj["spec"]["clusterIPs"] = json!(["10.96.50.5"]);
                }
                self.add(&coll, obj.clone());
            }
            return ok(obj);
        }
        if query.contains("watch=true") || query.contains("watch=1") {
            let (tx, rx) = mpsc::channel(64);
            self.watchers.lock().push((coll, tx));
            let stream =
                futures::stream::unfold(
                    rx,
                    |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
                );
            return Response::builder()
                .header("content-type", "application/json")
                .body(StreamBody::new(stream).boxed())
                .unwrap();
        }
        let mut items = self.objects.lock().get(&coll).cloned().unwrap_or_default();
        if query.contains("fieldSelector=metadata.name%3Distio") {
            items.retain(|o| o["metadata"]["name"] == "istio");
        }
        // Like kube-apiserver: items carry no apiVersion/kind.
        for i in &mut items {
            if let Some(o) = i.as_object_mut() {
                o.remove("apiVersion");
                o.remove("kind");
            }
        }
        ok(
            json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": self.rv.load(Ordering::SeqCst).to_string()}, "items": items}),
        )
    }
}

fn client(api: Arc<MockApi>) -> kube::Client {
    let (svc, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<ResponseBody>>();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let api = api.clone();
            tokio::spawn(async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let v: Value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes)
                        .or_else(|_| serde_yaml::from_slice(&bytes))
                        .unwrap_or(Value::Null)
                };
                let resp = api.handle(
                    parts.method.as_str(),
                    parts.uri.path(),
                    parts.uri.query().unwrap_or(""),
                    v,
                );
                send.send_response(resp);
            });
        }
    });
    kube::Client::new(svc, "default")
}

fn pod(name: &str, sa: &str, ip: &str, mut labels: Value) -> Value {
    // Deployment `<deploy>` → ReplicaSet `<deploy>-5d9f8` → this pod.
    let deploy = name.rsplit_once('-').map(|(d, _)| d).unwrap_or(name);
    labels["pod-template-hash"] = json!("5d9f8");
    json!({"metadata": {"name": name, "namespace": "shop", "labels": labels, "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{deploy}-5d9f8"), "uid": "u", "controller": true}]},
           "spec": {"serviceAccountName": sa, "nodeName": "node-1", "containers": [{"name": "c", "image": "i", "ports": [{"name": "http", "containerPort": 8080}]}]},
           "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn seed(api: &MockApi) {
    api.add("/api/v1/namespaces", json!({"metadata": {"name": "shop", "labels": {"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"}}}));
    api.add(
        "/api/v1/namespaces",
        json!({"metadata": {"name": "istio-system"}}),
    );
    api.add(
        "/api/v1/pods",
        pod("web-0", "web", "10.1.0.2", json!({"app": "web"})),
    );
    api.add(
        "/api/v1/pods",
        pod(
            "orders-v1-0",
            "orders",
            "10.1.0.3",
            json!({"app": "orders", "version": "v1"}),
        ),
    );
    api.add("/api/v1/services", json!({"metadata": {"name": "orders", "namespace": "shop"}, "spec": {"clusterIP": "10.96.0.20", "selector": {"app": "orders"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}));
    api.add("/apis/security.istio.io/v1/authorizationpolicies", json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "deny-all", "namespace": "shop", "generation": 3}, "spec": {}}));
    api.add("/apis/security.istio.io/v1/authorizationpolicies", json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "bad", "namespace": "shop", "generation": 1}, "spec": {"action": "DENY"}}));
    api.add("/apis/gateway.networking.k8s.io/v1/gateways", json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "waypoint", "namespace": "shop", "uid": "gw-uid", "generation": 1}, "spec": {"gatewayClassName": "istio-waypoint", "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}}));
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_translate_push_and_status_writes() {
    let api = Arc::new(MockApi::default());
    seed(&api);
    let tmp = tempfile::tempdir().unwrap();
    let mut common = operator::run::CommonConfig::new(tmp.path().to_path_buf());
    common.listen = "127.0.0.1:0".parse().unwrap();
    common.debug_listen = None;
    common.tls = false;
    let opts = operator::source::kube::KubeOptions {
        sync_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let op = operator::source::kube::start_with_client(client(api.clone()), common, opts)
        .await
        .unwrap();

    // Initial translation from the lists.
    let t = op.controller.translation().unwrap();
    assert_eq!(t.workloads.len(), 2);
    let w = t
        .workloads
        .iter()
        .find(|w| w.name == "orders-v1-0")
        .unwrap();
    assert_eq!(
        (w.workload_name.as_str(), w.canonical_revision.as_str()),
        ("orders-v1", "v1"),
        "ReplicaSet owner → workload name"
    );
    let svc = t.services.iter().find(|s| s.name == "orders").unwrap();
    assert_eq!(
        svc.endpoints[0].ports[&80], 8080,
        "named targetPort resolved from the pod"
    );
    assert!(t.authorizations.iter().any(|a| a.name == "deny-all"));
    assert!(
        !t.authorizations.iter().any(|a| a.name == "bad"),
        "invalid policy not used"
    );

    // A proxy connects.
    let mut cfg = XdsClientConfig::new(
        Endpoint::plaintext(op.push_addr),
        "node-1",
        ProxyKind::Ztunnel,
    );
    cfg.initial_backoff = Duration::from_millis(50);
    let zt = XdsClient::start(cfg, |_u: &mesh_common::xds::client::Update<'_>| Ok(()));
    zt.wait_synced(WAIT).await.unwrap();
    assert!(zt.last_good().authorizations.contains_key("shop/deny-all"));

    // Waypoint objects are applied (SSA), the API server allocates the
    // Service address, and the orders Service gets bound.
    eventually("waypoint objects applied", || {
        let r = api.requests.lock();
        [
            "serviceaccounts/waypoint",
            "deployments/waypoint",
            "services/waypoint",
        ]
        .iter()
        .all(|p| {
            r.iter().any(|(m, path, q, _)| {
                m == "PATCH" && path.ends_with(p) && q.contains("fieldManager=mesh-operator")
            })
        })
    })
    .await;
    let dep = api
        .requests
        .lock()
        .iter()
        .find(|(_, p, _, _)| p.ends_with("deployments/waypoint"))
        .unwrap()
        .3
        .clone();
    assert_eq!(dep["metadata"]["ownerReferences"][0]["uid"], "gw-uid");
    assert_eq!(
        dep["spec"]["template"]["metadata"]["labels"]["istio.io/dataplane-mode"],
        "none"
    );
    eventually("orders bound to the waypoint", || {
        zt.last_good()
            .services
            .get("shop/orders.shop.svc.cluster.local")
            .and_then(|s| s.waypoint.clone())
            .is_some_and(|w| w.addresses == vec!["10.96.50.5".parse::<std::net::IpAddr>().unwrap()])
    })
    .await;

    // watch → translate → push: a new policy arrives through the watch.
    api.add("/apis/security.istio.io/v1/authorizationpolicies", json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "allow-web", "namespace": "shop", "generation": 1}, "spec": {"selector": {"matchLabels": {"app": "orders"}}, "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/web"]}}]}]}}));
    eventually("new policy pushed", || {
        zt.last_good().authorizations.contains_key("shop/allow-web")
    })
    .await;
    eventually("workload references it", || {
        zt.last_good().workloads["Kubernetes//Pod/shop/orders-v1-0"]
            .authorization_policies
            .contains(&"shop/allow-web".to_string())
    })
    .await;

    // Statuses written with server-side apply.
    let status_of = |suffix: &str| -> Option<Value> {
        api.requests
            .lock()
            .iter()
            .rev()
            .find(|(m, p, _, _)| m == "PATCH" && p.ends_with(suffix))
            .map(|r| r.3.clone())
    };
    eventually("policy status", || {
        status_of("authorizationpolicies/deny-all/status").is_some()
    })
    .await;
    let st = status_of("authorizationpolicies/deny-all/status").unwrap();
    assert_eq!(st["apiVersion"], "security.istio.io/v1");
    assert_eq!(st["status"]["conditions"][0]["type"], "ZtunnelAccepted");
    assert_eq!(
        st["status"]["conditions"][0]["message"],
        "attached to ztunnel"
    );
    assert_eq!(st["status"]["observedGeneration"], 3);
    let q = api
        .requests
        .lock()
        .iter()
        .find(|(_, p, _, _)| p.ends_with("deny-all/status"))
        .unwrap()
        .2
        .clone();
    assert!(
        q.contains("fieldManager=mesh-operator") && q.contains("force=true"),
        "{q}"
    );
    eventually("invalid policy status", || {
        status_of("authorizationpolicies/bad/status").is_some()
    })
    .await;
    let st = status_of("authorizationpolicies/bad/status").unwrap();
    assert!(
        st["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Reconciled"
                && c["status"] == "False"
                && c["message"]
                    .as_str()
                    .unwrap()
                    .contains("DENY action without `rules`"))
    );
    eventually("service bound status", || {
        status_of("services/orders/status")
            .is_some_and(|s| s["status"]["conditions"][0]["reason"] == "WaypointAccepted")
    })
    .await;
    eventually("gateway status with address", || {
        status_of("gateways/waypoint/status")
            .is_some_and(|s| s["status"]["addresses"][0]["value"] == "10.96.50.5")
    })
    .await;

    // CSR authenticated by TokenReview.
    let ep = Endpoint::plaintext(op.push_addr);
    let (csr, _) = generate_csr(&SpiffeId::new("cluster.local", "shop", "web")).unwrap();
    let issued = request_certificate(
        &ep,
        Some("sa-token-web"),
        &CsrRequest {
            csr,
            ttl_seconds: None,
            node: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(issued.identity.service_account, "web");
    let (csr, _) = generate_csr(&SpiffeId::new("cluster.local", "shop", "orders")).unwrap();
    let e = request_certificate(
        &ep,
        Some("sa-token-web"),
        &CsrRequest {
            csr: csr.clone(),
            ttl_seconds: None,
            node: None,
        },
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("403"), "{e}");
    let e = request_certificate(
        &ep,
        Some("nope"),
        &CsrRequest {
            csr,
            ttl_seconds: None,
            node: None,
        },
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("401"), "{e}");
    op.stop().await;
}
