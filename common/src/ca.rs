//! Certificate-authority primitives for the mesh: a root (and optional
//! intermediate) CA, SPIFFE workload certificates issued from CSRs, and the
//! node-side CSR generation that keeps private keys on the node.
//!
//! All keys are ECDSA P-256 (rcgen + ring). Workload certificates carry
//! exactly one URI SAN, the workload's SPIFFE ID, an empty subject, key
//! usages `digitalSignature, keyEncipherment` and extended key usages
//! `serverAuth, clientAuth`, and are backdated by [`CLOCK_SKEW`].
//!
//! # How to use
//!
//! 1. Control plane: create or load the CA once.
//!    ```
//!    use mesh_common::ca::CertificateAuthority;
//!    use std::time::Duration;
//!    let root = CertificateAuthority::new_root("cluster.local", Duration::from_secs(365 * 86400)).unwrap();
//!    // Optional: sign workloads with an intermediate instead of the root.
//!    let ca = root.new_intermediate(Duration::from_secs(30 * 86400)).unwrap();
//!    # let _ = ca;
//!    ```
//!    Persist it with [`CertificateAuthority::cert_pem`] / [`CertificateAuthority::key_pem`]
//!    and reload with [`CertificateAuthority::from_pem`].
//! 2. Node (ztunnel): generate a key and a CSR for the local workload
//!    identity with [`generate_csr`]; send only the CSR.
//! 3. Control plane: [`ParsedCsr::from_pem`] verifies the CSR's signature
//!    and extracts the requested [`SpiffeId`]; authorize the caller for that
//!    identity, then [`CertificateAuthority::sign_csr`] returns an
//!    [`IssuedCert`] (chain + roots, no key).
//! 4. Node: [`IssuedCert::into_bundle`] with the kept key gives a
//!    [`CertBundle`] for [`crate::tls`].
//! 5. Tests: [`CertificateAuthority::issue_workload`] does 2-4 in one call.

use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;

use crate::identity::{IdentityError, SpiffeId};

/// Certificates are valid from this long before issuance, to tolerate clock skew.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Default workload certificate lifetime (Istio's default is 24h).
pub const DEFAULT_WORKLOAD_CERT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Shortest workload certificate lifetime the CA will issue.
pub const MIN_WORKLOAD_CERT_TTL: Duration = Duration::from_secs(1);

/// Errors from the CA primitives.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// rcgen failed to build, sign or parse something.
    #[error("certificate operation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The CSR is not valid PEM/DER or its signature does not verify.
    #[error("invalid CSR: {0} (send a PEM `CERTIFICATE REQUEST` signed by the key it certifies)")]
    InvalidCsr(String),
    /// The CSR does not request exactly one SPIFFE URI SAN.
    #[error(
        "CSR must request exactly one URI SAN spiffe://<td>/ns/<ns>/sa/<sa> and nothing else, found {0}"
    )]
    CsrSans(String),
    /// The requested identity is not a valid SPIFFE ID.
    #[error("CSR requests an invalid identity: {0}")]
    Identity(#[from] IdentityError),
    /// The requested identity belongs to another trust domain.
    #[error("CSR requests trust domain {requested:?} but this CA signs for {ca:?}")]
    WrongTrustDomain {
        /// Trust domain in the CSR.
        requested: String,
        /// Trust domain of the CA.
        ca: String,
    },
    /// A PEM input held no certificate or could not be parsed.
    #[error("invalid certificate PEM: {0}")]
    InvalidPem(String),
    /// A certificate could not be parsed or lacks a SPIFFE URI SAN.
    #[error("invalid certificate: {0}")]
    InvalidCert(String),
    /// A requested lifetime is unusable.
    #[error("invalid certificate lifetime {0:?}: must be at least 1s")]
    BadTtl(Duration),
    /// The CA certificate has expired or expires before the requested lifetime starts.
    #[error("CA certificate expired at {0:?}; rotate the CA")]
    CaExpired(SystemTime),
}

/// Everything a workload needs for mTLS: its chain, its key and the mesh roots.
#[derive(Clone, PartialEq, Eq)]
pub struct CertBundle {
    /// Leaf certificate followed by intermediates (PEM), root excluded.
    pub chain_pem: String,
    /// PKCS#8 private key (PEM). Never leaves the node that generated it.
    pub key_pem: String,
    /// Trusted mesh root certificates (PEM, possibly several during CA rotation).
    pub roots_pem: String,
    /// Start of the leaf's validity.
    pub not_before: SystemTime,
    /// End of the leaf's validity.
    pub not_after: SystemTime,
}

