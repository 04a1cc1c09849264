//! Kubernetes mode: reflectors over namespaces, pods, services,
//! EndpointSlices, the mesh ConfigMap and every resource kind the operator
//! reads; each change rebuilds a [`Snapshot`] for the controller. Statuses
//! are written back with server-side apply (field manager
//! [`FIELD_MANAGER`]); waypoint Gateways get a ServiceAccount, Deployment
//! and Service applied the same way.

use crate::ca::{AuthError, Authenticator, Caller};
use crate::config::objects::Kind;
use crate::config::parse::{parse_value, service_info};
use crate::config::{ConfigSet, NamespaceInfo, ObjectKey, PodInfo};
use crate::controller::{Controller, Snapshot, SourcedObject, StatusSink};
use crate::run::{CommonConfig, RunError, Running, start_common};
use crate::translate::status::{Condition, StatusTarget, Statuses};
use crate::translate::waypoints::{GATEWAY_NAME_LABEL, WaypointInfo};
use crate::validate::Validation;
use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "mesh-operator";
/// Controller name written in route statuses.
pub const CONTROLLER_NAME: &str = "istio.io/mesh-controller";
/// Debounce of snapshot rebuilds.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// Kubernetes-mode settings.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// Namespace of the mesh ConfigMap (`istio`) and the ztunnel SA.
    pub system_namespace: String,
    /// Image of waypoint Deployments.
    pub waypoint_image: String,
    /// Address waypoints reach the operator at.
    pub operator_address: String,
    /// Create waypoint Deployments/Services/ServiceAccounts.
    pub manage_waypoints: bool,
    /// How long to wait for the initial list of every kind.
    pub sync_timeout: Duration,
}

impl Default for KubeOptions {
    fn default() -> Self {
        KubeOptions {
            system_namespace: "istio-system".into(),
            waypoint_image: "mesh/waypoint:latest".into(),
            operator_address: "https://istiod.istio-system.svc:15012".into(),
            manage_waypoints: true,
            sync_timeout: Duration::from_secs(30),
        }
    }
}

/// API resource of a kind.
pub fn api_resource(kind: Kind) -> ApiResource {
    let plural = match kind {
        Kind::AuthorizationPolicy => "authorizationpolicies",
        Kind::PeerAuthentication => "peerauthentications",
        Kind::RequestAuthentication => "requestauthentications",
        Kind::VirtualService => "virtualservices",
        Kind::DestinationRule => "destinationrules",
        Kind::Telemetry => "telemetries",
        Kind::WasmPlugin => "wasmplugins",
        Kind::GatewayClass => "gatewayclasses",
        Kind::Gateway => "gateways",
        Kind::HTTPRoute => "httproutes",
    };
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(kind.group(), kind.version(), kind.as_str()),
        plural,
    )
}

/// Reflector stores of everything the operator reads.
#[derive(Clone)]
pub struct Stores {
    /// Namespaces.
    pub namespaces: Store<Namespace>,
    /// Pods.
    pub pods: Store<Pod>,
    /// Services.
    pub services: Store<Service>,
    /// EndpointSlices.
    pub slices: Store<EndpointSlice>,
    /// ConfigMaps of the system namespace.
    pub configmaps: Store<ConfigMap>,
    /// Custom resources by kind.
    pub custom: Vec<(Kind, Store<DynamicObject>)>,
}

fn spawn_reflector<K>(
    api: Api<K>,
    cfg: watcher::Config,
    writer: reflector::store::Writer<K>,
    notify: Arc<Notify>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone + Default + Send + Sync,
{
    let stream = reflector::reflector(writer, watcher(api, cfg).default_backoff());
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                ev = stream.next() => match ev {
                    Some(Ok(_)) => notify.notify_one(),
                    Some(Err(e)) => tracing::debug!("watch error (retrying): {e}"),
                    None => return,
                },
            }
        }
    })
}

