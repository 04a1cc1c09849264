//! L4 authorization policies in ztunnel's rule shape.
//!
//! An [`Authorization`] is the translation of one AuthorizationPolicy (or
//! converted PeerAuthentication) for ztunnel. Its `rules` are three nested
//! lists with the semantics of ztunnel's `rbac.rs`:
//!
//! * the policy matches when **any rule** matches (no rules ⇒ never);
//! * a rule matches when **all its clauses** match (no clauses ⇒ always);
//! * a clause matches when **any of its matches** matches; an *empty* match
//!   (no field set) is skipped, so a clause made only of empty matches never
//!   matches; a clause with zero matches counts as matching;
//! * a match is the AND over its field types; per type:
//!   (positive list empty OR any element matches) AND (negative list empty
//!   OR no element matches).
//!
//! Decision order at the destination ztunnel (Istio §1.3): any DENY matches
//! ⇒ deny; no ALLOW policy applies ⇒ allow; any ALLOW matches ⇒ allow;
//! otherwise deny. Dry-run policies are evaluated for logging only. See
//! [`evaluate`].

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Name of the static DENY policy istiod publishes in the root namespace when
/// any PeerAuthentication exists: "deny when the peer has no principal".
/// Workloads whose effective mode is STRICT list `<root>/istio_converted_static_strict`
/// in [`super::Workload::authorization_policies`].
pub const STATIC_STRICT_POLICY_NAME: &str = "istio_converted_static_strict";

/// Prefix of a per-workload DENY policy converted from a PeerAuthentication
/// with `portLevelMtls` (`converted_peer_authentication_<name>`).
pub const CONVERTED_PEER_AUTHENTICATION_PREFIX: &str = "converted_peer_authentication_";

/// Where a policy applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RbacScope {
    /// Every workload in the mesh (policy in the root namespace, no selector).
    Global,
    /// Every workload in the policy's namespace (no selector).
    #[default]
    Namespace,
    /// Only workloads listing the policy in their `authorizationPolicies`.
    WorkloadSelector,
}

/// What a matching policy does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RbacAction {
    /// Allow when matched (and deny when ALLOW policies exist and none match).
    #[default]
    Allow,
    /// Deny when matched.
    Deny,
}

/// A string comparison as ztunnel does it (`abc`, `abc*`, `*abc`, `*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StringMatch {
    /// Whole value equals.
    Exact(String),
    /// Value starts with (written `abc*`).
    Prefix(String),
    /// Value ends with (written `*abc`).
    Suffix(String),
    /// Value is non-empty (written `*`).
    Presence,
}

impl StringMatch {
    /// Parse a policy value: `*` ⇒ presence, leading `*` ⇒ suffix, trailing
    /// `*` ⇒ prefix, else exact (Istio's `stringToMatch`).
    pub fn parse(v: &str) -> Self {
        if v == "*" {
            StringMatch::Presence
        } else if let Some(s) = v.strip_prefix('*') {
            StringMatch::Suffix(s.to_string())
        } else if let Some(p) = v.strip_suffix('*') {
            StringMatch::Prefix(p.to_string())
        } else {
            StringMatch::Exact(v.to_string())
        }
    }

    /// Compare against `check`.
    pub fn matches(&self, check: &str) -> bool {
        match self {
            StringMatch::Exact(e) => e == check,
            StringMatch::Prefix(p) => check.starts_with(p.as_str()),
            StringMatch::Suffix(s) => check.ends_with(s.as_str()),
            StringMatch::Presence => !check.is_empty(),
        }
    }

    /// Compare against a principal given as a SPIFFE URI: the policy value
    /// is written without `spiffe://`, and a peer without that prefix (no
    /// identity) never matches.
    pub fn matches_principal(&self, spiffe_uri: &str) -> bool {
        match spiffe_uri.strip_prefix("spiffe://") {
            Some(rest) => self.matches(rest),
            None => false,
        }
    }
}

/// A `(namespace, serviceAccount)` pair; the trust domain is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountMatch {
    /// Namespace (the policy's namespace when the value had no `ns/`).
    pub namespace: String,
    /// Service account name.
    pub service_account: String,
}

/// One match: every set field type must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct RbacMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<StringMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<StringMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<ServiceAccountMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_service_accounts: Vec<ServiceAccountMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<StringMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<StringMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_source_ips: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_ips: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_destination_ips: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_ports: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_destination_ports: Vec<u16>,
}

impl RbacMatch {
    /// No field set: ztunnel skips such a match (it never matches).
    pub fn is_empty(&self) -> bool {
        *self == RbacMatch::default()
    }

