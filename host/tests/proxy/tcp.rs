//! TCP service ports through the waypoint (Istio's TCP filter chain): the
//! bytes of an HBONE CONNECT to a `tcp-*` port are forwarded unparsed to
//! an endpoint, after the L4 part of the AuthorizationPolicies decided
//! (istio-semantics.md §1.8, A16), with Istio's `istio_tcp_*` metrics.

use std::time::Duration;

use mesh_common::ca::CertificateAuthority;
use mesh_common::hbone::{HboneClient, HboneConfig};
use mesh_common::identity::SpiffeId;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const DB_PORT: u16 = 5432;

/// A waypoint serving one service with a `tcp-db` port backed by an echo
/// server, with the authz filter carrying `policies`.
async fn waypoint(ca: &CertificateAuthority, policies: Value) -> TestWaypoint {
    waypoint_with_port(ca, policies, "tcp-db").await
}

async fn waypoint_with_port(
    ca: &CertificateAuthority,
    policies: Value,
    port_name: &str,
) -> TestWaypoint {
    waypoint_with(ca, policies, port_name, json!({})).await
}

/// The same with `service` keys merged into the service (e.g.
/// `trafficPolicies`).
async fn waypoint_with(
    ca: &CertificateAuthority,
    policies: Value,
    port_name: &str,
    service: Value,
) -> TestWaypoint {
    let echo = tagged_echo("").await;
    let endpoint = endpoint_at(
        "db-0",
        "db",
        echo,
        DB_PORT,
        json!({"app": "db", "version": "v1"}),
    );
    let mut svc = json!({"ports": [{"port": DB_PORT, "targetPort": 0, "name": port_name}]});
    for (k, v) in service.as_object().into_iter().flatten() {
        svc[k] = v.clone();
    }
    let mut cfg = config(vec![endpoint], svc);
    cfg["filters"] = json!([{
        "name": "authz",
        "module": { "sha256": "", "url": guest("authz").display().to_string() },
        "config": {"trustDomain": "cluster.local", "policies": policies},
        "capabilities": [],
    }]);
    let waypoint_cert = cert(ca, "test", "waypoint");
    TestWaypoint::start_with(&cfg, |o| {
        o.hbone_addr = Some("127.0.0.1:0".parse().unwrap());
        o.cert = Some(waypoint_cert.clone());
    })
    .await
}

/// Opens a tunnel as `sa` in `shop` to the service's TCP port and echoes
/// `payload`; Err when the waypoint refused the CONNECT.
async fn exchange(
    ca: &CertificateAuthority,
    wp: &TestWaypoint,
    sa: &str,
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    let mut stream = tunnel(ca, wp, sa, DB_PORT).await?;
    stream.write_all(payload).await.map_err(|e| e.to_string())?;
    let mut got = vec![0; payload.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut got))
        .await
        .map_err(|_| "echo timed out".to_string())?
        .map_err(|e| e.to_string())?;
    stream.shutdown().await.map_err(|e| e.to_string())?;
    Ok(got)
}

/// An HBONE tunnel as `sa` in `shop` to the service VIP's `port`.
async fn tunnel(
    ca: &CertificateAuthority,
    wp: &TestWaypoint,
    sa: &str,
    port: u16,
) -> Result<mesh_common::hbone::H2Stream, String> {
    let client = HboneClient::new(HboneConfig::default());
    let id = cert(ca, "shop", sa);
    let waypoint_id = SpiffeId::new("cluster.local", "test", "waypoint");
    client
        .connect(
            &id,
            wp.w().bound().hbone.unwrap(),
            Some(&waypoint_id),
            &format!("10.96.0.10:{port}"),
            http::HeaderMap::new(),
        )
        .await
        .map_err(|e| e.to_string())
}

fn policy(name: &str, action: &str, rules: Value) -> Value {
    json!({"namespace": "test", "name": name, "action": action, "rules": rules})
}