/// Start reflectors for everything.
pub fn start_reflectors(
    client: &Client,
    opts: &KubeOptions,
    notify: Arc<Notify>,
    shutdown: &CancellationToken,
) -> (Stores, Vec<tokio::task::JoinHandle<()>>) {
    let mut tasks = Vec::new();
    macro_rules! typed {
        ($t:ty, $api:expr, $cfg:expr) => {{
            let (reader, writer) = reflector::store::<$t>();
            tasks.push(spawn_reflector(
                $api,
                $cfg,
                writer,
                notify.clone(),
                shutdown.clone(),
            ));
            reader
        }};
    }
    let namespaces = typed!(
        Namespace,
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default()
    );
    let pods = typed!(
        Pod,
        Api::<Pod>::all(client.clone()),
        watcher::Config::default()
    );
    let services = typed!(
        Service,
        Api::<Service>::all(client.clone()),
        watcher::Config::default()
    );
    let slices = typed!(
        EndpointSlice,
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default()
    );
    let configmaps = typed!(
        ConfigMap,
        Api::<ConfigMap>::namespaced(client.clone(), &opts.system_namespace),
        watcher::Config::default().fields("metadata.name=istio")
    );
    let mut custom = Vec::new();
    for kind in Kind::ALL {
        let ar = api_resource(kind);
        let writer = reflector::store::Writer::<DynamicObject>::new(ar.clone());
        let reader = writer.as_reader();
        let api = Api::<DynamicObject>::all_with(client.clone(), &ar);
        let stream = reflector::reflector(
            writer,
            watcher(api, watcher::Config::default()).default_backoff(),
        );
        let n = notify.clone();
        let s = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            loop {
                tokio::select! {
                    _ = s.cancelled() => return,
                    ev = stream.next() => match ev {
                        Some(Ok(_)) => n.notify_one(),
                        Some(Err(e)) => tracing::debug!(%kind, "watch error (is the CRD installed?): {e}"),
                        None => return,
                    },
                }
            }
        }));
        custom.push((kind, reader));
    }
    (
        Stores {
            namespaces,
            pods,
            services,
            slices,
            configmaps,
            custom,
        },
        tasks,
    )
}

/// The owning workload name of a pod (ReplicaSet → Deployment name).
pub fn pod_workload_name(pod: &Pod) -> Option<String> {
    let owner = pod
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))?;
    if owner.kind == "ReplicaSet" {
        let hash = pod
            .labels()
            .get("pod-template-hash")
            .cloned()
            .unwrap_or_default();
        return Some(
            owner
                .name
                .strip_suffix(&format!("-{hash}"))
                .unwrap_or(&owner.name)
                .to_string(),
        );
    }
    Some(owner.name.clone())
}

/// A pod as the operator sees it.
pub fn pod_info(pod: &Pod) -> PodInfo {
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let mut ips: Vec<std::net::IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if ips.is_empty() {
        ips.extend(
            status
                .pod_ip
                .as_deref()
                .and_then(|p| p.parse::<std::net::IpAddr>().ok()),
        );
    }
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let phase = status.phase.as_deref().unwrap_or("");
    PodInfo {
        name: pod.name_any(),
        namespace: pod.namespace().unwrap_or_default(),
        labels: pod.labels().clone(),
        annotations: pod.annotations().clone(),
        service_account: spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into()),
        node: spec.node_name.clone().unwrap_or_default(),
        ips,
        ready,
        workload_name: pod_workload_name(pod),
        named_ports: spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| Some((p.name.clone()?, u16::try_from(p.container_port).ok()?)))
            .collect(),
        terminated: matches!(phase, "Succeeded" | "Failed")
            || pod.metadata.deletion_timestamp.is_some() && !ready,
    }
}

