//! SPIFFE workload identities in Istio's shape.
//!
//! Every workload in the mesh is identified by
//! `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`; policies
//! write the same thing without the scheme (a *principal*).
//!
//! # How to use
//!
//! 1. Parse what a certificate or a config carries:
//!    ```
//!    use mesh_common::identity::SpiffeId;
//!    let id: SpiffeId = "spiffe://cluster.local/ns/shop/sa/web".parse().unwrap();
//!    assert_eq!(id.namespace, "shop");
//!    ```
//! 2. Compare against AuthorizationPolicy `principals` with
//!    [`SpiffeId::principal`] (`cluster.local/ns/shop/sa/web`).
//! 3. Build one for a workload with [`SpiffeId::new`] and put
//!    [`SpiffeId::uri`] in a certificate's URI SAN (see [`crate::ca`]).
//!
//! Exactly five `/`-separated segments after `spiffe://` are accepted
//! (`<td>/ns/<ns>/sa/<sa>`), as Istio's ztunnel does; anything else
//! (extra path segments, other keywords) is rejected. Empty segments are
//! rejected too.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The URI scheme prefix of a SPIFFE ID.
pub const SPIFFE_SCHEME: &str = "spiffe://";

/// Errors parsing a SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The string does not start with `spiffe://`.
    #[error("identity {0:?} is not a SPIFFE URI: it must start with spiffe://")]
    MissingScheme(String),
    /// The path is not `<td>/ns/<ns>/sa/<sa>`.
    #[error(
        "identity {0:?} does not have Istio's shape spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>"
    )]
    BadShape(String),
    /// One segment is empty.
    #[error("identity {0:?} has an empty trust domain, namespace or service account")]
    EmptySegment(String),
}

/// A workload identity `spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    /// Trust domain (Istio's `meshConfig.trustDomain`, default `cluster.local`).
    pub trust_domain: String,
    /// Kubernetes namespace of the workload.
    pub namespace: String,
    /// Kubernetes service account of the workload.
    pub service_account: String,
}

impl SpiffeId {
    /// Builds an identity from its three parts (not validated; use
    /// [`SpiffeId::parse`] for untrusted input).
    pub fn new(
        trust_domain: impl Into<String>,
        namespace: impl Into<String>,
        service_account: impl Into<String>,
    ) -> Self {
        Self {
            trust_domain: trust_domain.into(),
            namespace: namespace.into(),
            service_account: service_account.into(),
        }
    }

    /// Parses `spiffe://td/ns/x/sa/y`.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        let rest = s
            .strip_prefix(SPIFFE_SCHEME)
            .ok_or_else(|| IdentityError::MissingScheme(s.to_string()))?;
        Self::parse_principal(rest).map_err(|e| match e {
            IdentityError::BadShape(_) => IdentityError::BadShape(s.to_string()),
            IdentityError::EmptySegment(_) => IdentityError::EmptySegment(s.to_string()),
            other => other,
        })
    }

    /// Parses a principal as written in policies: `td/ns/x/sa/y` (no scheme).
    pub fn parse_principal(s: &str) -> Result<Self, IdentityError> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [td, "ns", ns, "sa", sa] => {
                if td.is_empty() || ns.is_empty() || sa.is_empty() {
                    return Err(IdentityError::EmptySegment(s.to_string()));
                }
                Ok(Self::new(*td, *ns, *sa))
            }
            _ => Err(IdentityError::BadShape(s.to_string())),
        }
    }

    /// The principal form used by AuthorizationPolicy: `td/ns/x/sa/y`.
    pub fn principal(&self) -> String {
        format!(
            "{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }

    /// The full URI `spiffe://td/ns/x/sa/y` (same as `Display`).
    pub fn uri(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SPIFFE_SCHEME}{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl FromStr for SpiffeId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for SpiffeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SpiffeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/web").unwrap();
        assert_eq!(id, SpiffeId::new("cluster.local", "shop", "web"));
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/shop/sa/web");
        assert_eq!(id.principal(), "cluster.local/ns/shop/sa/web");
        assert_eq!(
            SpiffeId::parse_principal("td/ns/a/sa/b").unwrap(),
            SpiffeId::new("td", "a", "b")
        );
    }

    #[test]
    fn rejects_other_shapes() {
        for bad in [
            "cluster.local/ns/shop/sa/web",
            "https://cluster.local/ns/shop/sa/web",
            "spiffe://cluster.local/ns/shop/sa/web/extra",
            "spiffe://cluster.local/ns/shop",
            "spiffe://cluster.local/sa/web/ns/shop",
            "spiffe://cluster.local/namespace/shop/sa/web",
            "spiffe:///ns/shop/sa/web",
            "spiffe://cluster.local/ns//sa/web",
            "spiffe://cluster.local/ns/shop/sa/",
            "",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn serde_as_string() {
        let id = SpiffeId::new("td", "a", "b");
        let j = serde_json::to_string(&id).unwrap();
        assert_eq!(j, "\"spiffe://td/ns/a/sa/b\"");
        let back: SpiffeId = serde_json::from_str(&j).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<SpiffeId>("\"td/ns/a\"").is_err());
    }
}
