//! Workload certificates: one per local workload identity, obtained by CSR
//! (the private key is generated here and never leaves the node) and
//! rotated half-way through its lifetime without touching live connections.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mesh_common::ca::{CaError, CertificateAuthority, IssuedCert, ParsedCsr, generate_csr};
use mesh_common::identity::SpiffeId;
use mesh_common::tls::{RotatingCert, TlsError};
use parking_lot::Mutex;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Errors obtaining certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Local CA or CSR problem.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// The issued certificate is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The remote CA refused or failed.
    #[error("CA request for {id} failed: {msg} (is the operator's CA reachable on port 15012?)")]
    Remote {
        /// Identity requested.
        id: String,
        /// Cause.
        msg: String,
    },
    /// The CA returned a certificate for another identity.
    #[error("CA issued a certificate for {got} instead of {want}")]
    WrongIdentity {
        /// Requested.
        want: String,
        /// Received.
        got: String,
    },
}

/// A boxed CA answer.
pub type CaFuture = Pin<Box<dyn Future<Output = Result<IssuedCert, CertError>> + Send>>;

/// Signs CSRs for workload identities.
pub trait CaClient: Send + Sync + 'static {
    /// Sends `csr_pem` (for `id`) to the CA.
    fn sign(&self, id: &SpiffeId, csr_pem: String, ttl: Duration) -> CaFuture;
}

/// A CA in this process (file mode and tests): still goes through a CSR so
/// the code path is the same as with the operator.
pub struct LocalCa(pub Arc<CertificateAuthority>);

impl CaClient for LocalCa {
    fn sign(&self, id: &SpiffeId, csr_pem: String, ttl: Duration) -> CaFuture {
        let ca = self.0.clone();
        let id = id.clone();
        Box::pin(async move {
            let csr = ParsedCsr::from_pem(&csr_pem)?;
            if csr.identity() != &id {
                return Err(CertError::WrongIdentity {
                    want: id.to_string(),
                    got: csr.identity().to_string(),
                });
            }
            Ok(ca.sign_csr(&csr, ttl)?)
        })
    }
}

/// What the admin endpoint shows about one certificate.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertInfo {
    /// SPIFFE ID.
    pub identity: String,
    /// Validity start (RFC 3339).
    pub not_before: String,
    /// Validity end (RFC 3339).
    pub not_after: String,
    /// Planned renewal (RFC 3339).
    pub refresh_at: String,
    /// Renewals so far.
    pub rotations: u64,
    /// The leaf and intermediates, leaf first.
    pub chain: Vec<CertEntry>,
    /// The trusted mesh roots delivered with it.
    pub roots: Vec<CertEntry>,
}

/// Serial and validity of one certificate, for the admin endpoint.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertEntry {
    /// Serial number (lower-case hex).
    pub serial_number: String,
    /// Validity start (RFC 3339).
    pub not_before: String,
    /// Validity end (RFC 3339).
    pub not_after: String,
}

impl CertEntry {
    fn list(pem: &str) -> Vec<CertEntry> {
        mesh_common::ca::summarize_pem(pem)
            .unwrap_or_default()
            .into_iter()
            .map(|c| CertEntry {
                serial_number: c.serial_number,
                not_before: rfc3339(c.not_before),
                not_after: rfc3339(c.not_after),
            })
            .collect()
    }
}

struct Managed {
    cert: Arc<RotatingCert>,
    not_before: SystemTime,
    not_after: SystemTime,
    rotations: u64,
    chain: Vec<CertEntry>,
    roots: Vec<CertEntry>,
    stop: CancellationToken,
}

/// Holds and renews the certificates of local identities.
pub struct CertManager {
    ca: Arc<dyn CaClient>,
    ttl: Duration,
    certs: Mutex<HashMap<SpiffeId, Arc<Mutex<Managed>>>>,
    fetching: tokio::sync::Mutex<()>,
}

