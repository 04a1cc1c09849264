//! gRPC end to end with Python grpcio on both sides: unary, server
//! streaming with trailers, an error status, and a deadline the waypoint
//! enforces from `grpc-timeout`.

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::*;

const SERVER: &str = r#"
import sys, time, grpc
from concurrent import futures

def say(req, ctx):
    if req == b'fail':
        ctx.abort(grpc.StatusCode.UNAVAILABLE, 'backend down')
    if req == b'slow':
        time.sleep(2)
    return b'echo:' + req

def count(req, ctx):
    ctx.set_trailing_metadata((('x-trailer', 'yes'),))
    for i in range(int(req)):
        yield b'item%d' % i

h = grpc.method_handlers_generic_handler('test.Echo', {
    'Say': grpc.unary_unary_rpc_method_handler(say),
    'Count': grpc.unary_stream_rpc_method_handler(count),
})
s = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
s.add_generic_rpc_handlers((h,))
port = s.add_insecure_port(sys.argv[1] + ':0')
s.start()
print(port, flush=True)
s.wait_for_termination()
"#;

const CLIENT: &str = r#"
import sys, json, grpc
ch = grpc.insecure_channel(sys.argv[1], options=[('grpc.default_authority', sys.argv[2])])
say = ch.unary_unary('/test.Echo/Say')
count = ch.unary_stream('/test.Echo/Count')
out = {}
out['say'] = say(b'hi', timeout=10).decode()
call = count(b'3', timeout=10)
out['items'] = [m.decode() for m in call]
out['trailers'] = dict(call.trailing_metadata())
out['stream_code'] = call.code().name
for name, req, t in [('fail', b'fail', 10), ('slow', b'slow', 0.5)]:
    try:
        say(req, timeout=t)
        out[name] = 'OK'
    except grpc.RpcError as e:
        out[name] = e.code().name
        out[name + '_details'] = e.details()
print(json.dumps(out))
"#;

fn python() -> String {
    let home = std::env::var("HOME").unwrap();
    let tools = std::env::var("MESH_TOOLS").unwrap_or(format!("{home}/.cache/ambient-mesh/tools"));
    format!("{tools}/venv/bin/python")
}

#[tokio::test]
async fn grpc_unary_streaming_errors_and_deadlines() {
    let dir = tempfile::tempdir().unwrap();
    let server_py = dir.path().join("server.py");
    let client_py = dir.path().join("client.py");
    std::fs::write(&server_py, SERVER).unwrap();
    std::fs::write(&client_py, CLIENT).unwrap();
    let mut server = tokio::process::Command::new(python())
        .arg(&server_py)
        .arg("127.0.0.4")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python with grpcio (scripts/setup.sh)");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let port: u16 = lines
        .next_line()
        .await
        .unwrap()
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let ep = json!({
        "workloadUid": "Kubernetes//Pod/test/grpc", "name": "grpc", "namespace": "test", "workloadName": "grpc",
        "address": "127.0.0.4", "ports": { SVC_PORT.to_string(): port }, "canonicalName": "grpc",
    });
    let cfg = config(
        vec![ep],
        json!({ "ports": [{ "port": SVC_PORT, "name": "grpc", "appProtocol": "grpc" }] }),
    );
    let wp = TestWaypoint::start(&cfg).await;

    let out = run(
        &python(),
        &[client_py.to_str().unwrap(), &wp.http().to_string(), SVC],
    )
    .await;
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["say"], "echo:hi", "{v}");
    assert_eq!(v["items"], json!(["item0", "item1", "item2"]));
    assert_eq!(v["trailers"]["x-trailer"], "yes", "trailers forwarded: {v}");
    assert_eq!(v["stream_code"], "OK");
    assert_eq!(v["fail"], "UNAVAILABLE");
    assert_eq!(v["fail_details"], "backend down");
    // The client's own deadline and the waypoint's (from grpc-timeout)
    // race here; either way the call fails fast.
    assert!(
        matches!(
            v["slow"].as_str(),
            Some("DEADLINE_EXCEEDED" | "UNAVAILABLE")
        ),
        "{v}"
    );

    let m = wp.metrics().await;
    let grpc = |status: &str| {
        metric(
            &m,
            "istio_requests_total",
            &[
                ("request_protocol", "grpc"),
                ("grpc_response_status", status),
            ],
        )
    };
    assert_eq!(grpc("0"), Some(2.0), "{m}");
    assert!(grpc("14").unwrap() >= 1.0, "{m}");
    // Message counts (Istio's gRPC stats): the OK unary call and the
    // stream each sent one request message; they answered 1 and 3.
    let messages = |name: &str| {
        metric(
            &m,
            name,
            &[("request_protocol", "grpc"), ("grpc_response_status", "0")],
        )
    };
    assert_eq!(messages("istio_request_messages_total"), Some(2.0), "{m}");
    assert_eq!(messages("istio_response_messages_total"), Some(4.0), "{m}");
}

/// The waypoint enforces `grpc-timeout` itself (the upstream here knows
/// nothing of gRPC deadlines): a trailers-only gRPC answer at ~300ms.
#[tokio::test]
async fn grpc_timeout_is_enforced_with_a_grpc_local_reply() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let cfg = config(
        vec![up.endpoint(&[])],
        json!({ "ports": [{ "port": SVC_PORT, "name": "grpc", "appProtocol": "grpc" }] }),
    );
    let wp = TestWaypoint::start(&cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let frame = dir.path().join("frame");
    std::fs::write(&frame, b"\x00\x00\x00\x00\x04slow").unwrap();
    let t = std::time::Instant::now();
    let out = curl(&[
        "-i",
        "--http2-prior-knowledge",
        "-H",
        &format!("Host: {SVC}"),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "-H",
        "grpc-timeout: 300m",
        "-H",
        "x-delay-ms: 3000",
        "--data-binary",
        &format!("@{}", frame.display()),
        &wp.url("/test.Echo/Say"),
    ])
    .await;
    let took = t.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(290)
            && took < std::time::Duration::from_millis(1500),
        "{took:?}"
    );
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    assert!(out.contains("grpc-status: 14"), "{out}");
    assert!(
        out.contains("grpc-message: upstream request timeout"),
        "{out}"
    );
    assert_eq!(up.seen.versions.lock().clone(), vec![http::Version::HTTP_2]);
    let m = wp.metrics().await;
    assert_eq!(
        metric(
            &m,
            "istio_requests_total",
            &[
                ("request_protocol", "grpc"),
                ("grpc_response_status", "14"),
                ("response_flags", "UT"),
                ("response_code", "200"),
            ]
        ),
        Some(1.0),
        "{m}"
    );
}