/// Build a snapshot from the stores.
pub fn snapshot(stores: &Stores, system_namespace: &str) -> Snapshot {
    let mut base = ConfigSet::default();
    if let Some(cm) = stores
        .configmaps
        .state()
        .into_iter()
        .find(|c| c.name_any() == "istio")
        && let Some(mesh) = cm.data.as_ref().and_then(|d| d.get("mesh"))
        && let Err(e) = base.mesh.apply_mesh_config(mesh)
    {
        tracing::error!("configmap {system_namespace}/istio key mesh: {e}");
    }
    for ns in stores.namespaces.state() {
        let name = ns.name_any();
        base.namespaces.insert(
            name.clone(),
            NamespaceInfo {
                name,
                labels: ns.labels().clone(),
            },
        );
    }
    base.pods = stores.pods.state().iter().map(|p| pod_info(p)).collect();
    let mut slices: HashMap<(String, String), Vec<std::net::IpAddr>> = HashMap::new();
    for s in stores.slices.state() {
        let Some(svc) = s.labels().get("kubernetes.io/service-name").cloned() else {
            continue;
        };
        let e = slices
            .entry((s.namespace().unwrap_or_default(), svc))
            .or_default();
        for ep in &s.endpoints {
            e.extend(
                ep.addresses
                    .iter()
                    .filter_map(|a| a.parse::<std::net::IpAddr>().ok()),
            );
        }
    }
    for svc in stores.services.state() {
        let mut info = service_info(&svc, "default");
        if let Some(ips) = slices.remove(&(info.namespace.clone(), info.name.clone())) {
            info.endpoint_ips = ips;
        }
        // A managed waypoint's Service carries its address.
        if let Some(gw) = svc.labels().get(GATEWAY_NAME_LABEL)
            && !info.vips.is_empty()
        {
            base.waypoint_addresses
                .insert(format!("{}/{gw}", info.namespace), info.vips.clone());
        }
        base.services.push(info);
    }
    let mut snap = Snapshot {
        base,
        ..Default::default()
    };
    for (kind, store) in &stores.custom {
        for obj in store.state() {
            let origin = format!(
                "{kind} {}/{}",
                obj.namespace().unwrap_or_default(),
                obj.name_any()
            );
            // List items carry no apiVersion/kind: set them from the watch.
            let value = match serde_json::to_value(&*obj) {
                Ok(mut v) => {
                    if let Some(o) = v.as_object_mut() {
                        o.insert(
                            "apiVersion".into(),
                            format!("{}/{}", kind.group(), kind.version()).into(),
                        );
                        o.insert("kind".into(), kind.as_str().into());
                    }
                    v
                }
                Err(e) => {
                    snap.parse_errors.push(format!("{origin}: {e}"));
                    continue;
                }
            };
            match parse_value(value, &origin, "default") {
                Ok(crate::config::parse::ParsedDoc::Object(o)) => {
                    snap.objects.push(SourcedObject {
                        object: o,
                        origin: None,
                    })
                }
                Ok(_) => {}
                Err(e) => snap.parse_errors.push(e.to_string()),
            }
        }
    }
    snap
}

/// TokenReview authentication of CSR callers.
pub struct TokenReviewAuth {
    client: Client,
}

impl TokenReviewAuth {
    /// Use `client` for TokenReviews.
    pub fn new(client: Client) -> Self {
        TokenReviewAuth { client }
    }
}

impl Authenticator for TokenReviewAuth {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Caller, AuthError>> {
        Box::pin(async move {
            let api: Api<TokenReview> = Api::all(self.client.clone());
            let tr = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token.to_string()),
                    audiences: None,
                },
                ..Default::default()
            };
            let r = api
                .create(&PostParams::default(), &tr)
                .await
                .map_err(|e| AuthError(format!("TokenReview failed: {e}")))?;
            let st = r.status.unwrap_or_default();
            if st.authenticated != Some(true) {
                return Err(AuthError(format!(
                    "token not authenticated: {}",
                    st.error.unwrap_or_default()
                )));
            }
            let user = st.user.and_then(|u| u.username).unwrap_or_default();
            match user
                .strip_prefix("system:serviceaccount:")
                .and_then(|r| r.split_once(':'))
            {
                Some((ns, sa)) => Ok(Caller::ServiceAccount {
                    namespace: ns.into(),
                    name: sa.into(),
                }),
                None => Err(AuthError(format!("{user} is not a service account"))),
            }
        })
    }
}

/// Writes statuses with server-side apply, only when they changed.
pub struct KubeStatusSink {
    tx: tokio::sync::mpsc::UnboundedSender<(Statuses, BTreeMap<ObjectKey, Validation>)>,
}

impl StatusSink for KubeStatusSink {
    fn publish(&self, statuses: &Statuses, validation: &BTreeMap<ObjectKey, Validation>) {
        let _ = self.tx.send((statuses.clone(), validation.clone()));
    }
}

use super::kube_status::status_body;