    fn matches(&self, conn: &Connection, peer: Option<&PeerId<'_>>) -> bool {
        fn field<T>(pos: &[T], neg: &[T], mut f: impl FnMut(&T) -> bool) -> bool {
            (pos.is_empty() || pos.iter().any(&mut f)) && (neg.is_empty() || !neg.iter().any(f))
        }
        let principal = conn.src_identity.as_deref().unwrap_or("");
        let ns = peer.map(|p| p.namespace).unwrap_or("");
        field(&self.destination_ips, &self.not_destination_ips, |n| {
            n.contains(&conn.dst.ip())
        }) && field(&self.source_ips, &self.not_source_ips, |n| {
            n.contains(&conn.src.ip())
        }) && field(&self.destination_ports, &self.not_destination_ports, |p| {
            *p == conn.dst.port()
        }) && field(&self.service_accounts, &self.not_service_accounts, |m| {
            peer.is_some_and(|p| {
                p.namespace == m.namespace && p.service_account == m.service_account
            })
        }) && field(&self.principals, &self.not_principals, |m| {
            m.matches_principal(principal)
        }) && field(&self.namespaces, &self.not_namespaces, |m| m.matches(ns))
    }
}

/// An L4 authorization policy for ztunnel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    /// Policy name (converted policies use names illegal in Kubernetes,
    /// e.g. [`STATIC_STRICT_POLICY_NAME`]).
    pub name: String,
    /// Policy namespace.
    pub namespace: String,
    /// Where it applies.
    pub scope: RbacScope,
    /// ALLOW or DENY.
    pub action: RbacAction,
    /// rules → clauses → matches (see the module docs).
    #[serde(default)]
    pub rules: Vec<Vec<Vec<RbacMatch>>>,
    /// `istio.io/dry-run`: evaluated and logged, never enforced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// A connection as seen by the destination ztunnel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Connection {
    /// Source address.
    pub src: SocketAddr,
    /// Destination address (workload IP and *workload* port).
    pub dst: SocketAddr,
    /// Peer SPIFFE URI (`spiffe://td/ns/x/sa/y`) from mTLS; `None` for
    /// plaintext.
    pub src_identity: Option<String>,
}

struct PeerId<'a> {
    namespace: &'a str,
    service_account: &'a str,
}

fn parse_peer(uri: &str) -> Option<PeerId<'_>> {
    let rest = uri.strip_prefix("spiffe://")?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [_td, "ns", ns, "sa", sa] => Some(PeerId {
            namespace: ns,
            service_account: sa,
        }),
        _ => None,
    }
}

impl Authorization {
    /// Does this policy match `conn`? (ztunnel's `Authorization::matches`.)
    pub fn matches(&self, conn: &Connection) -> bool {
        let peer = conn.src_identity.as_deref().and_then(parse_peer);
        self.rules.iter().any(|rule| {
            rule.iter().all(|clause| {
                clause.is_empty()
                    || clause
                        .iter()
                        .any(|m| !m.is_empty() && m.matches(conn, peer.as_ref()))
            })
        })
    }

    /// Does this policy apply to a workload in `namespace` that lists
    /// `selected` policy keys? (`root_namespace` for global scope is implied
    /// by the scope itself.)
    pub fn applies_to(&self, namespace: &str, selected: &[String]) -> bool {
        match self.scope {
            RbacScope::Global => true,
            RbacScope::Namespace => self.namespace == namespace,
            RbacScope::WorkloadSelector => {
                let key = format!("{}/{}", self.namespace, self.name);
                selected.contains(&key)
            }
        }
    }

    /// The static STRICT policy (`<root>/istio_converted_static_strict`):
    /// DENY when the peer presents no principal.
    pub fn static_strict(root_namespace: &str) -> Self {
        Authorization {
            name: STATIC_STRICT_POLICY_NAME.to_string(),
            namespace: root_namespace.to_string(),
            scope: RbacScope::WorkloadSelector,
            action: RbacAction::Deny,
            rules: vec![vec![vec![RbacMatch {
                not_principals: vec![StringMatch::Presence],
                ..Default::default()
            }]]],
            dry_run: false,
        }
    }
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; `Some(key)` names the ALLOW policy that matched.
    Allow(Option<String>),
    /// Denied by the DENY policy `key`.
    DeniedBy(String),
    /// ALLOW policies apply and none matched.
    NotAllowed,
}

