//! HBONE in and out: a client workload tunnels to the waypoint's HBONE
//! listener with mTLS (its SPIFFE ID becomes `source_principal`); the
//! waypoint reaches the mesh endpoint through that endpoint's node proxy
//! on `ip:15008`, presenting its own identity and requiring the endpoint's.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_common::ca::CertificateAuthority;
use mesh_common::hbone::{
    HboneClient, HboneConfig, HboneServer, InboundRequest, copy_bidirectional,
};
use mesh_common::identity::SpiffeId;
use mesh_common::tls;
use parking_lot::Mutex;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// Where the fake destination node proxy listens (the waypoint dials
/// `<endpoint ip>:15008`).
const NODE_IP: &str = "127.0.77.1";

#[tokio::test]
async fn hbone_in_and_out_with_identities() {
    let ca = CertificateAuthority::new_root("cluster.local", Duration::from_secs(86400)).unwrap();
    let up = Upstream::start("a", NODE_IP).await;

    // The destination's node proxy: terminates HBONE, forwards plain TCP.
    type Connects = Arc<Mutex<Vec<(Option<String>, String)>>>;
    let seen: Connects = Arc::default();
    let node_cert = cert(&ca, "test", "a");
    let listener = tokio::net::TcpListener::bind((NODE_IP, 15008))
        .await
        .expect("bind 127.0.77.1:15008");
    let node = HboneServer::new(
        listener,
        tls::server_config(node_cert).unwrap(),
        HboneConfig::default(),
    );
    let stop = CancellationToken::new();
    let s2 = seen.clone();
    tokio::spawn(node.run(
        move |req: InboundRequest| {
            let seen = s2.clone();
            async move {
                seen.lock()
                    .push((req.peer().map(|p| p.uri()), req.authority().to_string()));
                let target = req.target().unwrap();
                let tcp = tokio::net::TcpStream::connect(target).await.unwrap();
                let stream = req.accept().unwrap();
                let _ = copy_bidirectional(tcp, stream).await;
            }
        },
        stop.clone(),
    ));

    let mut ep = up.endpoint(&[("app", "echo"), ("version", "v1")]);
    ep["hbone"] = json!(true);
    let cfg = config(vec![ep], json!({}));
    let waypoint_cert = cert(&ca, "test", "waypoint");
    let wp = TestWaypoint::start_with(&cfg, |o| {
        o.hbone_addr = Some("127.0.0.1:0".parse().unwrap());
        o.cert = Some(waypoint_cert.clone());
    })
    .await;
    let hbone_addr = wp.w().bound().hbone.unwrap();

    // The client workload tunnels to the service VIP through the waypoint.
    let web = cert(&ca, "shop", "web");
    let client = HboneClient::new(HboneConfig::default());
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "baggage",
        "k8s.namespace.name=shop,k8s.deployment.name=web,service.name=web,service.version=v7"
            .parse()
            .unwrap(),
    );
    headers.insert("forwarded", "for=10.1.2.3".parse().unwrap());
    let waypoint_id = SpiffeId::new("cluster.local", "test", "waypoint");
    for version in [http::Version::HTTP_11, http::Version::HTTP_2] {
        let stream = client
            .connect(
                &web,
                hbone_addr,
                Some(&waypoint_id),
                "10.96.0.10:80",
                headers.clone(),
            )
            .await
            .unwrap();
        let io = TokioIo::new(stream);
        let req = http::Request::get("http://echo.test.svc.cluster.local/via-hbone")
            .version(version)
            .header("host", SVC)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = if version == http::Version::HTTP_2 {
            let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            send.send_request(req).await.unwrap()
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            let (mut p, b) = req.into_parts();
            p.uri = "/via-hbone".parse().unwrap();
            send.send_request(http::Request::from_parts(p, b))
                .await
                .unwrap()
        };
        assert_eq!(resp.status(), 200, "{version:?}");
        assert_eq!(resp.headers()["x-upstream"], "a");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(body.starts_with(b"a "));
    }

    // The node proxy saw the waypoint's identity and the endpoint address.
    let s = seen.lock().clone();
    assert!(!s.is_empty());
    for (peer, authority) in &s {
        assert_eq!(
            peer.as_deref(),
            Some("spiffe://cluster.local/ns/test/sa/waypoint")
        );
        assert_eq!(authority, &up.addr.to_string());
    }

    let m = wp.metrics().await;
    let labels = [
        ("source_principal", "spiffe://cluster.local/ns/shop/sa/web"),
        ("source_workload", "web"),
        ("source_workload_namespace", "shop"),
        ("source_canonical_service", "web"),
        ("source_version", "v7"),
        ("connection_security_policy", "mutual_tls"),
        ("destination_service", SVC),
        ("destination_workload", "a"),
        ("response_code", "200"),
    ];
    assert_eq!(
        metric(&m, "istio_requests_total", &labels),
        Some(2.0),
        "{m}"
    );

    // An unknown CONNECT target still gets HTTP answers: 404 NR.
    let stream = client
        .connect(
            &web,
            hbone_addr,
            Some(&waypoint_id),
            "10.200.0.1:8080",
            http::HeaderMap::new(),
        )
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(
            http::Request::get("/")
                .header("host", "unknown:8080")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    stop.cancel();
}
