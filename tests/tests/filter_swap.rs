//! Tier 2 (root): user filters in JavaScript and Python pushed to the shop
//! waypoint as WasmPlugins through the operator, hot-swapped while traffic
//! flows (zero failed requests), canaried, rolled out and rolled back.

use mesh_e2e::{LocalMesh, guest_dir, skip_unless_root};
use std::sync::Arc;
use std::time::Duration;

const NS: &str = "shop";
const URL: &str = "http://orders/api/health";

fn lang(m: &LocalMesh) -> String {
    let (code, body) = m.curl(NS, "deploy/web", URL, &[]);
    assert_eq!(code, "200", "{body}");
    let v: serde_json::Value =
        serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["headers"]["x-filter-lang"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn js_and_python_filters_hot_swap_under_traffic() {
    if skip_unless_root() {
        return;
    }
    for g in ["example-js", "example-python"] {
        if !guest_dir().join(format!("{g}.wasm")).is_file() {
            eprintln!("SKIPPED: guest {g} not built (scripts/build-guests.sh)");
            return;
        }
    }
    let m = Arc::new(LocalMesh::up(3, &[]));
    let cfg = r#"{"blocked_path":"/api/blocked"}"#;
    let push = |file: &str, extra: &[&str]| {
        let mut a = vec![
            "filter", "push", "lang-tag", "-n", NS, "--file", file, "--config", cfg, "--wait",
        ];
        a.extend_from_slice(extra);
        m.ok(&a)
    };
    push("example-js", &[]);
    assert_eq!(lang(&m), "js");
    let (code, body) = m.curl(NS, "deploy/web", "http://orders/api/blocked", &[]);
    assert_eq!(
        (code.as_str(), body.contains("blocked by js filter")),
        ("403", true),
        "{body}"
    );

    // Hot swap JS → Python while web keeps calling orders.
    let (codes, ()) = m.traffic_around(
        (NS, "deploy/web", URL),
        100,
        10,
        Duration::from_secs(2),
        Duration::from_secs(2),
        || {
            push("example-python", &[]);
        },
    );
    let failed: Vec<&String> = codes.iter().filter(|c| *c != "200").collect();
    assert!(
        codes.len() >= 200,
        "too little traffic during the swap: {}",
        codes.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the hot swap: {:?}",
        failed.len(),
        codes.len(),
        &failed[..failed.len().min(10)]
    );
    eprintln!(
        "hot swap JS → Python: {} requests during the swap, {} failed",
        codes.len(),
        failed.len()
    );
    assert_eq!(lang(&m), "python");
    let list = m.ok(&["filter", "list", "-n", NS]).stdout;
    assert!(
        list.contains("lang-tag") && list.contains("shop/waypoint"),
        "{list}"
    );

    // Rollback to the previous version (JavaScript).
    m.ok(&["filter", "rollback", "lang-tag", "-n", NS]);
    m.wait_for("JS back after rollback", Duration::from_secs(30), || {
        lang(&m) == "js"
    });

    // Canary: Python on 50% of requests, then promoted.
    push("example-python", &["--canary", "50"]);
    m.wait_for(
        "both versions serving during the canary",
        Duration::from_secs(30),
        || {
            let seen: Vec<String> = (0..30).map(|_| lang(&m)).collect();
            seen.iter().any(|l| l == "js") && seen.iter().any(|l| l == "python")
        },
    );
    m.ok(&[
        "filter",
        "rollout",
        "lang-tag",
        "-n",
        NS,
        "--percent",
        "100",
    ]);
    m.wait_for("Python promoted", Duration::from_secs(30), || {
        (0..10).all(|_| lang(&m) == "python")
    });
}
