//! Shared helpers of the host's integration tests: the guest components
//! `scripts/build-guests.sh` built, and fake requests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use waypoint::filter::{ConnectionInfo, FilterRuntime, RuntimeConfig};

#[derive(serde::Deserialize)]
struct Entry {
    path: PathBuf,
}

fn manifest_path() -> PathBuf {
    let dir = std::env::var_os("MESH_GUEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/ambient-mesh/guests")
        });
    dir.join("out/manifest.json")
}

/// The bytes of the guest component `name` (e.g. `test-loop`, `example-js`).
pub fn guest(name: &str) -> Arc<[u8]> {
    let path = manifest_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; build the guests first with scripts/build-guests.sh",
            path.display()
        )
    });
    let manifest: BTreeMap<String, Entry> =
        serde_json::from_str(&text).expect("guest manifest is valid JSON");
    let entry = manifest.get(name).unwrap_or_else(|| {
        panic!(
            "guest `{name}` is not in {} (have: {:?}); is it built by scripts/build-guests.sh?",
            path.display(),
            manifest.keys().collect::<Vec<_>>()
        )
    });
    std::fs::read(&entry.path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", entry.path.display()))
        .into()
}

/// One runtime per test process is plenty (it owns the epoch ticker).
pub fn runtime() -> Arc<FilterRuntime> {
    static RT: std::sync::OnceLock<Arc<FilterRuntime>> = std::sync::OnceLock::new();
    RT.get_or_init(|| FilterRuntime::new(RuntimeConfig::default()).expect("runtime"))
        .clone()
}

pub fn conn() -> ConnectionInfo {
    ConnectionInfo {
        source_principal: Some("cluster.local/ns/shop/sa/web".into()),
        source: "10.0.0.1:40000".parse::<SocketAddr>().unwrap(),
        destination: "10.96.0.10:80".parse::<SocketAddr>().unwrap(),
        destination_service: Some("orders.shop.svc.cluster.local".into()),
        mtls: true,
    }
}

/// Request parts for `GET <path>` to orders.
pub fn get(path: &str) -> http::request::Parts {
    let (parts, ()) = http::Request::builder()
        .method("GET")
        .uri(format!("http://orders.shop.svc.cluster.local{path}"))
        .header("user-agent", "test")
        .body(())
        .unwrap()
        .into_parts();
    parts
}

/// Response parts with `status`.
pub fn response(status: u16) -> http::response::Parts {
    let (parts, ()) = http::Response::builder()
        .status(status)
        .body(())
        .unwrap()
        .into_parts();
    parts
}
