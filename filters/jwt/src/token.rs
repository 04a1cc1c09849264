//! JWT parsing and the verification statuses of Google's
//! `jwt_verify_lib` (which Envoy's `jwt_authn` uses), with its messages.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::rc::Rc;

/// Why a token was not accepted (`jwt_verify_lib::Status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtStatus {
    /// No token in any location.
    Missed,
    /// Not three base64url sections separated by dots.
    BadFormat,
    /// Header is not base64url.
    HeaderBadBase64,
    /// Header is not a JSON object.
    HeaderBadJson,
    /// `alg` missing or not a string.
    HeaderBadAlg,
    /// `alg` not supported (e.g. `none`).
    HeaderNotImplementedAlg,
    /// `kid` not a string.
    HeaderBadKid,
    /// Payload is not base64url.
    PayloadBadBase64,
    /// Payload is not a JSON object.
    PayloadBadJson,
    /// `iss` not a string.
    IssNotString,
    /// `sub` not a string.
    SubNotString,
    /// `iat` not a non-negative integer.
    IatNotInteger,
    /// `nbf` not a non-negative integer.
    NbfNotInteger,
    /// `exp` not a non-negative integer.
    ExpNotInteger,
    /// `aud` neither a string nor a list of strings.
    AudNotString,
    /// `jti` not a string.
    JtiNotString,
    /// Signature is not base64url.
    SignatureBadBase64,
    /// `iss` is not configured for the location the token came from.
    UnknownIssuer,
    /// `aud` not among the rule's audiences (403).
    AudienceNotAllowed,
    /// `nbf` in the future (beyond the clock skew).
    NotYetValid,
    /// `exp` in the past (beyond the clock skew).
    Expired,
    /// No key of the JWKS matches the token's `kid`/`alg`.
    KidAlgMismatch,
    /// A matching key did not verify the signature.
    VerificationFail,
    /// Longer than the configured maximum.
    TooLong,
}

impl JwtStatus {
    /// The message Envoy returns in the response body.
    pub fn message(self) -> &'static str {
        use JwtStatus::*;
        match self {
            Missed => "Jwt is missing",
            BadFormat => {
                "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
            }
            HeaderBadBase64 => "Jwt header is an invalid Base64url encoded",
            HeaderBadJson => "Jwt header is an invalid JSON",
            HeaderBadAlg => "Jwt header [alg] field is required and must be a string",
            HeaderNotImplementedAlg => "Jwt header [alg] is not supported",
            HeaderBadKid => "Jwt header [kid] field is not a string",
            PayloadBadBase64 => "Jwt payload is an invalid Base64url encoded",
            PayloadBadJson => "Jwt payload is an invalid JSON",
            IssNotString => "Jwt payload [iss] field is not a string",
            SubNotString => "Jwt payload [sub] field is not a string",
            IatNotInteger => "Jwt payload [iat] field is not an integer",
            NbfNotInteger => "Jwt payload [nbf] field is not an integer",
            ExpNotInteger => "Jwt payload [exp] field is not an integer",
            AudNotString => "Jwt payload [aud] field is not a string or string list",
            JtiNotString => "Jwt payload [jti] field is not a string",
            SignatureBadBase64 => "Jwt signature is an invalid Base64url encoded",
            UnknownIssuer => "Jwt issuer is not configured",
            AudienceNotAllowed => "Audiences in Jwt are not allowed",
            NotYetValid => "Jwt not yet valid",
            Expired => "Jwt is expired",
            KidAlgMismatch => "Jwks doesn't have key to match kid or alg from Jwt",
            VerificationFail => "Jwt verification fails",
            TooLong => "Jwt is too long",
        }
    }

    /// HTTP status of a rejection: 403 for audiences, else 401.
    pub fn http_status(self) -> u16 {
        if self == JwtStatus::AudienceNotAllowed {
            403
        } else {
            401
        }
    }
}

/// Algorithms `jwt_verify_lib` implements.
pub const ALGORITHMS: [&str; 13] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "HS256",
    "HS384", "HS512", "EdDSA",
];

/// A parsed (not yet verified) token.
#[derive(Debug)]
pub struct ParsedJwt {
    /// `alg`.
    pub alg: String,
    /// `kid`.
    pub kid: Option<String>,
    /// `iss` (empty when absent).
    pub iss: String,
    /// `sub` (empty when absent).
    pub sub: String,
    /// `aud` as a list.
    pub aud: Vec<String>,
    /// `azp`.
    pub azp: Option<String>,
    /// `exp` (0 = none).
    pub exp: u64,
    /// `nbf` (0 = none).
    pub nbf: u64,
    /// The payload object.
    pub payload: Map<String, Value>,
    /// The payload section as received (for `outputPayloadToHeader`).
    pub payload_b64: String,
    /// `header.payload`, the signed bytes.
    pub signed: String,
    /// Raw signature.
    pub signature: Vec<u8>,
    /// Normalized claims JSON, computed once per (token, provider).
    claims_json: RefCell<Option<(usize, Rc<str>)>>,
}