async fn write_statuses(
    client: Client,
    stores: Stores,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(Statuses, BTreeMap<ObjectKey, Validation>)>,
    shutdown: CancellationToken,
) {
    let mut written: HashMap<StatusTarget, serde_json::Value> = HashMap::new();
    let mut transitions = HashMap::new();
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    loop {
        let (mut statuses, validation) = tokio::select! {
            _ = shutdown.cancelled() => return,
            m = rx.recv() => match m { Some(m) => m, None => return },
        };
        while let Ok(m) = rx.try_recv() {
            (statuses, _) = (m.0, m.1);
        }
        for (k, v) in &validation {
            if !v.errors.is_empty() {
                statuses.set(
                    StatusTarget::new(k.kind.as_str(), &k.namespace, &k.name),
                    Condition::new("Reconciled", false, "Invalid", v.errors.join("; ")),
                );
            }
        }
        for (target, conds) in &statuses.0 {
            let object = Kind::parse(target.kind.as_str()).and_then(|k| {
                stores
                    .custom
                    .iter()
                    .find(|(x, _)| *x == k)
                    .and_then(|(_, s)| {
                        s.state().into_iter().find(|o| {
                            o.namespace().unwrap_or_default() == target.namespace
                                && o.name_any() == target.name
                        })
                    })
            });
            let generation = object.as_ref().and_then(|o| o.metadata.generation);
            let parent_refs: Vec<serde_json::Value> = object
                .as_ref()
                .and_then(|o| o.data.pointer("/spec/parentRefs")?.as_array().cloned())
                .unwrap_or_default();
            let mut body = status_body(target, conds, generation, &parent_refs, &mut transitions);
            if target.kind == "Gateway" {
                let addrs: Vec<serde_json::Value> = stores
                    .services
                    .state()
                    .iter()
                    .filter(|s| {
                        s.namespace().as_deref() == Some(target.namespace.as_str())
                            && s.labels().get(GATEWAY_NAME_LABEL) == Some(&target.name)
                    })
                    .filter_map(|s| s.spec.as_ref()?.cluster_ip.clone())
                    .map(|ip| serde_json::json!({"type": "IPAddress", "value": ip}))
                    .collect();
                if !addrs.is_empty() {
                    body["addresses"] = serde_json::Value::Array(addrs);
                }
            }
            if written.get(target) == Some(&body) {
                continue;
            }
            let result = match target.kind.as_str() {
                "Service" => {
                    let api: Api<Service> = Api::namespaced(client.clone(), &target.namespace);
                    api.patch_status(&target.name, &pp, &Patch::Apply(serde_json::json!({"apiVersion": "v1", "kind": "Service", "status": body.clone()}))).await.map(|_| ())
                }
                kind => match Kind::parse(kind) {
                    Some(k) => {
                        let ar = api_resource(k);
                        let api: Api<DynamicObject> = if k.cluster_scoped() {
                            Api::all_with(client.clone(), &ar)
                        } else {
                            Api::namespaced_with(client.clone(), &target.namespace, &ar)
                        };
                        let patch = serde_json::json!({"apiVersion": format!("{}/{}", k.group(), k.version()), "kind": k.as_str(), "status": body.clone()});
                        api.patch_status(&target.name, &pp, &Patch::Apply(patch))
                            .await
                            .map(|_| ())
                    }
                    None => continue,
                },
            };
            match result {
                Ok(()) => {
                    written.insert(target.clone(), body);
                }
                Err(e) => tracing::debug!(%target, "status write failed: {e}"),
            }
        }
    }
}

/// The objects Istio renders for a waypoint Gateway (ServiceAccount,
/// Deployment, Service), owner-referenced to it and named after it (or
/// after `gateway.istio.io/name-override`).
pub fn waypoint_objects(
    wp: &WaypointInfo,
    opts: &KubeOptions,
) -> (ServiceAccount, Deployment, Service) {
    let gw = &wp.gateway;
    let owner = serde_json::json!([{
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "name": wp.name, "uid": gw.metadata.uid.clone().unwrap_or_default(), "controller": true,
    }]);
    let labels = serde_json::json!({
        GATEWAY_NAME_LABEL: wp.name,
        "gateway.istio.io/managed": "istio.io-mesh-controller",
        "istio.io/dataplane-mode": "none",
        "sidecar.istio.io/inject": "false",
    });
    let mut ports = vec![
        serde_json::json!({"name": "status-port", "port": 15021, "protocol": "TCP", "appProtocol": "tcp"}),
    ];
    for l in &gw.spec.listeners {
        ports.push(serde_json::json!({"name": l.name, "port": l.port, "protocol": "TCP", "appProtocol": l.protocol.to_ascii_lowercase()}));
    }
    let sa: ServiceAccount = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": wp.service_account, "namespace": wp.namespace, "ownerReferences": owner, "labels": labels},
    }))
    .unwrap_or_default();
    let dep: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": wp.deployment_name, "namespace": wp.namespace, "ownerReferences": owner, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {GATEWAY_NAME_LABEL: wp.name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": wp.service_account,
                    "containers": [{
                        "name": "istio-proxy",
                        "image": opts.waypoint_image,
                        "args": ["--operator", opts.operator_address, "--name", wp.name, "--namespace", wp.namespace],
                        "ports": [
                            {"name": "hbone", "containerPort": 15008},
                            {"name": "metrics", "containerPort": 15020},
                            {"name": "status-port", "containerPort": 15021},
                        ],
                        "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}},
                    }],
                },
            },
        },
    }))
    .unwrap_or_default();
    let svc: Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": wp.deployment_name, "namespace": wp.namespace, "ownerReferences": owner, "labels": labels,
            "annotations": {"networking.istio.io/traffic-distribution": "PreferClose"},
        },
        "spec": {"type": "ClusterIP", "selector": {GATEWAY_NAME_LABEL: wp.name}, "ports": ports},
    }))
    .unwrap_or_default();
    (sa, dep, svc)
}

