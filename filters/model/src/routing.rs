//! Configuration of the `routing` filter: VirtualService `http` routes and
//! Gateway API HTTPRoutes, per destination service.
//!
//! The shapes mirror `networking.istio.io/v1` `VirtualService.spec.http[]`
//! (see [`HttpRoute`]); Gateway API input is in [`crate::gateway`].

use crate::gateway::GatewayHttpRoute;
use crate::{Duration, StringMatch};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The routing filter's configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingConfig {
    /// Namespace of the waypoint: a match's `sourceNamespace` is compared
    /// with it (Istio compares with the proxy's namespace). Matches with a
    /// `sourceNamespace` never match when this is unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waypoint_namespace: Option<String>,
    /// One entry per service the waypoint routes with VirtualServices or
    /// HTTPRoutes. Services absent here get the default route (no action
    /// from the filter: the host forwards to the addressed service).
    #[serde(default)]
    pub services: Vec<ServiceRouting>,
}

/// The routes of one destination service.
///
/// The filter picks the entry whose `host` equals the request's
/// `connection.destination-service`; when the host does not know the
/// service, the `:authority` without port is compared with `host` and
/// `aliases`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRouting {
    /// Fully qualified service name (`reviews.bookinfo.svc.cluster.local`).
    pub host: String,
    /// Other names clients use for the service in `:authority` (`reviews`,
    /// `reviews.bookinfo`); only used when the destination service is unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// VirtualServices bound to this service (VS `hosts` matched the service,
    /// VS in the service's or the waypoint's namespace, bound to `mesh`), in
    /// the order their routes are concatenated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_services: Vec<VirtualServiceRoutes>,
    /// HTTPRoutes whose `parentRefs` name this service (or its
    /// ServiceEntry) and were accepted. Routes are merged, split per match
    /// and sorted by Gateway API precedence by the filter. Mixing with
    /// VirtualServices is undefined in Istio; here VS routes come first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_routes: Vec<GatewayHttpRoute>,
}

/// The `http` routes of one VirtualService.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServiceRoutes {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.http`, verbatim except destination hosts resolved to FQDNs.
    #[serde(default)]
    pub http: Vec<HttpRoute>,
    /// `spec.tcp`, destination hosts resolved to FQDNs. Not used by the
    /// routing filter (TCP connections reach no HTTP hook): the waypoint
    /// applies them to connections on TCP ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpRoute>,
}

/// `VirtualService.spec.tcp[]` (Istio `TCPRoute`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpRoute {
    /// Match conditions, ORed. Empty = every connection.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<L4MatchAttributes>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// `L4MatchAttributes`, with the semantics Istio gives a waypoint's matches
/// (istio-semantics.md §4.1): `gateways` must be empty or include `mesh`;
/// `sourceNamespace` is compared with the waypoint's namespace; a match
/// with `sourceLabels` is dropped (unsupported in ambient);
/// `destinationSubnets` is compared with the address the client dialled
/// (the service VIP or pod IP of the HBONE CONNECT).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L4MatchAttributes {
    /// The service port the client addressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `gateways`: a waypoint is part of `mesh`; a list without it never
    /// matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// `sourceLabels`: the match is dropped.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    /// `sourceNamespace`: compared with the waypoint's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
    /// `destinationSubnets`: IPs or CIDR blocks; the dialled address must be
    /// in one of them. An entry that is neither never matches (the operator
    /// refuses such a VirtualService, as Istio's validation does).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_subnets: Vec<Subnet>,
}

impl L4MatchAttributes {
    /// Does a connection to `port` at `destination` (the address the client
    /// dialled), at a waypoint in `waypoint_ns`, match?
    pub fn matches(
        &self,
        port: u16,
        destination: Option<IpAddr>,
        waypoint_ns: Option<&str>,
    ) -> bool {
        self.port.is_none_or(|p| p == port)
            && (self.gateways.is_empty() || self.gateways.iter().any(|g| g == "mesh"))
            && self.source_labels.is_empty()
            && self
                .source_namespace
                .as_deref()
                .is_none_or(|ns| Some(ns) == waypoint_ns)
            && (self.destination_subnets.is_empty()
                || destination
                    .is_some_and(|ip| self.destination_subnets.iter().any(|s| s.contains(ip))))
    }
}

