//! Filter rollout in file mode: a WasmPlugin's new version is delivered as
//! a canary next to the previous one, and rolled back automatically when
//! the waypoint's metrics show the new version failing; a waypoint started
//! by a launcher gets its address and becomes Programmed.

use futures::future::BoxFuture;
use mesh_common::model::ProxyKind;
use mesh_common::xds::client::{XdsClient, XdsClientConfig};
use mesh_common::xds::transport::{self, Endpoint};
use operator::lifecycle::{WaypointLauncher, WaypointSpec};
use operator::run::{CommonConfig, FileModeConfig, start_file_mode};
use operator::translate::status::StatusTarget;
use parking_lot::Mutex;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
/// The fake waypoint's address (its metrics listen on :15020 there).
const WP_ADDR: &str = "127.0.0.57";

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

struct FakeLauncher {
    started: Mutex<Vec<WaypointSpec>>,
}

impl WaypointLauncher for FakeLauncher {
    fn ensure(&self, spec: &WaypointSpec) -> BoxFuture<'_, Result<Vec<IpAddr>, String>> {
        self.started.lock().push(spec.clone());
        Box::pin(async { Ok(vec![WP_ADDR.parse().unwrap()]) })
    }
    fn remove(&self, _key: &str) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

const INVENTORY: &str = "nodes: [{name: n1, token: t}]\nnamespaces: [{name: shop, labels: {istio.io/dataplane-mode: ambient}}]\n";
const GATEWAY: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: waypoint, namespace: shop}\nspec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n";

fn plugin(path: &std::path::Path, sha: &str, canary: Option<f64>) -> String {
    let rollout = canary
        .map(|c| {
            format!("  rollout: {{canaryPercentage: {c}, maxErrorRate: 0.1, minRequests: 10}}\n")
        })
        .unwrap_or_default();
    format!(
        "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {{name: f, namespace: shop}}\nspec:\n  targetRefs: [{{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}}]\n  url: file://{}\n  sha256: {sha}\n{rollout}",
        path.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_and_automatic_rollback() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("config");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("inventory.yaml"), INVENTORY).unwrap();
    std::fs::write(dir.join("gw.yaml"), GATEWAY).unwrap();
    let (v1, v2) = (tmp.path().join("v1.wasm"), tmp.path().join("v2.wasm"));
    std::fs::write(&v1, b"\0asm v1").unwrap();
    std::fs::write(&v2, b"\0asm v2").unwrap();
    let (s1, s2) = (
        operator::modules::digest(b"\0asm v1"),
        operator::modules::digest(b"\0asm v2"),
    );
    std::fs::write(dir.join("plugin.yaml"), plugin(&v1, &s1, None)).unwrap();

    // The waypoint's metrics: the new version fails 5 of 20 requests.
    let metrics = Arc::new(Mutex::new(String::new()));
    let l = tokio::net::TcpListener::bind((WP_ADDR, 15020))
        .await
        .unwrap();
    let m = metrics.clone();
    let h: transport::Handler = Arc::new(move |_r, _| {
        let body = m.lock().clone();
        Box::pin(async move { transport::full(http::StatusCode::OK, "text/plain", body) })
    });
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(transport::serve(l, None, h, stop.clone()));

    let launcher = Arc::new(FakeLauncher {
        started: Mutex::new(Vec::new()),
    });
    let mut common = CommonConfig::new(tmp.path().join("state"));
    common.listen = "127.0.0.1:0".parse().unwrap();
    common.debug_listen = None;
    common.tls = false;
    common.rollout_interval = Duration::from_millis(100);
    let op = start_file_mode(
        FileModeConfig {
            config_dir: dir.clone(),
            inventory: Some(dir.join("inventory.yaml")),
            common,
        },
        Some(launcher.clone()),
    )
    .await
    .unwrap();

    // The launcher was asked for the waypoint; once it subscribes, Programmed.
    eventually("launcher called", || !launcher.started.lock().is_empty()).await;
    assert_eq!(
        launcher.started.lock()[0].identity,
        "spiffe://cluster.local/ns/shop/sa/waypoint"
    );
    let mut cfg =
        XdsClientConfig::new(Endpoint::plaintext(op.push_addr), "wp", ProxyKind::Waypoint);
    cfg.resource_names = vec!["shop/waypoint".into()];
    let wp = XdsClient::start(cfg, |_u: &mesh_common::xds::client::Update<'_>| Ok(()));
    wp.wait_synced(WAIT).await.unwrap();
    let gw = StatusTarget::new("Gateway", "shop", "waypoint");
    eventually("Programmed", || {
        op.controller
            .translation()
            .and_then(|t| t.statuses.condition(&gw, "Programmed").map(|c| c.status))
            == Some(true)
    })
    .await;
    let filter = |wp: &XdsClient| {
        wp.last_good()
            .waypoints
            .get("shop/waypoint")
            .and_then(|w| w.filters.iter().find(|f| f.name == "shop/f").cloned())
    };
    eventually("v1 delivered", || {
        filter(&wp).is_some_and(|f| f.module.sha256 == s1)
    })
    .await;

    // v2 as a 10 % canary next to v1.
    std::fs::write(dir.join("plugin.yaml"), plugin(&v2, &s2, Some(10.0))).unwrap();
    eventually("canary delivered", || {
        filter(&wp).is_some_and(|f| {
            f.module.sha256 == s2
                && f.canary
                    .as_ref()
                    .is_some_and(|c| c.percentage == 10.0 && c.previous.sha256 == s1)
        })
    })
    .await;
    // Healthy so far: no rollback.
    *metrics.lock() = format!(
        "wasm_filter_invocations_total{{filter=\"shop.f\",version=\"{}\",hook=\"request_headers\"}} 20\nwasm_filter_errors_total{{filter=\"shop.f\",version=\"{}\",kind=\"trap\"}} 1\n",
        &s2[..12],
        &s2[..12]
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(filter(&wp).unwrap().module.sha256, s2);
    // Failing: rolled back to v1 only.
    *metrics.lock() = format!(
        "wasm_filter_invocations_total{{filter=\"shop.f\",version=\"{}\",hook=\"request_headers\"}} 40\nwasm_filter_errors_total{{filter=\"shop.f\",version=\"{}\",kind=\"timeout\"}} 12\n",
        &s2[..12],
        &s2[..12]
    );
    eventually("rolled back", || {
        filter(&wp).is_some_and(|f| f.module.sha256 == s1 && f.canary.is_none())
    })
    .await;
    op.stop().await;
    stop.cancel();
}
