//! Telemetry after real traffic: Istio metric values, `promtool check
//! metrics`, a real Prometheus scraping the endpoint, JSON access logs,
//! W3C trace propagation and OTLP export.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::support::*;

async fn traffic(wp: &TestWaypoint, ok: usize, failed: usize) {
    for _ in 0..ok {
        assert_eq!(get(&wp.url("/m"), &[]).await.0, 200);
    }
    for _ in 0..failed {
        assert_eq!(get(&wp.url("/m"), &[("x-status", "503")]).await.0, 503);
    }
}

#[tokio::test]
async fn metric_values_after_traffic_pass_promtool() {
    // Not on 127.0.0.1: the client's address would match the endpoint and
    // label the requests with it as source workload.
    let up = Upstream::start("a", "127.0.0.5").await;
    let wp = TestWaypoint::start(&config(
        vec![up.endpoint(&[("app", "echo"), ("version", "v1")])],
        json!({}),
    ))
    .await;
    traffic(&wp, 7, 3).await;
    let m = wp.metrics().await;
    let common = [
        ("reporter", "waypoint"),
        ("destination_service", SVC),
        ("destination_service_name", "echo"),
        ("destination_service_namespace", "test"),
        ("destination_workload", "a"),
        ("destination_workload_namespace", "test"),
        (
            "destination_principal",
            "spiffe://cluster.local/ns/test/sa/a",
        ),
        ("destination_app", "echo"),
        ("destination_version", "v1"),
        ("destination_canonical_service", "a"),
        ("destination_cluster", "Kubernetes"),
        ("source_workload", "unknown"),
        ("source_principal", "unknown"),
        ("source_canonical_revision", "latest"),
        ("request_protocol", "http"),
        ("grpc_response_status", ""),
        ("connection_security_policy", "none"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        common
            .iter()
            .copied()
            .chain(extra.iter().copied())
            .collect()
    };
    assert_eq!(
        metric(
            &m,
            "istio_requests_total",
            &with(&[("response_code", "200"), ("response_flags", "-")])
        ),
        Some(7.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "istio_requests_total",
            &with(&[("response_code", "503")])
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &m,
            "istio_request_duration_milliseconds_count",
            &with(&[("response_code", "200")])
        ),
        Some(7.0)
    );
    assert_eq!(metric(&m, "istio_request_bytes_count", &[]), Some(10.0));
    assert_eq!(
        metric(
            &m,
            "istio_request_duration_milliseconds_bucket",
            &[("response_code", "200"), ("le", "+Inf")]
        ),
        Some(7.0)
    );
    // Response sizes include headers: more than the 4-byte bodies.
    let sum = metric(&m, "istio_response_bytes_sum", &[("response_code", "200")]).unwrap();
    assert!(sum > 7.0 * 40.0, "{sum}");
    assert!(m.contains("# TYPE istio_requests_total counter\n"));
    assert!(m.contains("# TYPE istio_request_duration_milliseconds histogram\n"));
    assert!(
        m.contains("waypoint_config_applies_total{result=\"applied\"} 1\n"),
        "{m}"
    );

    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (apt prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(m.as_bytes())
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool parses the whole exposition; its only finding is the lint on
    // the name Istio mandates (exit code 3 = lint problems, 1 = parse
    // error).
    const ISTIO_NAME_LINT: &str =
        "istio_request_duration_milliseconds use base unit \"seconds\" instead of \"milliseconds\"";
    let findings: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        findings.iter().all(|l| *l == ISTIO_NAME_LINT),
        "promtool: {text}"
    );
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "promtool: {:?} {text}",
        out.status
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_endpoint() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let wp = TestWaypoint::start(&config(vec![up.endpoint(&[])], json!({}))).await;
    traffic(&wp, 5, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: waypoint\n    metrics_path: /stats/prometheus\n    static_configs: [{{targets: ['{}']}}]\n",
            wp.w().bound().metrics.unwrap()
        ),
    )
    .unwrap();
    let port = free_port();
    let _prom = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus (apt prometheus)");
    let query = |q: &str| format!("http://127.0.0.1:{port}/api/v1/query?query={q}");
    let t = Instant::now();
    let result = loop {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "Prometheus never scraped the waypoint"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(Ok(resp)) = tokio::time::timeout(
            Duration::from_secs(2),
            client().get(
                query("sum%20by%20(response_code)(istio_requests_total)")
                    .parse()
                    .unwrap(),
            ),
        )
        .await
        else {
            continue;
        };
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        let r = v["data"]["result"].as_array().cloned().unwrap_or_default();
        if r.len() == 2 {
            break r;
        }
    };
    let val = |code: &str| -> String {
        result
            .iter()
            .find(|s| s["metric"]["response_code"] == code)
            .unwrap()["value"][1]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(val("200"), "5");
    assert_eq!(val("503"), "2");
    let up_q: Value = serde_json::from_slice(
        &client()
            .get(query("up").parse().unwrap())
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    assert_eq!(
        up_q["data"]["result"][0]["value"][1], "1",
        "scrape healthy: {up_q}"
    );
}

#[tokio::test]
async fn metric_overrides_remove_upsert_and_disable() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let mut cfg = config(vec![up.endpoint(&[])], json!({}));
    cfg["telemetry"]["metrics"] = json!([
        { "metric": "REQUEST_COUNT", "tagOverrides": { "request_protocol": null, "user": "request.headers['x-user']" } },
        { "metric": "REQUEST_SIZE", "disabled": true },
        { "metric": "ALL_METRICS", "mode": "CLIENT", "disabled": true },
    ]);
    let wp = TestWaypoint::start(&cfg).await;
    get(&wp.url("/"), &[("x-user", "alice")]).await;
    let m = wp.metrics().await;
    let line = m
        .lines()
        .find(|l| l.starts_with("istio_requests_total{"))
        .unwrap();
    assert!(
        line.contains("user=\"alice\"") && !line.contains("request_protocol="),
        "{line}"
    );
    assert!(!m.contains("istio_request_bytes"), "REQUEST_SIZE disabled");
    assert!(
        m.contains("istio_response_bytes_count{"),
        "CLIENT-mode override ignored by a waypoint"
    );
    // A broken expression refuses the config and keeps the old one.
    let mut bad = cfg.clone();
    bad["telemetry"]["accessLog"] = json!({ "enabled": true, "filter": "response.code >=" });
    wp.reconfigure(&bad).await;
    let s = wp.w().applier().status();
    assert!(
        s.last_error
            .as_deref()
            .unwrap()
            .contains("accessLog filter"),
        "{s:?}"
    );
    assert_eq!(get(&wp.url("/"), &[]).await.0, 200);
}

/// A collector on a free port: every request (HTTP/1.1 or HTTP/2, as the
/// client speaks) goes to `handle`. Returns the port.
async fn collector<F, Fut, B>(handle: F) -> u16
where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<http::Response<B>, std::convert::Infallible>>
        + Send
        + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                continue;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service_fn(handle))
                    .await;
            });
        }
    });
    port
}

