//! The push config source against the real push server of
//! `mesh_common::xds`: the waypoint subscribes to its WaypointConfig,
//! downloads its filter module by digest, and follows updates.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_common::model::WaypointConfig;
use mesh_common::xds::server::XdsServer;
use mesh_common::xds::store::ConfigStore;
use mesh_common::xds::transport::{self, Endpoint, Handler};
use serde_json::json;
use sha2::Digest;
use tokio_util::sync::CancellationToken;
use waypoint::config::push::PushSource;
use waypoint::waypoint::{Options, Waypoint};

use crate::support::*;

#[tokio::test]
async fn waypoint_follows_the_operator_push() {
    let a = Upstream::start("a", "127.0.0.1").await;
    let b = Upstream::start("b", "127.0.0.2").await;
    let module = std::fs::read(policy_module()).unwrap();
    let sha = hex::encode(sha2::Sha256::digest(&module));
    let with_filter = |ep: serde_json::Value| -> WaypointConfig {
        let mut c = config(vec![ep], json!({}));
        c["filters"] = json!([{
            "name": "policy",
            "module": { "sha256": sha, "url": format!("/v1/modules/{sha}") },
            "config": { "retry": { "attempts": 2, "retryOn": ["503"] } },
        }]);
        serde_json::from_value(c).unwrap()
    };

    let store = ConfigStore::new();
    store.update([with_filter(a.endpoint(&[]))], []).unwrap();
    store.set_ready();
    let xds = XdsServer::new(store.clone());
    let module = Arc::new(module);
    let sha = sha.clone();
    let handler: Handler = Arc::new(move |req, _info| {
        let (xds, module, sha) = (xds.clone(), module.clone(), sha.clone());
        Box::pin(async move {
            let path = req.uri().path().to_string();
            if path == mesh_common::xds::XDS_PATH {
                xds.handle(req)
            } else if path == format!("/v1/modules/{sha}") {
                transport::full(http::StatusCode::OK, "application/wasm", module.to_vec())
            } else {
                transport::full(http::StatusCode::NOT_FOUND, "text/plain", "no such module")
            }
        })
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(transport::serve(listener, None, handler, stop.clone()));

    let source = PushSource::new(
        Endpoint::plaintext(addr),
        "waypoint-test",
        "test",
        "waypoint",
    );
    let w = Waypoint::start(Options::local(), Box::new(source))
        .await
        .unwrap();
    w.wait_ready(Duration::from_secs(30)).await.unwrap();
    let url = format!("http://{}/", w.bound().http.unwrap());
    let (s, _, h) = get(&url, &[("x-fail-times", "1"), ("x-fail-mode", "503")]).await;
    assert_eq!(s, 200, "the pushed filter retried the 503");
    assert_eq!(h["x-upstream"], "a");
    assert_eq!(h["x-attempt"], "2");

    store.update([with_filter(b.endpoint(&[]))], []).unwrap();
    let t = Instant::now();
    while get(&url, &[]).await.2["x-upstream"] != "b" {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "push update not applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(w.applier().status().source.starts_with("push:"));
    w.shutdown().await;
    stop.cancel();
}
