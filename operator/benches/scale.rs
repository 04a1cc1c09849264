//! Scale benchmark: 1,000 services / 10,000 workloads / 2,000 policies.
//!
//! ```text
//! cargo bench -p operator --bench scale            # release
//! SCALE_CLIENTS=50 cargo bench -p operator --bench scale
//! ```
//!
//! Prints: full recompute (validate + translate + publish) time, the delay
//! for one changed AuthorizationPolicy to reach every connected proxy (real
//! HTTP/2 push streams on loopback), and the process RSS after the full
//! recompute (before any client state exists in the process).

use mesh_common::model::ProxyKind;
use mesh_common::xds::client::{XdsClient, XdsClientConfig};
use mesh_common::xds::server::XdsServer;
use mesh_common::xds::store::ConfigStore;
use mesh_common::xds::transport::{self, Endpoint};
use operator::config::parse::{ParsedDoc, parse_value};
use operator::config::{
    ConfigSet, NamespaceInfo, PodInfo, ServiceInfo, ServicePortInfo, TargetPort,
};
use operator::controller::{Controller, Snapshot, SourcedObject};
use parking_lot::Mutex;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const NAMESPACES: usize = 100;
const SERVICES: usize = 1000;
const WORKLOADS: usize = 10_000;
const POLICIES: usize = 2000;

fn rss_kb() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

fn obj(v: serde_json::Value) -> SourcedObject {
    match parse_value(v, "bench", "default").unwrap() {
        ParsedDoc::Object(o) => SourcedObject {
            object: o,
            origin: None,
        },
        _ => unreachable!(),
    }
}

fn policy(i: usize, principal: &str) -> SourcedObject {
    let ns = format!("ns-{}", i % NAMESPACES);
    let svc = i % SERVICES;
    let spec = match i % 4 {
        0 => {
            json!({"selector": {"matchLabels": {"app": format!("svc-{svc}")}}, "rules": [{"from": [{"source": {"principals": [principal]}}], "to": [{"operation": {"ports": ["8080"]}}]}]})
        }
        1 => {
            json!({"action": "DENY", "rules": [{"from": [{"source": {"notNamespaces": [ns.clone(), "istio-system"]}}], "to": [{"operation": {"ports": [format!("{}", 9000 + i % 100)]}}]}]})
        }
        2 => {
            json!({"selector": {"matchLabels": {"app": format!("svc-{svc}")}}, "rules": [{"from": [{"source": {"namespaces": ["ns-1", "ns-2"]}}], "to": [{"operation": {"methods": ["GET"], "paths": ["/api/*"]}}]}]})
        }
        _ => {
            json!({"action": "DENY", "rules": [{"when": [{"key": "source.ip", "values": [format!("10.{}.0.0/16", i % 250)]}]}]})
        }
    };
    obj(
        json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": format!("p-{i}"), "namespace": ns}, "spec": spec}),
    )
}

