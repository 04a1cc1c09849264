//! The first-party JWT filter: RequestAuthentication `jwtRules` evaluated as
//! Envoy's `jwt_authn` filter configured by Istio.
//!
//! 1. [`JwtAuthenticator::from_json`] compiles a
//!    [`filter_model::jwt::JwtConfig`] (JWKS parsed, token locations
//!    resolved, rules indexed by target service).
//! 2. [`JwtAuthenticator::authenticate`] extracts tokens (default
//!    `Authorization: Bearer` and `?access_token=`), checks issuer, audiences
//!    (403), `exp`/`nbf` with a 60 s skew and the signature through a
//!    [`SignatureVerifier`] — the host's `crypto.verify` in the guest,
//!    [`native::RingVerifier`] natively — and returns a [`Verdict`]:
//!    continue (with the end-user [`Identity`] and header changes) or reject
//!    (`401` + `www-authenticate`, or `403` for audiences). No token ⇒
//!    continue without identity; CORS preflights bypass the filter.
//!
//! Parsed tokens and signature results are kept in a bounded per-instance
//! cache, so a client presenting the same token skips the signature check.

mod config;
mod extract;
#[cfg(target_arch = "wasm32")]
mod guest;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
pub mod token;
mod verify;

use config::{Location, Provider};
use filter_model::jwt::JwtConfig;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use token::JwtStatus;
use verify::{Requirement, Run, TokenCache};

/// Envoy's default `clock_skew_seconds` (Istio does not expose it).
pub const CLOCK_SKEW_SECS: u64 = 60;
/// Tokens remembered per instance by default.
pub const DEFAULT_CACHE_ENTRIES: usize = filter_model::jwt::DEFAULT_TOKEN_CACHE_ENTRIES as usize;

/// Why a JWT configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not the JWT configuration's shape.
    #[error("invalid jwt config JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A value Istio's validation rejects.
    #[error("{0}")]
    Invalid(String),
}

/// Verifies a signature with a JSON Web Key (the WIT `crypto.verify`).
pub trait SignatureVerifier {
    /// `Ok(false)`: well-formed but wrong signature; `Err`: unusable key or
    /// algorithm.
    fn verify(
        &self,
        alg: &str,
        jwk: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, String>;
}

/// The request as the JWT filter sees it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:scheme`.
    pub scheme: &'a str,
    /// `:authority`.
    pub authority: &'a str,
    /// Path without query.
    pub path: &'a str,
    /// Raw query.
    pub query: Option<&'a str>,
    /// Headers.
    pub headers: &'a [(String, String)],
    /// FQDN of the addressed service.
    pub destination_service: Option<&'a str>,
}

/// The validated end-user identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `<iss>/<sub>`.
    pub principal: String,
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// `aud`.
    pub audiences: Vec<String>,
    /// `azp`.
    pub presenter: Option<String>,
    /// Payload JSON with space-delimited claims (`scope`, `permission`, …)
    /// split into lists.
    pub claims: String,
}

/// A request header change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderOp {
    /// Delete.
    Remove(String),
    /// Overwrite.
    Set(String, String),
}

/// The filter's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No rule applies, or a CORS preflight: nothing to do.
    Skip,
    /// Go on.
    Continue {
        /// Set when a token was verified.
        identity: Option<Identity>,
        /// Request header changes (sanitizing output headers, removing the
        /// token, payload and claim headers), in order.
        headers: Vec<HeaderOp>,
    },
    /// Answer with this.
    Reject {
        /// 401, or 403 for audiences.
        status: u16,
        /// `www-authenticate` value.
        www_authenticate: String,
        /// Why.
        reason: JwtStatus,
    },
}

/// A compiled JWT configuration.
#[derive(Debug)]
pub struct JwtAuthenticator {
    max_token_bytes: usize,
    providers: Vec<Provider>,
    global: Vec<usize>,
    by_service: HashMap<String, Vec<usize>>,
    cache: RefCell<TokenCache>,
}

/// Envoy cuts the request path (query included) in the
/// `WWW-Authenticate` realm at this many bytes.
const MAX_REALM_PATH: usize = 256;

