//! DestinationRule mechanics in the host: connection-pool limits, outlier
//! detection with ejection and return, load-balancing policies.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

fn policy(p: Value) -> Value {
    let mut p = p;
    p["port"] = json!(SVC_PORT);
    json!({ "trafficPolicies": [p] })
}

#[tokio::test]
async fn pool_overflow_answers_503_uo() {
    let up = Upstream::start("a", "127.0.0.1").await;
    up.seen.force_delay_ms.store(400, Ordering::SeqCst);
    let cfg = config(
        vec![up.endpoint(&[])],
        policy(json!({ "connectionPool": { "maxConnections": 1, "http1MaxPendingRequests": 1 } })),
    );
    let wp = TestWaypoint::start(&cfg).await;
    let url = wp.url("/");
    let reqs: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn({
                let url = url.clone();
                async move { get(&url, &[]).await }
            })
        })
        .collect();
    let mut ok = 0;
    let mut uo = 0;
    for r in reqs {
        let (s, body, _) = r.await.unwrap();
        match s.as_u16() {
            200 => ok += 1,
            503 => {
                assert!(body.ends_with("reset reason: overflow"), "{body}");
                uo += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        (ok, uo),
        (2, 4),
        "one request on the connection, one pending, four overflow"
    );
    assert_eq!(
        up.seen.max_active.load(Ordering::SeqCst),
        1,
        "maxConnections 1 serialises requests"
    );
    let m = wp.metrics().await;
    assert_eq!(
        metric(
            &m,
            "istio_requests_total",
            &[("response_code", "503"), ("response_flags", "UO")]
        ),
        Some(4.0),
        "{m}"
    );

    // The same with a real load generator: h2load, 8 clients, HTTP/1.1.
    up.seen.force_delay_ms.store(50, Ordering::SeqCst);
    let out = run(
        "h2load",
        &[
            "--h1",
            "-n",
            "80",
            "-c",
            "8",
            "-H",
            &format!(":authority: {SVC}"),
            &url,
        ],
    )
    .await;
    let line = out
        .lines()
        .find(|l| l.starts_with("status codes:"))
        .unwrap();
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|x| x.parse().ok())
        .collect();
    // status codes: N 2xx, N 3xx, N 4xx, N 5xx
    assert_eq!(nums[0] + nums[6], 80, "{out}");
    assert!(
        nums[6] > 20,
        "most of 8 concurrent clients overflow: {line}"
    );
}

#[tokio::test]
async fn http2_max_requests_limits_concurrency() {
    let up = Upstream::start("a", "127.0.0.1").await;
    up.seen.force_delay_ms.store(400, Ordering::SeqCst);
    let mut extra = policy(json!({ "connectionPool": { "http2MaxRequests": 2 } }));
    extra["ports"] =
        json!([{ "port": SVC_PORT, "targetPort": 0, "name": "http2", "appProtocol": "http2" }]);
    let wp = TestWaypoint::start(&config(vec![up.endpoint(&[])], extra)).await;
    let reqs: Vec<_> = (0..5)
        .map(|_| {
            tokio::spawn({
                let url = wp.url("/");
                async move { get(&url, &[]).await.0.as_u16() }
            })
        })
        .collect();
    let mut codes = Vec::new();
    for r in reqs {
        codes.push(r.await.unwrap());
    }
    codes.sort();
    assert_eq!(codes, vec![200, 200, 503, 503, 503]);
    assert_eq!(up.seen.max_active.load(Ordering::SeqCst), 2);
}

async fn clusters(wp: &TestWaypoint) -> Value {
    let url = format!("http://{}/clusters", wp.w().bound().admin.unwrap());
    serde_json::from_str(&get(&url, &[]).await.1).unwrap()
}

async fn ejected(wp: &TestWaypoint, name: &str) -> bool {
    let c = clusters(wp).await;
    c["clusters"][0]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["workload"] == name)
        .map(|h| h["ejected"].as_bool().unwrap())
        .unwrap()
}