/// base64url with or without padding.
fn b64url(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

fn uint(v: Option<&Value>, err: JwtStatus) -> Result<u64, JwtStatus> {
    match v {
        None => Ok(0),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .ok_or(err),
        Some(_) => Err(err),
    }
}

fn opt_str(v: Option<&Value>, err: JwtStatus) -> Result<String, JwtStatus> {
    match v {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(err),
    }
}

impl ParsedJwt {
    /// `Jwt::parseFromString`.
    pub fn parse(token: &str) -> Result<Self, JwtStatus> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtStatus::BadFormat);
        };
        let header_bytes = b64url(h).ok_or(JwtStatus::HeaderBadBase64)?;
        let header: Map<String, Value> =
            serde_json::from_slice(&header_bytes).map_err(|_| JwtStatus::HeaderBadJson)?;
        let alg = match header.get("alg") {
            Some(Value::String(a)) => a.clone(),
            _ => return Err(JwtStatus::HeaderBadAlg),
        };
        if !ALGORITHMS.contains(&alg.as_str()) {
            return Err(JwtStatus::HeaderNotImplementedAlg);
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err(JwtStatus::HeaderBadKid),
        };
        let payload_bytes = b64url(p).ok_or(JwtStatus::PayloadBadBase64)?;
        let payload: Map<String, Value> =
            serde_json::from_slice(&payload_bytes).map_err(|_| JwtStatus::PayloadBadJson)?;
        let iss = opt_str(payload.get("iss"), JwtStatus::IssNotString)?;
        let sub = opt_str(payload.get("sub"), JwtStatus::SubNotString)?;
        opt_str(payload.get("jti"), JwtStatus::JtiNotString)?;
        uint(payload.get("iat"), JwtStatus::IatNotInteger)?;
        let nbf = uint(payload.get("nbf"), JwtStatus::NbfNotInteger)?;
        let exp = uint(payload.get("exp"), JwtStatus::ExpNotInteger)?;
        let aud = match payload.get("aud") {
            None => Vec::new(),
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or(JwtStatus::AudNotString))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(JwtStatus::AudNotString),
        };
        let azp = payload
            .get("azp")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let signature = b64url(s).ok_or(JwtStatus::SignatureBadBase64)?;
        Ok(ParsedJwt {
            alg,
            kid,
            iss,
            sub,
            aud,
            azp,
            exp,
            nbf,
            payload,
            payload_b64: p.to_owned(),
            signed: format!("{h}.{p}"),
            signature,
            claims_json: RefCell::new(None),
        })
    }

    /// The claims JSON handed to later filters for `provider`, computed on
    /// first use and kept with the (cached) token.
    pub fn claims_json(
        &self,
        provider: usize,
        make: impl FnOnce(&Map<String, Value>) -> String,
    ) -> Rc<str> {
        if let Some((p, json)) = self.claims_json.borrow().as_ref()
            && *p == provider
        {
            return json.clone();
        }
        let json: Rc<str> = make(&self.payload).into();
        *self.claims_json.borrow_mut() = Some((provider, json.clone()));
        json
    }

    /// `verifyTimeConstraint(now, skew)`.
    pub fn check_time(&self, now: u64, skew: u64) -> Result<(), JwtStatus> {
        if self.nbf > now.saturating_add(skew) {
            return Err(JwtStatus::NotYetValid);
        }
        if self.exp != 0 && now > self.exp.saturating_add(skew) {
            return Err(JwtStatus::Expired);
        }
        Ok(())
    }
}

/// `jwt_verify_lib` audience sanitizing: `http(s)://` prefix and a trailing
/// `/` ignored.
pub fn sanitize_audience(aud: &str) -> &str {
    let a = aud
        .strip_prefix("http://")
        .or_else(|| aud.strip_prefix("https://"))
        .unwrap_or(aud);
    a.strip_suffix('/').unwrap_or(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &str) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    #[test]
    fn parse_statuses() {
        let h = enc(r#"{"alg":"RS256","kid":"k"}"#);
        let p = enc(r#"{"iss":"i","sub":"s","aud":["a","b"],"exp":10,"nbf":5}"#);
        let ok = ParsedJwt::parse(&format!("{h}.{p}.c2ln")).unwrap();
        assert_eq!(
            (ok.iss.as_str(), ok.aud.len(), ok.exp, ok.kid.as_deref()),
            ("i", 2, 10, Some("k"))
        );
        let cases = [
            ("a.b".to_owned(), JwtStatus::BadFormat),
            (format!("!!.{p}.c2ln"), JwtStatus::HeaderBadBase64),
            (
                format!("{}.{p}.c2ln", enc("nope")),
                JwtStatus::HeaderBadJson,
            ),
            (
                format!("{}.{p}.c2ln", enc(r#"{"alg":"none"}"#)),
                JwtStatus::HeaderNotImplementedAlg,
            ),
            (
                format!("{}.{p}.c2ln", enc(r#"{"kid":"x"}"#)),
                JwtStatus::HeaderBadAlg,
            ),
            (
                format!("{h}.{}.c2ln", enc(r#"{"exp":"soon"}"#)),
                JwtStatus::ExpNotInteger,
            ),
            (
                format!("{h}.{}.c2ln", enc(r#"{"aud":7}"#)),
                JwtStatus::AudNotString,
            ),
            (
                format!("{h}.{}.c2ln", enc(r#"{"jti":123}"#)),
                JwtStatus::JtiNotString,
            ),
            (format!("{h}.{p}.***"), JwtStatus::SignatureBadBase64),
        ];
        for (tok, want) in cases {
            assert_eq!(ParsedJwt::parse(&tok).err(), Some(want), "{tok}");
        }
    }

    #[test]
    fn time_and_audience() {
        let t = ParsedJwt::parse(&format!(
            "{}.{}.",
            enc(r#"{"alg":"ES256"}"#),
            enc(r#"{"exp":1000,"nbf":900}"#)
        ))
        .unwrap();
        assert_eq!(t.check_time(1059, 60), Ok(()));
        assert_eq!(t.check_time(1061, 60), Err(JwtStatus::Expired));
        assert_eq!(t.check_time(839, 60), Err(JwtStatus::NotYetValid));
        assert_eq!(t.check_time(840, 60), Ok(()));
        assert_eq!(
            sanitize_audience("https://api.example.com/"),
            "api.example.com"
        );
    }
}
