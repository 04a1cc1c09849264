//! Issue 4: per-request cost of JWT verification (RS256, ES256) and of
//! authorization over 50 policies inside the WASM filters, against the same
//! checks as native Rust functions, in the same run.
//!
//!     scripts/build-guests.sh && cargo bench -p waypoint --bench security_filters
//!
//! Native = the filters' own policy code (`filter-jwt`, `filter-authz`)
//! called directly, with a ring verifier for JWT. WASM = the `jwt` / `authz`
//! components in the runtime (`RequestFilters::new` + `on_request_headers`),
//! the JWT signature checked through the host's `crypto` capability.

#[path = "../../filters/authz/benches/support/policies.rs"]
mod policies;
#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use waypoint::filter::{
    Capability, ConnectionInfo, DesiredFilter, FilterManager, FilterSpec, RequestFilters, Verdict,
};

const ISS: &str = "https://login.example.com";

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

struct Tokens {
    jwks: String,
    rs256: String,
    es256: String,
}

fn tokens() -> Tokens {
    let rng = SystemRandom::new();
    let rsa = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("rsa keygen");
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let ec =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng).unwrap();
    let p = ec.public_key().as_ref();
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa", "n": b64(&rsa.n().to_bytes_be()), "e": b64(&rsa.e().to_bytes_be())},
        {"kty": "EC", "crv": "P-256", "kid": "ec", "x": b64(&p[1..33]), "y": b64(&p[33..65])}
    ]})
    .to_string();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": ISS, "sub": "user-1234", "aud": "shop", "iat": now, "exp": now + 3600,
                        "scope": "read write", "groups": ["customers", "beta"]});
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
        ec.sign(&rng, m).unwrap().as_ref().to_vec()
    });
    Tokens { jwks, rs256, es256 }
}

fn jwt_config(jwks: &str, cache: u32) -> Value {
    json!({"tokenCacheEntries": cache, "requestAuthentications": [{"namespace": "shop", "name": "jwt",
        "jwtRules": [{"issuer": ISS, "audiences": ["shop"], "jwks": jwks}]}]})
}

fn manager(
    rt: &tokio::runtime::Runtime,
    module: &str,
    config: Value,
    caps: Vec<Capability>,
) -> FilterManager {
    rt.block_on(async {
        let m = FilterManager::new(support::runtime());
        let mut spec = FilterSpec::new(module);
        spec.config = config.to_string().into_bytes();
        spec.capabilities = caps;
        let r = m
            .apply(vec![DesiredFilter {
                spec,
                module: support::guest(module),
                sha256: None,
                canary: None,
            }])
            .await;
        assert!(r.is_ok(), "{:?}", r.refused);
        m
    })
}

fn headers_with(token: Option<&str>) -> Vec<(String, String)> {
    let mut h = vec![
        ("user-agent".to_owned(), "bench/1.0".to_owned()),
        ("accept".to_owned(), "application/json".to_owned()),
        (
            "x-request-id".to_owned(),
            "4f1c2a6e-1b2d-4c3e-9f00-123456789abc".to_owned(),
        ),
        ("x-forwarded-for".to_owned(), "203.0.113.9".to_owned()),
    ];
    if let Some(t) = token {
        h.push(("authorization".to_owned(), format!("Bearer {t}")));
    }
    h
}

