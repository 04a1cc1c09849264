//! Configuration of the `authz` filter: AuthorizationPolicies attached to the
//! waypoint (`security.istio.io/v1`), evaluated with Envoy RBAC semantics.
//!
//! The operator resolves attachment (`targetRefs` to the waypoint Gateway,
//! its GatewayClass from the root namespace, or a Service/ServiceEntry bound
//! to the waypoint) and lists here only the policies that apply to this
//! waypoint, each with the services it covers. Selector- and namespace-wide
//! policies never apply to waypoints and must not be listed.

use crate::Duration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The authorization filter's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthzConfig {
    /// `meshConfig.trustDomain`.
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    /// `meshConfig.trustDomainAliases`: principals naming the local trust
    /// domain, an alias or `cluster.local` match peers of every one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_domain_aliases: Vec<String>,
    /// `numTrustedProxies` (gateway topology): which `x-forwarded-for`
    /// entry is `remote.ip` / `remoteIpBlocks`. With N (default 0) the
    /// (N+1)-th address from the right is used, as Envoy does without
    /// `use_remote_address`; the connection's source address when the header
    /// is absent, too short or not an IP.
    #[serde(default)]
    pub num_trusted_proxies: u32,
    /// `meshConfig.pathNormalization.normalization` applied before matching;
    /// the normalized path is also sent upstream.
    #[serde(default)]
    pub path_normalization: PathNormalization,
    /// `PILOT_ENABLE_MULTIPLE_CUSTOM_AUTHZ_PROVIDERS`: without it (default),
    /// CUSTOM policies naming more than one provider for the same target
    /// all turn into deny rules.
    #[serde(default)]
    pub multiple_custom_providers: bool,
    /// `meshConfig.extensionProviders[]` of type `envoyExtAuthzHttp`
    /// referenced by CUSTOM policies. A CUSTOM policy naming a provider absent
    /// here acts as a DENY policy (Istio fails closed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ExtAuthzHttpProvider>,
    /// The policies that apply to this waypoint.
    #[serde(default)]
    pub policies: Vec<AuthorizationPolicy>,
}

impl Default for AuthzConfig {
    fn default() -> Self {
        AuthzConfig {
            trust_domain: default_trust_domain(),
            trust_domain_aliases: Vec::new(),
            num_trusted_proxies: 0,
            path_normalization: PathNormalization::default(),
            multiple_custom_providers: false,
            providers: Vec::new(),
            policies: Vec::new(),
        }
    }
}

fn default_trust_domain() -> String {
    "cluster.local".into()
}

/// `meshConfig.pathNormalization.normalization`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PathNormalization {
    /// No normalization (`%00` is still rejected).
    None,
    /// RFC 3986 normalization: `\` → `/`, unreserved `%XX` decoded, dot
    /// segments resolved (Istio's `DEFAULT`).
    #[default]
    Base,
    /// `Base` plus `//` merged.
    MergeSlashes,
    /// `MergeSlashes` plus `%2F`/`%5C` decoded first.
    DecodeAndMergeSlashes,
}

/// One AuthorizationPolicy as attached to this waypoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicy {
    /// `metadata.namespace`; also the namespace of bare `serviceAccounts`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// FQDNs of the services this policy covers (from `targetRefs` of kind
    /// Service/ServiceEntry); empty = every request through the waypoint
    /// (`targetRefs` to the Gateway or GatewayClass).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_services: Vec<String>,
    /// Annotation `istio.io/dry-run: "true"` (ALLOW/DENY only): evaluated,
    /// reported in metadata, never enforced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// `spec.action`, default ALLOW.
    #[serde(default)]
    pub action: Action,
    /// `spec.provider` (CUSTOM only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    /// `spec.rules`; unset or empty = the policy never matches (an ALLOW
    /// policy then denies everything it covers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<Rule>>,
}

/// `spec.action`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    /// Allow matching requests; with any ALLOW policy present, others are denied.
    #[default]
    Allow,
    /// Deny matching requests.
    Deny,
    /// Mark matching requests for audit logging; never decides.
    Audit,
    /// Ask the external authorization provider about matching requests.
    Custom,
}