/// Parses an IP subnet as Istio's `ValidateIPSubnet` accepts it: `a.b.c.d`,
/// `a.b.c.d/n`, or the IPv6 forms. Host bits after the prefix are allowed
/// and ignored, as Go's `net.ParseCIDR` does.
pub fn parse_subnet(subnet: &str) -> Result<(IpAddr, u8), String> {
    match subnet.split_once('/') {
        Some((addr, len)) => {
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| format!("{subnet:?} is not a valid CIDR block"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            match len.parse::<u8>() {
                Ok(n) if n <= max && !len.starts_with('+') => Ok((ip, n)),
                _ => Err(format!("{subnet:?} is not a valid CIDR block")),
            }
        }
        None => {
            let ip: IpAddr = subnet
                .parse()
                .map_err(|_| format!("{subnet} is not a valid IP"))?;
            Ok((ip, if ip.is_ipv4() { 32 } else { 128 }))
        }
    }
}

/// One `destinationSubnets` entry, parsed when the configuration is read
/// (not per connection); it serializes back to the text it came from. An
/// entry that does not parse contains no address.
#[derive(Clone, Debug, PartialEq)]
pub struct Subnet {
    text: String,
    net: Option<(IpAddr, u8)>,
}

impl Subnet {
    /// Parses `text` (see [`parse_subnet`]).
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        let net = parse_subnet(&text).ok();
        Subnet { text, net }
    }

    /// Whether `ip` is in the subnet. An IPv4 address written as
    /// IPv4-mapped IPv6 is compared as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let Some((net, len)) = self.net else {
            return false;
        };
        let bits = |a: IpAddr| match a.to_canonical() {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32u32),
            IpAddr::V6(v6) => (u128::from(v6), 128u32),
        };
        let ((n, width), (a, a_width)) = (bits(net), bits(ip));
        // A /0 shifts by the whole width: `checked_shr` makes both sides 0.
        let shift = width - u32::from(len);
        width == a_width && n.checked_shr(shift).unwrap_or(0) == a.checked_shr(shift).unwrap_or(0)
    }
}

impl Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Subnet::new)
    }
}

/// `RouteDestination`: a destination and its relative weight.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteDestination {
    /// Where to send the connection.
    pub destination: Destination,
    /// Relative weight; a single destination takes 100% whatever its weight.
    #[serde(default)]
    pub weight: i32,
}

impl TcpRoute {
    /// Does a connection to `port` at `destination`, at a waypoint in
    /// `waypoint_ns`, take this route?
    pub fn matches(
        &self,
        port: u16,
        destination: Option<IpAddr>,
        waypoint_ns: Option<&str>,
    ) -> bool {
        self.matches.is_empty()
            || self
                .matches
                .iter()
                .any(|m| m.matches(port, destination, waypoint_ns))
    }

    /// The destination for a draw `r` in `[0, 1)`: relative weights, a
    /// single destination whatever its weight, none when all weigh 0.
    pub fn pick(&self, r: f64) -> Option<&Destination> {
        match self.route.as_slice() {
            [] => None,
            [only] => Some(&only.destination),
            many => {
                let total: i64 = many.iter().map(|d| i64::from(d.weight.max(0))).sum();
                if total == 0 {
                    return None;
                }
                let mut x = (r * total as f64) as i64;
                for d in many {
                    let w = i64::from(d.weight.max(0));
                    if x < w {
                        return Some(&d.destination);
                    }
                    x -= w;
                }
                many.iter()
                    .rev()
                    .find(|d| d.weight > 0)
                    .map(|d| &d.destination)
            }
        }
    }
}

