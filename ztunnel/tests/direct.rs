//! In-process tests: two ztunnels in shared mode on loopback addresses, real
//! certificates from a CSR-signing CA, real HBONE between them, real TCP
//! apps behind them. Outbound connections are handed to the source proxy
//! with their original destination (what `SO_ORIGINAL_DST` provides under
//! capture; capture itself is covered by `namespaced.rs`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use mesh_common::ca::CertificateAuthority;
use mesh_common::hbone::{HboneConfig, HboneServer, InboundRequest};
use mesh_common::identity::SpiffeId;
use mesh_common::model::policy::{RbacAction, RbacMatch, RbacScope, StringMatch};
use mesh_common::model::{
    Authorization, Endpoint, Service, ServicePort, TrafficType, TunnelProtocol, WaypointBinding,
    Workload,
};
use mesh_common::tls::{self, RotatingCert};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use ztunnel::Ztunnel;
use ztunnel::certs::LocalCa;
use ztunnel::config::{ConfigInputs, construct_config};
use ztunnel::registry::{Change, Snapshot};
use ztunnel::source::StaticSource;

const TD: &str = "cluster.local";

fn ip(net: u8, host: u8) -> IpAddr {
    IpAddr::from([127, 10, net, host])
}

fn workload(name: &str, node: &str, ip: IpAddr, sa: &str) -> Workload {
    Workload {
        uid: format!("Kubernetes//Pod/shop/{name}"),
        name: name.into(),
        namespace: "shop".into(),
        service_account: sa.into(),
        node: node.into(),
        addresses: vec![ip],
        protocol: TunnelProtocol::Hbone,
        trust_domain: TD.into(),
        ..Default::default()
    }
}

fn uid(name: &str) -> String {
    format!("Kubernetes//Pod/shop/{name}")
}

