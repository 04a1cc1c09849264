//! The operator's listeners: port 15012 (push stream, CA, module
//! downloads; TLS with a serving certificate from the mesh CA) and port
//! 15014 (metrics and debug, plain HTTP).

use crate::ca::CaService;
use crate::controller::Controller;
use crate::modules::ModuleStore;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use mesh_common::ca::CertificateAuthority;
use mesh_common::xds::server::XdsServer;
use mesh_common::xds::transport::{self, ConnInfo, ResponseBody, full};
use mesh_common::xds::{CSR_PATH, MODULES_PATH_PREFIX, XDS_PATH};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Server errors.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Certificate generation failed.
    #[error("cannot create the operator's serving certificate: {0}")]
    Cert(String),
    /// TLS setup failed.
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
}

/// A serving certificate for the operator, signed by the mesh CA, for
/// `dns_names` and `ips` (clients verify it against the mesh root).
pub fn serving_cert(
    ca: &CertificateAuthority,
    dns_names: &[String],
    ips: &[IpAddr],
) -> Result<
    (
        Vec<rustls_pki_types::CertificateDer<'static>>,
        rustls_pki_types::PrivateKeyDer<'static>,
    ),
    ServerError,
> {
    let e = |x: rcgen::Error| ServerError::Cert(x.to_string());
    let ca_key = rcgen::KeyPair::from_pem(ca.key_pem()).map_err(e)?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(ca.cert_pem(), ca_key).map_err(e)?;
    let mut params = rcgen::CertificateParams::new(dns_names.to_vec()).map_err(e)?;
    for ip in ips {
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(*ip));
    }
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mesh-operator");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(365);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().map_err(e)?;
    let cert = params.signed_by(&key, &issuer).map_err(e)?;
    let mut chain = vec![cert.der().clone()];
    // Include the intermediate so clients holding only the root verify.
    if let Ok(certs) = mesh_common::ca::certs_from_pem(ca.cert_pem()) {
        chain.extend(certs);
    }
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    Ok((chain, key))
}

/// TLS config of port 15012: client certificates optional (a proxy has
/// none before its first CSR), verified against the mesh roots when sent.
pub fn tls_config(
    ca: &CertificateAuthority,
    dns_names: &[String],
    ips: &[IpAddr],
) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let (chain, key) = serving_cert(ca, dns_names, ips)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in mesh_common::ca::certs_from_pem(ca.roots_pem())
        .map_err(|e| ServerError::Cert(e.to_string()))?
    {
        roots.add(c)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| ServerError::Cert(e.to_string()))?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    Ok(Arc::new(cfg))
}

/// What port 15012 serves.
pub struct PushServices {
    /// Push stream.
    pub xds: Arc<XdsServer>,
    /// CA (absent ⇒ 404).
    pub ca: Option<Arc<CaService>>,
    /// Modules.
    pub modules: Arc<ModuleStore>,
    /// Refuse the push stream to callers without a mesh client certificate.
    pub require_client_cert: bool,
}

/// The 15012 request handler.
pub fn push_handler(s: Arc<PushServices>) -> transport::Handler {
    Arc::new(move |req: Request<Incoming>, info: Arc<ConnInfo>| {
        let s = s.clone();
        Box::pin(async move {
            let path = req.uri().path().to_string();
            if path == XDS_PATH {
                if s.require_client_cert
                    && info.peer_certificates.as_ref().is_none_or(|c| c.is_empty())
                {
                    return full(
                        StatusCode::UNAUTHORIZED,
                        "text/plain",
                        "the push stream needs a mesh client certificate (obtain one with POST /v1/csr)\n",
                    );
                }
                return s.xds.handle(req);
            }
            if path == CSR_PATH {
                return match &s.ca {
                    Some(ca) => ca.handle(req).await,
                    None => full(StatusCode::NOT_FOUND, "text/plain", "CA disabled\n"),
                };
            }
            if path == "/v1/roots" {
                return match &s.ca {
                    Some(ca) => full(
                        StatusCode::OK,
                        "application/x-pem-file",
                        ca.roots_pem().to_string(),
                    ),
                    None => full(StatusCode::NOT_FOUND, "text/plain", "CA disabled\n"),
                };
            }
            if let Some(sha) = path.strip_prefix(MODULES_PATH_PREFIX) {
                return match s.modules.get(sha) {
                    Some(b) => full(StatusCode::OK, "application/wasm", b),
                    None => full(
                        StatusCode::NOT_FOUND,
                        "text/plain",
                        format!("no module with sha256 {sha}\n"),
                    ),
                };
            }
            full(StatusCode::NOT_FOUND, "text/plain", "not found\n")
        })
    })
}