/// `VirtualService.spec.http[]` (Istio `HTTPRoute`).
///
/// Exactly one of `route`, `redirect`, `direct_response` must be set
/// (`delegate` is not supported). `timeout`, `retries` and `fault` are not
/// used by the routing filter: [`crate::derive`] moves them to the retry and
/// fault filters' configurations under this route's id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    /// Optional route name (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Match conditions, ORed. Empty = catch-all (every later route is
    /// unreachable).
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpMatchRequest>,
    /// Weighted destinations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<HttpRouteDestination>,
    /// Answer with a redirect instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<HttpRedirect>,
    /// Answer with a fixed response instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<HttpDirectResponse>,
    /// Path/authority rewrite of the forwarded request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<HttpRewrite>,
    /// Route-level header manipulation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
    /// Route timeout (retry filter). Unset or `0s` = no timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Retry policy (retry filter). Unset = Istio's default policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<crate::retry::HttpRetry>,
    /// Fault injection (fault filter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<crate::fault::HttpFaultInjection>,
    /// Traffic mirroring: `mirror` + `mirrorPercentage` and `mirrors[]`,
    /// as one list (the operator folds the single form into it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<HttpMirror>,
    /// CORS (`corsPolicy`), applied by the routing filter as Envoy's CORS
    /// filter does for the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_policy: Option<CorsPolicy>,
}

/// `CorsPolicy`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CorsPolicy {
    /// Allowed origins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<StringMatch>,
    /// Deprecated exact origins (`allowOrigin`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origin: Vec<String>,
    /// `access-control-allow-methods` of preflight answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    /// `access-control-allow-headers` of preflight answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// `access-control-expose-headers` of actual responses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// `access-control-max-age` (seconds) of preflight answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// `access-control-allow-credentials: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    /// `FORWARD` (default: preflights from other origins go upstream) or
    /// `IGNORE` (they are answered 200 without CORS headers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmatched_preflights: Option<String>,
}

/// One mirror (`HTTPMirrorPolicy`): a copy of each selected request goes to
/// `destination`, fire and forget, with `-shadow` appended to its authority.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpMirror {
    /// Where the copies go.
    pub destination: Destination,
    /// Share of requests mirrored; unset = 100 %, `0` = none (Istio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<crate::fault::Percent>,
}

/// `HTTPMatchRequest`: all set fields must match (AND).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatchRequest {
    /// Optional match name (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Path (without query): exact, raw prefix or RE2 full match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    /// `:scheme`, case-sensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<StringMatch>,
    /// `:method`, case-sensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// `:authority` including any port, case-sensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<StringMatch>,
    /// Header name (case-insensitive) → match; `{}` = present. Keys `uri`,
    /// `scheme`, `method`, `authority` are ignored (Istio semantics);
    /// `@request.auth.claims.*` keys are gateway-only and never match here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
    /// Headers that must NOT match; `{}` = must be absent; a missing header
    /// counts as the empty string for value matches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub without_headers: BTreeMap<String, StringMatch>,
    /// Query parameter → match on its first value (`exact: ""` matches
    /// `?key`); `{}` = present.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query_params: BTreeMap<String, StringMatch>,
    /// `uri` exact/prefix compared ASCII case-insensitively.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_uri_case: bool,
    /// Service port the match is restricted to (the port the client
    /// addressed); the match is dropped for other ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Unsupported in ambient: a match carrying source labels is dropped.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    /// Compared with [`RoutingConfig::waypoint_namespace`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
    /// Gateways the match applies to; when set it must contain `mesh` or the
    /// match is dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
}

/// `HTTPRouteDestination`: a destination and its relative weight.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteDestination {
    /// Where to send the request.
    pub destination: Destination,
    /// Relative weight; share = w/Σw. A single destination takes 100%
    /// whatever its weight; with several, weight 0 receives nothing.
    #[serde(default)]
    pub weight: i32,
    /// Destination-level header manipulation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// `Destination`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// Fully qualified service name (the operator resolves short names in
    /// the VirtualService's namespace).
    pub host: String,
    /// DestinationRule subset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Service port; unset keeps the port the client addressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

