//! Retries and timeouts as the host executes them, driven by the
//! `test-host-policy` guest: the upstream counts the attempts.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

async fn waypoint_with_policy(up: &Upstream, retry: serde_json::Value) -> TestWaypoint {
    let mut cfg = config(vec![up.endpoint(&[])], json!({}));
    cfg["filters"] = json!([policy_filter(json!({ "retry": retry }))]);
    TestWaypoint::start(&cfg).await
}

fn rid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

#[tokio::test]
async fn retries_resend_on_503_and_reset_and_not_when_excluded() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let wp = waypoint_with_policy(&up, json!({ "attempts": 3, "retryOn": ["5xx"] })).await;
    let url = wp.url("/");

    // Two 503s, then success: three attempts really reached the upstream.
    let (s, _, h) = get(
        &url,
        &[
            ("x-request-id", &rid(1)),
            ("x-fail-times", "2"),
            ("x-fail-mode", "503"),
        ],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(h.get("x-attempt").unwrap(), "3");
    assert_eq!(up.attempts(&rid(1)), 3);

    // Resets (connection closed without a response) are retried too.
    let (s, _, _) = get(
        &url,
        &[
            ("x-request-id", &rid(2)),
            ("x-fail-times", "1"),
            ("x-fail-mode", "reset"),
        ],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(up.attempts(&rid(2)), 2);

    // Always failing: 1 + 3 attempts, then the last 503 is returned as is.
    let (s, body, _) = get(&url, &[("x-request-id", &rid(3)), ("x-status", "503")]).await;
    assert_eq!(s, 503);
    assert!(body.starts_with("a "), "upstream body returned: {body}");
    assert_eq!(up.attempts(&rid(3)), 4);

    // retryOn excludes the cause: `reset` does not cover a 503 response ...
    let (s, _, _) = get(
        &url,
        &[
            ("x-request-id", &rid(4)),
            ("x-fail-times", "1"),
            ("x-fail-mode", "503"),
            ("x-test-retry-on", "reset"),
        ],
    )
    .await;
    assert_eq!(s, 503);
    assert_eq!(up.attempts(&rid(4)), 1);
    // ... and `503` does not cover a reset: one attempt, 503 UR.
    let (s, body, _) = get(
        &url,
        &[
            ("x-request-id", &rid(5)),
            ("x-fail-times", "1"),
            ("x-fail-mode", "reset"),
            ("x-test-retry-on", "503"),
        ],
    )
    .await;
    assert_eq!(s, 503);
    assert!(body.contains("reset before headers"), "{body}");
    assert_eq!(up.attempts(&rid(5)), 1);
    // 4xx other than the listed codes are not retried.
    let (s, _, _) = get(&url, &[("x-request-id", &rid(6)), ("x-status", "404")]).await;
    assert_eq!(s, 404);
    assert_eq!(up.attempts(&rid(6)), 1);

    let m = wp.metrics().await;
    assert_eq!(
        metric(
            &m,
            "istio_requests_total",
            &[("response_code", "503"), ("response_flags", "UR")]
        ),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test]
async fn retried_posts_replay_the_body() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let wp = waypoint_with_policy(&up, json!({ "attempts": 2, "retryOn": ["503"] })).await;
    let out = curl(&[
        "-s",
        "-H",
        &format!("Host: {SVC}"),
        "-H",
        &format!("x-request-id: {}", rid(7)),
        "-H",
        "x-fail-times: 2",
        "--data-binary",
        "the-body",
        &wp.url("/"),
    ])
    .await;
    assert_eq!(out, "the-body", "third attempt got the same body");
    assert_eq!(up.attempts(&rid(7)), 3);
}

#[tokio::test]
async fn connect_failures_are_retried_on_another_host() {
    let up = Upstream::start("a", "127.0.0.1").await;
    // A second endpoint nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut dead_ep = up.endpoint(&[]);
    dead_ep["name"] = json!("dead");
    dead_ep["workloadUid"] = json!("Kubernetes//Pod/test/dead");
    dead_ep["address"] = json!(dead.ip().to_string());
    dead_ep["ports"] = json!({ SVC_PORT.to_string(): dead.port() });
    let mut cfg = config(
        vec![up.endpoint(&[]), dead_ep],
        json!({
            "trafficPolicies": [{ "port": SVC_PORT, "loadBalancer": "ROUND_ROBIN" }]
        }),
    );
    cfg["filters"] = json!([policy_filter(
        json!({ "retry": { "attempts": 2, "retryOn": ["connect-failure"] } })
    )]);
    let wp = TestWaypoint::start(&cfg).await;
    for i in 0..10 {
        let (s, _, h) = get(&wp.url("/"), &[("x-request-id", &rid(100 + i))]).await;
        assert_eq!(s, 200, "request {i}");
        assert_eq!(h.get("x-upstream").unwrap(), "a");
    }
    // Without retries the dead host answers 503 UF about half the time.
    let (s, body, _) = get(&wp.url("/"), &[("x-test-attempts", "0")]).await;
    let (s2, body2, _) = get(&wp.url("/"), &[("x-test-attempts", "0")]).await;
    let fails: Vec<_> = [(s, body), (s2, body2)]
        .into_iter()
        .filter(|(s, _)| *s == 503)
        .collect();
    assert_eq!(fails.len(), 1, "round robin alternates: {fails:?}");
    assert!(fails[0].1.contains("connection failure"), "{:?}", fails[0]);
    let m = wp.metrics().await;
    assert_eq!(
        metric(&m, "istio_requests_total", &[("response_flags", "UF")]),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test]
async fn per_try_timeout_retries_and_route_timeout_caps_all_attempts() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let wp = waypoint_with_policy(&up, json!({ "attempts": 3, "retryOn": ["5xx"] })).await;
    let url = wp.url("/");

    // First attempt hangs 1s; per-try timeout 150ms; the second is fast.
    let t = Instant::now();
    let (s, _, h) = get(
        &url,
        &[
            ("x-request-id", &rid(20)),
            ("x-delay-first-ms", "1000"),
            ("x-test-per-try-timeout-ms", "150"),
        ],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(h.get("x-attempt").unwrap(), "2");
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );

    // Every attempt hangs: route timeout 400ms covers all attempts of 150ms.
    let t = Instant::now();
    let (s, body, _) = get(
        &url,
        &[
            ("x-request-id", &rid(21)),
            ("x-delay-ms", "1000"),
            ("x-test-per-try-timeout-ms", "150"),
            ("x-test-timeout-ms", "400"),
        ],
    )
    .await;
    let took = t.elapsed();
    assert_eq!(s, 504);
    assert_eq!(body, "upstream request timeout");
    assert!(
        took >= Duration::from_millis(390) && took < Duration::from_millis(900),
        "{took:?}"
    );
    let n = up.attempts(&rid(21));
    assert!((2..=3).contains(&n), "route timeout cut the attempts: {n}");

    // Route timeout alone: 504 UT at ~300ms, never retried.
    let t = Instant::now();
    let (s, _, _) = get(
        &url,
        &[
            ("x-request-id", &rid(22)),
            ("x-delay-ms", "2000"),
            ("x-test-timeout-ms", "300"),
        ],
    )
    .await;
    assert_eq!(s, 504);
    assert!(t.elapsed() < Duration::from_millis(1000));
    assert_eq!(up.attempts(&rid(22)), 1);
    let m = wp.metrics().await;
    assert_eq!(
        metric(
            &m,
            "istio_requests_total",
            &[("response_code", "504"), ("response_flags", "UT")]
        ),
        Some(2.0),
        "{m}"
    );
}

/// The first-party `retry` filter with no VirtualService retries: Istio's
/// default policy (2 retries on connect-failure, refused-stream, ...; a
/// plain 503 response is not retried), executed by the host.
#[tokio::test]
async fn istio_default_retry_policy_with_the_first_party_retry_filter() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let dead = std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut dead_ep = up.endpoint(&[]);
    dead_ep["name"] = json!("dead");
    dead_ep["workloadUid"] = json!("Kubernetes//Pod/test/dead");
    dead_ep["address"] = json!(dead.ip().to_string());
    dead_ep["ports"] = json!({ SVC_PORT.to_string(): dead.port() });
    let mut cfg = config(
        vec![up.endpoint(&[]), dead_ep],
        json!({
            "trafficPolicies": [{ "port": SVC_PORT, "loadBalancer": "ROUND_ROBIN" }]
        }),
    );
    cfg["filters"] = json!([retry_filter(json!({ "routes": {} }))]);
    let wp = TestWaypoint::start(&cfg).await;
    for i in 0..10 {
        let (s, _, h) = get(&wp.url("/"), &[("x-request-id", &rid(300 + i))]).await;
        assert_eq!(
            s, 200,
            "connect failures are retried by default (request {i})"
        );
        assert_eq!(h.get("x-upstream").unwrap(), "a");
        assert_eq!(up.attempts(&rid(300 + i)), 1);
    }
    let (s, _, _) = get(
        &wp.url("/"),
        &[("x-request-id", &rid(400)), ("x-status", "503")],
    )
    .await;
    assert_eq!(s, 503);
    assert_eq!(
        up.attempts(&rid(400)),
        1,
        "a 503 response is not retried by default"
    );
}