/// Polls the admin page until host `name` is back; returns how long it took.
async fn time_until_returned(wp: &TestWaypoint, name: &str) -> Duration {
    let t = std::time::Instant::now();
    while ejected(wp, name).await {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{name} never returned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.elapsed()
}

#[tokio::test]
async fn outlier_detection_ejects_and_returns_hosts() {
    let a = Upstream::start("a", "127.0.0.1").await;
    let b = Upstream::start("b", "127.0.0.2").await;
    let cfg = config(
        vec![a.endpoint(&[]), b.endpoint(&[])],
        policy(json!({
            "loadBalancer": "ROUND_ROBIN",
            "outlierDetection": {
                "consecutive5xxErrors": 3, "consecutiveGatewayErrors": 0,
                "interval": "500ms", "baseEjectionTime": "1s", "maxEjectionTime": "300s",
                "maxEjectionPercent": 100
            }
        })),
    );
    let wp = TestWaypoint::start(&cfg).await;
    let url = wp.url("/");
    b.seen.force_status.store(503, Ordering::SeqCst);
    let mut codes = Vec::new();
    for _ in 0..20 {
        codes.push(get(&url, &[]).await.0.as_u16());
    }
    assert_eq!(b.count(), 3, "ejected after 3 consecutive 5xx: {codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 503).count(), 3);
    assert!(ejected(&wp, "b").await);

    // Healthy again: back after baseEjectionTime (1s), at the next sweep.
    b.seen.force_status.store(0, Ordering::SeqCst);
    let back = time_until_returned(&wp, "b").await;
    assert!(
        back >= Duration::from_millis(850) && back < Duration::from_millis(1700),
        "{back:?}"
    );

    // Fails again right away (before a sweep forgives it): 2 x 1s.
    b.seen.force_status.store(503, Ordering::SeqCst);
    for _ in 0..8 {
        get(&url, &[]).await;
    }
    assert!(ejected(&wp, "b").await);
    b.seen.force_status.store(0, Ordering::SeqCst);
    let back = time_until_returned(&wp, "b").await;
    assert!(
        back >= Duration::from_millis(1850) && back < Duration::from_millis(2700),
        "second ejection lasts 2s: {back:?}"
    );
    let before = b.count();
    for _ in 0..10 {
        assert_eq!(get(&url, &[]).await.0, 200);
    }
    assert_eq!(b.count() - before, 5, "round robin over both hosts again");
    let c = clusters(&wp).await;
    let host = c["clusters"][0]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["workload"] == "b")
        .unwrap()
        .clone();
    assert_eq!(host["ejections"], 2, "{host}");
}

#[tokio::test]
async fn max_ejection_percent_keeps_hosts_in_service() {
    let a = Upstream::start("a", "127.0.0.1").await;
    let b = Upstream::start("b", "127.0.0.2").await;
    let c = Upstream::start("c", "127.0.0.3").await;
    let cfg = config(
        vec![a.endpoint(&[]), b.endpoint(&[]), c.endpoint(&[])],
        policy(json!({
            "loadBalancer": "ROUND_ROBIN",
            "outlierDetection": {
                "consecutive5xxErrors": 2, "consecutiveGatewayErrors": 0,
                "interval": "10s", "baseEjectionTime": "30s", "maxEjectionTime": "300s",
                "maxEjectionPercent": 10
            }
        })),
    );
    let wp = TestWaypoint::start(&cfg).await;
    for u in [&a, &b, &c] {
        u.seen.force_status.store(500, Ordering::SeqCst);
    }
    for _ in 0..30 {
        get(&wp.url("/"), &[]).await;
    }
    let cl = clusters(&wp).await;
    let n = cl["clusters"][0]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["ejected"] == true)
        .count();
    assert_eq!(n, 1, "10% of 3 hosts: only the first ejection is allowed");
}

