//! The CA service (`POST /v1/csr`): authenticate the caller, check it may
//! hold the requested identity, sign with [`mesh_common::ca`].
//!
//! # Roots and intermediates
//!
//! 1. At first start the operator creates a self-signed root (10 years) and
//!    an intermediate (1 year) signed by it, and stores both under its state
//!    directory (`root-cert.pem`, `ca-cert.pem`, `ca-key.pem`; the root key
//!    is written to `root-key.pem` only so an operator can re-issue the
//!    intermediate — move it offline in production).
//! 2. Later starts load `ca-cert.pem`/`ca-key.pem` (+ `root-cert.pem`) so
//!    issued certificates stay valid across restarts. To plug in an
//!    existing PKI, place its intermediate and root there before starting.
//! 3. Workload certificates are signed by the intermediate; the answer
//!    carries the chain (leaf + intermediate) and the root bundle.
//!
//! # Who may get which identity
//!
//! * File mode: the bearer token must be a node's bootstrap token from the
//!   inventory; that node may obtain the identity of any workload placed on
//!   it, and of waypoints (which the local mesh runs on its nodes).
//! * Kubernetes: the bearer token is a ServiceAccount token checked with a
//!   TokenReview; a ServiceAccount gets its own identity, and the ztunnel
//!   ServiceAccount (`istio-system/ztunnel`) gets the identities of pods on
//!   the node named in the request.

use crate::config::ConfigSet;
use crate::controller::Controller;
use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use mesh_common::ca::{CaError, CertificateAuthority, ParsedCsr};
use mesh_common::identity::SpiffeId;
use mesh_common::xds::CsrRequest;
use mesh_common::xds::transport::{ResponseBody, full};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Longest certificate the CA issues.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Default when the request has no TTL.
pub const DEFAULT_TTL: Duration = Duration::from_secs(12 * 3600);
/// Largest CSR body accepted.
const MAX_BODY: usize = 64 * 1024;