impl JwtAuthenticator {
    /// The request headers authentication reads (lower-case, sorted): the
    /// configured token headers, `cookie` when a rule reads cookies, the
    /// two headers of the CORS-preflight bypass, and the output headers
    /// (`outputPayloadToHeader`, `outputClaimToHeaders`), which must be
    /// seen to be stripped from what the client sent.
    pub fn header_names(&self) -> Vec<String> {
        let mut names = vec![
            "access-control-request-method".to_string(),
            "origin".to_string(),
        ];
        for p in &self.providers {
            names.extend(
                p.payload_header
                    .iter()
                    .chain(p.claim_headers.iter().map(|(h, _)| h))
                    .map(|h| h.to_ascii_lowercase()),
            );
        }
        for loc in self.providers.iter().flat_map(|p| &p.locations) {
            match loc {
                Location::Header { name, .. } => names.push(name.to_ascii_lowercase()),
                Location::Cookie(_) => names.push("cookie".to_string()),
                Location::Param(_) => {}
            }
        }
        names.sort();
        names.dedup();
        names
    }
}

impl Default for JwtAuthenticator {
    fn default() -> Self {
        JwtAuthenticator::compile(&JwtConfig::default())
            .unwrap_or_else(|_| unreachable!("empty config compiles"))
    }
}

impl JwtAuthenticator {
    /// Parses and compiles the filter's JSON configuration (empty = no rules).
    pub fn from_json(config: &[u8]) -> Result<Self, ConfigError> {
        if config.iter().all(u8::is_ascii_whitespace) {
            return Ok(JwtAuthenticator::default());
        }
        Self::compile(&serde_json::from_slice(config)?)
    }

    /// Compiles a configuration.
    pub fn compile(cfg: &JwtConfig) -> Result<Self, ConfigError> {
        let mut providers = Vec::new();
        let mut targets: Vec<Vec<String>> = Vec::new();
        for ra in &cfg.request_authentications {
            for rule in &ra.jwt_rules {
                if rule.issuer.is_empty() && rule.jwks_uri.as_deref().unwrap_or("").is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "RequestAuthentication {}/{}: issuer or jwksUri must be non-empty string",
                        ra.namespace, ra.name
                    )));
                }
                providers.push(Provider::compile(rule)?);
                targets.push(
                    ra.target_services
                        .iter()
                        .map(|s| s.to_ascii_lowercase())
                        .collect(),
                );
            }
        }
        // Istio sorts the concatenated rules by issuer.
        let mut order: Vec<usize> = (0..providers.len()).collect();
        order.sort_by(|&a, &b| providers[a].issuer.cmp(&providers[b].issuer));
        let global: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| targets[i].is_empty())
            .collect();
        let mut by_service: HashMap<String, Vec<usize>> = HashMap::new();
        for svc in targets.iter().flatten() {
            if by_service.contains_key(svc) {
                continue;
            }
            let list = order
                .iter()
                .copied()
                .filter(|&i| targets[i].is_empty() || targets[i].contains(svc))
                .collect();
            by_service.insert(svc.clone(), list);
        }
        Ok(JwtAuthenticator {
            max_token_bytes: usize::try_from(cfg.max_token_bytes).unwrap_or(usize::MAX),
            providers,
            global,
            by_service,
            cache: RefCell::new(TokenCache::new(
                usize::try_from(cfg.token_cache_entries).unwrap_or(DEFAULT_CACHE_ENTRIES),
            )),
        })
    }

    /// Changes the token cache size (0 disables it; for benchmarks).
    pub fn set_cache_capacity(&self, entries: usize) {
        self.cache.borrow_mut().set_capacity(entries);
    }

    fn applicable(&self, svc: Option<&str>) -> &[usize] {
        match svc.and_then(|s| self.by_service.get(&s.to_ascii_lowercase())) {
            Some(list) => list,
            None => &self.global,
        }
    }

    /// Authenticates one request at `now` (Unix seconds).
    pub fn authenticate(
        &self,
        req: &Request<'_>,
        now: u64,
        verifier: &dyn SignatureVerifier,
    ) -> Verdict {
        let applicable = self.applicable(req.destination_service);
        if applicable.is_empty() || is_cors_preflight(req) {
            return Verdict::Skip;
        }
        // Envoy strips the output headers of the providers first, so a client
        // cannot forge them.
        let mut headers = Vec::new();
        for &p in applicable {
            let prov = &self.providers[p];
            for h in prov
                .payload_header
                .iter()
                .chain(prov.claim_headers.iter().map(|(h, _)| h))
            {
                if req.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(h))
                    && !headers.contains(&HeaderOp::Remove(h.clone()))
                {
                    headers.push(HeaderOp::Remove(h.clone()));
                }
            }
        }
        let mut run = Run::new(
            &self.providers,
            applicable,
            req.headers,
            req.query,
            now,
            self.max_token_bytes,
            verifier,
            &self.cache,
        );
        if run.no_tokens() {
            return Verdict::Continue {
                identity: None,
                headers,
            };
        }
        if let Err(reason) = run.eval(&Requirement::istio(applicable)) {
            // Envoy's `buildOriginalUri(headers, 256)`: the path with its
            // query, cut at 256 bytes.
            let mut path = req.path.to_string();
            if let Some(q) = req.query {
                path.push('?');
                path.push_str(q);
            }
            let mut cut = path.len().min(MAX_REALM_PATH);
            while !path.is_char_boundary(cut) {
                cut -= 1;
            }
            path.truncate(cut);
            let mut realm = format!("Bearer realm=\"{}://{}{path}\"", req.scheme, req.authority);
            if reason != JwtStatus::Missed {
                realm.push_str(", error=\"invalid_token\"");
            }
            return Verdict::Reject {
                status: reason.http_status(),
                www_authenticate: realm,
                reason,
            };
        }
        let mut identity = None;
        let mut seen: Vec<&str> = Vec::new();
        for (jwt, loc, p) in &run.successes {
            let prov = &self.providers[*p];
            if !seen.contains(&jwt.signed.as_str()) {
                seen.push(&jwt.signed);
                if let (false, Location::Header { name, .. }) = (prov.forward, loc) {
                    let op = HeaderOp::Remove(name.clone());
                    if !headers.contains(&op) {
                        headers.push(op);
                    }
                }
                if let Some(h) = &prov.payload_header {
                    headers.push(HeaderOp::Set(h.clone(), jwt.payload_b64.clone()));
                }
                for (h, path) in &prov.claim_headers {
                    if let Some(v) = claim_header_value(&jwt.payload, path) {
                        headers.push(HeaderOp::Set(h.clone(), v));
                    }
                }
            }
            identity = Some(Identity {
                principal: format!("{}/{}", jwt.iss, jwt.sub),
                issuer: jwt.iss.clone(),
                subject: jwt.sub.clone(),
                audiences: jwt.aud.clone(),
                presenter: jwt.azp.clone(),
                claims: jwt
                    .claims_json(*p, |payload| {
                        normalized_claims(payload, &prov.space_delimited)
                    })
                    .to_string(),
            });
        }
        Verdict::Continue { identity, headers }
    }
}