/// `spec.provider`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    /// Name of an extension provider.
    pub name: String,
}

/// `Rule`: (any `from`) AND (any `to`) AND (all `when`); unset parts match
/// anything, so `{}` matches every request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Sources, ORed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<RuleFrom>>,
    /// Operations, ORed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<RuleTo>>,
    /// Conditions, ANDed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Vec<Condition>>,
}

/// `Rule.From`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleFrom {
    /// The source.
    #[serde(default)]
    pub source: Source,
}

/// `Rule.To`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleTo {
    /// The operation.
    #[serde(default)]
    pub operation: Operation,
}

/// `Source`: every set field must match (AND); inside a field the values
/// are ORed; `notX` = matches none of the values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// Peer identities without `spiffe://` (`cluster.local/ns/a/sa/b`);
    /// `*`, `prefix*`, `*suffix` supported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// See `principals`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    /// JWT `iss/sub` (split at the last `/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_principals: Vec<String>,
    /// See `requestPrincipals`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_request_principals: Vec<String>,
    /// Peer namespaces (`*` anywhere is a wildcard).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// See `namespaces`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    /// `sa` (policy namespace) or `ns/sa`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
    /// See `serviceAccounts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_service_accounts: Vec<String>,
    /// Connection source IP / CIDR.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<String>,
    /// See `ipBlocks`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<String>,
    /// Client IP from `x-forwarded-for` (see
    /// [`AuthzConfig::num_trusted_proxies`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_ip_blocks: Vec<String>,
    /// See `remoteIpBlocks`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_remote_ip_blocks: Vec<String>,
    /// Peer trust domains (`*` allowed once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_domains: Vec<String>,
    /// See `trustDomains`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_trust_domains: Vec<String>,
}

/// `Operation`: every set field must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// `:authority` incl. port, case-insensitive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// See `hosts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    /// Destination ports (the port the client addressed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// See `ports`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<String>,
    /// `:method`, case-sensitive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// See `methods`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    /// Normalized path without query: exact, `prefix*`, `*suffix`, `*`, or
    /// a template with `{*}` / `{**}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// See `paths`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

/// `Condition` (`when`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Attribute: `source.ip`, `source.namespace`, `source.principal`,
    /// `source.serviceAccount`, `source.trustDomain`, `remote.ip`,
    /// `destination.ip`, `destination.port`, `connection.sni`,
    /// `request.headers[<name>]`, `request.auth.principal`,
    /// `request.auth.audiences`, `request.auth.presenter`,
    /// `request.auth.claims[<c>]` (nested `[a][b]`).
    pub key: String,
    /// Any of these matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// None of these matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}

/// `meshConfig.extensionProviders[].envoyExtAuthzHttp`, named. The filter
/// calls it through the `outbound-http` capability with upstream = `name`
/// (the filter's grant maps that name to the service address).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtAuthzHttpProvider {
    /// `extensionProviders[].name`.
    pub name: String,
    /// Check timeout; default 600 s (Istio's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Prepended to the request path in the check request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Allow the request when the provider cannot be reached or answers 5xx.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail_open: bool,
    /// Status returned when the provider fails and `failOpen` is false;
    /// default `403`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_on_error: Option<String>,
    /// Request headers copied into the check request besides `:method`,
    /// `:path`, `host` and `authorization` (exact, `prefix*`, `*suffix`,
    /// case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_request_headers_in_check: Vec<String>,
    /// Extra headers set on the check request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub include_additional_headers_in_check: BTreeMap<String, String>,
    /// Provider response headers set on the upstream request when allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers_to_upstream_on_allow: Vec<String>,
    /// Provider response headers added to the downstream response when allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers_to_downstream_on_allow: Vec<String>,
    /// Provider response headers returned downstream when denied; empty ⇒
    /// all of them except `host`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers_to_downstream_on_deny: Vec<String>,
}