async fn manage_waypoints(
    client: Client,
    controller: Arc<Controller>,
    opts: KubeOptions,
    shutdown: CancellationToken,
) {
    let mut generation = controller.watch();
    let applied: Mutex<HashMap<String, serde_json::Value>> = Mutex::new(HashMap::new());
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    loop {
        let cs = controller.config().unwrap_or_default();
        for (key, wp) in crate::translate::waypoints::discover(&cs) {
            if !wp.managed {
                continue;
            }
            let (sa, dep, svc) = waypoint_objects(&wp, &opts);
            let fingerprint = serde_json::json!([sa, dep, svc]);
            if applied.lock().get(&key) == Some(&fingerprint) {
                continue;
            }
            let ns = wp.namespace.clone();
            let r = async {
                Api::<ServiceAccount>::namespaced(client.clone(), &ns)
                    .patch(&wp.service_account, &pp, &Patch::Apply(&sa))
                    .await?;
                Api::<Deployment>::namespaced(client.clone(), &ns)
                    .patch(&wp.deployment_name, &pp, &Patch::Apply(&dep))
                    .await?;
                Api::<Service>::namespaced(client.clone(), &ns)
                    .patch(&wp.deployment_name, &pp, &Patch::Apply(&svc))
                    .await?;
                Ok::<_, kube::Error>(())
            }
            .await;
            match r {
                Ok(()) => {
                    tracing::info!(waypoint = %key, "waypoint deployment applied");
                    applied.lock().insert(key, fingerprint);
                }
                Err(e) => tracing::warn!(waypoint = %key, "applying waypoint objects: {e}"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = generation.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}

/// Run the Kubernetes source against `client`: reflectors → snapshots →
/// controller, statuses written back. Returns once the first snapshot was
/// applied (or `sync_timeout` passed).
pub async fn run_source(
    client: Client,
    controller: Arc<Controller>,
    opts: KubeOptions,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let notify = Arc::new(Notify::new());
    let (stores, mut tasks) = start_reflectors(&client, &opts, notify.clone(), &shutdown);
    // Wait for the initial lists (bounded: missing CRDs never become ready).
    let wait = async {
        let _ = stores.namespaces.wait_until_ready().await;
        let _ = stores.pods.wait_until_ready().await;
        let _ = stores.services.wait_until_ready().await;
        for (_, s) in &stores.custom {
            let _ = s.wait_until_ready().await;
        }
    };
    let _ = tokio::time::timeout(opts.sync_timeout, wait).await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    controller.add_sink(Arc::new(KubeStatusSink { tx }));
    if let Err(e) = controller.apply(snapshot(&stores, &opts.system_namespace)) {
        tracing::error!("publishing: {e}");
    }
    tasks.push(tokio::spawn(write_statuses(
        client.clone(),
        stores.clone(),
        rx,
        shutdown.clone(),
    )));
    if opts.manage_waypoints {
        tasks.push(tokio::spawn(manage_waypoints(
            client.clone(),
            controller.clone(),
            opts.clone(),
            shutdown.clone(),
        )));
    }
    let s = shutdown.clone();
    let c = controller.clone();
    let sys = opts.system_namespace.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = s.cancelled() => return,
                _ = notify.notified() => {}
            }
            tokio::time::sleep(DEBOUNCE).await;
            if let Err(e) = c.apply(snapshot(&stores, &sys)) {
                tracing::error!("publishing: {e}");
            }
        }
    }));
    tasks
}

/// Start in Kubernetes mode with the in-cluster / kubeconfig client.
pub async fn start(common: CommonConfig) -> Result<Running, RunError> {
    let client = Client::try_default()
        .await
        .map_err(|e| RunError::Kube(e.to_string()))?;
    start_with_client(client, common, KubeOptions::default()).await
}

/// Start in Kubernetes mode with a given client.
pub async fn start_with_client(
    client: Client,
    common: CommonConfig,
    opts: KubeOptions,
) -> Result<Running, RunError> {
    let shutdown = CancellationToken::new();
    let controller = Controller::new(mesh_common::xds::store::ConfigStore::new());
    let tasks = run_source(client.clone(), controller.clone(), opts, shutdown.clone()).await;
    let auth = Arc::new(TokenReviewAuth::new(client));
    start_common(&common, controller, auth, None, shutdown, tasks).await
}
