//! HBONE over real mTLS in-process: identities, rejection of foreign
//! certificates, multiplexing, half-close, rotation.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use mesh_common::ca::CertificateAuthority;
use mesh_common::hbone::{
    HboneClient, HboneConfig, HboneError, HboneServer, InboundRequest, copy_bidirectional,
};
use mesh_common::identity::SpiffeId;
use mesh_common::tls::{self, RotatingCert};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const HOUR: Duration = Duration::from_secs(3600);

fn id(td: &str, sa: &str) -> SpiffeId {
    SpiffeId::new(td, "default", sa)
}

fn cert(ca: &CertificateAuthority, sa: &str) -> Arc<RotatingCert> {
    let b = ca.issue_workload(&id(ca.trust_domain(), sa), HOUR).unwrap();
    RotatingCert::from_bundle(&b).unwrap()
}

struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    /// Number of TLS connections that reached the handler at least once.
    conns: Arc<AtomicUsize>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts a server whose handler echoes (after checking nothing) unless the
/// authority's port is 401/503, which it rejects with that status. The peer
/// identity is written first, followed by a newline.
async fn echo_server(cert: Arc<RotatingCert>, cfg: HboneConfig) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = HboneServer::new(listener, tls::server_config(cert).unwrap(), cfg);
    let addr = server.local_addr().unwrap();
    let stop = CancellationToken::new();
    let conns = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(parking_lot::Mutex::new(std::collections::HashSet::new()));
    let (c2, s2) = (conns.clone(), seen.clone());
    let handler = move |req: InboundRequest| {
        let (conns, seen) = (c2.clone(), s2.clone());
        async move {
            if seen.lock().insert(req.remote_addr()) {
                conns.fetch_add(1, Ordering::SeqCst);
            }
            let target = match req.target() {
                Ok(t) => t,
                Err(_) => return req.reject(StatusCode::BAD_REQUEST),
            };
            if let Some(status) = [401, 503].into_iter().find(|p| *p == target.port()) {
                return req.reject(StatusCode::from_u16(status).unwrap());
            }
            let peer = req.peer().map(|p| p.to_string()).unwrap_or_default();
            let mut s = req.accept().unwrap();
            s.write_all(format!("{peer}\n").as_bytes()).await.unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
            s.shutdown().await.unwrap();
        }
    };
    tokio::spawn(server.run(handler, stop.clone()));
    Server { addr, stop, conns }
}

async fn read_line<R: AsyncReadExt + Unpin>(r: &mut R) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        r.read_exact(&mut b).await.unwrap();
        if b[0] == b'\n' {
            return String::from_utf8(out).unwrap();
        }
        out.push(b[0]);
    }
}

#[tokio::test]
async fn round_trip_with_identity_and_half_close() {
    let ca = CertificateAuthority::new_root("cluster.local", HOUR).unwrap();
    let srv = echo_server(cert(&ca, "server"), HboneConfig::default()).await;
    let client = HboneClient::new(HboneConfig::default());
    let me = cert(&ca, "client");
    let expected = id("cluster.local", "server");
    let mut s = client
        .connect(
            &me,
            srv.addr,
            Some(&expected),
            "10.0.0.1:80",
            HeaderMap::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        read_line(&mut s).await,
        "spiffe://cluster.local/ns/default/sa/client"
    );
    s.write_all(b"hello").await.unwrap();
    // Half-close our side: the server sees EOF, finishes echoing, closes.
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"hello");
}

