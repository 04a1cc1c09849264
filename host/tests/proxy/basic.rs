//! Plain HTTP/1.1 and h2c through an empty chain, with curl.

use std::sync::atomic::Ordering;

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn http1_and_h2c_reach_the_addressed_service_with_curl() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let wp = TestWaypoint::start(&config(vec![up.endpoint(&[])], json!({}))).await;
    let host = format!("Host: {SVC}");

    // HTTP/1.1, with a hop-by-hop header that must not reach the upstream.
    let out = curl(&[
        "-i",
        "-H",
        &host,
        "-H",
        "Connection: keep-alive, x-hop",
        "-H",
        "x-hop: secret",
        &wp.url("/hello?x=1"),
    ])
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("x-upstream: a"), "{out}");
    let h = up.seen.last_headers.lock().clone().unwrap();
    assert!(
        h.get("x-hop").is_none(),
        "hop-by-hop header forwarded: {h:?}"
    );
    let rid = h
        .get("x-request-id")
        .expect("x-request-id added")
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(rid.len(), 36);
    assert_eq!(h.get("host").unwrap(), SVC);

    // h2c prior knowledge downstream; the upstream port says plain `http`,
    // so the waypoint speaks HTTP/1.1 upstream.
    let out = curl(&["-i", "--http2-prior-knowledge", "-H", &host, &wp.url("/h2")]).await;
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    assert_eq!(
        up.seen.versions.lock().last().copied(),
        Some(http::Version::HTTP_11)
    );

    // A POST body goes through unchanged (echoed back).
    let out = curl(&["-H", &host, "--data-binary", "ping-body", &wp.url("/echo")]).await;
    assert_eq!(out, "ping-body");
    assert_eq!(up.count(), 3);

    // Unknown authority: 404 with flag NR.
    let out = curl(&["-i", "-H", "Host: nowhere.example", &wp.url("/")]).await;
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    assert_eq!(up.count(), 3);
    let m = wp.metrics().await;
    assert_eq!(
        metric(
            &m,
            "istio_requests_total",
            &[("response_code", "404"), ("response_flags", "NR")]
        ),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test]
async fn http2_ports_are_spoken_as_http2_upstream() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let cfg = config(
        vec![up.endpoint(&[])],
        json!({ "ports": [{ "port": SVC_PORT, "targetPort": 0, "name": "grpc-web", "appProtocol": "http2" }] }),
    );
    let wp = TestWaypoint::start(&cfg).await;
    for _ in 0..3 {
        let out = curl_status(SVC, &wp.url("/")).await;
        assert_eq!(out, "200");
    }
    let v = up.seen.versions.lock().clone();
    assert!(v.iter().all(|v| *v == http::Version::HTTP_2), "{v:?}");
    assert_eq!(up.seen.max_active.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let wp = TestWaypoint::start(&config(vec![up.endpoint(&[])], json!({}))).await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big");
    std::fs::write(&f, vec![b'z'; 3 << 20]).unwrap();
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        "-H",
        &format!("Host: {SVC}"),
        "--data-binary",
        &format!("@{}", f.display()),
        &wp.url("/upload"),
    ])
    .await;
    assert_eq!(
        out,
        format!("200 {}", 3 << 20),
        "3 MiB echoed (larger than the retry buffer)"
    );
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        "-H",
        &format!("Host: {SVC}"),
        "-H",
        "x-body-size: 5000000",
        &wp.url("/download"),
    ])
    .await;
    assert_eq!(out, "200 5000000");
}

#[tokio::test]
async fn a_client_that_leaves_before_the_response_is_counted_dc() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let wp = TestWaypoint::start(&config(vec![up.endpoint(&[])], json!({}))).await;
    let out = tokio::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "0.3",
            "-H",
            &format!("Host: {SVC}"),
            "-H",
            "x-delay-ms: 2000",
            &wp.url("/slow"),
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(28), "curl timed out");
    let t = std::time::Instant::now();
    loop {
        let m = wp.metrics().await;
        if metric(
            &m,
            "istio_requests_total",
            &[("response_code", "0"), ("response_flags", "DC")],
        ) == Some(1.0)
        {
            break;
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(3), "{m}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Hostile heads: a request head over 64 KiB is answered 431 (HTTP/1.1 and
/// h2c) and an HTTP/1.1 request without Host is answered 400, as Envoy
/// does; none reaches the upstream and the proxy keeps serving.
#[tokio::test]
async fn oversized_heads_get_431_and_a_missing_host_400() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let wp = TestWaypoint::start(&config(vec![up.endpoint(&[])], json!({}))).await;
    let host = format!("Host: {SVC}");
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big-header.txt");
    std::fs::write(&big, format!("x-big: {}\r\n", "a".repeat(100 * 1024))).unwrap();
    let big = format!("@{}", big.display());
    let code = |extra: &[&str]| {
        let mut a = vec!["-s", "-o", "/dev/null", "-w", "%{http_code}"];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let url = wp.url("/");
    let args = code(&["-H", &host, "-H", &big, &url]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(curl(&refs).await, "431");
    // (curl exits non-zero when the connection is refused: no `curl()`.)
    let h2 = tokio::process::Command::new("curl")
        .args(code(&[
            "--http2-prior-knowledge",
            "-H",
            &host,
            "-H",
            &big,
            &url,
        ]))
        .output()
        .await
        .expect("curl");
    let h2 = String::from_utf8_lossy(&h2.stdout).into_owned();
    // h2: the stream is refused with 431, or the connection with
    // PROTOCOL_ERROR / ENHANCE_YOUR_CALM before a response (curl: 000).
    assert!(
        h2 == "431" || h2 == "000",
        "h2c oversized head answered {h2}"
    );
    // Just under the limit still works.
    let ok = dir.path().join("ok-header.txt");
    std::fs::write(&ok, format!("x-big: {}\r\n", "a".repeat(50 * 1024))).unwrap();
    let ok = format!("@{}", ok.display());
    let args = code(&["-H", &host, "-H", &ok, &url]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(curl(&refs).await, "200");
    assert_eq!(up.count(), 1);

    // HTTP/1.1 without Host, on a raw socket (curl always sends one).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert_eq!(up.count(), 1);
}

/// Envoy's connection manager normalizes every request path under Istio's
/// default (BASE), filters or not: dot segments resolved, `\` to `/`,
/// encoded unreserved characters decoded; `%00` refused with 400.
#[tokio::test]
async fn request_paths_are_normalized_before_routing_and_upstream() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let wp = TestWaypoint::start(&config(vec![up.endpoint(&[])], json!({}))).await;
    let host = format!("Host: {SVC}");
    let out = curl(&[
        "-s",
        "--path-as-is",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &host,
        &wp.url("/x/../api/./v1/%7Euser%2Fa?q=%2E%2E"),
    ])
    .await;
    assert_eq!(out, "200");
    assert_eq!(
        up.seen.last_uri.lock().as_deref(),
        Some("/api/v1/~user%2Fa?q=%2E%2E"),
        "path normalized (an encoded slash kept), query untouched"
    );
    let out = curl(&[
        "-s",
        "--path-as-is",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &host,
        &wp.url("/a%00b"),
    ])
    .await;
    assert_eq!(out, "400");
    assert_eq!(up.seen.requests.load(Ordering::SeqCst), 1);
}