fn parts(path: &str, headers: &[(String, String)]) -> http::request::Parts {
    let mut p = support::get(path);
    for (k, v) in headers {
        p.headers.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    p
}

fn conn(principal: &str) -> ConnectionInfo {
    ConnectionInfo {
        source_principal: Some(principal.to_string()),
        ..support::conn()
    }
}

/// One request through a WASM chain; panics unless it continues.
async fn wasm_request(m: &FilterManager, req: http::request::Parts, principal: &str) {
    let mut rf = RequestFilters::new(&m.current(), conn(principal));
    let mut req = req;
    match rf.on_request_headers(&mut req).await {
        Verdict::Continue => {}
        Verdict::Respond(r) => panic!("denied: {} {:?}", r.status(), r.body()),
    }
    black_box(req);
}

fn bench_wasm(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    id: &str,
    m: &FilterManager,
    make: impl Fn() -> http::request::Parts,
    principal: &str,
) {
    c.bench_function(id, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    wasm_request(m, make(), principal).await;
                }
                start.elapsed()
            })
        })
    });
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = tokens();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let jwt_caps = vec![Capability::Clock, Capability::Crypto, Capability::Authn];

    for (alg, token) in [("RS256", &t.rs256), ("ES256", &t.es256)] {
        let headers = headers_with(Some(token));
        for (cache, tag) in [(0u32, "no-cache"), (128, "cache-hit")] {
            // Native: the filter's own code, ring verifier.
            let authn = filter_jwt::JwtAuthenticator::from_json(
                jwt_config(&t.jwks, cache).to_string().as_bytes(),
            )
            .unwrap();
            let req = filter_jwt::Request {
                method: "GET",
                scheme: "http",
                authority: "orders.shop.svc.cluster.local",
                path: "/api/orders/123",
                query: None,
                headers: &headers,
                destination_service: Some("orders.shop.svc.cluster.local"),
            };
            assert!(matches!(
                authn.authenticate(&req, now, &filter_jwt::native::RingVerifier),
                filter_jwt::Verdict::Continue {
                    identity: Some(_),
                    ..
                }
            ));
            c.bench_function(&format!("jwt/{alg}/{tag}/native"), |b| {
                b.iter(|| {
                    black_box(authn.authenticate(
                        black_box(&req),
                        now,
                        &filter_jwt::native::RingVerifier,
                    ))
                })
            });
            // WASM: the jwt component, signature through the host.
            let m = manager(&rt, "jwt", jwt_config(&t.jwks, cache), jwt_caps.clone());
            bench_wasm(
                c,
                &rt,
                &format!("jwt/{alg}/{tag}/wasm"),
                &m,
                || parts("/api/orders/123", &headers),
                "cluster.local/ns/shop/sa/web",
            );
        }
    }

    // Authorization over the 50 policies of filters/authz/benches.
    let cfg = json!({"policies": policies::policies()});
    let authz = filter_authz::Authorizer::from_json(cfg.to_string().as_bytes()).unwrap();
    let headers = headers_with(None);
    let audiences = vec!["shop".to_owned()];
    let input = filter_authz::Input {
        method: "GET",
        authority: "products.shop.svc.cluster.local:8080",
        path: "/products/42",
        headers: &headers,
        source_principal: Some("cluster.local/ns/shop/sa/frontend"),
        source_address: "10.0.0.1",
        destination_address: "10.96.0.10",
        destination_port: 80,
        destination_service: Some("orders.shop.svc.cluster.local"),
        request_auth: Some(filter_authz::RequestAuth {
            issuer: ISS,
            subject: "u-1",
            audiences: &audiences,
            presenter: None,
            claims: r#"{"iss":"https://login.example.com","sub":"u-1","groups":["customers"]}"#,
        }),
    };
    assert!(matches!(
        authz.evaluate(&input).unwrap().decision,
        filter_authz::Decision::Allow { .. }
    ));
    c.bench_function("authz/50-policies/native", |b| {
        b.iter(|| black_box(authz.evaluate(black_box(&input)).is_ok()))
    });
    let m = manager(&rt, "authz", cfg, vec![]);
    bench_wasm(
        c,
        &rt,
        "authz/50-policies/wasm",
        &m,
        || {
            let mut p = parts("/products/42", &headers);
            p.uri = "http://products.shop.svc.cluster.local:8080/products/42"
                .parse()
                .unwrap();
            p
        },
        "cluster.local/ns/shop/sa/frontend",
    );
}

criterion_group! {
    name = security;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(security);