/// `PortSelector`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortSelector {
    /// Port number.
    pub number: u16,
}

/// `Headers`: request and response manipulation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Headers {
    /// Applied to the request sent upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderOperations>,
    /// Applied to the response returned downstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderOperations>,
}

/// `HeaderOperations`. Applied like Envoy: removals first, then `set`
/// (overwrite) and `add` (append), each sorted by header name. In a request
/// `set`/`add` of `:authority` or `host` rewrites the authority; other
/// pseudo-headers and `host` are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderOperations {
    /// Overwrite (or add) these headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Append these header values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Remove these headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// `HTTPRewrite`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRewrite {
    /// Replaces the matched part of the path: the matched prefix for prefix
    /// matches, the whole path for exact and regex matches, `/` when the
    /// match has no `uri` (Envoy `prefix_rewrite`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Regex substitution over the path (all matches replaced; `\1` refers to
    /// a capture group, as in RE2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_regex_rewrite: Option<RegexRewrite>,
    /// New `:authority`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
}

/// `RegexRewrite`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegexRewrite {
    /// RE2 pattern.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Substitution, `\N` for capture groups.
    pub rewrite: String,
}

/// `HTTPRedirect`: answered locally with `location`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRedirect {
    /// Replaces the whole path (the original query is kept unless this has
    /// its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Replaces the matched prefix (see [`HttpRewrite::uri`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_rewrite: Option<String>,
    /// New host (without port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Explicit port (`80` with `http` and `443` with `https` are omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `FROM_PROTOCOL_DEFAULT` (no port) or `FROM_REQUEST_PORT` (the
    /// service port the request addressed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derive_port: Option<DerivePort>,
    /// `http` or `https`; unset keeps the request's scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// 301 (default), 302, 303, 307 or 308.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_code: Option<u16>,
}

/// `HTTPRedirect.derivePort`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DerivePort {
    /// No port in `location` (the scheme's default).
    FromProtocolDefault,
    /// The port the request addressed.
    FromRequestPort,
}

/// `HTTPDirectResponse`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpDirectResponse {
    /// Status, 200–599 (Istio also lets 600 through).
    pub status: u16,
    /// Optional body (`content-type: text/plain` when non-empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<HttpBody>,
}

/// `HTTPBody`: one of `string` or `bytes` (base64, standard alphabet).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpBody {
    /// Text body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string: Option<String>,
    /// Binary body, base64 (standard alphabet, padded), as protobuf JSON
    /// encodes `bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<String>,
}

#[cfg(test)]
mod tcp_route_tests {
    use super::*;

    fn dest(subset: &str, weight: i32) -> RouteDestination {
        RouteDestination {
            destination: Destination {
                host: "db.shop.svc.cluster.local".into(),
                subset: Some(subset.into()),
                port: None,
            },
            weight,
        }
    }