impl fmt::Debug for CertBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertBundle")
            .field("identity", &self.identity().ok())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl CertBundle {
    /// The SPIFFE ID in the leaf certificate's URI SAN.
    pub fn identity(&self) -> Result<SpiffeId, CaError> {
        let leaf = first_cert_der(&self.chain_pem)?;
        identity_from_cert(&leaf)
    }

    /// When to renew: half-way through the validity, as Istio does.
    pub fn refresh_at(&self) -> SystemTime {
        let life = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_before + life / 2
    }

    /// True once `now` is at or past [`CertBundle::refresh_at`].
    pub fn needs_refresh(&self, now: SystemTime) -> bool {
        now >= self.refresh_at()
    }
}

/// A CA's answer to a CSR: the certificate chain and the roots, without key.
/// Its JSON form (camelCase) is the body of the operator's `POST /v1/csr`
/// answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedCert {
    /// Identity that was certified.
    pub identity: SpiffeId,
    /// Leaf followed by intermediates (PEM).
    pub chain_pem: String,
    /// Trusted roots (PEM).
    pub roots_pem: String,
    /// Start of validity (seconds since the Unix epoch).
    pub not_before_unix: u64,
    /// End of validity (seconds since the Unix epoch).
    pub not_after_unix: u64,
}

impl IssuedCert {
    /// Combines the issued chain with the locally kept private key.
    pub fn into_bundle(self, key_pem: String) -> CertBundle {
        CertBundle {
            chain_pem: self.chain_pem,
            key_pem,
            roots_pem: self.roots_pem,
            not_before: SystemTime::UNIX_EPOCH + Duration::from_secs(self.not_before_unix),
            not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(self.not_after_unix),
        }
    }
}

/// A verified CSR and the identity it requests.
#[derive(Debug)]
pub struct ParsedCsr {
    identity: SpiffeId,
    params: CertificateSigningRequestParams,
}

impl ParsedCsr {
    /// Parses a PEM CSR, verifies its self-signature and extracts the single
    /// SPIFFE URI SAN. Any DNS, IP or e-mail SAN is refused.
    pub fn from_pem(pem: &str) -> Result<Self, CaError> {
        let params = CertificateSigningRequestParams::from_pem(pem)
            .map_err(|e| CaError::InvalidCsr(e.to_string()))?;
        let sans = &params.params.subject_alt_names;
        let identity = match sans.as_slice() {
            [SanType::URI(uri)] => SpiffeId::parse(uri.as_str())?,
            other => return Err(CaError::CsrSans(format!("{other:?}"))),
        };
        Ok(Self { identity, params })
    }

    /// The identity the CSR asks for.
    pub fn identity(&self) -> &SpiffeId {
        &self.identity
    }
}

/// Generates a fresh P-256 key and a CSR for `id`. Returns `(csr_pem, key_pem)`;
/// send the CSR, keep the key.
pub fn generate_csr(id: &SpiffeId) -> Result<(String, String), CaError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(id.uri().as_str().try_into()?)];
    let csr = params.serialize_request(&key)?;
    Ok((csr.pem()?, key.serialize_pem()))
}