/// CA errors.
#[derive(Debug, thiserror::Error)]
pub enum CaServiceError {
    /// State directory problem.
    #[error("CA state in {dir}: {source}")]
    State {
        /// Dir.
        dir: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Certificate problem.
    #[error(transparent)]
    Ca(#[from] CaError),
}

/// Load the CA from `dir`, or create and persist a root + intermediate.
pub fn load_or_create(
    dir: &Path,
    trust_domain: &str,
) -> Result<CertificateAuthority, CaServiceError> {
    let st = |source| CaServiceError::State {
        dir: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(st)?;
    let (cert, key, root) = (
        dir.join("ca-cert.pem"),
        dir.join("ca-key.pem"),
        dir.join("root-cert.pem"),
    );
    if cert.exists() && key.exists() {
        let c = std::fs::read_to_string(&cert).map_err(st)?;
        let k = std::fs::read_to_string(&key).map_err(st)?;
        // A root-only setup (ca-cert = root) has no root-cert.pem.
        let r = std::fs::read_to_string(&root).unwrap_or_else(|_| c.clone());
        return Ok(CertificateAuthority::from_pem(
            trust_domain,
            &c,
            &k,
            "",
            &r,
        )?);
    }
    let root_ca =
        CertificateAuthority::new_root(trust_domain, Duration::from_secs(10 * 365 * 86400))?;
    let inter = root_ca.new_intermediate(Duration::from_secs(365 * 86400))?;
    std::fs::write(&root, root_ca.cert_pem()).map_err(st)?;
    std::fs::write(dir.join("root-key.pem"), root_ca.key_pem()).map_err(st)?;
    std::fs::write(&cert, inter.cert_pem()).map_err(st)?;
    std::fs::write(&key, inter.key_pem()).map_err(st)?;
    Ok(inter)
}

/// Who called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A node, by bootstrap token (file mode).
    Node(String),
    /// A Kubernetes ServiceAccount.
    ServiceAccount {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
}

/// Authentication failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

/// Authenticates CSR callers.
pub trait Authenticator: Send + Sync + 'static {
    /// Check a bearer token.
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Caller, AuthError>>;
}

/// File mode: tokens from the inventory's nodes.
pub struct NodeTokenAuth {
    controller: Arc<Controller>,
}

impl NodeTokenAuth {
    /// Tokens are read from the controller's current inventory.
    pub fn new(controller: Arc<Controller>) -> Self {
        NodeTokenAuth { controller }
    }
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Authenticator for NodeTokenAuth {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Caller, AuthError>> {
        Box::pin(async move {
            let cs = self.controller.config().unwrap_or_default();
            cs.nodes
                .iter()
                .find(|n| n.token.as_deref().is_some_and(|t| ct_eq(t, token)))
                .map(|n| Caller::Node(n.name.clone()))
                .ok_or_else(|| {
                    AuthError(
                        "unknown node bootstrap token (check the node's token in the inventory)"
                            .into(),
                    )
                })
        })
    }
}

/// May `caller` obtain `id`?
pub fn authorize(
    cs: &ConfigSet,
    caller: &Caller,
    id: &SpiffeId,
    node: Option<&str>,
    ztunnel_sa: (&str, &str),
) -> Result<(), String> {
    if id.trust_domain != cs.mesh.trust_domain {
        return Err(format!(
            "trust domain {:?} is not this mesh's ({:?})",
            id.trust_domain, cs.mesh.trust_domain
        ));
    }
    let (ns, sa) = (id.namespace.as_str(), id.service_account.as_str());
    let is_waypoint = crate::translate::waypoints::discover(cs)
        .values()
        .any(|w| w.namespace == ns && w.service_account == sa);
    let on_node = |n: &str| {
        cs.pods
            .iter()
            .any(|p| p.node == n && p.namespace == ns && p.service_account == sa)
    };
    match caller {
        Caller::Node(n) if on_node(n) || is_waypoint => Ok(()),
        Caller::Node(n) => Err(format!(
            "node {n} runs no workload with service account {ns}/{sa}"
        )),
        Caller::ServiceAccount { namespace, name } if namespace == ns && name == sa => Ok(()),
        Caller::ServiceAccount { namespace, name }
            if (namespace.as_str(), name.as_str()) == ztunnel_sa =>
        {
            match node {
                Some(n) if on_node(n) => Ok(()),
                Some(n) => Err(format!(
                    "node {n} runs no pod with service account {ns}/{sa}"
                )),
                None => Err("a ztunnel must name its node in the request".into()),
            }
        }
        Caller::ServiceAccount { namespace, name } => Err(format!(
            "service account {namespace}/{name} may not obtain the identity of {ns}/{sa}"
        )),
    }
}

/// The CA endpoint.
pub struct CaService {
    ca: CertificateAuthority,
    auth: Arc<dyn Authenticator>,
    controller: Arc<Controller>,
    ztunnel_sa: (String, String),
}

impl CaService {
    /// A CA service.
    pub fn new(
        ca: CertificateAuthority,
        auth: Arc<dyn Authenticator>,
        controller: Arc<Controller>,
    ) -> Self {
        CaService {
            ca,
            auth,
            controller,
            ztunnel_sa: ("istio-system".into(), "ztunnel".into()),
        }
    }

    /// Root bundle (PEM).
    pub fn roots_pem(&self) -> &str {
        self.ca.roots_pem()
    }

    /// Handle `POST /v1/csr`.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<ResponseBody> {
        let text = |s, m: String| full(s, "text/plain", format!("{m}\n"));
        if req.method() != http::Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use POST".into());
        }
        let token = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let Some(token) = token else {
            return text(
                StatusCode::UNAUTHORIZED,
                "missing `authorization: Bearer <token>`".into(),
            );
        };
        let caller = match self.auth.authenticate(&token).await {
            Ok(c) => c,
            Err(e) => return text(StatusCode::UNAUTHORIZED, e.0),
        };
        let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("cannot read request: {e}")),
        };
        let csr_req: CsrRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("expected JSON {{\"csr\": \"<PEM>\"}}: {e}"),
                );
            }
        };
        let csr = match ParsedCsr::from_pem(&csr_req.csr) {
            Ok(c) => c,
            Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let cs = self.controller.config().unwrap_or_default();
        let zt = (self.ztunnel_sa.0.as_str(), self.ztunnel_sa.1.as_str());
        if let Err(e) = authorize(&cs, &caller, csr.identity(), csr_req.node.as_deref(), zt) {
            tracing::warn!(?caller, identity = %csr.identity(), "CSR refused: {e}");
            return text(StatusCode::FORBIDDEN, e);
        }
        let ttl = csr_req
            .ttl_seconds
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TTL)
            .min(MAX_TTL);
        match self.ca.sign_csr(&csr, ttl) {
            Ok(issued) => {
                tracing::info!(?caller, identity = %csr.identity(), "certificate issued");
                full(
                    StatusCode::OK,
                    "application/json",
                    Bytes::from(serde_json::to_vec(&issued).unwrap_or_default()),
                )
            }
            Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
        }
    }
}
