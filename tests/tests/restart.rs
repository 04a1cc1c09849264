//! Tier 2 (root): the control plane restarted under traffic. `web` keeps
//! calling `orders` (ztunnel → HBONE → waypoint → ztunnel → app) while
//! `meshctl rollout restart deployment/istiod -n istio-system` kills the
//! operator and starts a new one: no request may fail, the data plane
//! processes are not restarted (the new operator adopts the running
//! waypoint), and a change applied after the restart reaches the proxies
//! (they resynchronised with the new process).

use mesh_e2e::{LocalMesh, guest_dir, skip_unless_root};
use std::sync::Arc;
use std::time::Duration;

const NS: &str = "shop";
const URL: &str = "http://orders/api/health";

/// Pids of the data plane (`name=pid`): the ztunnels from the run
/// directory's `state.json`, the waypoints from their records.
fn data_plane_pids(m: &LocalMesh) -> Vec<String> {
    let read = |p: &std::path::Path| -> serde_json::Value {
        let t = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_str(&t).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let st = read(&m.dir.path().join("state.json"));
    let mut pids: Vec<String> = st["ztunnels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(node, p)| format!("ztunnel-{node}={}", p["pid"]))
        .collect();
    for e in std::fs::read_dir(m.dir.path().join("waypoints"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "json") {
            let r = read(&e.path());
            pids.push(format!(
                "waypoint-{}={}",
                r["name"].as_str().unwrap_or(""),
                r["proc"]["pid"]
            ));
        }
    }
    pids.sort();
    pids
}

#[test]
fn operator_restart_under_traffic_drops_nothing_and_resyncs() {
    if skip_unless_root() {
        return;
    }
    if !guest_dir().join("routing.wasm").is_file() {
        eprintln!("SKIPPED: first-party filters not built (scripts/build-guests.sh)");
        return;
    }
    let m = Arc::new(LocalMesh::up(5, &[]));
    assert_eq!(m.curl(NS, "deploy/web", URL, &[]).0, "200");
    let before = data_plane_pids(&m);
    assert!(
        before.iter().any(|p| p.starts_with("waypoint")) && before.len() >= 3,
        "expected ztunnels and a waypoint with pids: {before:?}"
    );

    // Keep the traffic going while the proxies reconnect and resync.
    let (codes, r) = m.traffic_around(
        (NS, "deploy/web", URL),
        50,
        5,
        Duration::from_secs(2),
        Duration::from_secs(3),
        || {
            m.ok(&[
                "rollout",
                "restart",
                "deployment/istiod",
                "-n",
                "istio-system",
            ])
        },
    );
    // "deployment.apps/istiod restarted (control plane pid A -> B)"
    let pids: Vec<&str> = r
        .stdout
        .rsplit("pid ")
        .next()
        .unwrap_or("")
        .trim()
        .trim_end_matches(')')
        .split(" -> ")
        .collect();
    assert!(
        r.stdout.contains("restarted") && pids.len() == 2 && pids[0] != pids[1],
        "{}",
        r.stdout
    );
    let failed: Vec<&String> = codes.iter().filter(|c| *c != "200").collect();
    assert!(
        codes.len() >= 100,
        "too little traffic across the restart: {}",
        codes.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed across the operator restart: {:?}\n{}",
        failed.len(),
        codes.len(),
        &failed[..failed.len().min(10)],
        m.log_tail()
    );
    assert_eq!(
        data_plane_pids(&m),
        before,
        "the data plane must not be restarted with the control plane"
    );
    eprintln!(
        "{} requests across the operator restart ({}), all 200; data plane unchanged: {before:?}",
        codes.len(),
        r.stdout.trim()
    );

    // The proxies follow the new operator: a DENY for web on /api/health
    // applied now must take effect at the waypoint.
    let deny = m.dir.path().join("deny-health.yaml");
    std::fs::write(
        &deny,
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-health, namespace: shop}\n\
         spec:\n  targetRefs: [{kind: Service, group: \"\", name: orders}]\n  action: DENY\n  rules: [{to: [{operation: {paths: [/api/health]}}]}]\n",
    )
    .unwrap();
    m.ok(&["apply", "-f", deny.to_str().unwrap()]);
    m.wait_for(
        "the policy applied after the restart to reach the waypoint",
        Duration::from_secs(30),
        || m.curl(NS, "deploy/web", URL, &[]).0 == "403",
    );
}
