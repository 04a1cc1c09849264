//! Tier 2 (root): the seed's enterprise scenario. A service waypoint
//! applied namespace-wide never sees pod-addressed traffic; the fix — drop
//! the namespace `use-waypoint` label, a workload waypoint for the
//! StatefulSet addressed by pod DNS, the service waypoint per Service —
//! sends pod-IP traffic through `pods-wp` and VIP traffic through
//! `waypoint`, and neither sees the other's.

use mesh_e2e::{LocalMesh, metric_sum, repo, skip_unless_root};
use std::time::Duration;

const NS: &str = "payments";

fn requests(m: &LocalMesh, waypoint: &str, workload: &str) -> f64 {
    metric_sum(
        &m.waypoint_metrics(NS, waypoint),
        "istio_requests_total",
        &[("reporter", "waypoint"), ("destination_workload", workload)],
    )
}

#[test]
fn workload_waypoint_for_pod_traffic_service_waypoint_for_vips() {
    if skip_unless_root() {
        return;
    }
    let m = LocalMesh::up(2, &["--bare"]);
    let dir = repo().join("examples/enterprise");
    for f in ["00-namespace.yaml", "01-workloads.yaml", "10-waypoint.yaml"] {
        m.ok(&["apply", "-f", dir.join(f).to_str().unwrap()]);
    }
    m.ok(&[
        "waypoint", "status", "-n", NS, "--name", "waypoint", "--wait",
    ]);
    let pod_url = "http://fraud-score-0.fraud-score:8080/score";
    m.wait_for(
        "checkout → ledger through the service waypoint",
        Duration::from_secs(60),
        || {
            m.curl(NS, "deploy/checkout", "http://ledger/api/entries", &[])
                .0
                == "200"
                && requests(&m, "waypoint", "ledger") > 0.0
        },
    );

    // The mistake: pod-addressed calls never traverse the service waypoint.
    let before = requests(&m, "waypoint", "fraud-score");
    for _ in 0..3 {
        assert_eq!(m.curl(NS, "deploy/checkout", pod_url, &[]).0, "200");
    }
    assert_eq!(
        requests(&m, "waypoint", "fraud-score"),
        before,
        "a service waypoint saw pod-IP traffic"
    );

    // The fix, as the seed writes it.
    m.ok(&["label", "namespace", NS, "istio.io/use-waypoint-"]);
    let r = m
        .ok(&[
            "waypoint", "apply", "-n", NS, "--name", "pods-wp", "--for", "workload", "--wait",
        ])
        .stdout;
    assert!(r.contains("✅ waypoint payments/pods-wp applied"), "{r}");
    m.ok(&[
        "label",
        "statefulset",
        "fraud-score",
        "-n",
        NS,
        "istio.io/use-waypoint=pods-wp",
    ]);
    m.ok(&[
        "label",
        "service",
        "ledger",
        "-n",
        NS,
        "istio.io/use-waypoint=waypoint",
    ]);
    m.wait_for(
        "fraud-score pods bound to pods-wp",
        Duration::from_secs(30),
        || {
            let w = m
                .ok(&["ztunnel-config", "workloads", "--workload-namespace", NS])
                .stdout;
            w.lines().filter(|l| l.contains("fraud-score-")).count() == 2
                && w.lines()
                    .filter(|l| l.contains("fraud-score-"))
                    .all(|l| l.contains("pods-wp"))
        },
    );
    m.wait_for(
        "ledger bound to the service waypoint",
        Duration::from_secs(30),
        || {
            let svcs = m.ok(&["ztunnel-config", "services", "-n", NS]).stdout;
            svcs.lines()
                .any(|l| l.contains("ledger") && l.contains("waypoint"))
        },
    );

    // Pod-IP traffic now goes through the workload waypoint only…
    m.wait_for(
        "pod traffic through pods-wp",
        Duration::from_secs(30),
        || {
            m.curl(NS, "deploy/checkout", pod_url, &[]).0 == "200"
                && requests(&m, "pods-wp", "fraud-score") > 0.0
        },
    );
    let (wp_fs, pods_fs) = (
        requests(&m, "waypoint", "fraud-score"),
        requests(&m, "pods-wp", "fraud-score"),
    );
    for _ in 0..5 {
        assert_eq!(m.curl(NS, "deploy/checkout", pod_url, &[]).0, "200");
    }
    assert_eq!(requests(&m, "pods-wp", "fraud-score"), pods_fs + 5.0);
    assert_eq!(requests(&m, "waypoint", "fraud-score"), wp_fs);
    // …and VIP traffic through the service waypoint only.
    let (wp_l, pods_l) = (
        requests(&m, "waypoint", "ledger"),
        requests(&m, "pods-wp", "ledger"),
    );
    for _ in 0..5 {
        assert_eq!(
            m.curl(NS, "deploy/checkout", "http://ledger/api/entries", &[])
                .0,
            "200"
        );
    }
    assert_eq!(requests(&m, "waypoint", "ledger"), wp_l + 5.0);
    assert_eq!(requests(&m, "pods-wp", "ledger"), pods_l);
    let list = m.ok(&["waypoint", "list", "-n", NS]).stdout;
    assert!(
        list.lines()
            .any(|l| l.starts_with("pods-wp") && l.contains("workload") && l.contains("True")),
        "{list}"
    );
}
