//! Real keys (generated once per test binary) and token minting.
#![allow(dead_code)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use filter_jwt::native::RingVerifier;
use filter_jwt::{JwtAuthenticator, Request, SignatureVerifier, Verdict};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, sha2::Sha256};
use serde_json::{Value, json};
use std::cell::Cell;
use std::sync::OnceLock;

pub const NOW: u64 = 1_700_000_000;

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The test keys.
pub struct Keys {
    pub rsa: RsaPrivateKey,
    pub ec: EcdsaKeyPair,
    pub ed: Ed25519KeyPair,
    pub hmac: Vec<u8>,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let rng = SystemRandom::new();
        let rsa = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("rsa keygen");
        let ec_doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("ec keygen");
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec_doc.as_ref(), &rng)
            .expect("ec key");
        let ed_doc = Ed25519KeyPair::generate_pkcs8(&rng).expect("ed keygen");
        let ed = Ed25519KeyPair::from_pkcs8(ed_doc.as_ref()).expect("ed key");
        Keys {
            rsa,
            ec,
            ed,
            hmac: b"a-shared-secret-of-32-bytes-long".to_vec(),
        }
    })
}

impl Keys {
    pub fn rsa_jwk(&self, kid: &str) -> Value {
        json!({"kty": "RSA", "kid": kid, "n": b64(&self.rsa.n().to_bytes_be()), "e": b64(&self.rsa.e().to_bytes_be())})
    }
    pub fn ec_jwk(&self, kid: &str) -> Value {
        let p = self.ec.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&p[1..33]), "y": b64(&p[33..65])})
    }
    pub fn ed_jwk(&self, kid: &str) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(self.ed.public_key().as_ref())})
    }
    pub fn oct_jwk(&self, kid: &str) -> Value {
        json!({"kty": "oct", "kid": kid, "k": b64(&self.hmac)})
    }
    /// The RSA public key as PEM: the secret of the classic HS256 confusion attack.
    pub fn rsa_public_pem(&self) -> Vec<u8> {
        self.rsa
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("pem")
            .into_bytes()
    }

    pub fn sign(&self, alg: &str, msg: &[u8]) -> Vec<u8> {
        match alg {
            "RS256" => rsa::pkcs1v15::SigningKey::<Sha256>::new(self.rsa.clone())
                .sign(msg)
                .to_vec(),
            "PS256" => rsa::pss::BlindedSigningKey::<Sha256>::new(self.rsa.clone())
                .sign_with_rng(&mut rand::thread_rng(), msg)
                .to_vec(),
            "ES256" => self
                .ec
                .sign(&SystemRandom::new(), msg)
                .expect("ec sign")
                .as_ref()
                .to_vec(),
            "EdDSA" => self.ed.sign(msg).as_ref().to_vec(),
            "HS256" => ring::hmac::sign(
                &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.hmac),
                msg,
            )
            .as_ref()
            .to_vec(),
            other => panic!("unsupported test alg {other}"),
        }
    }
}

/// `header.payload.signature` with `sign` over `header.payload`.
pub fn mint(header: Value, claims: Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = sign(signed.as_bytes());
    format!("{signed}.{}", b64(&sig))
}

/// A token signed with the test key of `alg`.
pub fn token(alg: &str, kid: &str, claims: Value) -> String {
    mint(json!({"alg": alg, "kid": kid, "typ": "JWT"}), claims, |m| {
        keys().sign(alg, m)
    })
}

/// A single RequestAuthentication with these rules.
pub fn authn(rules: Vec<Value>) -> JwtAuthenticator {
    let cfg =
        json!({"requestAuthentications": [{"namespace": "foo", "name": "ra", "jwtRules": rules}]});
    JwtAuthenticator::from_json(cfg.to_string().as_bytes()).expect("config compiles")
}

/// A rule with an inline JWKS.
pub fn rule(issuer: &str, jwks: Vec<Value>, extra: Value) -> Value {
    let mut r = json!({"issuer": issuer, "jwks": json!({"keys": jwks}).to_string()});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            r[k] = v;
        }
    }
    r
}

/// A request description.
#[derive(Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub service: Option<String>,
}

pub fn get() -> Req {
    Req {
        method: "GET".into(),
        path: "/headers".into(),
        query: None,
        headers: Vec::new(),
        service: None,
    }
}

impl Req {
    pub fn bearer(self, t: &str) -> Self {
        self.header("authorization", &format!("Bearer {t}"))
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn query(mut self, q: &str) -> Self {
        self.query = Some(q.into());
        self
    }
    pub fn method(mut self, m: &str) -> Self {
        self.method = m.into();
        self
    }
    pub fn service(mut self, s: &str) -> Self {
        self.service = Some(s.into());
        self
    }

    pub fn run_with(&self, a: &JwtAuthenticator, now: u64, v: &dyn SignatureVerifier) -> Verdict {
        let req = Request {
            method: &self.method,
            scheme: "http",
            authority: "httpbin.foo",
            path: &self.path,
            query: self.query.as_deref(),
            headers: &self.headers,
            destination_service: self.service.as_deref(),
        };
        a.authenticate(&req, now, v)
    }

    pub fn run(&self, a: &JwtAuthenticator) -> Verdict {
        self.run_with(a, NOW, &RingVerifier)
    }
}

/// Counts signature checks.
#[derive(Default)]
pub struct Counting(pub Cell<u32>);

impl SignatureVerifier for Counting {
    fn verify(&self, alg: &str, jwk: &str, m: &[u8], s: &[u8]) -> Result<bool, String> {
        self.0.set(self.0.get() + 1);
        RingVerifier.verify(alg, jwk, m, s)
    }
}