/// The 15014 (metrics/debug) request handler.
pub fn debug_handler(controller: Arc<Controller>, xds: Arc<XdsServer>) -> transport::Handler {
    Arc::new(move |req: Request<Incoming>, _info: Arc<ConnInfo>| {
        let (controller, xds) = (controller.clone(), xds.clone());
        Box::pin(async move {
            debug(
                &controller,
                &xds,
                req.uri().path(),
                req.uri().query().unwrap_or(""),
            )
        })
    })
}

fn json<T: serde::Serialize>(v: &T) -> Response<ResponseBody> {
    match serde_json::to_vec_pretty(v) {
        Ok(b) => full(StatusCode::OK, "application/json", b),
        Err(e) => full(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            e.to_string(),
        ),
    }
}

fn debug(
    controller: &Controller,
    xds: &XdsServer,
    path: &str,
    query: &str,
) -> Response<ResponseBody> {
    match path {
        "/ready" | "/healthz/ready" => {
            if xds.store().is_ready() {
                full(StatusCode::OK, "text/plain", "ready\n")
            } else {
                full(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n")
            }
        }
        "/metrics" => {
            let stats = controller.stats();
            let clients = xds.clients();
            let t = controller.translation();
            let mut s = String::new();
            s.push_str("# TYPE operator_translate_seconds gauge\n");
            s.push_str(&format!(
                "operator_translate_seconds {}\n",
                stats.translate.as_secs_f64()
            ));
            s.push_str("# TYPE operator_publish_seconds gauge\n");
            s.push_str(&format!(
                "operator_publish_seconds {}\n",
                stats.publish.as_secs_f64()
            ));
            s.push_str("# TYPE operator_connected_proxies gauge\n");
            s.push_str(&format!("operator_connected_proxies {}\n", clients.len()));
            s.push_str("# TYPE operator_config_revision gauge\n");
            s.push_str(&format!(
                "operator_config_revision {}\n",
                xds.store().revision()
            ));
            if let Some(t) = t {
                s.push_str("# TYPE operator_resources gauge\n");
                s.push_str(&format!(
                    "operator_resources{{type=\"workload\"}} {}\n",
                    t.workloads.len()
                ));
                s.push_str(&format!(
                    "operator_resources{{type=\"service\"}} {}\n",
                    t.services.len()
                ));
                s.push_str(&format!(
                    "operator_resources{{type=\"authorization\"}} {}\n",
                    t.authorizations.len()
                ));
                s.push_str(&format!(
                    "operator_resources{{type=\"waypoint\"}} {}\n",
                    t.waypoints.len()
                ));
            }
            full(StatusCode::OK, "text/plain; version=0.0.4", s)
        }
        "/debug/clients" => json(&xds.clients()),
        "/debug/status" => {
            let t = controller.translation();
            json(&serde_json::json!({
                "statuses": t.as_ref().map(|t| t.statuses.0.iter().map(|(k, v)| serde_json::json!({"target": k, "conditions": v})).collect::<Vec<_>>()),
                "diagnostics": controller.diagnostics(),
            }))
        }
        "/debug/snapshot" => {
            let Some(t) = controller.translation() else {
                return full(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "no translation yet\n",
                );
            };
            json(&serde_json::json!({
                "workloads": t.workloads, "services": t.services,
                "authorizations": t.authorizations, "waypoints": t.waypoints,
            }))
        }
        "/debug/resources" => {
            // What the operator currently serves from (after validation):
            // lets a client that changed files or the inventory wait until
            // they were loaded.
            let Some(cs) = controller.config() else {
                return full(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "no configuration yet\n",
                );
            };
            let keys: Vec<String> = cs
                .resources
                .objects()
                .iter()
                .map(|o| o.key().to_string())
                .collect();
            json(&serde_json::json!({
                "resources": keys,
                "namespaces": cs.namespaces.values().map(|n| serde_json::json!({"name": n.name, "labels": n.labels})).collect::<Vec<_>>(),
                "pods": cs.pods.iter().map(|p| serde_json::json!({"namespace": p.namespace, "name": p.name, "labels": p.labels})).collect::<Vec<_>>(),
                "services": cs.services.iter().map(|s| serde_json::json!({"namespace": s.namespace, "name": s.name, "labels": s.labels})).collect::<Vec<_>>(),
            }))
        }
        "/debug/analyze" => {
            let ns = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("namespace="))
                .filter(|s| !s.is_empty());
            match controller.config() {
                Some(cs) => json(&crate::analyze::analyze(&cs, ns)),
                None => full(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "no configuration yet\n",
                ),
            }
        }
        _ => full(
            StatusCode::NOT_FOUND,
            "text/plain",
            "endpoints: /ready /metrics /debug/clients /debug/status /debug/snapshot /debug/resources /debug/analyze?namespace=\n",
        ),
    }
}

/// Keepalive: how long a disconnected proxy's status lingers (informational).
pub const CLIENT_GRACE: Duration = Duration::from_secs(30);
