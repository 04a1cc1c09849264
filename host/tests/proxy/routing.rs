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
    cfg["filters"] = json!([routing_filter(routing)]);
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

/// VirtualService mirroring: every request (no percentage = 100 %) also
/// goes to the mirror subset, body included, with the request's own
/// authority (no `-shadow` since Istio 1.28); the client only sees the primary's answer, even when the
/// mirror fails. A 50 % mirror copies about half; 0 % none.
#[tokio::test]
async fn mirrors_get_a_copy_fire_and_forget() {
    let a = Upstream::start("a", "127.0.0.21").await;
    let m = Upstream::start("m", "127.0.0.22").await;
    let eps = vec![
        a.endpoint(&[("app", "echo"), ("version", "v1")]),
        m.endpoint(&[("app", "echo"), ("version", "v2")]),
    ];
    let v1 = json!({ "destination": { "host": SVC, "subset": "v1" } });
    let v2 = json!({ "host": SVC, "subset": "v2" });
    let routing: Value = json!({
        "waypointNamespace": "test",
        "services": [{
            "host": SVC,
            "virtualServices": [{ "namespace": "test", "name": "echo", "http": [
                { "match": [{ "uri": { "prefix": "/half" } }], "route": [v1.clone()],
                  "mirrors": [{ "destination": v2.clone(), "percentage": { "value": 50.0 } }] },
                { "match": [{ "uri": { "prefix": "/none" } }], "route": [v1.clone()],
                  "mirrors": [{ "destination": v2.clone(), "percentage": { "value": 0.0 } }] },
                { "route": [v1.clone()], "mirrors": [{ "destination": v2.clone() }] },
            ]}],
        }],
    });
    let mut cfg = config(
        eps,
        json!({ "subsets": [
            { "name": "v1", "labels": { "version": "v1" } },
            { "name": "v2", "labels": { "version": "v2" } },
        ]}),
    );
    cfg["filters"] = json!([routing_filter(routing)]);
    let wp = TestWaypoint::start_with(&cfg, |o| o.random_seed = Some(7)).await;

    let out = curl(&[
        "-s",
        "-H",
        &format!("Host: {SVC}:{SVC_PORT}"),
        "--data-binary",
        "payload-123",
        &wp.url("/orders"),
    ])
    .await;
    assert_eq!(
        out, "payload-123",
        "the primary answered (echoing the body)"
    );
    wait_until("the mirror got its copy", || m.count() == 1).await;
    assert_eq!(a.count(), 1);
    let h = m.seen.last_headers.lock().clone().unwrap();
    assert_eq!(h["host"], format!("{SVC}:{SVC_PORT}"));
    assert_eq!(m.seen.last_uri.lock().as_deref(), Some("/orders"));

    // A failing mirror changes nothing for the client.
    m.seen
        .force_status
        .store(503, std::sync::atomic::Ordering::SeqCst);
    let (s, _, h) = get(&wp.url("/orders"), &[]).await;
    assert_eq!((s.as_u16(), h["x-upstream"].to_str().unwrap()), (200, "a"));
    wait_until("the second copy", || m.count() == 2).await;

    load(&wp.url("/none"), 200, &[]).await;
    load(&wp.url("/half"), 1000, &[]).await;
    wait_until("all copies delivered", || {
        let n = m.count();
        std::thread::sleep(std::time::Duration::from_millis(200));
        n == m.count()
    })
    .await;
    let half = m.count() - 2;
    let sd = (1000.0f64 * 0.25).sqrt();
    assert!(
        (half as f64 - 500.0).abs() < 4.5 * sd,
        "50 % mirror copied {half} of 1000 (none of /none)"
    );
    assert_eq!(a.count(), 1202);
}

