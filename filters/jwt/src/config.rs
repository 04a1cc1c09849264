//! `jwtRules` → compiled providers: JWKS parsed, locations resolved.

use crate::ConfigError;
use crate::token::sanitize_audience;
use filter_model::jwt::JwtRule;
use serde_json::Value;

/// Claims always split on spaces (Istio adds them to every provider).
const SPACE_DELIMITED: [&str; 2] = ["scope", "permission"];

/// Where a token may be.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Location {
    /// Header (lower-case name) with an optional value prefix.
    Header { name: String, prefix: String },
    /// Query parameter.
    Param(String),
    /// Cookie.
    Cookie(String),
}

impl Location {
    /// Envoy extracts header locations first, then parameters, then cookies.
    pub(crate) fn order(&self) -> u8 {
        match self {
            Location::Header { .. } => 0,
            Location::Param(_) => 1,
            Location::Cookie(_) => 2,
        }
    }
}

/// One key of a JWKS.
#[derive(Clone, Debug)]
pub(crate) struct Jwk {
    pub kid: Option<String>,
    pub alg: Option<String>,
    pub kty: String,
    /// The key as JSON, handed to the verifier.
    pub json: String,
}

impl Jwk {
    /// Key type usable for a JOSE algorithm family.
    pub(crate) fn fits(&self, alg: &str) -> bool {
        match self.kty.as_str() {
            "RSA" => alg.starts_with("RS") || alg.starts_with("PS"),
            "EC" => alg.starts_with("ES"),
            "oct" => alg.starts_with("HS"),
            "OKP" => alg == "EdDSA",
            _ => false,
        }
    }
}

/// A compiled `JWTRule` (an Envoy `JwtProvider`).
#[derive(Clone, Debug)]
pub(crate) struct Provider {
    pub issuer: String,
    /// Sanitized.
    pub audiences: Vec<String>,
    pub keys: Vec<Jwk>,
    pub locations: Vec<Location>,
    pub payload_header: Option<String>,
    /// (header, claim path)
    pub claim_headers: Vec<(String, Vec<String>)>,
    pub forward: bool,
    pub space_delimited: Vec<String>,
}

fn parse_jwks(jwks: &str, issuer: &str) -> Result<Vec<Jwk>, ConfigError> {
    let invalid = |why: String| {
        ConfigError::Invalid(format!(
            "jwtRules issuer {issuer:?}: jwks parse error: {why}"
        ))
    };
    let v: Value = serde_json::from_str(jwks).map_err(|e| invalid(e.to_string()))?;
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("no \"keys\" array".into()))?;
    Ok(keys
        .iter()
        .filter_map(|k| {
            let kty = k.get("kty")?.as_str()?.to_owned();
            Some(Jwk {
                kid: k.get("kid").and_then(Value::as_str).map(str::to_owned),
                alg: k.get("alg").and_then(Value::as_str).map(str::to_owned),
                kty,
                json: k.to_string(),
            })
        })
        .collect())
}

impl Provider {
    pub(crate) fn compile(r: &JwtRule) -> Result<Self, ConfigError> {
        let keys = parse_jwks(&r.jwks, &r.issuer)?;
        let mut locations: Vec<Location> = r
            .from_headers
            .iter()
            .map(|h| Location::Header {
                name: h.name.to_ascii_lowercase(),
                prefix: h.prefix.clone().unwrap_or_default(),
            })
            .chain(r.from_params.iter().map(|p| Location::Param(p.clone())))
            .chain(r.from_cookies.iter().map(|c| Location::Cookie(c.clone())))
            .collect();
        if locations.is_empty() {
            locations = vec![
                Location::Header {
                    name: "authorization".into(),
                    prefix: "Bearer ".into(),
                },
                Location::Param("access_token".into()),
            ];
        }
        for c in &r.output_claim_to_headers {
            if c.header.is_empty()
                || !c
                    .header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ConfigError::Invalid(format!(
                    "jwtRules issuer {:?}: outputClaimToHeaders header {:?} must match ^[-_A-Za-z0-9]+$",
                    r.issuer, c.header
                )));
            }
        }
        let mut space_delimited: Vec<String> =
            SPACE_DELIMITED.iter().map(|s| (*s).to_owned()).collect();
        for c in &r.space_delimited_claims {
            if !space_delimited.contains(c) {
                space_delimited.push(c.clone());
            }
        }
        Ok(Provider {
            issuer: r.issuer.clone(),
            audiences: r
                .audiences
                .iter()
                .map(|a| sanitize_audience(a).to_owned())
                .collect(),
            keys,
            locations,
            payload_header: r
                .output_payload_to_header
                .clone()
                .filter(|h| !h.is_empty())
                .map(|h| h.to_ascii_lowercase()),
            claim_headers: r
                .output_claim_to_headers
                .iter()
                .map(|c| {
                    (
                        c.header.to_ascii_lowercase(),
                        c.claim.split('.').map(str::to_owned).collect(),
                    )
                })
                .collect(),
            forward: r.forward_original_token,
            space_delimited,
        })
    }

    /// `jwt_verify_lib::CheckAudience`: empty = unchecked.
    pub(crate) fn audience_allowed(&self, aud: &[String]) -> bool {
        self.audiences.is_empty()
            || aud
                .iter()
                .any(|a| self.audiences.iter().any(|c| c == sanitize_audience(a)))
    }
}
