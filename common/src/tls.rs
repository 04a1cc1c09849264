//! rustls setup for mesh mTLS: TLS 1.3 only, ring provider, ALPN `h2`,
//! SPIFFE identities from URI SANs, hot-rotatable workload certificates.
//!
//! # How to use
//!
//! 1. Wrap a workload's [`CertBundle`] in a [`RotatingCert`]:
//!    `let cert = RotatingCert::from_bundle(&bundle)?;`
//! 2. Server side (HBONE 15008): `let cfg = server_config(cert.clone())?;`
//!    The server *requires* a client certificate chaining to the mesh roots
//!    whose URI SAN is a SPIFFE ID in the local trust domain (or one of
//!    [`ServerOptions::extra_trust_domains`]); anything else fails the
//!    handshake. After the handshake read the peer with
//!    [`peer_identity`]`(tls_stream.get_ref().1)`.
//! 3. Client side: `let cfg = client_config(cert.clone(), Some(expected_server_id))?;`
//!    The server's chain is verified against the mesh roots (no DNS name
//!    check: mesh certificates carry only a SPIFFE URI) and, when given, its
//!    identity must equal the expected one. Use `ServerName::IpAddress`
//!    (no SNI is sent).
//! 4. Rotation: [`RotatingCert::rotate`] with a new bundle. New handshakes use
//!    the new certificate and roots; established connections are untouched.
//!    Configs need not be rebuilt: they resolve the certificate and roots at
//!    each handshake.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, CommonState, DigitallySignedStruct, DistinguishedName,
    OtherError, RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::ca::{CaError, CertBundle, certs_from_pem, identity_from_cert};
use crate::identity::SpiffeId;

/// The only ALPN protocol spoken on HBONE.
pub const ALPN_H2: &[u8] = b"h2";

/// Errors building TLS material or verifying mesh peers.
#[derive(thiserror::Error)]
pub enum TlsError {
    /// The bundle's certificates could not be parsed.
    #[error("workload certificate: {0}")]
    Cert(#[from] CaError),
    /// The private key could not be parsed or does not match the leaf.
    #[error("workload private key unusable: {0} (expected a PKCS#8 PEM key matching the leaf)")]
    Key(String),
    /// No usable root certificate.
    #[error("mesh roots unusable: {0}")]
    Roots(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// A rotation tried to change the workload identity.
    #[error("certificate rotation must keep identity {current}, got {new}")]
    IdentityChanged {
        /// Identity currently served.
        current: String,
        /// Identity of the rejected certificate.
        new: String,
    },
    /// The peer is in a trust domain we do not accept.
    #[error("peer {peer} is outside the accepted trust domains {accepted:?}")]
    UntrustedDomain {
        /// The peer identity.
        peer: String,
        /// Trust domains accepted.
        accepted: Vec<String>,
    },
    /// The peer is not the identity we expected to reach.
    #[error(
        "peer identity {actual} is not the expected {expected} (wrong destination or stale config)"
    )]
    UnexpectedPeer {
        /// Identity expected.
        expected: String,
        /// Identity presented.
        actual: String,
    },
}

// rustls prints verifier errors with `Debug`: make that the readable message.
impl fmt::Debug for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The ring crypto provider used for all mesh TLS.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parsed, ready-to-serve material for one workload identity.
pub struct WorkloadCert {
    identity: SpiffeId,
    certified: Arc<CertifiedKey>,
    roots: Arc<RootCertStore>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl fmt::Debug for WorkloadCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadCert")
            .field("identity", &self.identity)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl WorkloadCert {
    /// Parses and checks a bundle (key matches leaf, leaf has a SPIFFE ID).
    pub fn from_bundle(bundle: &CertBundle) -> Result<Self, TlsError> {
        let provider = provider();
        let chain = certs_from_pem(&bundle.chain_pem)?;
        let identity = identity_from_cert(&chain[0])?;
        let key = PrivateKeyDer::from_pem_slice(bundle.key_pem.as_bytes())
            .map_err(|e| TlsError::Key(e.to_string()))?;
        let certified = CertifiedKey::from_der(chain, key, &provider)
            .map_err(|e| TlsError::Key(e.to_string()))?;
        let mut roots = RootCertStore::empty();
        for root in certs_from_pem(&bundle.roots_pem)? {
            roots
                .add(root)
                .map_err(|e| TlsError::Roots(e.to_string()))?;
        }
        let roots = Arc::new(roots);
        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
            .build()
            .map_err(|e| TlsError::Roots(e.to_string()))?;
        Ok(Self {
            identity,
            certified: Arc::new(certified),
            roots,
            client_verifier,
            not_before: bundle.not_before,
            not_after: bundle.not_after,
        })
    }

    /// The identity this certificate proves.
    pub fn identity(&self) -> &SpiffeId {
        &self.identity
    }
    /// End of validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
    /// Start of validity.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }
}

/// A workload certificate that can be swapped atomically while connections
/// are live. Implements rustls' server and client certificate resolvers.
pub struct RotatingCert {
    identity: SpiffeId,
    current: ArcSwap<WorkloadCert>,
}

impl fmt::Debug for RotatingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotatingCert")
            .field("current", &*self.current.load())
            .finish()
    }
}

