//! Native JWS signature verification behind the `crypto` capability.
//!
//! Written on `ring` directly rather than through `jsonwebtoken`: its
//! pure-Rust ECDSA backend measured ~10x slower than ring for ES256 on this
//! machine, and this is on the per-request path of every JWT-protected
//! service. ES512 (P-521, which ring lacks) uses RustCrypto's `p521`.
//! Only verification with public (or shared HMAC) keys; the key type must
//! match the algorithm, so e.g. an HS256 signature can never be checked
//! against an RSA public key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

/// A parsed JSON Web Key, ready to verify with.
pub enum VerifyKey {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P256(Vec<u8>),
    P384(Vec<u8>),
    P521(Box<p521::ecdsa::VerifyingKey>),
    Ed25519(Vec<u8>),
    Oct(Vec<u8>),
}

fn b64(v: &serde_json::Value, field: &str) -> Result<Vec<u8>, String> {
    let s = v
        .get(field)
        .and_then(|f| f.as_str())
        .ok_or_else(|| format!("JWK lacks the `{field}` member"))?;
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| format!("JWK member `{field}` is not base64url: {e}"))
}

/// Parses a JWK (JSON text).
pub fn parse_jwk(json: &str) -> Result<VerifyKey, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("invalid JWK JSON: {e}"))?;
    let kty = v.get("kty").and_then(|k| k.as_str()).unwrap_or_default();
    match kty {
        "RSA" => Ok(VerifyKey::Rsa {
            n: b64(&v, "n")?,
            e: b64(&v, "e")?,
        }),
        "EC" => {
            let crv = v.get("crv").and_then(|c| c.as_str()).unwrap_or_default();
            let (x, y) = (b64(&v, "x")?, b64(&v, "y")?);
            let len = match crv {
                "P-256" => 32,
                "P-384" => 48,
                "P-521" => 66,
                other => return Err(format!("unsupported EC curve `{other}`")),
            };
            if x.len() != len || y.len() != len {
                return Err(format!("EC key coordinates are not {len} bytes for {crv}"));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Ok(match len {
                32 => VerifyKey::P256(point),
                48 => VerifyKey::P384(point),
                _ => VerifyKey::P521(Box::new(
                    p521::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                        .map_err(|_| "EC key is not a point on P-521".to_string())?,
                )),
            })
        }
        "OKP" => match v.get("crv").and_then(|c| c.as_str()) {
            Some("Ed25519") => Ok(VerifyKey::Ed25519(b64(&v, "x")?)),
            other => Err(format!("unsupported OKP curve {other:?}")),
        },
        "oct" => Ok(VerifyKey::Oct(b64(&v, "k")?)),
        other => Err(format!("unsupported JWK key type `{other}`")),
    }
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyKey({})", self.kind())
    }
}

impl VerifyKey {
    fn kind(&self) -> &'static str {
        match self {
            VerifyKey::Rsa { .. } => "RSA",
            VerifyKey::P256(_) => "EC P-256",
            VerifyKey::P384(_) => "EC P-384",
            VerifyKey::P521(_) => "EC P-521",
            VerifyKey::Ed25519(_) => "OKP Ed25519",
            VerifyKey::Oct(_) => "oct",
        }
    }
}