/// An OTLP/HTTP receiver keeping the JSON bodies it gets.
async fn otlp_receiver() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let port = collector(move |req: http::Request<hyper::body::Incoming>| {
        let g = g.clone();
        async move {
            assert_eq!(req.uri().path(), "/v1/traces");
            let b = req.into_body().collect().await.unwrap().to_bytes();
            g.lock().push(serde_json::from_slice::<Value>(&b).unwrap());
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(
                b"{}",
            ))))
        }
    })
    .await;
    (port, got)
}

fn spans(got: &Mutex<Vec<Value>>) -> Vec<Value> {
    got.lock()
        .iter()
        .flat_map(|b| {
            b["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn access_logs_and_traces_follow_telemetry_settings() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let (port, got) = otlp_receiver().await;
    let mut cfg = config(vec![up.endpoint(&[])], json!({}));
    cfg["telemetry"] = json!({
        "accessLog": { "enabled": true, "filter": "response.code >= 400" },
        "tracing": { "samplingPercentage": 100.0, "otlpEndpoint": format!("http://127.0.0.1:{port}"), "customTags": { "env": "test" },
                     "headerTags": { "user": { "name": "x-user" }, "tier": { "name": "x-tier", "defaultValue": "free" } },
                     "environmentTags": { "home": { "name": "HOME" }, "zone": { "name": "MESH_TEST_UNSET_VARIABLE", "defaultValue": "z1" } } },
    });
    let wp = TestWaypoint::start(&cfg).await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (s, _, h) = get(
        &wp.url("/traced"),
        &[("traceparent", incoming), ("x-user", "alice")],
    )
    .await;
    assert_eq!(s, 200);
    let seen = h
        .get("x-seen-traceparent")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        seen.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && seen.ends_with("-01"),
        "{seen}"
    );
    let waypoint_span = seen[36..52].to_string();
    assert_ne!(waypoint_span, "00f067aa0ba902b7");
    assert_eq!(get(&wp.url("/fail"), &[("x-status", "503")]).await.0, 503);

    // Spans arrive within the flush interval.
    let t = Instant::now();
    while spans(&got).len() < 2 {
        assert!(t.elapsed() < Duration::from_secs(5), "spans not exported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = spans(&got);
    let s = all
        .iter()
        .find(|s| s["traceId"] == "4bf92f3577b34da6a3ce929d0e0e4736")
        .unwrap();
    assert_eq!(s["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(s["spanId"], waypoint_span);
    assert_eq!(s["name"], format!("{SVC}:{SVC_PORT}/*"));
    let attrs = s["attributes"].as_array().unwrap();
    assert!(
        attrs
            .iter()
            .any(|a| a["key"] == "env" && a["value"]["stringValue"] == "test")
    );
    let attr = |k: &str| {
        attrs
            .iter()
            .find(|a| a["key"] == k)
            .map(|a| a["value"]["stringValue"].as_str().unwrap().to_string())
    };
    assert_eq!(attr("user").as_deref(), Some("alice"), "header tag");
    assert_eq!(attr("tier").as_deref(), Some("free"), "header tag default");
    assert_eq!(attr("home"), std::env::var("HOME").ok(), "environment tag");
    assert_eq!(
        attr("zone").as_deref(),
        Some("z1"),
        "environment tag default"
    );
    assert!(
        attrs
            .iter()
            .any(|a| a["key"] == "http.status_code" && a["value"]["stringValue"] == "200")
    );
    assert_eq!(
        got.lock()[0]["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
        "waypoint.test"
    );

    // Access log: only the request matching `response.code >= 400`.
    let log = std::fs::read_to_string(&wp.access_log).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    let e = &lines[0];
    assert_eq!(e["response_code"], 503);
    assert_eq!(e["path"], "/fail");
    assert_eq!(e["method"], "GET");
    assert_eq!(
        e["upstream_cluster"],
        format!("inbound-vip|{SVC_PORT}|http|{SVC}")
    );
    assert_eq!(e["upstream_host"], up.addr.to_string());
    assert_eq!(e["response_flags"], "-");
    assert_eq!(e["request_id"].as_str().unwrap().len(), 36);

    // 0% sampling: context still propagated (not sampled), nothing exported.
    cfg["telemetry"]["tracing"]["samplingPercentage"] = json!(0.0);
    wp.reconfigure(&cfg).await;
    let before = spans(&got).len();
    let (_, _, h) = get(&wp.url("/quiet"), &[]).await;
    let tp = h
        .get("x-seen-traceparent")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(tp.starts_with("00-") && tp.ends_with("-00"), "{tp}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(spans(&got).len(), before);
}

/// An OTLP/gRPC collector (HTTP/2 prior knowledge, like the OpenTelemetry
/// Collector's 4317 receiver) keeping the decoded export requests.
async fn otlp_grpc_receiver() -> (
    u16,
    Arc<Mutex<Vec<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>>>,
) {
    use prost::Message;
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let port = collector(move |req: http::Request<hyper::body::Incoming>| {
        let g = g.clone();
        async move {
            assert_eq!(
                req.uri().path(),
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
            );
            assert_eq!(req.headers()["content-type"], "application/grpc");
            let b = req.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(b[0], 0, "uncompressed");
            let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
            assert_eq!(len, b.len() - 5);
            let msg = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(&b[5..]).unwrap();
            g.lock().push(msg);
            // An empty ExportTraceServiceResponse, then grpc-status 0.
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().unwrap());
            let body = http_body_util::StreamBody::new(futures::stream::iter([
                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(
                    Bytes::from_static(&[0, 0, 0, 0, 0]),
                )),
                Ok(hyper::body::Frame::trailers(trailers)),
            ]));
            let resp = http::Response::builder()
                .header("content-type", "application/grpc")
                .body(body)
                .unwrap();
            Ok::<_, std::convert::Infallible>(resp)
        }
    })
    .await;
    (port, got)
}

#[tokio::test]
async fn spans_are_exported_over_otlp_grpc() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let (port, got) = otlp_grpc_receiver().await;
    let mut cfg = config(vec![up.endpoint(&[])], json!({}));
    cfg["telemetry"] = json!({
        "accessLog": { "enabled": false },
        "tracing": { "samplingPercentage": 100.0, "otlpEndpoint": format!("grpc://127.0.0.1:{port}") },
    });
    let wp = TestWaypoint::start(&cfg).await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(
        get(&wp.url("/traced"), &[("traceparent", incoming)])
            .await
            .0,
        200
    );
    assert_eq!(get(&wp.url("/fail"), &[("x-status", "503")]).await.0, 503);
    let t = Instant::now();
    let spans = loop {
        let spans: Vec<_> = got
            .lock()
            .iter()
            .flat_map(|r| r.resource_spans[0].scope_spans[0].spans.clone())
            .collect();
        if spans.len() >= 2 {
            break spans;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "spans not exported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let traced = spans
        .iter()
        .find(|s| {
            s.trace_id
                == [
                    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e,
                    0x0e, 0x47, 0x36,
                ]
        })
        .expect("the incoming trace id is kept");
    assert_eq!(
        traced.parent_span_id,
        [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
    );
    assert_eq!(traced.name, format!("{SVC}:{SVC_PORT}/*"));
    let failed = spans
        .iter()
        .find(|s| s.trace_id != traced.trace_id)
        .unwrap();
    assert_eq!(
        failed.status.as_ref().unwrap().code,
        2,
        "5xx is an error span"
    );
    let resource = got.lock()[0].resource_spans[0].resource.clone().unwrap();
    assert_eq!(resource.attributes[0].key, "service.name");
}

/// Telemetry `targetRefs` to a Service: the operator sends the service's
/// effective settings under `services`; traffic addressed to that service
/// follows them, other traffic the waypoint's.
#[tokio::test]
async fn per_service_telemetry_applies_to_traffic_for_that_service() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let mut cfg = config(vec![up.endpoint(&[])], json!({}));
    let service_settings = json!({
        "accessLog": { "enabled": true },
        "tracing": { "samplingPercentage": 1.0 },
        "metrics": [{ "metric": "REQUEST_SIZE", "disabled": true }],
    });
    cfg["telemetry"] = json!({
        "accessLog": { "enabled": false },
        "services": { "other.test.svc.cluster.local": service_settings.clone() },
    });
    let wp = TestWaypoint::start(&cfg).await;
    assert_eq!(get(&wp.url("/first"), &[]).await.0, 200);
    let m = wp.metrics().await;
    assert!(
        m.contains("istio_request_bytes_count{"),
        "waypoint settings: {m}"
    );
    assert_eq!(
        std::fs::read_to_string(&wp.access_log).unwrap_or_default(),
        ""
    );

    cfg["telemetry"]["services"] = json!({ SVC: service_settings });
    wp.reconfigure(&cfg).await;
    assert_eq!(get(&wp.url("/second"), &[]).await.0, 200);
    let log = std::fs::read_to_string(&wp.access_log).unwrap();
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.contains("/second"), "{log}");
    let m = wp.metrics().await;
    let count = |name: &str| {
        m.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert_eq!(count("istio_requests_total{"), 2.0);
    assert_eq!(
        count("istio_request_bytes_count{"),
        1.0,
        "REQUEST_SIZE disabled for the service's traffic: {m}"
    );
}

/// A Telemetry targeting a Service may name its own tracing provider: the
/// spans of traffic addressed to that service go to that collector, the
/// rest to the waypoint's.
#[tokio::test]
async fn per_service_tracing_provider_gets_that_services_spans() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let (wp_port, wp_got) = otlp_receiver().await;
    let (svc_port, svc_got) = otlp_receiver().await;
    let tracing = |port: u16| json!({ "tracing": { "samplingPercentage": 100.0, "otlpEndpoint": format!("http://127.0.0.1:{port}") } });
    let mut cfg = config(vec![up.endpoint(&[])], json!({}));
    cfg["telemetry"] = tracing(wp_port);
    cfg["telemetry"]["services"] = json!({ "other.test.svc.cluster.local": tracing(svc_port) });
    let wp = TestWaypoint::start(&cfg).await;
    assert_eq!(get(&wp.url("/to-waypoint-collector"), &[]).await.0, 200);
    wait_until("a span at the waypoint's collector", || {
        !spans(&wp_got).is_empty()
    })
    .await;

    cfg["telemetry"]["services"] = json!({ SVC: tracing(svc_port) });
    wp.reconfigure(&cfg).await;
    assert_eq!(get(&wp.url("/to-service-collector"), &[]).await.0, 200);
    wait_until("a span at the service's collector", || {
        !spans(&svc_got).is_empty()
    })
    .await;
    // Give a misrouted span time to arrive, then check each collector got
    // exactly its own.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let paths = |got: &Mutex<Vec<Value>>| -> Vec<String> {
        spans(got)
            .iter()
            .flat_map(|s| s["attributes"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["key"] == "http.url")
            .filter_map(|a| a["value"]["stringValue"].as_str().map(str::to_string))
            .collect()
    };
    let (w, s) = (paths(&wp_got), paths(&svc_got));
    assert!(
        w.len() == 1 && w[0].ends_with("/to-waypoint-collector"),
        "waypoint collector: {w:?}"
    );
    assert!(
        s.len() == 1 && s[0].ends_with("/to-service-collector"),
        "service collector: {s:?}"
    );
}
