//! File mode end to end on loopback: the operator loads a directory, pushes
//! over TLS to a ztunnel and a waypoint client, reacts to edits, keeps the
//! last good configuration on bad edits, fetches JWKS and modules, signs
//! CSRs for authenticated nodes, marks the waypoint Programmed, and a
//! restarted operator resynchronises its clients.

use mesh_common::ca::generate_csr;
use mesh_common::identity::SpiffeId;
use mesh_common::model::ProxyKind;
use mesh_common::xds::CsrRequest;
use mesh_common::xds::client::{XdsClient, XdsClientConfig, fetch_module, request_certificate};
use mesh_common::xds::transport::Endpoint;
use operator::run::{CommonConfig, FileModeConfig, Running, start_file_mode};
use operator::translate::status::StatusTarget;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn client_tls(roots_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in mesh_common::ca::certs_from_pem(roots_pem).unwrap() {
        roots.add(c).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

async fn start(dir: &Path, state: &Path, port: u16) -> Running {
    let mut common = CommonConfig::new(state.to_path_buf());
    common.listen = format!("127.0.0.1:{port}").parse().unwrap();
    common.debug_listen = Some("127.0.0.1:0".parse().unwrap());
    common.rollout_interval = Duration::from_millis(200);
    start_file_mode(
        FileModeConfig {
            config_dir: dir.to_path_buf(),
            inventory: Some(dir.join("inventory.yaml")),
            common,
        },
        None,
    )
    .await
    .unwrap()
}

/// A tiny HTTP server answering every request with `body`.
async fn serve_static(
    body: &'static str,
) -> (std::net::SocketAddr, tokio_util::sync::CancellationToken) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let h: mesh_common::xds::transport::Handler = Arc::new(move |_req, _| {
        Box::pin(async move {
            mesh_common::xds::transport::full(http::StatusCode::OK, "application/json", body)
        })
    });
    tokio::spawn(mesh_common::xds::transport::serve(l, None, h, stop.clone()));
    (addr, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_mode_end_to_end() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("config");
    let state = tmp.path().join("state");
    copy_dir(
        &std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("tests/data/seed"),
        &dir,
    );
    // A RequestAuthentication whose JWKS a local server serves, and a user filter from a file.
    let (jwks_addr, jwks_stop) = serve_static(r#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"k1"}]}"#).await;
    std::fs::write(
        dir.join("08-local-jwt.yaml"),
        format!("apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: local-jwt, namespace: shop}}\nspec:\n  targetRefs: [{{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}}]\n  jwtRules:\n  - issuer: local\n    jwksUri: http://{jwks_addr}/jwks.json\n"),
    )
    .unwrap();
    let module_path = tmp.path().join("hello.wasm");
    std::fs::write(&module_path, b"\0asm\x01\0\0\0").unwrap();
    let sha = operator::modules::digest(b"\0asm\x01\0\0\0");
    std::fs::write(
        dir.join("09-plugin.yaml"),
        format!("apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {{name: hello, namespace: shop}}\nspec:\n  targetRefs: [{{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}}]\n  url: file://{}\n  sha256: {sha}\n  pluginConfig: {{greeting: hi}}\n  limits: {{memory: 16Mi, cpu: 5ms}}\n  capabilities: [log]\n", module_path.display()),
    )
    .unwrap();

    let op = start(&dir, &state, 0).await;
    let port = op.push_addr.port();
    let endpoint = Endpoint {
        uri: format!("https://127.0.0.1:{port}").parse().unwrap(),
        tls: Some(client_tls(&op.roots_pem)),
        server_name: Some("localhost".into()),
    };

    // ztunnel
    let mut zcfg = XdsClientConfig::new(endpoint.clone(), "node-2", ProxyKind::Ztunnel);
    zcfg.initial_backoff = Duration::from_millis(50);
    zcfg.max_backoff = Duration::from_millis(300);
    let zt = XdsClient::start(zcfg, |_u: &mesh_common::xds::client::Update<'_>| Ok(()));
    zt.wait_synced(WAIT).await.unwrap();
    let st = zt.last_good();
    assert_eq!(st.workloads.len(), 4);
    assert!(st.authorizations.contains_key("shop/orders-allow-web"));
    assert!(
        st.services["shop/orders.shop.svc.cluster.local"]
            .waypoint
            .is_some()
    );

    // waypoint: its config, then Programmed=True once it acknowledged
    let gw = StatusTarget::new("Gateway", "shop", "waypoint");
    let programmed = |op: &Running| {
        op.controller
            .translation()
            .and_then(|t| t.statuses.condition(&gw, "Programmed").map(|c| c.status))
    };
    assert_eq!(programmed(&op), Some(false));
    let mut wcfg = XdsClientConfig::new(endpoint.clone(), "waypoint-0", ProxyKind::Waypoint);
    wcfg.resource_names = vec!["shop/waypoint".into()];
    wcfg.initial_backoff = Duration::from_millis(50);
    wcfg.max_backoff = Duration::from_millis(300);
    let wp = XdsClient::start(wcfg, |_u: &mesh_common::xds::client::Update<'_>| Ok(()));
    wp.wait_synced(WAIT).await.unwrap();
    eventually("Programmed=True", || programmed(&op) == Some(true)).await;

    // JWKS fetched from jwksUri and inlined; the module fetched, digest-checked and served.
    eventually("jwks inlined", || {
        wp.last_good()
            .waypoints
            .get("shop/waypoint")
            .is_some_and(|w| {
                w.filters.iter().any(|f| {
                    f.name == "jwt"
                        && f.config
                            .to_string()
                            .contains("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU")
                })
            })
    })
    .await;
    eventually("module delivered", || {
        wp.last_good()
            .waypoints
            .get("shop/waypoint")
            .is_some_and(|w| {
                w.filters
                    .iter()
                    .any(|f| f.name == "shop/hello" && f.module.sha256 == sha)
            })
    })
    .await;
    let cfg = wp.last_good().waypoints["shop/waypoint"].clone();
    let hello = cfg.filters.iter().find(|f| f.name == "shop/hello").unwrap();
    assert_eq!(hello.limits.memory_bytes, Some(16 * 1024 * 1024));
    assert_eq!(hello.config["greeting"], "hi");
    assert_eq!(
        &fetch_module(&endpoint, &sha).await.unwrap()[..],
        b"\0asm\x01\0\0\0"
    );

    // An edit reaches the ztunnel: a new namespace-wide DENY.
    std::fs::write(dir.join("10-deny.yaml"), "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-probe, namespace: shop}\nspec: {action: DENY, rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/probe]}}]}]}\n").unwrap();
    eventually("edit pushed", || {
        zt.last_good()
            .authorizations
            .contains_key("shop/deny-probe")
    })
    .await;
    // A bad edit is rejected: the previous version keeps serving.
    std::fs::write(dir.join("10-deny.yaml"), "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-probe, namespace: shop}\nspec: {action: DENY}\n").unwrap();
    eventually("bad edit reported", || {
        op.controller
            .diagnostics()
            .iter()
            .any(|d| d.message.contains("DENY action without `rules`"))
    })
    .await;
    assert!(zt.last_good().authorizations["shop/deny-probe"].rules.len() == 1);
    // Broken YAML in a file: its last good content stays.
    std::fs::write(dir.join("10-deny.yaml"), "apiVersion: [unterminated\n").unwrap();
    eventually("yaml error reported", || {
        op.controller
            .diagnostics()
            .iter()
            .any(|d| d.message.contains("invalid YAML"))
    })
    .await;
    assert!(
        zt.last_good()
            .authorizations
            .contains_key("shop/deny-probe")
    );

    // CA: node token, identity on that node.
    let (csr, _key) = generate_csr(&SpiffeId::new("cluster.local", "shop", "orders")).unwrap();
    let issued = request_certificate(
        &endpoint,
        Some("node-2-token"),
        &CsrRequest {
            csr: csr.clone(),
            ttl_seconds: Some(3600),
            node: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        issued.identity,
        SpiffeId::new("cluster.local", "shop", "orders")
    );
    assert!(issued.not_after_unix - issued.not_before_unix <= 3600 + 120);
    let e = request_certificate(
        &endpoint,
        Some("node-1-token"),
        &CsrRequest {
            csr: csr.clone(),
            ttl_seconds: None,
            node: None,
        },
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains("403") && e.to_string().contains("node node-1 runs no workload"),
        "{e}"
    );
    let e = request_certificate(
        &endpoint,
        Some("wrong"),
        &CsrRequest {
            csr: csr.clone(),
            ttl_seconds: None,
            node: None,
        },
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("401"), "{e}");
    let e = request_certificate(
        &endpoint,
        None,
        &CsrRequest {
            csr,
            ttl_seconds: None,
            node: None,
        },
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("401"), "{e}");
    let (wcsr, _) = generate_csr(&SpiffeId::new("cluster.local", "shop", "waypoint")).unwrap();
    request_certificate(
        &endpoint,
        Some("node-1-token"),
        &CsrRequest {
            csr: wcsr,
            ttl_seconds: None,
            node: None,
        },
    )
    .await
    .unwrap();

    // Debug endpoint.
    let dbg = op.debug_addr.unwrap();
    let tls = operator::fetch::client_config(None);
    let body = operator::fetch::get(&format!("http://{dbg}/debug/clients"), &tls, WAIT, None)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&body).contains("node-2"));
    let body = operator::fetch::get(
        &format!("http://{dbg}/debug/analyze?namespace=shop"),
        &tls,
        WAIT,
        None,
    )
    .await
    .unwrap();
    assert!(String::from_utf8_lossy(&body).contains("IST0109"));

    // Restart: clients keep serving meanwhile and resync; the CA keeps its root.
    let roots = op.roots_pem.clone();
    op.stop().await;
    eventually("clients notice", || !zt.status().borrow().connected).await;
    assert!(
        zt.last_good()
            .authorizations
            .contains_key("shop/deny-probe"),
        "last good kept while the operator is away"
    );
    std::fs::write(dir.join("10-deny.yaml"), "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-web, namespace: shop}\nspec: {action: DENY, rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]}]}\n").unwrap();
    let op2 = start(&dir, &state, port).await;
    assert_eq!(op2.roots_pem, roots, "CA persisted");
    eventually("resynced after restart", || {
        let s = zt.last_good();
        s.authorizations.contains_key("shop/deny-web")
            && !s.authorizations.contains_key("shop/deny-probe")
    })
    .await;
    assert!(zt.status().borrow().connects >= 2);
    op2.stop().await;
    jwks_stop.cancel();
}

/// JWKS sources are fetched as istiod does: a failed first fetch is
/// retried right away (here: the server fails twice, then answers), and a
/// source that keeps failing does not hold up the others' keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_first_fetch_retries_and_sources_do_not_wait_for_each_other() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let _ = rustls::crypto::ring::default_provider().install_default();
    const KEY: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    // Fails its first two requests, then serves the key set.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let flaky = l.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let hits = Arc::new(AtomicU32::new(0));
    let h: mesh_common::xds::transport::Handler = {
        let hits = hits.clone();
        Arc::new(move |_req, _| {
            let n = hits.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if n < 2 {
                    mesh_common::xds::transport::full(
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        "down",
                    )
                } else {
                    mesh_common::xds::transport::full(
                        http::StatusCode::OK,
                        "application/json",
                        r#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"k1"}]}"#,
                    )
                }
            })
        })
    };
    tokio::spawn(mesh_common::xds::transport::serve(l, None, h, stop.clone()));
    // A source that never answers (connection refused).
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("config");
    copy_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/seed"),
        &dir,
    );
    std::fs::write(
        dir.join("08-jwt.yaml"),
        format!(
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: two, namespace: shop}}\nspec:\n  targetRefs: [{{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}}]\n  jwtRules:\n  - issuer: dead\n    jwksUri: http://{dead}/jwks.json\n  - issuer: flaky\n    jwksUri: http://{flaky}/jwks.json\n"
        ),
    )
    .unwrap();
    let snap = operator::source::file::load(&dir, Some(&dir.join("inventory.yaml"))).unwrap();
    let c = operator::controller::Controller::new(mesh_common::xds::store::ConfigStore::new());
    c.apply(snap).unwrap();
    let timing = operator::jwks::JwksTiming {
        retries: 7,
        retry_spacing: Duration::from_millis(300),
        ..Default::default()
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let tls = Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    );
    tokio::spawn(operator::jwks::run(
        c.clone(),
        tls,
        timing,
        shutdown.clone(),
    ));
    let start = tokio::time::Instant::now();
    let inlined = || {
        c.translation().is_some_and(|t| {
            t.waypoints[0]
                .filters
                .iter()
                .any(|f| f.name == "jwt" && f.config.to_string().contains(KEY))
        })
    };
    eventually("the flaky source's keys", inlined).await;
    let took = start.elapsed();
    assert!(
        hits.load(Ordering::SeqCst) >= 3,
        "retried after two failures"
    );
    // Two failures 300 ms apart: well under the dead source's seven
    // retries (2.1 s) and the 60 s of the failure backoff.
    assert!(took < Duration::from_millis(1800), "{took:?}");
    shutdown.cancel();
    stop.cancel();
}
