//! Configuration of the `jwt` filter: RequestAuthentications attached to the
//! waypoint (`security.istio.io/v1`), evaluated as Envoy `jwt_authn`
//! configured by Istio.
//!
//! The operator resolves attachment (as for AuthorizationPolicy) and JWKS:
//! every rule carries its key set inline in `jwks` (fetched from `jwksUri`
//! or the issuer's OpenID discovery document by the operator). A rule whose
//! keys could not be fetched must still be listed, with `jwks` set to
//! `{"keys":[]}`: its tokens are then rejected (Istio fails closed).

use serde::{Deserialize, Serialize};

/// Default cap on a token's length in bytes: the waypoint's request-head
/// limit (64 KiB), so only the limit on headers applies, as in Envoy, whose
/// `jwt_authn` has none of its own.
pub const DEFAULT_MAX_TOKEN_BYTES: u32 = 64 * 1024;
/// Default number of verified tokens remembered per filter instance.
pub const DEFAULT_TOKEN_CACHE_ENTRIES: u32 = 128;

/// The JWT filter's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtConfig {
    /// Tokens longer than this are rejected with 401 before decoding.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: u32,
    /// Tokens whose parsing and signature check are remembered per filter
    /// instance (time, issuer and audiences are re-checked on every
    /// request); 0 disables the cache.
    #[serde(default = "default_token_cache_entries")]
    pub token_cache_entries: u32,
    /// The RequestAuthentications that apply to this waypoint.
    #[serde(default)]
    pub request_authentications: Vec<RequestAuthentication>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            token_cache_entries: DEFAULT_TOKEN_CACHE_ENTRIES,
            request_authentications: Vec::new(),
        }
    }
}

fn default_max_token_bytes() -> u32 {
    DEFAULT_MAX_TOKEN_BYTES
}

fn default_token_cache_entries() -> u32 {
    DEFAULT_TOKEN_CACHE_ENTRIES
}

/// One RequestAuthentication as attached to this waypoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestAuthentication {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// FQDNs of the services covered; empty = all traffic of the waypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_services: Vec<String>,
    /// `spec.jwtRules`. Rules of every applicable RequestAuthentication are
    /// concatenated and sorted by issuer, as Istio does.
    #[serde(default)]
    pub jwt_rules: Vec<JwtRule>,
}

/// `JWTRule`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtRule {
    /// Required `iss`; empty accepts any issuer (only legal with `jwksUri`).
    #[serde(default)]
    pub issuer: String,
    /// Accepted `aud` values (an `http(s)://` prefix and a trailing `/` are
    /// ignored on both sides); empty ⇒ audience not checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Inline JWKS JSON (`{"keys":[...]}`), required.
    #[serde(default)]
    pub jwks: String,
    /// Informational: where the operator fetched `jwks` from. Never fetched
    /// by the filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Header locations; with none of `fromHeaders`/`fromParams`/`fromCookies`
    /// set, the defaults are `Authorization: Bearer <t>` and `?access_token=`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_headers: Vec<JwtHeader>,
    /// Query parameter locations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_params: Vec<String>,
    /// Cookie locations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_cookies: Vec<String>,
    /// Header receiving the token's payload (base64url) after verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_payload_to_header: Option<String>,
    /// Claims copied to headers after verification.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// Keep the token in the forwarded request (default: a token found in a
    /// header is removed; tokens in query parameters and cookies are kept,
    /// as Envoy does).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_original_token: bool,
    /// Claims split on spaces into lists (besides `scope` and `permission`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub space_delimited_claims: Vec<String>,
}

/// `JWTHeader`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtHeader {
    /// Header name.
    pub name: String,
    /// Value prefix, e.g. `Bearer `; a header whose value does not contain it
    /// is not a token location for this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// `ClaimToHeader`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimToHeader {
    /// Header name (`^[-_A-Za-z0-9]+$`).
    pub header: String,
    /// Claim name; nested claims as `a.b.c`.
    pub claim: String,
}