impl CertManager {
    /// Certificates of lifetime `ttl` from `ca`.
    pub fn new(ca: Arc<dyn CaClient>, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            ca,
            ttl,
            certs: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The certificate for `id`, requesting it on first use.
    pub async fn get(self: &Arc<Self>, id: &SpiffeId) -> Result<Arc<RotatingCert>, CertError> {
        if let Some(m) = self.certs.lock().get(id) {
            return Ok(m.lock().cert.clone());
        }
        let _one_at_a_time = self.fetching.lock().await;
        if let Some(m) = self.certs.lock().get(id) {
            return Ok(m.lock().cert.clone());
        }
        let bundle = self.fetch(id).await?;
        let cert = RotatingCert::from_bundle(&bundle)?;
        info!(%id, not_after = ?bundle.not_after, "workload certificate issued");
        let managed = Arc::new(Mutex::new(Managed {
            cert: cert.clone(),
            not_before: bundle.not_before,
            not_after: bundle.not_after,
            rotations: 0,
            chain: CertEntry::list(&bundle.chain_pem),
            roots: CertEntry::list(&bundle.roots_pem),
            stop: CancellationToken::new(),
        }));
        self.certs.lock().insert(id.clone(), managed.clone());
        tokio::spawn(self.clone().renew_loop(id.clone(), managed));
        Ok(cert)
    }

    /// Stops renewing `id` (no local workload uses it any more).
    pub fn forget(&self, id: &SpiffeId) {
        if let Some(m) = self.certs.lock().remove(id) {
            m.lock().stop.cancel();
        }
    }

    /// All held certificates.
    pub fn dump(&self) -> Vec<CertInfo> {
        let mut out: Vec<CertInfo> = self
            .certs
            .lock()
            .iter()
            .map(|(id, m)| {
                let m = m.lock();
                CertInfo {
                    identity: id.to_string(),
                    not_before: rfc3339(m.not_before),
                    not_after: rfc3339(m.not_after),
                    refresh_at: rfc3339(refresh_at(m.not_before, m.not_after)),
                    rotations: m.rotations,
                    chain: m.chain.clone(),
                    roots: m.roots.clone(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.identity.cmp(&b.identity));
        out
    }

    async fn fetch(&self, id: &SpiffeId) -> Result<mesh_common::ca::CertBundle, CertError> {
        let (csr, key) = generate_csr(id)?;
        let issued = self.ca.sign(id, csr, self.ttl).await?;
        if &issued.identity != id {
            return Err(CertError::WrongIdentity {
                want: id.to_string(),
                got: issued.identity.to_string(),
            });
        }
        Ok(issued.into_bundle(key))
    }

    async fn renew_loop(self: Arc<Self>, id: SpiffeId, managed: Arc<Mutex<Managed>>) {
        let stop = managed.lock().stop.clone();
        let mut retry = Duration::from_millis(200);
        loop {
            let (nb, na) = {
                let m = managed.lock();
                (m.not_before, m.not_after)
            };
            let wait = refresh_at(nb, na)
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let result = match self.fetch(&id).await {
                Ok(bundle) => {
                    let mut m = managed.lock();
                    match m.cert.rotate_bundle(&bundle) {
                        Ok(()) => {
                            m.not_before = bundle.not_before;
                            m.not_after = bundle.not_after;
                            m.rotations += 1;
                            m.chain = CertEntry::list(&bundle.chain_pem);
                            m.roots = CertEntry::list(&bundle.roots_pem);
                            debug!(%id, not_after = ?bundle.not_after, "workload certificate rotated");
                            Ok(())
                        }
                        Err(e) => Err(CertError::from(e)),
                    }
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => retry = Duration::from_millis(200),
                Err(e) => {
                    warn!(%id, error = %e, "certificate renewal failed; keeping the current one and retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// Renew at half of the lifetime, as Istio does.
fn refresh_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    not_before + not_after.duration_since(not_before).unwrap_or_default() / 2
}

/// Formats a time as RFC 3339 (UTC, seconds).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