/// Verifies `signature` over `message`. Ok(false) = wrong signature; Err =
/// the algorithm is unknown or does not fit the key.
pub fn verify(alg: &str, key: &VerifyKey, message: &[u8], sig: &[u8]) -> Result<bool, String> {
    let mismatch = || format!("algorithm {alg} cannot be used with a {} key", key.kind());
    let rsa = |params: &'static signature::RsaParameters| match key {
        VerifyKey::Rsa { n, e } => Ok(RsaPublicKeyComponents { n, e }
            .verify(params, message, sig)
            .is_ok()),
        _ => Err(mismatch()),
    };
    match alg {
        "RS256" => rsa(&signature::RSA_PKCS1_2048_8192_SHA256),
        "RS384" => rsa(&signature::RSA_PKCS1_2048_8192_SHA384),
        "RS512" => rsa(&signature::RSA_PKCS1_2048_8192_SHA512),
        "PS256" => rsa(&signature::RSA_PSS_2048_8192_SHA256),
        "PS384" => rsa(&signature::RSA_PSS_2048_8192_SHA384),
        "PS512" => rsa(&signature::RSA_PSS_2048_8192_SHA512),
        "ES256" => match key {
            VerifyKey::P256(p) => Ok(UnparsedPublicKey::new(
                &signature::ECDSA_P256_SHA256_FIXED,
                p,
            )
            .verify(message, sig)
            .is_ok()),
            _ => Err(mismatch()),
        },
        "ES384" => match key {
            VerifyKey::P384(p) => Ok(UnparsedPublicKey::new(
                &signature::ECDSA_P384_SHA384_FIXED,
                p,
            )
            .verify(message, sig)
            .is_ok()),
            _ => Err(mismatch()),
        },
        "ES512" => match key {
            VerifyKey::P521(k) => {
                use p521::ecdsa::signature::Verifier;
                // JWS: the fixed-size r || s form (2 x 66 bytes), SHA-512.
                Ok(p521::ecdsa::Signature::from_slice(sig)
                    .is_ok_and(|s| k.verify(message, &s).is_ok()))
            }
            _ => Err(mismatch()),
        },
        "EdDSA" => match key {
            VerifyKey::Ed25519(x) => Ok(UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(message, sig)
                .is_ok()),
            _ => Err(mismatch()),
        },
        "HS256" | "HS384" | "HS512" => match key {
            VerifyKey::Oct(k) => {
                let algo = match alg {
                    "HS256" => ring::hmac::HMAC_SHA256,
                    "HS384" => ring::hmac::HMAC_SHA384,
                    _ => ring::hmac::HMAC_SHA512,
                };
                Ok(ring::hmac::verify(&ring::hmac::Key::new(algo, k), message, sig).is_ok())
            }
            _ => Err(mismatch()),
        },
        other => Err(format!("unsupported algorithm `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};

    fn b64e(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    #[test]
    fn es256_and_ed25519_round_trip_and_reject_tampering() {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let pub_point = kp.public_key().as_ref();
        let jwk = format!(
            r#"{{"kty":"EC","crv":"P-256","x":"{}","y":"{}"}}"#,
            b64e(&pub_point[1..33]),
            b64e(&pub_point[33..])
        );
        let key = parse_jwk(&jwk).unwrap();
        let sig = kp.sign(&rng, b"header.payload").unwrap();
        assert_eq!(
            verify("ES256", &key, b"header.payload", sig.as_ref()),
            Ok(true)
        );
        assert_eq!(
            verify("ES256", &key, b"header.payloaD", sig.as_ref()),
            Ok(false)
        );
        assert!(
            verify("RS256", &key, b"x", sig.as_ref())
                .unwrap_err()
                .contains("cannot be used")
        );

        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk = format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
            b64e(kp.public_key().as_ref())
        );
        let key = parse_jwk(&jwk).unwrap();
        let sig = kp.sign(b"m");
        assert_eq!(verify("EdDSA", &key, b"m", sig.as_ref()), Ok(true));
        assert_eq!(verify("EdDSA", &key, b"n", sig.as_ref()), Ok(false));
    }

    #[test]
    fn es512_round_trip_and_reject_tampering() {
        use p521::ecdsa::signature::Signer;
        let mut secret = [7u8; 66];
        secret[0] = 0; // below the group order
        let sk = p521::ecdsa::SigningKey::from_slice(&secret).unwrap();
        let point = p521::ecdsa::VerifyingKey::from(&sk).to_encoded_point(false);
        let jwk = format!(
            r#"{{"kty":"EC","crv":"P-521","x":"{}","y":"{}"}}"#,
            b64e(point.x().unwrap()),
            b64e(point.y().unwrap())
        );
        let key = parse_jwk(&jwk).unwrap();
        let sig: p521::ecdsa::Signature = sk.sign(b"header.payload");
        let sig = sig.to_bytes();
        assert_eq!(sig.len(), 132);
        assert_eq!(verify("ES512", &key, b"header.payload", &sig), Ok(true));
        assert_eq!(verify("ES512", &key, b"header.payloaD", &sig), Ok(false));
        assert_eq!(
            verify("ES512", &key, b"header.payload", &sig[..131]),
            Ok(false)
        );
        assert!(verify("ES256", &key, b"header.payload", &sig).is_err());
        // Off-curve coordinates are refused at parse time.
        let bad = format!(
            r#"{{"kty":"EC","crv":"P-521","x":"{}","y":"{}"}}"#,
            b64e(point.x().unwrap()),
            b64e(&[1u8; 66])
        );
        assert!(parse_jwk(&bad).is_err());
    }

    #[test]
    fn hmac_key_never_verifies_asymmetric_algorithms_and_vice_versa() {
        let key = parse_jwk(r#"{"kty":"oct","k":"c2VjcmV0"}"#).unwrap();
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"secret"),
            b"m",
        );
        assert_eq!(verify("HS256", &key, b"m", tag.as_ref()), Ok(true));
        assert!(verify("RS256", &key, b"m", tag.as_ref()).is_err());
        let rsa = parse_jwk(r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#).unwrap();
        assert!(verify("HS256", &rsa, b"m", tag.as_ref()).is_err());
        assert!(parse_jwk(r#"{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}"#).is_err());
        assert!(parse_jwk(r#"{"kty":"EC","crv":"secp256k1","x":"AA","y":"AA"}"#).is_err());
        assert!(verify("none", &key, b"m", b"").is_err());
    }
}
