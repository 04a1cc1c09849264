//! Native cost of authenticating one request with an RS256 / ES256 token
//! (the baseline for the same work inside the `jwt` WASM filter, whose
//! signature check goes through the host's `crypto.verify`).
//!
//! Run: `cargo bench --manifest-path filters/Cargo.toml -p filter-jwt --bench jwt_verify`

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use filter_jwt::native::RingVerifier;
use filter_jwt::{JwtAuthenticator, Request, Verdict};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::json;
use std::hint::black_box;
use std::time::Instant;

const NOW: u64 = 1_700_000_000;

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn measure(name: &str, iterations: u32, mut f: impl FnMut()) {
    for _ in 0..iterations / 10 {
        f();
    }
    let mut samples = Vec::new();
    for _ in 0..15 {
        let start = Instant::now();
        for _ in 0..iterations {
            f();
        }
        samples.push(start.elapsed().as_nanos() as f64 / f64::from(iterations));
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "{name:<44} median {:>9.0} ns/op   min {:>9.0} ns/op",
        samples[samples.len() / 2],
        samples[0]
    );
}

fn main() {
    let rng = SystemRandom::new();
    let rsa = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("rsa keygen");
    let ec_doc =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("ec keygen");
    let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec_doc.as_ref(), &rng)
        .expect("ec key");
    let p = ec.public_key().as_ref();
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa", "n": b64(&rsa.n().to_bytes_be()), "e": b64(&rsa.e().to_bytes_be())},
        {"kty": "EC", "crv": "P-256", "kid": "ec", "x": b64(&p[1..33]), "y": b64(&p[33..65])}
    ]});
    let cfg = json!({"requestAuthentications": [{"namespace": "bench", "name": "ra", "jwtRules": [
        {"issuer": "https://login.example.com", "audiences": ["shop"], "jwks": jwks.to_string()}]}]});
    let authn = JwtAuthenticator::from_json(cfg.to_string().as_bytes()).expect("compiles");
    let claims = json!({"iss": "https://login.example.com", "sub": "user-1234", "aud": "shop", "iat": NOW, "exp": NOW + 3600,
                        "scope": "read write", "groups": ["customers", "beta"], "email": "user@example.com"});
    let mint = |alg: &str, kid: &str, sign: &dyn Fn(&[u8]) -> Vec<u8>| {
        let signed = format!(
            "{}.{}",
            b64(json!({"alg": alg, "kid": kid, "typ": "JWT"})
                .to_string()
                .as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = sign(signed.as_bytes());
        format!("{signed}.{}", b64(&sig))
    };
    let rs256 = mint("RS256", "rsa", &|m| {
        rsa::pkcs1v15::SigningKey::<rsa::sha2::Sha256>::new(rsa.clone())
            .sign(m)
            .to_vec()
    });
    let es256 = mint("ES256", "ec", &|m| {
        ec.sign(&rng, m).expect("sign").as_ref().to_vec()
    });
    for (alg, token) in [("RS256", &rs256), ("ES256", &es256)] {
        let headers = vec![
            ("authorization".to_owned(), format!("Bearer {token}")),
            ("user-agent".to_owned(), "bench/1.0".to_owned()),
            ("accept".to_owned(), "application/json".to_owned()),
        ];
        let req = Request {
            method: "GET",
            scheme: "http",
            authority: "products.shop",
            path: "/products/42",
            query: None,
            headers: &headers,
            destination_service: None,
        };
        assert!(matches!(
            authn.authenticate(&req, NOW, &RingVerifier),
            Verdict::Continue {
                identity: Some(_),
                ..
            }
        ));
        authn.set_cache_capacity(0);
        measure(
            &format!("jwt/{alg}/authenticate (no cache)"),
            if alg == "RS256" { 2_000 } else { 1_000 },
            || {
                black_box(matches!(
                    authn.authenticate(black_box(&req), NOW, &RingVerifier),
                    Verdict::Continue { .. }
                ));
            },
        );
        authn.set_cache_capacity(filter_jwt::DEFAULT_CACHE_ENTRIES);
        measure(
            &format!("jwt/{alg}/authenticate (cache hit)"),
            20_000,
            || {
                black_box(matches!(
                    authn.authenticate(black_box(&req), NOW, &RingVerifier),
                    Verdict::Continue { .. }
                ));
            },
        );
    }
}