#[tokio::test]
async fn tcp_port_is_forwarded_with_l4_policy_and_metrics() {
    let ca = CertificateAuthority::new_root("cluster.local", Duration::from_secs(86400)).unwrap();
    let wp = waypoint(
        &ca,
        json!([
            // Pure L4: applies on the TCP port.
            policy("allow-web", "ALLOW", json!([{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/web"]}}]}])),
            // Needs a method: skipped on a TCP chain, so `reader` has no allow.
            policy("allow-reader-get", "ALLOW", json!([{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/reader"]}}],
                                                        "to": [{"operation": {"methods": ["GET"]}}]}])),
        ]),
    )
    .await;

    // Not HTTP at all: a PostgreSQL-like startup message with binary bytes.
    let payload: Vec<u8> = (0u8..=255).cycle().take(64 * 1024).collect();
    let got = exchange(&ca, &wp, "web", &payload)
        .await
        .expect("web is allowed");
    assert_eq!(got, payload, "bytes came back unchanged");

    let refused = exchange(&ca, &wp, "reader", b"hello").await;
    assert!(
        refused.is_err(),
        "reader's only allow needs HTTP: {refused:?}"
    );

    // Metrics: one connection each, bytes counted for the forwarded one.
    let m = wp.metrics().await;
    let web = [
        ("reporter", "waypoint"),
        ("source_principal", "spiffe://cluster.local/ns/shop/sa/web"),
        ("destination_service", SVC),
        ("destination_workload", "db"),
        ("request_protocol", "tcp"),
        ("connection_security_policy", "mutual_tls"),
    ];
    // The close is counted when the copy ends: give it a moment.
    let mut closed = None;
    for _ in 0..50 {
        let m = wp.metrics().await;
        closed = metric(&m, "istio_tcp_connections_closed_total", &web);
        if closed == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(closed, Some(1.0), "{m}");
    assert_eq!(
        metric(&m, "istio_tcp_connections_opened_total", &web),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "istio_tcp_received_bytes_total", &web),
        Some(payload.len() as f64),
        "{m}"
    );
    assert_eq!(
        metric(&m, "istio_tcp_sent_bytes_total", &web),
        Some(payload.len() as f64),
        "{m}"
    );
    let reader = [
        (
            "source_principal",
            "spiffe://cluster.local/ns/shop/sa/reader",
        ),
        ("request_protocol", "tcp"),
    ];
    assert_eq!(
        metric(&m, "istio_tcp_connections_opened_total", &reader),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "istio_tcp_received_bytes_total", &reader),
        Some(0.0),
        "{m}"
    );
}

#[tokio::test]
async fn a16_http_only_deny_refuses_every_tcp_connection() {
    let ca = CertificateAuthority::new_root("cluster.local", Duration::from_secs(86400)).unwrap();
    let wp = waypoint(
        &ca,
        json!([policy(
            "deny-post",
            "DENY",
            json!([{"to": [{"operation": {"methods": ["POST"]}}]}])
        )]),
    )
    .await;
    let r = exchange(&ca, &wp, "web", b"ping").await;
    assert!(
        r.is_err(),
        "the method is ignored on TCP, so the DENY matches: {r:?}"
    );

    // Without the policy the same connection goes through.
    let open = waypoint(&ca, json!([])).await;
    assert_eq!(exchange(&ca, &open, "web", b"ping").await.unwrap(), b"ping");
}

#[tokio::test]
async fn undeclared_port_is_detected_http_or_tcp() {
    let ca = CertificateAuthority::new_root("cluster.local", Duration::from_secs(86400)).unwrap();
    // Binary client bytes on a port without a protocol: forwarded as TCP,
    // and the L4 policy applies (sleep has no ALLOW, web has).
    let policies = json!([policy(
        "allow-web",
        "ALLOW",
        json!([{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/web"]}}]}])
    )]);
    let wp = waypoint_with_port(&ca, policies, "").await;
    let payload = b"\x00\x00\x00\x08\x04\xd2\x16\x2f binary".to_vec();
    assert_eq!(exchange(&ca, &wp, "web", &payload).await.unwrap(), payload);
    assert!(exchange(&ca, &wp, "sleep", &payload).await.is_err());
    let m = wp.metrics().await;
    assert_eq!(
        metric(
            &m,
            "istio_tcp_connections_opened_total",
            &[("source_principal", "spiffe://cluster.local/ns/shop/sa/web")]
        ),
        Some(1.0),
        "{m}"
    );

    // An HTTP request on a port without a protocol is served as HTTP.
    let up = Upstream::start("a", "127.0.0.1").await;
    let cfg = config(
        vec![up.endpoint(&[("app", "echo")])],
        json!({"ports": [{"port": SVC_PORT, "targetPort": 0}]}),
    );
    let waypoint_cert = cert(&ca, "test", "waypoint");
    let wp = TestWaypoint::start_with(&cfg, |o| {
        o.hbone_addr = Some("127.0.0.1:0".parse().unwrap());
        o.cert = Some(waypoint_cert.clone());
    })
    .await;
    let mut s = tunnel(&ca, &wp, "web", SVC_PORT).await.unwrap();
    s.write_all(
        format!("GET /sniffed HTTP/1.1\r\nhost: {SVC}\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut resp))
        .await
        .unwrap()
        .unwrap();
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("x-upstream: a"),
        "{resp}"
    );
    let m = wp.metrics().await;
    assert_eq!(
        metric(
            &m,
            "istio_requests_total",
            &[("response_code", "200"), ("destination_service", SVC)]
        ),
        Some(1.0),
        "{m}"
    );
}

/// A raw TCP server (not HTTP: anything the waypoint parsed would break
/// the exchange) answering every read with the bytes, prefixed with
/// `<name>:` unless `name` is empty.
async fn tagged_echo(name: &'static str) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    let mut out = if name.is_empty() {
                        Vec::new()
                    } else {
                        format!("{name}:").into_bytes()
                    };
                    out.extend_from_slice(&buf[..n]);
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// VirtualService `tcp` routes at the waypoint: subsets by weight, for
/// connections on the matching port.
#[tokio::test]
async fn virtual_service_tcp_routes_pick_subsets_by_weight() {
    let ca = CertificateAuthority::new_root("cluster.local", Duration::from_secs(86400)).unwrap();
    let (v1, v2) = (tagged_echo("v1").await, tagged_echo("v2").await);
    let ep = |name: &str, addr, version: &str| {
        endpoint_at(
            name,
            name,
            addr,
            DB_PORT,
            json!({"app": "db", "version": version}),
        )
    };
    let routes = |tcp: Value| {
        json!([routing_filter(
            json!({"waypointNamespace": "test", "services": [{"host": SVC,
                "virtualServices": [{"namespace": "test", "name": "db", "http": [], "tcp": tcp}]}]})
        )])
    };
    let mut cfg = config(
        vec![ep("db-v1", v1, "v1"), ep("db-v2", v2, "v2")],
        json!({
            "ports": [{"port": DB_PORT, "targetPort": 0, "name": "tcp-db"}],
            "subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}],
        }),
    );
    cfg["filters"] = routes(json!([{
        "match": [{"port": DB_PORT}],
        "route": [{"destination": {"host": SVC, "subset": "v2"}}]
    }]));
    let waypoint_cert = cert(&ca, "test", "waypoint");
    let wp = TestWaypoint::start_with(&cfg, |o| {
        o.hbone_addr = Some("127.0.0.1:0".parse().unwrap());
        o.cert = Some(waypoint_cert.clone());
    })
    .await;
    for _ in 0..10 {
        let got = exchange_raw(&ca, &wp, b"ping").await;
        assert_eq!(got, b"v2:ping", "{}", String::from_utf8_lossy(&got));
    }

    // `sourceNamespace` is compared with the waypoint's namespace (`test`),
    // as Istio does: the first route is skipped, the second taken.
    cfg["filters"] = routes(json!([
        {"match": [{"sourceNamespace": "elsewhere"}], "route": [{"destination": {"host": SVC, "subset": "v1"}}]},
        {"match": [{"sourceNamespace": "test", "gateways": ["mesh"]}], "route": [{"destination": {"host": SVC, "subset": "v2"}}]},
        {"route": [{"destination": {"host": SVC, "subset": "v1"}}]}
    ]));
    wp.reconfigure(&cfg).await;
    for _ in 0..5 {
        let got = exchange_raw(&ca, &wp, b"ns").await;
        assert_eq!(got, b"v2:ns", "{}", String::from_utf8_lossy(&got));
    }

    // `destinationSubnets` is compared with the address the client dialled
    // (the VIP 10.96.0.10): a subnet without it is skipped, one with it
    // (or the address itself) is taken.
    cfg["filters"] = routes(json!([
        {"match": [{"destinationSubnets": ["10.97.0.0/16", "fd00::/8"]}], "route": [{"destination": {"host": SVC, "subset": "v1"}}]},
        {"match": [{"destinationSubnets": ["10.96.0.10"]}, {"destinationSubnets": ["10.96.0.0/12"]}], "route": [{"destination": {"host": SVC, "subset": "v2"}}]},
        {"route": [{"destination": {"host": SVC, "subset": "v1"}}]}
    ]));
    wp.reconfigure(&cfg).await;
    for _ in 0..5 {
        let got = exchange_raw(&ca, &wp, b"net").await;
        assert_eq!(got, b"v2:net", "{}", String::from_utf8_lossy(&got));
    }

    // 50/50: both subsets serve.
    cfg["filters"] = routes(json!([{
        "route": [{"destination": {"host": SVC, "subset": "v1"}, "weight": 50},
                  {"destination": {"host": SVC, "subset": "v2"}, "weight": 50}]
    }]));
    wp.reconfigure(&cfg).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let got = exchange_raw(&ca, &wp, b"x").await;
        seen.insert(String::from_utf8_lossy(&got[..2]).into_owned());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec!["v1", "v2"]);

    // A route for another port leaves this port on the addressed service.
    cfg["filters"] = routes(json!([{
        "match": [{"port": 1234}],
        "route": [{"destination": {"host": SVC, "subset": "v1"}}]
    }]));
    wp.reconfigure(&cfg).await;
    let got = exchange_raw(&ca, &wp, b"y").await;
    assert!(got == b"v1:y" || got == b"v2:y", "{got:?}");
}

/// Sends `msg` on a tunnel as `web` to the TCP port; returns the answer.
async fn exchange_raw(ca: &CertificateAuthority, wp: &TestWaypoint, msg: &[u8]) -> Vec<u8> {
    let mut s = tunnel(ca, wp, "web", DB_PORT).await.expect("tunnel");
    s.write_all(msg).await.unwrap();
    let mut got = vec![0u8; 3 + msg.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
        .await
        .expect("answer in time")
        .unwrap();
    got
}

/// `tcp.maxConnectionDuration` on a TCP port: the forwarded connection is
/// closed when it reaches that age (Envoy's
/// `max_downstream_connection_duration`).
#[tokio::test]
async fn max_connection_duration_closes_tcp_connections() {
    let ca = CertificateAuthority::new_root("cluster.local", Duration::from_secs(86400)).unwrap();
    let wp = waypoint_with(
        &ca,
        json!([]),
        "tcp-db",
        json!({"trafficPolicies": [{"port": DB_PORT, "connectionPool": {"maxConnectionDuration": "300ms"}}]}),
    )
    .await;
    let mut stream = tunnel(&ca, &wp, "web", DB_PORT).await.unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    stream.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ping");
    // Past the lifetime, the waypoint ends the tunnel.
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await;
    assert!(r.is_ok(), "the connection was closed by the waypoint");
}