/// A CA that signs workload certificates for one trust domain.
pub struct CertificateAuthority {
    trust_domain: String,
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
    /// This CA's certificate followed by its parents, excluding the root
    /// (empty for a root CA).
    chain_pem: String,
    roots_pem: String,
    not_after: SystemTime,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("trust_domain", &self.trust_domain)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Creates a self-signed root CA for `trust_domain`, valid for `validity`.
    pub fn new_root(trust_domain: &str, validity: Duration) -> Result<Self, CaError> {
        let key = KeyPair::generate()?;
        let params = ca_params(
            trust_domain,
            "mesh root CA",
            validity,
            BasicConstraints::Unconstrained,
        )?;
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        Ok(Self {
            trust_domain: trust_domain.to_string(),
            not_after: params.not_after.into(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
            chain_pem: String::new(),
            roots_pem: cert_pem.clone(),
            cert_pem,
        })
    }

    /// Creates an intermediate CA signed by this one (path length 0).
    pub fn new_intermediate(&self, validity: Duration) -> Result<Self, CaError> {
        let key = KeyPair::generate()?;
        let mut params = ca_params(
            &self.trust_domain,
            "mesh intermediate CA",
            validity,
            BasicConstraints::Constrained(0),
        )?;
        params.use_authority_key_identifier_extension = true;
        let own_not_after: SystemTime = params.not_after.into();
        if own_not_after > self.not_after {
            params.not_after = self.not_after.into();
        }
        let cert = params.signed_by(&key, &self.issuer)?;
        let cert_pem = cert.pem();
        Ok(Self {
            trust_domain: self.trust_domain.clone(),
            not_after: params.not_after.into(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
            chain_pem: format!("{cert_pem}{}", self.chain_pem),
            roots_pem: self.roots_pem.clone(),
            cert_pem,
        })
    }

    /// Loads a persisted CA: its certificate, its key, the chain of its
    /// parents up to (excluding) the root (empty for a root), and the roots.
    pub fn from_pem(
        trust_domain: &str,
        cert_pem: &str,
        key_pem: &str,
        parents_pem: &str,
        roots_pem: &str,
    ) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        let der = first_cert_der(cert_pem)?;
        let (_, not_after) = validity_of(&der)?;
        let is_root = roots_pem.contains(cert_pem.trim());
        let chain_pem = if is_root {
            String::new()
        } else {
            format!("{}\n{}", cert_pem.trim_end(), parents_pem)
        };
        Ok(Self {
            trust_domain: trust_domain.to_string(),
            issuer,
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            chain_pem,
            roots_pem: roots_pem.to_string(),
            not_after,
        })
    }

    /// The trust domain this CA signs for.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }
    /// This CA's own certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }
    /// This CA's private key (PEM). Handle with care.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
    /// The roots workloads must trust (PEM).
    pub fn roots_pem(&self) -> &str {
        &self.roots_pem
    }
    /// End of this CA certificate's validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Adds extra trusted roots (e.g. the previous root during CA rotation).
    pub fn add_trusted_roots(&mut self, extra_roots_pem: &str) {
        if !self.roots_pem.ends_with('\n') {
            self.roots_pem.push('\n');
        }
        self.roots_pem.push_str(extra_roots_pem);
    }

    /// Signs a verified CSR for `ttl`. The caller must already have checked
    /// that the requester may hold [`ParsedCsr::identity`]. Only the CSR's
    /// public key and identity are used; every other requested attribute is
    /// ignored.
    pub fn sign_csr(&self, csr: &ParsedCsr, ttl: Duration) -> Result<IssuedCert, CaError> {
        let id = csr.identity();
        if id.trust_domain != self.trust_domain {
            return Err(CaError::WrongTrustDomain {
                requested: id.trust_domain.clone(),
                ca: self.trust_domain.clone(),
            });
        }
        let params = self.leaf_params(id, ttl)?;
        let cert = params.signed_by(&csr.params.public_key, &self.issuer)?;
        Ok(IssuedCert {
            identity: id.clone(),
            chain_pem: format!("{}{}", cert.pem(), self.chain_pem),
            roots_pem: self.roots_pem.clone(),
            not_before_unix: unix(params.not_before),
            not_after_unix: unix(params.not_after),
        })
    }

    /// Issues a key and certificate for `id` directly (tests, local tools).
    pub fn issue_workload(&self, id: &SpiffeId, ttl: Duration) -> Result<CertBundle, CaError> {
        let (csr_pem, key_pem) = generate_csr(id)?;
        let csr = ParsedCsr::from_pem(&csr_pem)?;
        Ok(self.sign_csr(&csr, ttl)?.into_bundle(key_pem))
    }

    fn leaf_params(&self, id: &SpiffeId, ttl: Duration) -> Result<CertificateParams, CaError> {
        if ttl < MIN_WORKLOAD_CERT_TTL {
            return Err(CaError::BadTtl(ttl));
        }
        let now = SystemTime::now();
        if now >= self.not_after {
            return Err(CaError::CaExpired(self.not_after));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(id.uri().as_str().try_into()?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        params.not_before = OffsetDateTime::from(now - CLOCK_SKEW);
        params.not_after = OffsetDateTime::from((now + ttl).min(self.not_after));
        Ok(params)
    }
}

fn ca_params(
    trust_domain: &str,
    cn: &str,
    validity: Duration,
    constraints: BasicConstraints,
) -> Result<CertificateParams, CaError> {
    if validity < MIN_WORKLOAD_CERT_TTL {
        return Err(CaError::BadTtl(validity));
    }
    let now = SystemTime::now();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, trust_domain);
    // A random suffix tells roots of different meshes (or CA generations) apart.
    dn.push(
        DnType::CommonName,
        format!("{cn} {:08x}", rand::random::<u32>()),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(constraints);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial());
    params.not_before = OffsetDateTime::from(now - CLOCK_SKEW);
    params.not_after = OffsetDateTime::from(now + validity);
    Ok(params)
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // non-zero, fixed length
    SerialNumber::from(bytes.to_vec())
}

fn unix(t: OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp()).unwrap_or(0)
}

/// Parses every certificate in a PEM string.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaError::InvalidPem(e.to_string()))?;
    if certs.is_empty() {
        return Err(CaError::InvalidPem("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

fn first_cert_der(pem: &str) -> Result<CertificateDer<'static>, CaError> {
    let mut certs = certs_from_pem(pem)?;
    Ok(certs.swap_remove(0))
}

/// The SPIFFE ID in a certificate's URI SAN (the first `spiffe://` URI).
pub fn identity_from_cert(der: &[u8]) -> Result<SpiffeId, CaError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CaError::InvalidCert(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| CaError::InvalidCert(e.to_string()))?
        .ok_or_else(|| CaError::InvalidCert("no subjectAltName extension".into()))?;
    for name in &san.value.general_names {
        if let x509_parser::extensions::GeneralName::URI(uri) = name
            && uri.starts_with(crate::identity::SPIFFE_SCHEME)
        {
            return Ok(SpiffeId::parse(uri)?);
        }
    }
    Err(CaError::InvalidCert("no spiffe:// URI SAN".into()))
}

/// What `ztunnel-config certificates` shows of one certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertSummary {
    /// Serial number, lower-case hex without separators (as istioctl prints it).
    pub serial_number: String,
    /// Validity start.
    pub not_before: SystemTime,
    /// Validity end.
    pub not_after: SystemTime,
}

/// Serial and validity of every certificate in a PEM bundle.
pub fn summarize_pem(pem: &str) -> Result<Vec<CertSummary>, CaError> {
    certs_from_pem(pem)?
        .iter()
        .map(|der| {
            let (_, cert) = x509_parser::parse_x509_certificate(der)
                .map_err(|e| CaError::InvalidCert(e.to_string()))?;
            let (not_before, not_after) = validity_of(der)?;
            Ok(CertSummary {
                serial_number: cert.raw_serial_as_string().replace(':', ""),
                not_before,
                not_after,
            })
        })
        .collect()
}

/// `(not_before, not_after)` of a DER certificate.
pub fn validity_of(der: &[u8]) -> Result<(SystemTime, SystemTime), CaError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CaError::InvalidCert(e.to_string()))?;
    let to_sys =
        |ts: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(ts).unwrap_or(0));
    let v = cert.validity();
    Ok((
        to_sys(v.not_before.timestamp()),
        to_sys(v.not_after.timestamp()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(sa: &str) -> SpiffeId {
        SpiffeId::new("cluster.local", "shop", sa)
    }

    #[test]
    fn csr_round_trip_keeps_key_local() {
        let ca =
            CertificateAuthority::new_root("cluster.local", Duration::from_secs(3600)).unwrap();
        let (csr_pem, key_pem) = generate_csr(&id("web")).unwrap();
        assert!(!csr_pem.contains("PRIVATE KEY"));
        let csr = ParsedCsr::from_pem(&csr_pem).unwrap();
        assert_eq!(csr.identity(), &id("web"));
        let issued = ca.sign_csr(&csr, Duration::from_secs(600)).unwrap();
        assert!(issued.not_after_unix - issued.not_before_unix >= 600);
        let bundle = issued.into_bundle(key_pem);
        assert_eq!(bundle.identity().unwrap(), id("web"));
        assert!(!bundle.needs_refresh(SystemTime::now()));
        assert!(bundle.needs_refresh(SystemTime::now() + Duration::from_secs(400)));
    }

    #[test]
    fn rejects_foreign_trust_domain_and_garbage() {
        let ca =
            CertificateAuthority::new_root("cluster.local", Duration::from_secs(3600)).unwrap();
        let (csr_pem, _) = generate_csr(&SpiffeId::new("evil.org", "shop", "web")).unwrap();
        let csr = ParsedCsr::from_pem(&csr_pem).unwrap();
        assert!(matches!(
            ca.sign_csr(&csr, Duration::from_secs(60)),
            Err(CaError::WrongTrustDomain { .. })
        ));
        assert!(ParsedCsr::from_pem("not a csr").is_err());
        // A CSR with a DNS SAN is refused.
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["example.com".to_string()]).unwrap();
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        assert!(matches!(
            ParsedCsr::from_pem(&pem),
            Err(CaError::CsrSans(_))
        ));
    }

    #[test]
    fn intermediate_chain_and_reload() {
        let root = CertificateAuthority::new_root("td", Duration::from_secs(3600)).unwrap();
        let inter = root.new_intermediate(Duration::from_secs(7200)).unwrap();
        assert!(inter.not_after() <= root.not_after());
        let b = inter
            .issue_workload(&SpiffeId::new("td", "a", "b"), Duration::from_secs(60))
            .unwrap();
        assert_eq!(certs_from_pem(&b.chain_pem).unwrap().len(), 2);
        assert_eq!(b.roots_pem, root.roots_pem());
        let reloaded = CertificateAuthority::from_pem(
            "td",
            inter.cert_pem(),
            inter.key_pem(),
            "",
            inter.roots_pem(),
        )
        .unwrap();
        let b2 = reloaded
            .issue_workload(&SpiffeId::new("td", "a", "c"), Duration::from_secs(60))
            .unwrap();
        assert_eq!(certs_from_pem(&b2.chain_pem).unwrap().len(), 2);
        assert_eq!(b2.identity().unwrap().service_account, "c");
    }
}
