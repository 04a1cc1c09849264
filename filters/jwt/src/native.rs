//! A native [`SignatureVerifier`] over `ring`: the benchmark baseline and
//! the verifier of the native tests (the guest uses the host's
//! `crypto.verify` instead).

use crate::SignatureVerifier;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

/// Verifies RS/PS 256–512, ES256/ES384, EdDSA (Ed25519) and HS 256–512.
#[derive(Clone, Copy, Debug, Default)]
pub struct RingVerifier;

fn field(k: &Value, name: &str) -> Result<Vec<u8>, String> {
    let s = k
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("JWK has no {name:?}"))?;
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| format!("JWK {name:?}: {e}"))
}

fn ec_point(k: &Value, crv: &str, len: usize) -> Result<Vec<u8>, String> {
    if k.get("crv").and_then(Value::as_str) != Some(crv) {
        return Err(format!("JWK curve is not {crv}"));
    }
    let (x, y) = (field(k, "x")?, field(k, "y")?);
    if x.len() != len || y.len() != len {
        return Err("JWK EC coordinates have the wrong length".into());
    }
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(4);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(point)
}

impl SignatureVerifier for RingVerifier {
    fn verify(&self, alg: &str, jwk: &str, message: &[u8], sig: &[u8]) -> Result<bool, String> {
        let k: Value = serde_json::from_str(jwk).map_err(|e| e.to_string())?;
        let kty = k.get("kty").and_then(Value::as_str).unwrap_or("");
        let ok = match (alg, kty) {
            ("RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512", "RSA") => {
                let params: &signature::RsaParameters = match alg {
                    "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                    "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                    "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
                    "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
                    "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
                    _ => &signature::RSA_PSS_2048_8192_SHA512,
                };
                let (n, e) = (field(&k, "n")?, field(&k, "e")?);
                RsaPublicKeyComponents { n: &n, e: &e }
                    .verify(params, message, sig)
                    .is_ok()
            }
            ("ES256", "EC") => {
                let point = ec_point(&k, "P-256", 32)?;
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            ("ES384", "EC") => {
                let point = ec_point(&k, "P-384", 48)?;
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            ("EdDSA", "OKP") => {
                if k.get("crv").and_then(Value::as_str) != Some("Ed25519") {
                    return Err("JWK curve is not Ed25519".into());
                }
                UnparsedPublicKey::new(&signature::ED25519, field(&k, "x")?)
                    .verify(message, sig)
                    .is_ok()
            }
            ("HS256" | "HS384" | "HS512", "oct") => {
                let algo = match alg {
                    "HS256" => ring::hmac::HMAC_SHA256,
                    "HS384" => ring::hmac::HMAC_SHA384,
                    _ => ring::hmac::HMAC_SHA512,
                };
                ring::hmac::verify(&ring::hmac::Key::new(algo, &field(&k, "k")?), message, sig)
                    .is_ok()
            }
            _ => return Err(format!("algorithm {alg} cannot use a {kty:?} key")),
        };
        Ok(ok)
    }
}