/// `corsPolicy` through the real chain: the routing guest is shown the
/// CORS request headers, answers allowed preflights itself and adds the
/// allow-origin header to actual responses.
#[tokio::test]
async fn cors_preflight_and_actual_request() {
    let a = Upstream::start("a", "127.0.0.23").await;
    let routing: Value = json!({
        "waypointNamespace": "test",
        "services": [{
            "host": SVC,
            "virtualServices": [{ "namespace": "test", "name": "echo", "http": [
                { "route": [{ "destination": { "host": SVC } }],
                  "corsPolicy": { "allowOrigins": [{ "exact": "https://app.example" }],
                                  "allowMethods": ["POST"], "maxAge": "10m" } },
            ]}],
        }],
    });
    let mut cfg = config(vec![a.endpoint(&[])], json!({}));
    cfg["filters"] = json!([routing_filter(routing)]);
    let wp = TestWaypoint::start(&cfg).await;
    let out = curl(&[
        "-s",
        "-i",
        "-X",
        "OPTIONS",
        "-H",
        &format!("Host: {SVC}"),
        "-H",
        "Origin: https://app.example",
        "-H",
        "Access-Control-Request-Method: POST",
        &wp.url("/api"),
    ])
    .await
    .to_ascii_lowercase();
    assert!(out.starts_with("http/1.1 200"), "{out}");
    assert!(
        out.contains("access-control-allow-origin: https://app.example"),
        "{out}"
    );
    assert!(out.contains("access-control-allow-methods: post"), "{out}");
    assert!(out.contains("access-control-max-age: 600"), "{out}");
    assert_eq!(a.count(), 0, "the preflight was answered by the waypoint");
    let (s, _, h) = get(&wp.url("/api"), &[("origin", "https://app.example")]).await;
    assert_eq!(s, 200);
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert_eq!(a.count(), 1);
}

/// Route header values are Envoy format strings (`%VAR%`), expanded per
/// request: the client address, a request header, the protocol.
#[tokio::test]
async fn header_values_expand_envoy_variables() {
    let a = Upstream::start("a", "127.0.0.24").await;
    let routing: Value = json!({
        "waypointNamespace": "test",
        "services": [{
            "host": SVC,
            "virtualServices": [{ "namespace": "test", "name": "echo", "http": [
                { "route": [{ "destination": { "host": SVC } }],
                  "headers": {
                      "request": { "set": {
                          "x-client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                          "x-copy": "%REQ(x-user)%",
                          "x-literal": "100%%",
                      } },
                      "response": { "set": { "x-proto": "%PROTOCOL%" } },
                  } },
            ]}],
        }],
    });
    let mut cfg = config(vec![a.endpoint(&[])], json!({}));
    cfg["filters"] = json!([routing_filter(routing)]);
    let wp = TestWaypoint::start(&cfg).await;
    let (s, _, h) = get(&wp.url("/"), &[("x-user", "alice")]).await;
    assert_eq!(s, 200);
    assert_eq!(h["x-proto"], "HTTP/1.1");
    let seen = a.seen.last_headers.lock().clone().unwrap();
    assert_eq!(seen["x-client"], "127.0.0.1");
    assert_eq!(seen["x-copy"], "alice");
    assert_eq!(seen["x-literal"], "100%");
}

/// A route to a service the waypoint only forwards to (`routeOnly`: a
/// destination of its routes that is not bound to it) reaches that
/// service's endpoints; a request addressed to that service itself is not
/// served as it.
#[tokio::test]
async fn routes_reach_route_only_services_which_are_not_served() {
    const OTHER: &str = "ratings.other.svc.cluster.local";
    let a = Upstream::start("a", "127.0.0.31").await;
    let r = Upstream::start("r", "127.0.0.32").await;
    let mut cfg = config(vec![a.endpoint(&[("app", "echo")])], json!({}));
    cfg["services"].as_array_mut().unwrap().push(json!({
        "hostname": OTHER,
        "name": "ratings",
        "namespace": "other",
        "vips": ["10.96.0.30"],
        "ports": [{ "port": SVC_PORT, "targetPort": 0, "name": "http" }],
        "endpoints": [r.endpoint(&[("app", "ratings")])],
        "routeOnly": true,
    }));
    let routing = json!({
        "waypointNamespace": "test",
        "services": [{
            "host": SVC,
            "virtualServices": [{ "namespace": "test", "name": "echo", "http": [
                { "match": [{ "uri": { "prefix": "/ratings" } }], "route": [{ "destination": { "host": OTHER } }] },
                { "route": [{ "destination": { "host": SVC } }] },
            ]}],
        }],
    });
    cfg["filters"] = json!([routing_filter(routing)]);
    let wp = TestWaypoint::start(&cfg).await;
    assert_eq!(
        curl_status(&format!("{SVC}:{SVC_PORT}"), &wp.url("/ratings/1")).await,
        "200"
    );
    assert_eq!(
        (r.count(), a.count()),
        (1, 0),
        "routed to the route-only service"
    );
    assert_eq!(
        curl_status(&format!("{SVC}:{SVC_PORT}"), &wp.url("/x")).await,
        "200"
    );
    assert_eq!(a.count(), 1);
    let direct = curl_status(&format!("{OTHER}:{SVC_PORT}"), &wp.url("/x")).await;
    assert_ne!(direct, "200", "a route-only service is not served here");
    assert_eq!(r.count(), 1, "nothing reached it");
}