/// Envoy `isCorsPreflightRequest`.
fn is_cors_preflight(req: &Request<'_>) -> bool {
    let has = |name: &str| {
        req.headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case(name) && !v.is_empty())
    };
    req.method == "OPTIONS" && has("origin") && has("access-control-request-method")
}

/// `outputClaimToHeaders`: string, integer or boolean claims (nested `a.b`);
/// anything else leaves the header absent.
fn claim_header_value(payload: &serde_json::Map<String, Value>, path: &[String]) -> Option<String> {
    let (first, rest) = path.split_first()?;
    let mut v = payload.get(first)?;
    for key in rest {
        v = v.get(key.as_str())?;
    }
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
            (_, _, Some(f)) => f.to_string(),
            _ => return None,
        },
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

/// The payload with space-delimited string claims split into lists.
fn normalized_claims(payload: &serde_json::Map<String, Value>, split: &[String]) -> String {
    if !split
        .iter()
        .any(|c| matches!(payload.get(c), Some(Value::String(_))))
    {
        return serde_json::to_string(payload).unwrap_or_else(|_| "{}".into());
    }
    let mut out = payload.clone();
    for c in split {
        if let Some(Value::String(s)) = out.get(c) {
            let list = s
                .split(' ')
                .filter(|x| !x.is_empty())
                .map(|x| Value::String(x.to_owned()))
                .collect();
            out.insert(c.clone(), Value::Array(list));
        }
    }
    serde_json::to_string(&out).unwrap_or_else(|_| "{}".into())
}