#[tokio::test]
async fn rejects_unknown_ca_and_wrong_trust_domain() {
    let ca = CertificateAuthority::new_root("cluster.local", HOUR).unwrap();
    let srv = echo_server(cert(&ca, "server"), HboneConfig::default()).await;
    let client = HboneClient::new(HboneConfig::default());

    // Client certificate from an unrelated CA.
    let foreign = CertificateAuthority::new_root("cluster.local", HOUR).unwrap();
    let err = client
        .connect(
            &cert(&foreign, "intruder"),
            srv.addr,
            None,
            "10.0.0.1:80",
            HeaderMap::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, HboneError::Handshake { .. } | HboneError::H2(_)),
        "{err}"
    );

    // Same root, but an identity in another trust domain.
    let other_td =
        CertificateAuthority::from_pem("evil.org", ca.cert_pem(), ca.key_pem(), "", ca.roots_pem())
            .unwrap();
    let err = client
        .connect(
            &cert(&other_td, "x"),
            srv.addr,
            None,
            "10.0.0.1:80",
            HeaderMap::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, HboneError::Handshake { .. } | HboneError::H2(_)),
        "{err}"
    );

    // Server presenting another identity than expected.
    let err = client
        .connect(
            &cert(&ca, "client"),
            srv.addr,
            Some(&id("cluster.local", "someone-else")),
            "10.0.0.1:80",
            HeaderMap::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, HboneError::Handshake { .. }), "{err}");
    assert!(err.to_string().contains("not the expected"), "{err}");

    // Server certificate from a CA the client does not trust.
    let foreign_srv = echo_server(cert(&foreign, "server"), HboneConfig::default()).await;
    let err = client
        .connect(
            &cert(&ca, "client"),
            foreign_srv.addr,
            None,
            "10.0.0.1:80",
            HeaderMap::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, HboneError::Handshake { .. }), "{err}");

    // Nothing reached the handler.
    assert_eq!(srv.conns.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn status_chosen_by_handler_reaches_client() {
    let ca = CertificateAuthority::new_root("td", HOUR).unwrap();
    let srv = echo_server(cert(&ca, "server"), HboneConfig::default()).await;
    let client = HboneClient::new(HboneConfig::default());
    let me = cert(&ca, "client");
    for code in [401u16, 503] {
        let err = client
            .connect(
                &me,
                srv.addr,
                None,
                &format!("10.0.0.1:{code}"),
                HeaderMap::new(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, HboneError::Status(s) if s.as_u16() == code),
            "{err}"
        );
    }
    // Rejections do not poison the pooled connection.
    let mut s = client
        .connect(&me, srv.addr, None, "10.0.0.1:80", HeaderMap::new())
        .await
        .unwrap();
    read_line(&mut s).await;
    assert_eq!(client.connection_count(), 1);
}

#[tokio::test]
async fn many_streams_share_pooled_connections() {
    let ca = CertificateAuthority::new_root("td", HOUR).unwrap();
    let srv = echo_server(cert(&ca, "server"), HboneConfig::default()).await;
    let client = Arc::new(HboneClient::new(HboneConfig::default()));
    let me = cert(&ca, "client");
    let mut tasks = Vec::new();
    for i in 0..64u32 {
        let (client, me) = (client.clone(), me.clone());
        let addr = srv.addr;
        tasks.push(tokio::spawn(async move {
            let mut s = client
                .connect(&me, addr, None, "10.0.0.1:80", HeaderMap::new())
                .await
                .unwrap();
            read_line(&mut s).await;
            let msg = format!("stream-{i}");
            s.write_all(msg.as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
            let mut back = String::new();
            s.read_to_string(&mut back).await.unwrap();
            assert_eq!(back, msg);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(client.connection_count(), 1);
    assert_eq!(srv.conns.load(Ordering::SeqCst), 1);

    // With a limit of 4 streams per connection, 10 concurrently open streams
    // need 3 connections.
    let cfg = HboneConfig {
        max_streams_per_connection: 4,
        ..HboneConfig::default()
    };
    let srv = echo_server(cert(&ca, "server"), cfg.clone()).await;
    let client = HboneClient::new(cfg);
    let mut open = Vec::new();
    for _ in 0..10 {
        let mut s = client
            .connect(&me, srv.addr, None, "10.0.0.1:80", HeaderMap::new())
            .await
            .unwrap();
        read_line(&mut s).await;
        open.push(s);
    }
    assert_eq!(client.connection_count(), 3);
    assert_eq!(srv.conns.load(Ordering::SeqCst), 3);
    // Closed streams free their slots: the next one reuses a connection.
    open.truncate(5);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _s = client
        .connect(&me, srv.addr, None, "10.0.0.1:80", HeaderMap::new())
        .await
        .unwrap();
    assert_eq!(client.connection_count(), 3);
}

#[tokio::test]
async fn dead_connections_are_dropped_from_the_pool() {
    let ca = CertificateAuthority::new_root("td", HOUR).unwrap();
    let me = cert(&ca, "client");
    let client = HboneClient::new(HboneConfig::default());
    let srv = echo_server(cert(&ca, "server"), HboneConfig::default()).await;
    let addr = srv.addr;
    let mut s = client
        .connect(&me, addr, None, "10.0.0.1:80", HeaderMap::new())
        .await
        .unwrap();
    read_line(&mut s).await;
    drop(s);
    // The server goes away (GOAWAY, then the listener closes).
    drop(srv);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(client.connection_count(), 0);
    // The next connect opens a fresh connection (to a new server).
    let srv2 = echo_server(cert(&ca, "server"), HboneConfig::default()).await;
    let mut s = client
        .connect(&me, srv2.addr, None, "10.0.0.1:80", HeaderMap::new())
        .await
        .unwrap();
    read_line(&mut s).await;
    assert_eq!(client.connection_count(), 1);
}

#[tokio::test]
async fn rotation_keeps_live_streams_and_switches_new_handshakes() {
    let ca = CertificateAuthority::new_root("td", HOUR).unwrap();
    let server_cert = cert(&ca, "server");
    let client_cert = cert(&ca, "client");
    let srv = echo_server(server_cert.clone(), HboneConfig::default()).await;
    let client = HboneClient::new(HboneConfig::default());
    let mut live = client
        .connect(
            &client_cert,
            srv.addr,
            None,
            "10.0.0.1:80",
            HeaderMap::new(),
        )
        .await
        .unwrap();
    read_line(&mut live).await;

    // CA rotation: both sides move to certificates from a new root, whose
    // bundles trust only the new root.
    let ca2 = CertificateAuthority::new_root("td", HOUR).unwrap();
    let s2 = ca2.issue_workload(&id("td", "server"), HOUR).unwrap();
    let c2 = ca2.issue_workload(&id("td", "client"), HOUR).unwrap();
    server_cert.rotate_bundle(&s2).unwrap();
    client_cert.rotate_bundle(&c2).unwrap();
    // Rotation to another identity is refused.
    let other = ca2.issue_workload(&id("td", "other"), HOUR).unwrap();
    assert!(server_cert.rotate_bundle(&other).is_err());

    // The live stream still works.
    live.write_all(b"still here").await.unwrap();
    let mut buf = [0u8; 10];
    live.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"still here");

    // A new connection handshakes with the new material.
    client.clear();
    let mut s = client
        .connect(
            &client_cert,
            srv.addr,
            None,
            "10.0.0.1:80",
            HeaderMap::new(),
        )
        .await
        .unwrap();
    assert_eq!(read_line(&mut s).await, "spiffe://td/ns/default/sa/client");

    // An old-root client is now refused.
    let old = cert(&ca, "client");
    let err = HboneClient::new(HboneConfig::default())
        .connect(&old, srv.addr, None, "10.0.0.1:80", HeaderMap::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, HboneError::Handshake { .. } | HboneError::H2(_)),
        "{err}"
    );
}

#[tokio::test]
async fn copy_bidirectional_moves_large_payloads_with_half_close() {
    let ca = CertificateAuthority::new_root("td", HOUR).unwrap();
    // Upstream TCP server: reads everything, then answers with its length and closes.
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = upstream.accept().await.unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        let sum: u64 = all.iter().map(|b| *b as u64).sum();
        s.write_all(format!("{} {sum}", all.len()).as_bytes())
            .await
            .unwrap();
    });
    // HBONE server proxying every CONNECT to its authority.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = HboneServer::new(
        listener,
        tls::server_config(cert(&ca, "server")).unwrap(),
        HboneConfig::default(),
    );
    let addr = server.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(server.run(
        |req: InboundRequest| async move {
            let target = req.target().unwrap();
            match TcpStream::connect(target).await {
                Ok(tcp) => {
                    let s = req.accept().unwrap();
                    copy_bidirectional(tcp, s).await.unwrap();
                }
                Err(_) => req.reject(StatusCode::SERVICE_UNAVAILABLE),
            }
        },
        stop.clone(),
    ));
    let client = HboneClient::new(HboneConfig::default());
    let me = cert(&ca, "client");
    let mut s = client
        .connect(&me, addr, None, &up_addr.to_string(), HeaderMap::new())
        .await
        .unwrap();
    let payload: Vec<u8> = (0..(24 * 1024 * 1024u32))
        .map(|i| (i % 251) as u8)
        .collect();
    let sum: u64 = payload.iter().map(|b| *b as u64).sum();
    s.write_all(&payload).await.unwrap();
    s.shutdown().await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert_eq!(answer, format!("{} {sum}", payload.len()));

    // Unreachable upstream: 503.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let err = client
        .connect(&me, addr, None, &dead_addr.to_string(), HeaderMap::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, HboneError::Status(StatusCode::SERVICE_UNAVAILABLE)),
        "{err}"
    );
    stop.cancel();
}