impl Decision {
    /// `true` for [`Decision::Allow`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

/// Evaluate the policies that apply to a destination (already filtered with
/// [`Authorization::applies_to`]) in Istio's order. Dry-run policies are
/// ignored here (log them separately).
pub fn evaluate<'a>(
    policies: impl IntoIterator<Item = &'a Authorization> + Clone,
    conn: &Connection,
) -> Decision {
    let enforced = || policies.clone().into_iter().filter(|p| !p.dry_run);
    if let Some(p) = enforced().find(|p| p.action == RbacAction::Deny && p.matches(conn)) {
        return Decision::DeniedBy(format!("{}/{}", p.namespace, p.name));
    }
    let mut allows = enforced()
        .filter(|p| p.action == RbacAction::Allow)
        .peekable();
    if allows.peek().is_none() {
        return Decision::Allow(None);
    }
    match allows.find(|p| p.matches(conn)) {
        Some(p) => Decision::Allow(Some(format!("{}/{}", p.namespace, p.name))),
        None => Decision::NotAllowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: Option<&str>, port: u16) -> Connection {
        Connection {
            src: "10.0.0.1:5555".parse().unwrap(),
            dst: format!("10.0.0.2:{port}").parse().unwrap(),
            src_identity: id.map(str::to_string),
        }
    }

    fn pol(action: RbacAction, rules: Vec<Vec<Vec<RbacMatch>>>) -> Authorization {
        Authorization {
            name: "p".into(),
            namespace: "ns".into(),
            scope: RbacScope::Namespace,
            action,
            rules,
            dry_run: false,
        }
    }

    #[test]
    fn empty_rules_never_match_and_empty_rule_always() {
        let c = conn(None, 80);
        assert!(!pol(RbacAction::Allow, vec![]).matches(&c));
        assert!(pol(RbacAction::Allow, vec![vec![]]).matches(&c));
        // a clause made only of empty matches never matches
        assert!(!pol(RbacAction::Deny, vec![vec![vec![RbacMatch::default()]]]).matches(&c));
    }

    #[test]
    fn principal_and_namespace_matching() {
        let m = RbacMatch {
            principals: vec![StringMatch::parse("cluster.local/ns/a/sa/x")],
            ..Default::default()
        };
        let p = pol(RbacAction::Allow, vec![vec![vec![m]]]);
        assert!(p.matches(&conn(Some("spiffe://cluster.local/ns/a/sa/x"), 80)));
        assert!(!p.matches(&conn(Some("spiffe://cluster.local/ns/a/sa/y"), 80)));
        assert!(!p.matches(&conn(None, 80)));
        let ns = RbacMatch {
            namespaces: vec![StringMatch::parse("prod-*")],
            ..Default::default()
        };
        let p = pol(RbacAction::Allow, vec![vec![vec![ns]]]);
        assert!(p.matches(&conn(Some("spiffe://td/ns/prod-eu/sa/x"), 80)));
        assert!(!p.matches(&conn(Some("spiffe://td/ns/prod/sa/x"), 80)));
        // A11: notNamespaces matches plaintext (namespace "")
        let not_ns = RbacMatch {
            not_namespaces: vec![StringMatch::parse("foo")],
            ..Default::default()
        };
        assert!(pol(RbacAction::Deny, vec![vec![vec![not_ns]]]).matches(&conn(None, 80)));
    }

    #[test]
    fn static_strict_denies_only_plaintext() {
        let s = Authorization::static_strict("istio-system");
        assert!(s.matches(&conn(None, 80)));
        assert!(!s.matches(&conn(Some("spiffe://td/ns/a/sa/b"), 80)));
    }

    #[test]
    fn decision_order() {
        let c = conn(Some("spiffe://td/ns/a/sa/b"), 80);
        let allow_all = pol(RbacAction::Allow, vec![vec![]]);
        let deny_all = pol(RbacAction::Deny, vec![vec![]]);
        let allow_none = pol(RbacAction::Allow, vec![]);
        assert_eq!(evaluate([], &c), Decision::Allow(None));
        assert!(matches!(
            evaluate([&allow_all, &deny_all], &c),
            Decision::DeniedBy(_)
        ));
        assert_eq!(evaluate([&allow_none], &c), Decision::NotAllowed);
        let mut dry = deny_all.clone();
        dry.dry_run = true;
        assert!(evaluate([&dry], &c).is_allowed());
    }

    #[test]
    fn json_form_is_stable() {
        let p = Authorization::static_strict("istio-system");
        let j = serde_json::to_string(&p).unwrap();
        assert_eq!(
            j,
            r#"{"name":"istio_converted_static_strict","namespace":"istio-system","scope":"WorkloadSelector","action":"Deny","rules":[[[{"notPrincipals":["presence"]}]]]}"#
        );
        let back: Authorization = serde_json::from_str(&j).unwrap();
        assert_eq!(back, p);
    }
}