impl RotatingCert {
    /// Starts with `cert`.
    pub fn new(cert: WorkloadCert) -> Arc<Self> {
        Arc::new(Self {
            identity: cert.identity.clone(),
            current: ArcSwap::from_pointee(cert),
        })
    }

    /// Parses `bundle` and starts with it.
    pub fn from_bundle(bundle: &CertBundle) -> Result<Arc<Self>, TlsError> {
        Ok(Self::new(WorkloadCert::from_bundle(bundle)?))
    }

    /// Replaces the certificate for new handshakes. The identity must not change.
    pub fn rotate(&self, cert: WorkloadCert) -> Result<(), TlsError> {
        if cert.identity != self.identity {
            return Err(TlsError::IdentityChanged {
                current: self.identity.to_string(),
                new: cert.identity.to_string(),
            });
        }
        self.current.store(Arc::new(cert));
        Ok(())
    }

    /// Parses `bundle` and rotates to it.
    pub fn rotate_bundle(&self, bundle: &CertBundle) -> Result<(), TlsError> {
        self.rotate(WorkloadCert::from_bundle(bundle)?)
    }

    /// The material currently served.
    pub fn current(&self) -> Arc<WorkloadCert> {
        self.current.load_full()
    }

    /// The (fixed) identity.
    pub fn identity(&self) -> &SpiffeId {
        &self.identity
    }
}

impl ResolvesServerCert for RotatingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().certified.clone())
    }
}

impl ResolvesClientCert for RotatingCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().certified.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// Options for [`server_config_with`].
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Trust domains accepted besides the server's own.
    pub extra_trust_domains: Vec<String>,
}

/// HBONE server config: mTLS required, peers in the local trust domain, ALPN h2.
pub fn server_config(cert: Arc<RotatingCert>) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(cert, ServerOptions::default())
}