fn snapshot(changed_principal: &str) -> Snapshot {
    let mut base = ConfigSet::default();
    for n in 0..NAMESPACES {
        let mut labels =
            BTreeMap::from([("istio.io/dataplane-mode".to_string(), "ambient".to_string())]);
        if n < 10 {
            labels.insert("istio.io/use-waypoint".into(), "waypoint".into());
        }
        base.namespaces.insert(
            format!("ns-{n}"),
            NamespaceInfo {
                name: format!("ns-{n}"),
                labels,
            },
        );
    }
    for s in 0..SERVICES {
        base.services.push(ServiceInfo {
            name: format!("svc-{s}"),
            namespace: format!("ns-{}", s % NAMESPACES),
            vips: vec![format!("10.96.{}.{}", s / 250, s % 250).parse().unwrap()],
            ports: vec![ServicePortInfo {
                name: "http".into(),
                port: 80,
                target_port: TargetPort::Number(8080),
                app_protocol: Some("http".into()),
            }],
            selector: Some(BTreeMap::from([("app".to_string(), format!("svc-{s}"))])),
            ..Default::default()
        });
    }
    for w in 0..WORKLOADS {
        let s = w % SERVICES;
        base.pods.push(PodInfo {
            name: format!("svc-{s}-{w}"),
            namespace: format!("ns-{}", s % NAMESPACES),
            labels: BTreeMap::from([
                ("app".to_string(), format!("svc-{s}")),
                ("version".to_string(), format!("v{}", w % 2)),
            ]),
            service_account: format!("sa-{s}"),
            node: format!("node-{}", w % 50),
            ips: vec![
                format!("10.{}.{}.{}", 100 + w / 65536, (w / 256) % 256, w % 256)
                    .parse()
                    .unwrap(),
            ],
            ready: true,
            ..Default::default()
        });
    }
    for n in 0..10 {
        base.waypoint_addresses.insert(
            format!("ns-{n}/waypoint"),
            vec![format!("10.200.0.{n}").parse().unwrap()],
        );
    }
    let mut objects: Vec<SourcedObject> = Vec::new();
    objects.push(obj(json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "default", "namespace": "istio-system"}, "spec": {"mtls": {"mode": "STRICT"}}})));
    for n in 0..10 {
        let ns = format!("ns-{n}");
        objects.push(obj(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "waypoint", "namespace": ns}, "spec": {"gatewayClassName": "istio-waypoint", "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}})));
        objects.push(obj(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "split", "namespace": ns}, "spec": {"hosts": [format!("svc-{n}")], "http": [{"route": [{"destination": {"host": format!("svc-{n}"), "subset": "v0"}, "weight": 90}, {"destination": {"host": format!("svc-{n}"), "subset": "v1"}, "weight": 10}]}]}})));
        objects.push(obj(json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "dr", "namespace": ns}, "spec": {"host": format!("svc-{n}"), "subsets": [{"name": "v0", "labels": {"version": "v0"}}, {"name": "v1", "labels": {"version": "v1"}}], "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 100}}}}})));
    }
    for i in 0..POLICIES {
        let p = if i == 0 {
            changed_principal
        } else {
            "cluster.local/ns/ns-1/sa/sa-1"
        };
        objects.push(policy(i, p));
    }
    Snapshot {
        base,
        objects,
        ..Default::default()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let clients_n: usize = std::env::var("SCALE_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let (rss0, _) = rss_kb();
    let snap = snapshot("cluster.local/ns/ns-1/sa/sa-1");
    let store = ConfigStore::new();
    let controller = Controller::new(store.clone());
    let t0 = Instant::now();
    controller.apply(snap.clone()).unwrap();
    let first = t0.elapsed();
    let stats = controller.stats();
    let t = controller.translation().unwrap();
    println!(
        "scale: {} services, {} workloads, {} policies (+{} converted), {} waypoints",
        t.services.len(),
        t.workloads.len(),
        POLICIES,
        t.authorizations.len() - POLICIES,
        t.waypoints.len()
    );
    println!(
        "full recompute (validate + translate + publish, cold store): {first:?} (translate {:?}, publish {:?})",
        stats.translate, stats.publish
    );
    // A full recompute with an inventory change (forces the full path).
    let mut snap2 = snap.clone();
    snap2.base.pods[0].ready = false;
    let t1 = Instant::now();
    controller.apply(snap2).unwrap();
    let s2 = controller.stats();
    println!(
        "full recompute (one pod changed, warm store): {:?} (translate {:?}, publish {:?})",
        t1.elapsed(),
        s2.translate,
        s2.publish
    );
    let t2 = Instant::now();
    let tr = operator::translate::translate(&controller.config().unwrap(), &Default::default());
    println!("translate() alone: {:?}", t2.elapsed());
    drop(tr);
    controller.apply(snap.clone()).unwrap();
    let (rss, hwm) = rss_kb();
    println!(
        "operator RSS after recompute: {} MiB (peak {} MiB; process baseline {} MiB)",
        rss / 1024,
        hwm / 1024,
        rss0 / 1024
    );

    // Push server and N ztunnel clients on loopback.
    let xds = XdsServer::new(store.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let x = xds.clone();
    let h: transport::Handler = Arc::new(move |req, _| {
        let x = x.clone();
        Box::pin(async move { x.handle(req) })
    });
    tokio::spawn(transport::serve(listener, None, h, stop.clone()));
    let seen: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; clients_n]));
    let mut clients = Vec::new();
    let ts = Instant::now();
    for i in 0..clients_n {
        let seen = seen.clone();
        let cfg = XdsClientConfig::new(
            Endpoint::plaintext(addr),
            format!("node-{i}"),
            ProxyKind::Ztunnel,
        );
        clients.push(XdsClient::start(
            cfg,
            move |u: &mesh_common::xds::client::Update<'_>| {
                if u.upserted.iter().any(|k| k == "ns-0/p-0")
                    && let Some(p) = u.state.authorizations.get("ns-0/p-0")
                    && format!("{:?}", p.rules).contains("ns-9/sa/sa-9")
                {
                    seen.lock()[i].get_or_insert(Instant::now());
                }
                Ok(())
            },
        ));
    }
    for c in &clients {
        c.wait_synced(Duration::from_secs(300)).await.unwrap();
    }
    println!(
        "{clients_n} proxies connected and synced (initial full push) in {:?}",
        ts.elapsed()
    );

    // One policy changes.
    let snap3 = snapshot("cluster.local/ns/ns-9/sa/sa-9");
    let start = Instant::now();
    controller.apply(snap3).unwrap();
    let applied = start.elapsed();
    loop {
        if seen.lock().iter().all(|s| s.is_some()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "change did not reach every proxy"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let last = seen
        .lock()
        .iter()
        .map(|s| s.unwrap().duration_since(start))
        .max()
        .unwrap();
    let first_seen = seen
        .lock()
        .iter()
        .map(|s| s.unwrap().duration_since(start))
        .min()
        .unwrap();
    println!(
        "one-policy change → all {clients_n} proxies: {last:?} (first proxy {first_seen:?}; controller apply {applied:?}, fast path: {})",
        controller.stats().fast_path
    );
    stop.cancel();
}