/// Envoy starts the per-try timer when the connection pool is ready: time
/// spent waiting for a connection (here, pending behind `maxConnections:
/// 1`) does not count against `perTryTimeout`.
#[tokio::test]
async fn per_try_timeout_starts_once_a_connection_is_ready() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let mut cfg = config(
        vec![up.endpoint(&[])],
        json!({ "trafficPolicies": [{
            "port": SVC_PORT,
            "connectionPool": { "maxConnections": 1, "http1MaxPendingRequests": 4 },
        }] }),
    );
    cfg["filters"] = json!([policy_filter(json!({ "retry": { "attempts": 0 } }))]);
    let wp = TestWaypoint::start(&cfg).await;
    let url = wp.url("/");

    // A holds the only connection for 600ms.
    let slow = tokio::spawn({
        let url = url.clone();
        async move { get(&url, &[("x-request-id", &rid(40)), ("x-delay-ms", "600")]).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // B waits ~500ms for it, then answers at once: within its 300ms.
    let t = Instant::now();
    let (s, body, _) = get(
        &url,
        &[
            ("x-request-id", &rid(41)),
            ("x-test-per-try-timeout-ms", "300"),
        ],
    )
    .await;
    let took = t.elapsed();
    assert_eq!(s, 200, "{body}");
    assert!(
        took >= Duration::from_millis(350),
        "B waited for the connection: {took:?}"
    );
    assert_eq!(up.attempts(&rid(41)), 1);
    assert_eq!(slow.await.unwrap().0, 200);

    // Once the request is on the connection the timer runs as before.
    let (s, _, _) = get(
        &url,
        &[
            ("x-request-id", &rid(42)),
            ("x-delay-ms", "1000"),
            ("x-test-per-try-timeout-ms", "300"),
        ],
    )
    .await;
    assert_eq!(s, 504);
}

/// gRPC errors arrive as HTTP 200 with `grpc-status` in the headers
/// (trailers-only). Istio's default policy retries `unavailable` (14) and
/// `cancelled` (1), and not other codes.
#[tokio::test]
async fn grpc_unavailable_is_retried_by_the_default_policy() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let mut cfg = config(
        vec![up.endpoint(&[])],
        json!({ "ports": [{ "port": SVC_PORT, "name": "grpc", "appProtocol": "grpc" }] }),
    );
    cfg["filters"] = json!([retry_filter(json!({ "routes": {} }))]);
    let wp = TestWaypoint::start(&cfg).await;
    let call = |id: u32, code: &'static str| {
        let url = wp.url("/test.Echo/Say");
        async move {
            curl(&[
                "-s",
                "-i",
                "--http2-prior-knowledge",
                "-H",
                &format!("Host: {SVC}"),
                "-H",
                "content-type: application/grpc",
                "-H",
                "te: trailers",
                "-H",
                &format!("x-request-id: {}", rid(id)),
                "-H",
                "x-fail-times: 1",
                "-H",
                &format!("x-fail-mode: grpc-{code}"),
                "--data-binary",
                "@/dev/null",
                &url,
            ])
            .await
        }
    };
    let out = call(500, "14").await;
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    assert!(!out.contains("grpc-status"), "the retry succeeded: {out}");
    assert_eq!(up.attempts(&rid(500)), 2, "UNAVAILABLE retried once");
    let out = call(501, "1").await;
    assert!(!out.contains("grpc-status"), "{out}");
    assert_eq!(up.attempts(&rid(501)), 2, "CANCELLED retried once");
    let out = call(502, "3").await;
    assert!(out.contains("grpc-status: 3"), "{out}");
    assert_eq!(up.attempts(&rid(502)), 1, "INVALID_ARGUMENT is final");
}

