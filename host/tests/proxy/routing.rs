//! Header-match routing, subsets by labels and a 90/10 weight split over
//! 2,000 requests each, with the first-party `routing` filter in the chain
//! and h2load as the client.

use serde_json::{Value, json};

use crate::support::*;

fn h2load(url: &str, n: u32, extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        "--h1".to_string(),
        "-n".into(),
        n.to_string(),
        "-c".into(),
        "4".into(),
    ];
    a.push("-H".into());
    a.push(format!(":authority: {SVC}"));
    for e in extra {
        a.push("-H".into());
        a.push(e.to_string());
    }
    a.push(url.to_string());
    a
}

async fn load(url: &str, n: u32, extra: &[&str]) {
    let args = h2load(url, n, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run("h2load", &args).await;
    assert!(out.contains(&format!("{n} succeeded")), "{out}");
}

#[tokio::test]
async fn header_match_subsets_and_a_90_10_split() {
    let a = Upstream::start("a", "127.0.0.11").await;
    let b = Upstream::start("b", "127.0.0.12").await;
    let c = Upstream::start("c", "127.0.0.13").await;
    let eps = vec![
        a.endpoint(&[("app", "echo"), ("version", "v1")]),
        b.endpoint(&[("app", "echo"), ("version", "v1")]),
        c.endpoint(&[("app", "echo"), ("version", "v2")]),
    ];
    let dest = |subset: &str, weight: i32| json!({ "destination": { "host": SVC, "subset": subset }, "weight": weight });
    let routing: Value = json!({
        "waypointNamespace": "test",
        "services": [{
            "host": SVC,
            "virtualServices": [{ "namespace": "test", "name": "echo", "http": [
                { "match": [{ "headers": { "x-canary": { "exact": "true" } } }], "route": [dest("v2", 0)] },
                { "route": [dest("v1", 90), dest("v2", 10)] },
            ]}],
        }],
    });
    let mut cfg = config(
        eps,
        json!({
            "subsets": [
                { "name": "v1", "labels": { "version": "v1" } },
                { "name": "v2", "labels": { "version": "v2" } },
            ],
            "trafficPolicies": [{ "port": SVC_PORT, "loadBalancer": "ROUND_ROBIN" }],
        }),
    );
    cfg["filters"] = json!([{
        "name": "routing",
        "module": { "sha256": "", "url": guest("routing").display().to_string() },
        "config": routing,
        "capabilities": ["random"],
    }]);
    let wp = TestWaypoint::start_with(&cfg, |o| o.random_seed = Some(7)).await;
    let url = wp.url("/");

    // Header match: every request to v2 (subset by label: only c).
    load(&url, 2000, &["x-canary: true"]).await;
    assert_eq!((a.count(), b.count(), c.count()), (0, 0, 2000));

    // 90/10 split: v2's share within 4.5 standard deviations of 10%.
    load(&url, 2000, &[]).await;
    let v1 = a.count() + b.count();
    let v2 = c.count() - 2000;
    assert_eq!(v1 + v2, 2000);
    let sd = (2000.0f64 * 0.1 * 0.9).sqrt();
    assert!((v2 as f64 - 200.0).abs() < 4.5 * sd, "v2 got {v2} of 2000");
    // v1 is spread over both v1 endpoints.
    assert!(
        a.count() > 700 && b.count() > 700,
        "a={} b={}",
        a.count(),
        b.count()
    );

    let m = wp.metrics().await;
    let v2_share = metric(&m, "istio_requests_total", &[("destination_version", "v2")]).unwrap();
    assert_eq!(
        v2_share as u64,
        2000 + v2,
        "metrics agree with the upstreams"
    );
}
