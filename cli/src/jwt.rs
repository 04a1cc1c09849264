//! `meshctl jwt mint`: tokens from the examples' local issuer
//! (`https://accounts.example.com`, key examples/jwt/signing-key.pem, public
//! JWKS examples/jwt/jwks.json inlined in the RequestAuthentication). A demo
//! key: never use it outside the local mesh.

use crate::cmd::JwtMint;
use anyhow::Context;
use serde_json::{Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// The examples' signing key (ES256, P-256).
pub const EXAMPLE_KEY: &str = include_str!("../../examples/jwt/signing-key.pem");

/// The claims of a token.
pub fn claims(a: &JwtMint, now: u64) -> anyhow::Result<Map<String, Value>> {
    let mut c = Map::new();
    c.insert("iss".into(), a.iss.clone().into());
    c.insert("sub".into(), a.sub.clone().into());
    if let Some(aud) = &a.aud {
        c.insert("aud".into(), aud.clone().into());
    }
    c.insert("iat".into(), now.into());
    c.insert("nbf".into(), now.into());
    c.insert("exp".into(), (now + a.ttl.as_secs()).into());
    for kv in &a.claims {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--claim {kv:?}: use name=value"))?;
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        c.insert(k.to_string(), value);
    }
    Ok(c)
}

/// Sign `claims` with an EC P-256 PKCS#8 PEM key.
pub fn sign(pem: &[u8], kid: &str, claims: &Map<String, Value>) -> anyhow::Result<String> {
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pem)
        .context("the signing key must be an EC P-256 private key (PKCS#8 PEM)")?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_string());
    Ok(jsonwebtoken::encode(&header, claims, &key)?)
}

/// `jwt mint`.
pub fn mint(a: &JwtMint) -> anyhow::Result<()> {
    let pem = match &a.key {
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        None => EXAMPLE_KEY.as_bytes().to_vec(),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    println!("{}", sign(&pem, &a.kid, &claims(a, now)?)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn minted_token_verifies_with_the_example_jwks() {
        let a = JwtMint {
            key: None,
            kid: "mesh-example".into(),
            iss: "https://accounts.example.com".into(),
            sub: "alice".into(),
            aud: None,
            ttl: std::time::Duration::from_secs(60),
            claims: vec!["groups=[\"admins\"]".into()],
        };
        let t = sign(
            EXAMPLE_KEY.as_bytes(),
            &a.kid,
            &claims(&a, 1_700_000_000).unwrap(),
        )
        .unwrap();
        let jwks: Value =
            serde_json::from_str(include_str!("../../examples/jwt/jwks.json")).unwrap();
        let k = &jwks["keys"][0];
        let key = jsonwebtoken::DecodingKey::from_ec_components(
            k["x"].as_str().unwrap(),
            k["y"].as_str().unwrap(),
        )
        .unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.validate_exp = false;
        v.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Map<String, Value>>(&t, &key, &v).unwrap();
        assert_eq!(data.claims["sub"], "alice");
        assert_eq!(data.claims["groups"][0], "admins");
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t.split('.').next().unwrap())
            .unwrap();
        assert!(
            String::from_utf8(header)
                .unwrap()
                .contains("\"kid\":\"mesh-example\"")
        );
    }
}
