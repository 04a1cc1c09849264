//! WebSocket (HTTP/1.1 Upgrade) through the waypoint: the 101 reaches the
//! client and the upgraded bytes flow both ways, against an upstream that
//! really upgrades (hyper's upgrade API), with a raw client speaking the
//! WebSocket handshake.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::*;

/// An upstream that upgrades `Upgrade: websocket` requests and then echoes
/// whatever arrives, prefixed with `echo:`; other requests get 400.
async fn ws_upstream() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(|mut req: http::Request<hyper::body::Incoming>| async move {
                    let wants = req
                        .headers()
                        .get("upgrade")
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
                    if !wants {
                        let r = http::Response::builder()
                            .status(400)
                            .body(Empty::<Bytes>::new())
                            .unwrap();
                        return Ok::<_, Infallible>(r);
                    }
                    let on = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        let Ok(up) = on.await else { return };
                        let mut io = TokioIo::new(up);
                        let mut buf = [0u8; 1024];
                        loop {
                            let n = match io.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            let mut out = b"echo:".to_vec();
                            out.extend_from_slice(&buf[..n]);
                            if io.write_all(&out).await.is_err() {
                                return;
                            }
                        }
                    });
                    let r = http::Response::builder()
                        .status(101)
                        .header("connection", "upgrade")
                        .header("upgrade", "websocket")
                        .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    Ok(r)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn websocket_upgrade_is_relayed_both_ways() {
    let up = ws_upstream().await;
    let ep = endpoint_at("ws-0", "ws", up, SVC_PORT, json!({"app": "ws"}));
    let wp = TestWaypoint::start(&config(vec![ep], json!({}))).await;
    let addr = wp.w().bound().http.unwrap();

    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "GET /chat HTTP/1.1\r\nHost: {SVC}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // The 101 head.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut b).await.unwrap(),
            1,
            "closed in the head: {head:?}"
        );
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );

    // Upgraded: opaque bytes both ways, several exchanges.
    for msg in [&b"\x81\x05hello"[..], b"\x82\x03\x00\x01\x02"] {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; 5 + msg.len()];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..5], b"echo:");
        assert_eq!(&got[5..], msg);
    }
    drop(s);

    let m = wp.metrics().await;
    assert_eq!(
        metric(
            &m,
            "istio_requests_total",
            &[("response_code", "101"), ("destination_workload", "ws")]
        ),
        Some(1.0),
        "{m}"
    );

    // Without the upgrade headers it is an ordinary request (400 here).
    let (status, _, _) = get(&wp.url("/chat"), &[]).await;
    assert_eq!(status, 400);
}