    #[test]
    fn port_matches_and_weighted_picks() {
        let r: TcpRoute = serde_json::from_value(serde_json::json!({
            "match": [{"port": 5432, "gateways": ["mesh"]}],
            "route": [{"destination": {"host": "db.shop.svc.cluster.local", "subset": "v1"}, "weight": 75},
                      {"destination": {"host": "db.shop.svc.cluster.local", "subset": "v2"}, "weight": 25}]
        }))
        .unwrap();
        assert!(r.matches(5432, None, None));
        assert!(!r.matches(5433, None, None));
        let sub = |x: f64| r.pick(x).unwrap().subset.clone().unwrap();
        assert_eq!(sub(0.0), "v1");
        assert_eq!(sub(0.74), "v1");
        assert_eq!(sub(0.76), "v2");
        assert_eq!(sub(0.999), "v2");
        let only = TcpRoute {
            matches: vec![],
            route: vec![dest("v9", 0)],
        };
        assert!(only.matches(1, None, None));
        assert_eq!(only.pick(0.5).unwrap().subset.as_deref(), Some("v9"));
        let zero = TcpRoute {
            matches: vec![],
            route: vec![dest("a", 0), dest("b", 0)],
        };
        assert!(zero.pick(0.5).is_none());
        let other_gw: L4MatchAttributes =
            serde_json::from_value(serde_json::json!({"port": 1, "gateways": ["istio-system/gw"]}))
                .unwrap();
        assert!(!other_gw.matches(1, None, None));
        let with_mesh: L4MatchAttributes = serde_json::from_value(
            serde_json::json!({"port": 1, "gateways": ["istio-system/gw", "mesh"]}),
        )
        .unwrap();
        assert!(with_mesh.matches(1, None, None));
        let labels: L4MatchAttributes =
            serde_json::from_value(serde_json::json!({"sourceLabels": {"app": "x"}})).unwrap();
        assert!(!labels.matches(1, None, Some("shop")));
        let ns: L4MatchAttributes =
            serde_json::from_value(serde_json::json!({"sourceNamespace": "shop"})).unwrap();
        assert!(ns.matches(1, None, Some("shop")));
        assert!(!ns.matches(1, None, Some("other")));
        assert!(!ns.matches(1, None, None));
        let subnets: L4MatchAttributes = serde_json::from_value(
            serde_json::json!({"destinationSubnets": ["10.0.0.0/8", "fd00::1", "192.168.1.7"]}),
        )
        .unwrap();
        let ip = |s: &str| Some(s.parse().unwrap());
        assert!(subnets.matches(1, ip("10.96.0.10"), Some("shop")));
        assert!(subnets.matches(1, ip("::ffff:10.1.2.3"), None));
        assert!(subnets.matches(1, ip("fd00::1"), None));
        assert!(subnets.matches(1, ip("192.168.1.7"), None));
        assert!(!subnets.matches(1, ip("192.168.1.8"), None));
        assert!(!subnets.matches(1, ip("11.0.0.1"), None));
        assert!(!subnets.matches(1, ip("fd00::2"), None));
        assert!(!subnets.matches(1, None, None), "unknown destination");
        let bad: L4MatchAttributes =
            serde_json::from_value(serde_json::json!({"destinationSubnets": ["10.0.0.0/33"]}))
                .unwrap();
        assert!(!bad.matches(1, ip("10.0.0.1"), None));
    }

    #[test]
    fn subnets_parse_as_istio_validates_them() {
        let ok = |s: &str| parse_subnet(s).unwrap();
        assert_eq!(ok("10.1.2.3/8").1, 8);
        assert_eq!(ok("10.1.2.3").1, 32);
        assert_eq!(ok("2001:db8::/32").1, 32);
        assert_eq!(ok("::1").1, 128);
        assert_eq!(ok("0.0.0.0/0").1, 0);
        assert_eq!(
            parse_subnet("10.0.0.0/33").unwrap_err(),
            "\"10.0.0.0/33\" is not a valid CIDR block"
        );
        assert!(parse_subnet("10.0.0/8").is_err());
        assert!(parse_subnet("10.0.0.0/+8").is_err());
        assert!(parse_subnet("2001:db8::/129").is_err());
        assert_eq!(parse_subnet("nope").unwrap_err(), "nope is not a valid IP");
        let v4 = "1.2.3.4".parse().unwrap();
        assert!(Subnet::new("0.0.0.0/0").contains(v4));
        assert!(!Subnet::new("::/0").contains(v4));
        assert!(!Subnet::new("x").contains(v4));
        assert_eq!(
            serde_json::to_value(Subnet::new("10.1.2.3/8")).unwrap(),
            serde_json::json!("10.1.2.3/8")
        );
    }
}