/// A TCP app: greets with its name, then echoes until EOF.
async fn app(addr: SocketAddr, name: &'static str, stop: CancellationToken) {
    let l = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = tokio::select! {
                r = l.accept() => r.unwrap(),
                _ = stop.cancelled() => return,
            };
            tokio::spawn(async move {
                s.write_all(format!("hello from {name}\n").as_bytes())
                    .await
                    .ok();
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
}

struct Mesh {
    net: u8,
    ca: Arc<CertificateAuthority>,
    zt1: Ztunnel,
    zt2: Ztunnel,
    stop: CancellationToken,
}

impl Mesh {
    /// Node n1: client `a` (sa client) and `x` (sa intruder). Node n2:
    /// server `b` (sa server, app on :8080), `c` (sa other). Service `svc`
    /// (VIP 10.96.<net>.1:80 → 8080) selects `b`.
    async fn new(net: u8, extra: Snapshot) -> Self {
        let ca = Arc::new(CertificateAuthority::new_root(TD, Duration::from_secs(3600)).unwrap());
        let stop = CancellationToken::new();
        app(SocketAddr::new(ip(net, 2), 8080), "b", stop.clone()).await;
        app(SocketAddr::new(ip(net, 3), 8080), "c", stop.clone()).await;
        let mut snap = Snapshot {
            workloads: vec![
                workload("a", "n1", ip(net, 1), "client"),
                workload("x", "n1", ip(net, 4), "intruder"),
                workload("b", "n2", ip(net, 2), "server"),
                workload("c", "n2", ip(net, 3), "other"),
            ],
            services: vec![Service {
                name: "svc".into(),
                namespace: "shop".into(),
                hostname: "svc.shop.svc.cluster.local".into(),
                vips: vec![IpAddr::from([10, 96, net, 1])],
                ports: vec![ServicePort {
                    port: 80,
                    target_port: 8080,
                    ..Default::default()
                }],
                endpoints: vec![Endpoint {
                    workload_uid: uid("b"),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            authorizations: vec![],
        };
        snap.workloads.extend(extra.workloads);
        snap.services.extend(extra.services);
        snap.authorizations.extend(extra.authorizations);
        let zt1 = start(&ca, "n1", snap.clone()).await;
        let zt2 = start(&ca, "n2", snap).await;
        Self {
            net,
            ca,
            zt1,
            zt2,
            stop,
        }
    }

    fn vip(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::from([10, 96, self.net, 1]), 80)
    }

    fn b(&self) -> SocketAddr {
        SocketAddr::new(ip(self.net, 2), 8080)
    }

    fn apply_both(&self, change: Change) {
        self.zt1.registry.apply(change.clone());
        self.zt2.registry.apply(change);
    }

    async fn shutdown(self) {
        self.stop.cancel();
        self.zt1.shutdown().await;
        self.zt2.shutdown().await;
    }
}

async fn start(ca: &Arc<CertificateAuthority>, node: &str, snap: Snapshot) -> Ztunnel {
    let cfg = construct_config(ConfigInputs {
        node: node.into(),
        capture: Some("shared".into()),
        admin_addr: Some("127.0.0.1:0".into()),
        metrics_addr: Some("127.0.0.1:0".into()),
        readiness_addr: Some("127.0.0.1:0".into()),
        ..Default::default()
    })
    .unwrap();
    let zt = Ztunnel::start(
        cfg,
        Box::new(StaticSource(snap)),
        Arc::new(LocalCa(ca.clone())),
        None,
    )
    .await
    .unwrap();
    assert!(
        zt.wait_ready(Duration::from_secs(10)).await,
        "ztunnel {node} not ready"
    );
    zt
}

/// Opens a connection "from" workload `src` to `dst` through its ztunnel,
/// as if captured.
async fn dial(zt: &Ztunnel, src: &str, dst: SocketAddr) -> TcpStream {
    let proxy = zt.manager.proxy(&uid(src)).expect("source not enrolled");
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (captured, _) = l.accept().await.unwrap();
    tokio::spawn(proxy.proxy_outbound(captured, dst));
    client
}

async fn read_line(s: &mut TcpStream) -> Option<String> {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await {
            Ok(Ok(1)) if b[0] == b'\n' => return String::from_utf8(out).ok(),
            Ok(Ok(1)) => out.push(b[0]),
            _ => return None,
        }
    }
}

async fn http_get(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn allow_principal(principal: &str) -> Authorization {
    Authorization {
        name: "allow-client".into(),
        namespace: "shop".into(),
        scope: RbacScope::Namespace,
        action: RbacAction::Allow,
        rules: vec![vec![vec![RbacMatch {
            principals: vec![StringMatch::parse(principal)],
            ..Default::default()
        }]]],
        dry_run: false,
    }
}

fn deny_all_allow() -> Authorization {
    // `spec: {}`: ALLOW with no rules ⇒ deny everything in the namespace.
    Authorization {
        name: "deny-all".into(),
        namespace: "shop".into(),
        scope: RbacScope::Namespace,
        action: RbacAction::Allow,
        rules: vec![],
        dry_run: false,
    }
}

#[tokio::test]
async fn pod_to_pod_by_ip_and_by_vip_with_metrics() {
    let mesh = Mesh::new(1, Snapshot::default()).await;
    for dst in [mesh.b(), mesh.vip()] {
        let mut s = dial(&mesh.zt1, "a", dst).await;
        assert_eq!(
            read_line(&mut s).await.as_deref(),
            Some("hello from b"),
            "via {dst}"
        );
        s.write_all(b"ping\n").await.unwrap();
        assert_eq!(read_line(&mut s).await.as_deref(), Some("ping"));
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
    }
    // One pooled HBONE connection from a to b carried both streams.
    assert_eq!(
        mesh.zt1
            .manager
            .proxy(&uid("a"))
            .unwrap()
            .pooled_connections(),
        1
    );

    tokio::time::sleep(Duration::from_millis(100)).await;
    let (code, m1) = http_get(mesh.zt1.metrics_addr.unwrap(), "GET", "/metrics").await;
    assert_eq!(code, 200);
    let (_, m2) = http_get(mesh.zt2.metrics_addr.unwrap(), "GET", "/metrics").await;
    let src_line = m1
        .lines()
        .find(|l| {
            l.starts_with("istio_tcp_connections_opened_total{")
                && l.contains("reporter=\"source\"")
                && l.contains("destination_service=\"svc.shop.svc.cluster.local\"")
        })
        .unwrap_or_else(|| panic!("no source metric in\n{m1}"));
    assert!(src_line.contains("source_principal=\"spiffe://cluster.local/ns/shop/sa/client\""));
    assert!(
        src_line.contains("destination_principal=\"spiffe://cluster.local/ns/shop/sa/server\"")
    );
    assert!(src_line.contains("connection_security_policy=\"mutual_tls\""));
    assert!(src_line.ends_with(" 1"), "{src_line}");
    let dst_line = m2
        .lines()
        .find(|l| {
            l.starts_with("istio_tcp_received_bytes_total{")
                && l.contains("reporter=\"destination\"")
        })
        .unwrap_or_else(|| panic!("no destination metric in\n{m2}"));
    assert!(dst_line.contains("destination_workload=\"b\""));
    assert!(dst_line.contains("source_workload=\"a\""), "{dst_line}");
    // "ping\n" twice.
    assert!(dst_line.ends_with(" 10"), "{dst_line}");
    assert!(m2.contains("istio_tcp_connections_closed_total{"));
    assert!(m2.contains("istio_tcp_sent_bytes_total{"));
    mesh.shutdown().await;
}

#[tokio::test]
async fn deny_all_then_allow_one_principal_and_live_recheck() {
    let mesh = Mesh::new(2, Snapshot::default()).await;
    // No policy: both clients reach b.
    let mut live_x = dial(&mesh.zt1, "x", mesh.b()).await;
    assert_eq!(
        read_line(&mut live_x).await.as_deref(),
        Some("hello from b")
    );

    mesh.apply_both(Change::Authorizations {
        upserts: vec![
            deny_all_allow(),
            allow_principal("cluster.local/ns/shop/sa/client"),
        ],
        removals: vec![],
    });
    // The live connection of the intruder is closed by the re-check.
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(5), live_x.read(&mut buf)).await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "live connection not closed: {r:?}"
    );

    let mut ok = dial(&mesh.zt1, "a", mesh.b()).await;
    assert_eq!(read_line(&mut ok).await.as_deref(), Some("hello from b"));
    let mut denied = dial(&mesh.zt1, "x", mesh.b()).await;
    assert_eq!(read_line(&mut denied).await, None);

    // The denial is visible in the destination's metrics.
    let (_, m2) = http_get(mesh.zt2.metrics_addr.unwrap(), "GET", "/metrics").await;
    assert!(
        m2.lines()
            .any(|l| l.starts_with("istio_tcp_connections_closed_total{")
                && l.contains("response_flags=\"AuthorizationPolicyDenied\"")
                && l.contains("source_principal=\"spiffe://cluster.local/ns/shop/sa/intruder\"")),
        "{m2}"
    );

    // Removing the deny-all leaves only an ALLOW for client: x still denied.
    mesh.apply_both(Change::Authorizations {
        upserts: vec![],
        removals: vec!["shop/deny-all".into()],
    });
    let mut denied = dial(&mesh.zt1, "x", mesh.b()).await;
    assert_eq!(read_line(&mut denied).await, None);
    // Removing every policy allows again.
    mesh.apply_both(Change::Authorizations {
        upserts: vec![],
        removals: vec!["shop/allow-client".into()],
    });
    let mut again = dial(&mesh.zt1, "x", mesh.b()).await;
    assert_eq!(read_line(&mut again).await.as_deref(), Some("hello from b"));
    mesh.shutdown().await;
}

#[tokio::test]
async fn deny_policy_on_port_and_not_namespaces() {
    // DENY from everything outside namespace `shop` and DENY to port 9090:
    // the in-namespace client still reaches :8080.
    let deny = Authorization {
        name: "deny".into(),
        namespace: "shop".into(),
        scope: RbacScope::Namespace,
        action: RbacAction::Deny,
        rules: vec![
            vec![vec![RbacMatch {
                not_namespaces: vec![StringMatch::parse("shop")],
                ..Default::default()
            }]],
            vec![
                vec![RbacMatch {
                    destination_ports: vec![8080],
                    ..Default::default()
                }],
                vec![RbacMatch {
                    principals: vec![StringMatch::parse("*/sa/intruder")],
                    ..Default::default()
                }],
            ],
        ],
        dry_run: false,
    };
    let mesh = Mesh::new(
        3,
        Snapshot {
            authorizations: vec![deny],
            ..Default::default()
        },
    )
    .await;
    let mut ok = dial(&mesh.zt1, "a", mesh.b()).await;
    assert_eq!(read_line(&mut ok).await.as_deref(), Some("hello from b"));
    let mut denied = dial(&mesh.zt1, "x", mesh.b()).await;
    assert_eq!(read_line(&mut denied).await, None);
    mesh.shutdown().await;
}

/// A stand-in waypoint: an HBONE server with the waypoint's identity that
/// answers every CONNECT with what it saw.
async fn fake_waypoint(ca: &CertificateAuthority, addr: SocketAddr, stop: CancellationToken) {
    let id = SpiffeId::new(TD, "shop", "waypoint");
    let cert =
        RotatingCert::from_bundle(&ca.issue_workload(&id, Duration::from_secs(3600)).unwrap())
            .unwrap();
    let server = HboneServer::new(
        TcpListener::bind(addr).await.unwrap(),
        tls::server_config(cert).unwrap(),
        HboneConfig::default(),
    );
    tokio::spawn(server.run(
        |req: InboundRequest| async move {
            let line = format!(
                "waypoint saw {} from {}\n",
                req.authority(),
                req.peer().map(|p| p.to_string()).unwrap_or_default()
            );
            if let Ok(mut s) = req.accept() {
                s.write_all(line.as_bytes()).await.ok();
                s.shutdown().await.ok();
            }
        },
        stop,
    ));
}

#[tokio::test]
async fn service_bound_to_waypoint_goes_through_it() {
    let net = 4;
    let wp_addr = SocketAddr::new(ip(net, 9), 15008);
    let binding = WaypointBinding {
        name: "waypoint".into(),
        namespace: "shop".into(),
        addresses: vec![wp_addr.ip()],
        hbone_port: 15008,
        identity: format!("spiffe://{TD}/ns/shop/sa/waypoint"),
        traffic_type: TrafficType::Service,
    };
    let mesh = Mesh::new(net, Snapshot::default()).await;
    fake_waypoint(&mesh.ca, wp_addr, mesh.stop.clone()).await;
    let mut services: Vec<Service> = mesh
        .zt1
        .registry
        .read()
        .services()
        .map(|s| (**s).clone())
        .collect();
    services[0].waypoint = Some(binding);
    mesh.apply_both(Change::Services {
        upserts: services,
        removals: vec![],
    });
    // VIP traffic: to the waypoint, authority = VIP:port, client identity.
    let mut s = dial(&mesh.zt1, "a", mesh.vip()).await;
    assert_eq!(
        read_line(&mut s).await.as_deref(),
        Some(
            format!("waypoint saw 10.96.{net}.1:80 from spiffe://cluster.local/ns/shop/sa/client")
                .as_str()
        )
    );
    // Pod-IP traffic: a service waypoint does not apply.
    let mut s = dial(&mesh.zt1, "a", mesh.b()).await;
    assert_eq!(read_line(&mut s).await.as_deref(), Some("hello from b"));
    mesh.shutdown().await;
}

#[tokio::test]
async fn admin_endpoints_and_certificate_rotation() {
    let ca = Arc::new(CertificateAuthority::new_root(TD, Duration::from_secs(3600)).unwrap());
    let net = 5;
    let stop = CancellationToken::new();
    app(SocketAddr::new(ip(net, 2), 8080), "b", stop.clone()).await;
    let snap = Snapshot {
        workloads: vec![
            workload("a", "n1", ip(net, 1), "client"),
            workload("b", "n1", ip(net, 2), "server"),
        ],
        ..Default::default()
    };
    let cfg = construct_config(ConfigInputs {
        node: "n1".into(),
        capture: Some("shared".into()),
        admin_addr: Some("127.0.0.1:0".into()),
        metrics_addr: Some("127.0.0.1:0".into()),
        readiness_addr: Some("127.0.0.1:0".into()),
        cert_ttl: Some(Duration::from_secs(4)),
        ..Default::default()
    })
    .unwrap();
    let zt = Ztunnel::start(
        cfg,
        Box::new(StaticSource(snap)),
        Arc::new(LocalCa(ca.clone())),
        None,
    )
    .await
    .unwrap();
    assert!(zt.wait_ready(Duration::from_secs(10)).await);
    let (code, _) = http_get(zt.readiness_addr.unwrap(), "GET", "/healthz/ready").await;
    assert_eq!(code, 200);

    // A connection opened before rotation keeps working across it.
    let mut live = dial(&zt, "a", SocketAddr::new(ip(net, 2), 8080)).await;
    assert_eq!(read_line(&mut live).await.as_deref(), Some("hello from b"));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (code, dump) = http_get(zt.admin_addr.unwrap(), "GET", "/config_dump").await;
    assert_eq!(code, 200);
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(dump["workloads"].as_array().unwrap().len(), 2);
    assert_eq!(dump["enrolled"].as_array().unwrap().len(), 2);
    let certs = dump["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 2);
    let root_serial = &mesh_common::ca::summarize_pem(ca.roots_pem()).unwrap()[0].serial_number;
    for c in certs {
        assert!(c["rotations"].as_u64().unwrap() >= 1, "not rotated: {c}");
        // The dump lists the current leaf (its validity is the
        // certificate's) and the mesh root, by serial number.
        let leaf = &c["chain"][0];
        assert_eq!(leaf["notAfter"], c["notAfter"], "{c}");
        let serial = leaf["serialNumber"].as_str().unwrap();
        assert!(
            !serial.is_empty() && serial.chars().all(|x| x.is_ascii_hexdigit()),
            "{c}"
        );
        assert_eq!(
            c["roots"][0]["serialNumber"].as_str(),
            Some(root_serial.as_str()),
            "{c}"
        );
    }
    live.write_all(b"after rotation\n").await.unwrap();
    assert_eq!(
        read_line(&mut live).await.as_deref(),
        Some("after rotation")
    );
    // New connections after rotation handshake with the new certificates.
    zt.manager.proxy(&uid("a")).unwrap().clear_pool();
    let mut fresh = dial(&zt, "a", SocketAddr::new(ip(net, 2), 8080)).await;
    assert_eq!(read_line(&mut fresh).await.as_deref(), Some("hello from b"));

    // No log control in-process: the endpoint says so.
    let (code, _) = http_get(zt.admin_addr.unwrap(), "POST", "/logging?level=debug").await;
    assert_eq!(code, StatusCode::NOT_IMPLEMENTED.as_u16());
    stop.cancel();
    zt.shutdown().await;
}

#[tokio::test]
async fn unenrolled_destination_gets_plain_tcp_and_dataplane_none_is_skipped() {
    let net = 6;
    let mut plain = workload("p", "n2", ip(net, 5), "plain");
    plain.protocol = TunnelProtocol::Tcp;
    let mut opted_out = workload("o", "n1", ip(net, 6), "out");
    opted_out
        .labels
        .insert("istio.io/dataplane-mode".into(), "none".into());
    let mesh = Mesh::new(
        net,
        Snapshot {
            workloads: vec![plain, opted_out],
            ..Default::default()
        },
    )
    .await;
    let stop = CancellationToken::new();
    app(SocketAddr::new(ip(net, 5), 8080), "p", stop.clone()).await;
    let mut s = dial(&mesh.zt1, "a", SocketAddr::new(ip(net, 5), 8080)).await;
    assert_eq!(read_line(&mut s).await.as_deref(), Some("hello from p"));
    assert!(mesh.zt1.manager.proxy(&uid("o")).is_none());
    assert_eq!(mesh.zt1.manager.enrolled_uids(), vec![uid("a"), uid("x")]);
    stop.cancel();
    mesh.shutdown().await;
}

/// ztunnel against the operator's push protocol and a CA speaking the
/// `POST /v1/csr` contract (JSON `IssuedCert` answer, bearer token).
#[tokio::test]
async fn operator_push_and_remote_ca() {
    use futures::FutureExt;
    use http_body_util::BodyExt;
    use mesh_common::ca::ParsedCsr;
    use mesh_common::xds::server::XdsServer;
    use mesh_common::xds::store::ConfigStore;
    use mesh_common::xds::transport::{self, Endpoint, full};
    use ztunnel::xds::{OperatorCa, XdsSource};

    let net = 7;
    let ca = Arc::new(CertificateAuthority::new_root(TD, Duration::from_secs(3600)).unwrap());
    let store = ConfigStore::new();
    store
        .replace_all(vec![
            workload("a", "n1", ip(net, 1), "client"),
            workload("b", "n1", ip(net, 2), "server"),
        ])
        .unwrap();
    store.replace_all(Vec::<Authorization>::new()).unwrap();
    store.replace_all(Vec::<Service>::new()).unwrap();
    store.set_ready();
    let xds = XdsServer::new(store.clone());
    let csr_requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (ca2, xds2, count) = (ca.clone(), xds.clone(), csr_requests.clone());
    let handler: transport::Handler =
        Arc::new(move |req: http::Request<hyper::body::Incoming>, _info| {
            let (ca, xds, count) = (ca2.clone(), xds2.clone(), count.clone());
            async move {
                if req.uri().path() == mesh_common::xds::XDS_PATH {
                    return xds.handle(req);
                }
                // The operator's contract: bearer token, JSON CsrRequest.
                let authorized = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    == Some("Bearer s3cret");
                if !authorized {
                    return full(StatusCode::UNAUTHORIZED, "text/plain", "bad token\n");
                }
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let csr_req: mesh_common::xds::CsrRequest = serde_json::from_slice(&body).unwrap();
                if csr_req.node.as_deref() != Some("n1") {
                    return full(StatusCode::FORBIDDEN, "text/plain", "wrong node\n");
                }
                let csr = ParsedCsr::from_pem(&csr_req.csr).unwrap();
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let issued = ca.sign_csr(&csr, Duration::from_secs(600)).unwrap();
                full(
                    StatusCode::OK,
                    "application/json",
                    serde_json::to_vec(&issued).unwrap(),
                )
            }
            .boxed()
        });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = Endpoint::plaintext(listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(transport::serve(listener, None, handler, stop.clone()));

    let cfg = construct_config(ConfigInputs {
        node: "n1".into(),
        capture: Some("shared".into()),
        admin_addr: Some("off".into()),
        metrics_addr: Some("off".into()),
        readiness_addr: Some("off".into()),
        ..Default::default()
    })
    .unwrap();
    let source = XdsSource {
        endpoint: endpoint.clone(),
        node: "n1".into(),
    };
    let remote_ca = OperatorCa {
        endpoint,
        node: "n1".into(),
        token: Some("s3cret".into()),
    };
    let zt = Ztunnel::start(cfg, Box::new(source), Arc::new(remote_ca), None)
        .await
        .unwrap();
    assert!(
        zt.wait_ready(Duration::from_secs(10)).await,
        "not ready: {:?}",
        zt.manager
    );
    assert_eq!(zt.manager.enrolled_uids(), vec![uid("a"), uid("b")]);
    assert_eq!(csr_requests.load(std::sync::atomic::Ordering::SeqCst), 2);

    // A policy pushed later reaches the registry.
    store
        .update(vec![deny_all_allow()], Vec::<String>::new())
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while zt.registry.read().policies().count() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "policy not pushed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A new workload on this node is enrolled when pushed.
    store
        .update(
            vec![workload("c", "n1", ip(net, 3), "client")],
            Vec::<String>::new(),
        )
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while zt.manager.proxy(&uid("c")).is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pushed workload not enrolled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    zt.shutdown().await;
    stop.cancel();
}