/// The route timeout starts when the downstream body is complete, also
/// for a client that sends a `content-length` body (the upstream side
/// stops reading at that length and never polls for the end).
#[tokio::test]
async fn route_timeout_applies_to_requests_with_a_body() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let wp = waypoint_with_policy(&up, json!({ "attempts": 0 })).await;
    let t = Instant::now();
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &format!("Host: {SVC}"),
        "-H",
        "x-delay-ms: 3000",
        "-H",
        "x-test-timeout-ms: 300",
        "--data-binary",
        "a body of some bytes",
        &wp.url("/"),
    ])
    .await;
    assert_eq!(out, "504");
    assert!(
        t.elapsed() < Duration::from_millis(2000),
        "{:?}",
        t.elapsed()
    );
}

/// Retries avoid the endpoints already tried (Envoy's previous-hosts
/// predicate, Istio's default `retryIgnorePreviousHosts: true`); with
/// `retryIgnorePreviousHosts: false` the first-party retry filter tells
/// the host so and a retry may land on the same endpoint. Two endpoints,
/// RANDOM balancing, every attempt answered 503, one retry. With the
/// predicate the host redraws up to 5 times (Istio's
/// `hostSelectionRetryMaxAttempts`), so 1/32 of retries still land on the
/// endpoint already tried; without it, half do.
#[tokio::test]
async fn retry_ignore_previous_hosts_false_lets_retries_reuse_an_endpoint() {
    let a = Upstream::start("a", "127.0.0.1").await;
    let b = Upstream::start("b", "127.0.0.2").await;
    for (ignore_previous, base) in [(true, 500u32), (false, 700)] {
        let mut cfg = config(
            vec![a.endpoint(&[]), b.endpoint(&[])],
            json!({
                "trafficPolicies": [{ "port": SVC_PORT, "loadBalancer": "RANDOM" }]
            }),
        );
        cfg["filters"] = json!([retry_filter(json!({
            "defaultPolicy": {
                "attempts": 1,
                "retryOn": "5xx",
                "retryIgnorePreviousHosts": ignore_previous,
            },
            "routes": {},
        }))]);
        let wp = TestWaypoint::start(&cfg).await;
        let mut same = 0;
        for i in 0..100 {
            let id = rid(base + i);
            let (s, _, _) = get(&wp.url("/"), &[("x-request-id", &id), ("x-status", "503")]).await;
            assert_eq!(s, 503);
            assert_eq!(a.attempts(&id) + b.attempts(&id), 2, "one retry");
            if a.attempts(&id) == 2 || b.attempts(&id) == 2 {
                same += 1;
            }
        }
        // Binomial(100, 1/32) exceeds 12 and Binomial(100, 1/2) falls
        // under 30 with probabilities below 1e-4.
        if ignore_previous {
            assert!(same <= 12, "{same} of 100 retries reused the endpoint");
        } else {
            assert!(same >= 30, "only {same} of 100 retries reused the endpoint");
        }
    }
}