/// [`server_config`] with options.
pub fn server_config_with(
    cert: Arc<RotatingCert>,
    opts: ServerOptions,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut accepted = vec![cert.identity.trust_domain.clone()];
    accepted.extend(opts.extra_trust_domains);
    let verifier = Arc::new(MeshClientVerifier {
        source: cert.clone(),
        accepted,
    });
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    cfg.alpn_protocols = vec![ALPN_H2.to_vec()];
    // No resumption: every connection re-proves its identity with the
    // current certificate, and the pool amortises handshakes anyway.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

/// HBONE client config presenting `cert`, verifying the server against the
/// mesh roots, its trust domain, and (if given) the exact `expected` identity.
pub fn client_config(
    cert: Arc<RotatingCert>,
    expected: Option<SpiffeId>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let verifier = Arc::new(MeshServerVerifier {
        source: cert.clone(),
        expected,
        provider: provider(),
    });
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(cert);
    cfg.alpn_protocols = vec![ALPN_H2.to_vec()];
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// The peer's SPIFFE ID after a completed handshake (`None` if the peer sent
/// no certificate or it has no SPIFFE URI SAN).
pub fn peer_identity(conn: &CommonState) -> Option<SpiffeId> {
    let leaf = conn.peer_certificates()?.first()?;
    identity_from_cert(leaf).ok()
}

/// A `ServerName` for dialing a mesh peer by IP (no SNI is sent).
pub fn server_name(ip: std::net::IpAddr) -> ServerName<'static> {
    ServerName::IpAddress(ip.into())
}

fn reject(e: TlsError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

// === impl MeshClientVerifier ===

#[derive(Debug)]
struct MeshClientVerifier {
    source: Arc<RotatingCert>,
    accepted: Vec<String>,
}

impl ClientCertVerifier for MeshClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let current = self.source.current();
        current
            .client_verifier
            .verify_client_cert(end_entity, intermediates, now)?;
        let peer = identity_from_cert(end_entity).map_err(|e| reject(e.into()))?;
        if !self.accepted.contains(&peer.trust_domain) {
            return Err(reject(TlsError::UntrustedDomain {
                peer: peer.to_string(),
                accepted: self.accepted.clone(),
            }));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.source
            .current()
            .client_verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.source
            .current()
            .client_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.source
            .current()
            .client_verifier
            .supported_verify_schemes()
    }
}

// === impl MeshServerVerifier ===

#[derive(Debug)]
struct MeshServerVerifier {
    source: Arc<RotatingCert>,
    expected: Option<SpiffeId>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for MeshServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let current = self.source.current();
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &current.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let peer = identity_from_cert(end_entity).map_err(|e| reject(e.into()))?;
        if let Some(expected) = &self.expected {
            if &peer != expected {
                return Err(reject(TlsError::UnexpectedPeer {
                    expected: expected.to_string(),
                    actual: peer.to_string(),
                }));
            }
        } else if peer.trust_domain != self.source.identity.trust_domain {
            return Err(reject(TlsError::UntrustedDomain {
                peer: peer.to_string(),
                accepted: vec![self.source.identity.trust_domain.clone()],
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::CertificateAuthority;
    use std::time::Duration;

    fn cert(ca: &CertificateAuthority, td: &str, sa: &str) -> Arc<RotatingCert> {
        let b = ca
            .issue_workload(&SpiffeId::new(td, "ns", sa), Duration::from_secs(600))
            .unwrap();
        RotatingCert::from_bundle(&b).unwrap()
    }

    /// Handshakes in memory; returns (server result, client result).
    async fn handshake(
        server: Arc<RotatingCert>,
        client: Arc<RotatingCert>,
        expected: Option<SpiffeId>,
    ) -> (Result<Option<SpiffeId>, String>, Result<(), String>) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(server).unwrap());
        let connector = tokio_rustls::TlsConnector::from(client_config(client, expected).unwrap());
        let srv = async {
            let s = acceptor.accept(a).await.map_err(|e| e.to_string())?;
            Ok(peer_identity(s.get_ref().1))
        };
        let cli = async {
            use tokio::io::AsyncReadExt;
            let mut s = connector
                .connect(server_name([127, 0, 0, 1].into()), b)
                .await
                .map_err(|e| e.to_string())?;
            // Wait for the server's verdict on our certificate.
            let mut buf = [0u8; 1];
            match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
                Ok(Err(e)) => Err(e.to_string()),
                _ => Ok(()),
            }
        };
        tokio::join!(srv, cli)
    }

    #[tokio::test]
    async fn peer_identity_and_trust_domain_checks() {
        let ca = CertificateAuthority::new_root("td", Duration::from_secs(600)).unwrap();
        let (s, c) = handshake(cert(&ca, "td", "srv"), cert(&ca, "td", "cli"), None).await;
        assert_eq!(s.unwrap(), Some(SpiffeId::new("td", "ns", "cli")));
        assert!(
            c.is_ok() || c.as_ref().unwrap_err().contains("close_notify"),
            "{c:?}"
        );

        // Same root, other trust domain: refused by the server's TD check.
        let other =
            CertificateAuthority::from_pem("evil", ca.cert_pem(), ca.key_pem(), "", ca.roots_pem())
                .unwrap();
        let srv_id = Some(SpiffeId::new("td", "ns", "srv"));
        let (s, _) = handshake(cert(&ca, "td", "srv"), cert(&other, "evil", "cli"), srv_id).await;
        let e = s.unwrap_err();
        assert!(e.contains("outside the accepted trust domains"), "{e}");

        // Expected server identity enforced by the client.
        let (_, c) = handshake(
            cert(&ca, "td", "srv"),
            cert(&ca, "td", "cli"),
            Some(SpiffeId::new("td", "ns", "other")),
        )
        .await;
        assert!(c.unwrap_err().contains("not the expected"));

        // Unknown CA on either side.
        let foreign = CertificateAuthority::new_root("td", Duration::from_secs(600)).unwrap();
        let (s, _) = handshake(cert(&ca, "td", "srv"), cert(&foreign, "td", "cli"), None).await;
        // (Both roots share a subject name, so webpki reports a bad
        // signature rather than an unknown issuer: either way, refused.)
        assert!(s.is_err(), "server accepted a client from a foreign CA");
        let (_, c) = handshake(cert(&foreign, "td", "srv"), cert(&ca, "td", "cli"), None).await;
        assert!(c.is_err(), "client accepted a server from a foreign CA");
    }
}