async fn spread(wp: &TestWaypoint, ups: &[&Upstream], n: usize) -> Vec<u64> {
    let before: Vec<u64> = ups.iter().map(|u| u.count()).collect();
    for _ in 0..n {
        assert_eq!(get(&wp.url("/"), &[]).await.0, 200);
    }
    ups.iter().zip(before).map(|(u, b)| u.count() - b).collect()
}

#[tokio::test]
async fn load_balancing_policies() {
    let a = Upstream::start("a", "127.0.0.1").await;
    let b = Upstream::start("b", "127.0.0.2").await;
    let c = Upstream::start("c", "127.0.0.3").await;
    let eps = vec![a.endpoint(&[]), b.endpoint(&[]), c.endpoint(&[])];
    let ups = [&a, &b, &c];

    let wp = TestWaypoint::start(&config(
        eps.clone(),
        policy(json!({ "loadBalancer": "ROUND_ROBIN" })),
    ))
    .await;
    assert_eq!(spread(&wp, &ups, 300).await, vec![100, 100, 100]);

    wp.reconfigure(&config(
        eps.clone(),
        policy(json!({ "loadBalancer": "RANDOM" })),
    ))
    .await;
    let s = spread(&wp, &ups, 600).await;
    assert!(s.iter().all(|n| (140..=260).contains(n)), "uniform: {s:?}");

    // LEAST_REQUEST (also the default): a slow host holds requests, so it
    // gets far fewer than a third under concurrency.
    wp.reconfigure(&config(eps.clone(), json!({}))).await;
    c.seen.force_delay_ms.store(150, Ordering::SeqCst);
    let before: Vec<u64> = ups.iter().map(|u| u.count()).collect();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = wp.url("/");
        tasks.push(tokio::spawn(async move {
            for _ in 0..40 {
                get(&url, &[]).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s: Vec<u64> = ups.iter().zip(before).map(|(u, b)| u.count() - b).collect();
    assert_eq!(s.iter().sum::<u64>(), 320);
    assert!(
        s[2] * 100 < 320 * 15,
        "least request avoids the slow host: {s:?}"
    );
}

#[tokio::test]
async fn max_requests_per_connection_and_keepalive_reuse() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let wp = TestWaypoint::start(&config(vec![up.endpoint(&[])], json!({}))).await;
    for _ in 0..5 {
        assert_eq!(get(&wp.url("/"), &[]).await.0, 200);
    }
    assert_eq!(
        up.seen.connections.load(Ordering::SeqCst),
        1,
        "keep-alive reuses one connection"
    );

    let up = Upstream::start("b", "127.0.0.1").await;
    let cfg = config(
        vec![up.endpoint(&[])],
        policy(json!({ "connectionPool": { "maxRequestsPerConnection": 2 } })),
    );
    wp.reconfigure(&cfg).await;
    for _ in 0..6 {
        assert_eq!(get(&wp.url("/"), &[]).await.0, 200);
    }
    assert_eq!(
        up.seen.connections.load(Ordering::SeqCst),
        3,
        "two requests per connection"
    );
}

#[tokio::test]
async fn max_retries_caps_concurrent_retries() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let mut cfg = config(
        vec![up.endpoint(&[])],
        policy(json!({ "connectionPool": { "maxRetries": 1 } })),
    );
    cfg["filters"] = json!([policy_filter(
        json!({ "retry": { "attempts": 1, "retryOn": ["503"] } })
    )]);
    let wp = TestWaypoint::start(&cfg).await;
    // Three requests fail together after 300ms; one retry slot.
    let reqs: Vec<_> = (0..3)
        .map(|i| {
            let url = wp.url("/");
            tokio::spawn(async move {
                let rid = format!("00000000-0000-4000-8000-00000000050{i}");
                get(
                    &url,
                    &[
                        ("x-request-id", &rid),
                        ("x-fail-times", "1"),
                        ("x-delay-ms", "300"),
                    ],
                )
                .await
                .0
                .as_u16()
            })
        })
        .collect();
    let mut codes = Vec::new();
    for r in reqs {
        codes.push(r.await.unwrap());
    }
    codes.sort();
    assert_eq!(
        codes,
        vec![200, 503, 503],
        "only one retry may be in flight"
    );
    let m = wp.metrics().await;
    assert_eq!(
        metric(
            &m,
            "istio_requests_total",
            &[("response_code", "503"), ("response_flags", "UO")]
        ),
        Some(2.0),
        "{m}"
    );
}

/// `consistentHash.httpCookie` with a `ttl`: a request without the cookie
/// gets one generated (`Set-Cookie`, Envoy's format) and every request
/// carrying it goes to the same host; without `ttl` nothing is generated.
#[tokio::test]
async fn cookie_affinity_generates_the_cookie_and_sticks() {
    let a = Upstream::start("a", "127.0.0.1").await;
    let b = Upstream::start("b", "127.0.0.2").await;
    let c = Upstream::start("c", "127.0.0.3").await;
    let eps = vec![a.endpoint(&[]), b.endpoint(&[]), c.endpoint(&[])];
    let lb = |key: Value| policy(json!({ "loadBalancer": { "CONSISTENT_HASH": { "key": key } } }));
    let wp = TestWaypoint::start(&config(
        eps.clone(),
        lb(json!({ "httpCookie": { "name": "sticky", "path": "/", "ttl": "1h" } })),
    ))
    .await;
    let (status, _, h) = get(&wp.url("/"), &[]).await;
    assert_eq!(status, 200);
    let set = h
        .get("set-cookie")
        .expect("cookie generated")
        .to_str()
        .unwrap()
        .to_string();
    assert!(set.starts_with("sticky=\""), "{set}");
    assert!(set.ends_with("; Max-Age=3600; Path=/; HttpOnly"), "{set}");
    let first = h["x-upstream"].to_str().unwrap().to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    // Every request with the cookie: the same host, no new cookie.
    for _ in 0..30 {
        let (s, _, h) = get(&wp.url("/"), &[("cookie", &format!("other=1; {cookie}"))]).await;
        assert_eq!(s, 200);
        assert_eq!(h["x-upstream"], first.as_str());
        assert!(h.get("set-cookie").is_none());
    }
    // Different cookie values spread over the hosts.
    let mut hosts = std::collections::BTreeSet::new();
    for i in 0..60 {
        let (_, _, h) = get(&wp.url("/"), &[("cookie", &format!("sticky=\"v{i}\""))]).await;
        hosts.insert(h["x-upstream"].to_str().unwrap().to_string());
    }
    assert!(hosts.len() > 1, "{hosts:?}");

    // No ttl: the cookie is used when present but never generated.
    wp.reconfigure(&config(
        eps,
        lb(json!({ "httpCookie": { "name": "sticky" } })),
    ))
    .await;
    let (_, _, h) = get(&wp.url("/"), &[]).await;
    assert!(h.get("set-cookie").is_none());
}

/// `tcp.maxConnectionDuration`: an upstream connection older than that
/// takes no new request; the next one opens a fresh connection.
#[tokio::test]
async fn max_connection_duration_retires_old_connections() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let cfg = config(
        vec![up.endpoint(&[])],
        policy(json!({ "connectionPool": { "maxConnectionDuration": "300ms" } })),
    );
    let wp = TestWaypoint::start(&cfg).await;
    for _ in 0..3 {
        assert_eq!(get(&wp.url("/"), &[]).await.0, 200);
    }
    assert_eq!(
        up.seen.connections.load(Ordering::SeqCst),
        1,
        "reused while young"
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    for _ in 0..3 {
        assert_eq!(get(&wp.url("/"), &[]).await.0, 200);
    }
    assert_eq!(
        up.seen.connections.load(Ordering::SeqCst),
        2,
        "the old connection retired, a new one serves the rest"
    );
}
