//! The first-party filters (filters/{jwt,authz,routing,fault,retry}) as
//! WebAssembly components inside the real runtime, chained in the
//! waypoint's order with the capabilities each one declares.

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{conn, get, guest, response, runtime};
use waypoint::filter::{
    AttemptInfo, AttemptOutcome, Capability, DesiredFilter, FilterManager, FilterSpec,
    RequestFilters, RetryDecision, Verdict,
};

const SVC: &str = "orders.shop.svc.cluster.local";
const ISS: &str = "https://login.example";

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

struct Key {
    pair: EcdsaKeyPair,
}

impl Key {
    fn new() -> Key {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Key {
            pair: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng)
                .unwrap(),
        }
    }

    fn jwks(&self) -> String {
        let p = self.pair.public_key().as_ref();
        json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "x": b64(&p[1..33]), "y": b64(&p[33..65])}]}).to_string()
    }

    fn token(&self, sub: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = json!({"alg": "ES256", "kid": "k1"});
        let claims = json!({"iss": ISS, "sub": sub, "exp": now + 600, "groups": ["buyers"]});
        let signed = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), signed.as_bytes())
            .unwrap();
        format!("{signed}.{}", b64(sig.as_ref()))
    }
}

fn filter(name: &str, module: &str, config: Value, caps: &[Capability]) -> DesiredFilter {
    let mut spec = FilterSpec::new(name);
    spec.config = config.to_string().into_bytes();
    spec.capabilities = caps.to_vec();
    spec.random_seed = Some(7);
    DesiredFilter {
        spec,
        module: guest(module),
        sha256: None,
        canary: None,
    }
}

async fn chain(key: &Key) -> FilterManager {
    let jwt = json!({"requestAuthentications": [{"namespace": "shop", "name": "jwt",
        "jwtRules": [{"issuer": ISS, "jwks": key.jwks()}]}]});
    let authz = json!({"policies": [
        {"namespace": "shop", "name": "buyers", "action": "ALLOW", "rules": [{
            "from": [{"source": {"requestPrincipals": [format!("{ISS}/*")]}}],
            "to": [{"operation": {"paths": ["/api/*"]}}],
            "when": [{"key": "request.auth.claims[groups]", "values": ["buyers"]}]}]},
        {"namespace": "shop", "name": "no-admin", "action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]}
    ]});
    let routing = json!({"services": [{"host": SVC, "virtualServices": [{"namespace": "shop", "name": "orders", "http": [
        {"match": [{"uri": {"prefix": "/api/v2"}}], "rewrite": {"uri": "/v2"},
         "route": [{"destination": {"host": SVC, "subset": "v2"}}],
         "headers": {"response": {"set": {"x-route": "v2"}}}},
        {"match": [{"uri": {"exact": "/api/fault"}}], "route": [{"destination": {"host": SVC, "subset": "v1"}}]},
        {"match": [{"uri": {"exact": "/api/old"}}], "redirect": {"uri": "/api/new"}}
    ]}]}]});
    let fault = json!({"routes": {"vs:shop/orders#1": {"abort": {"httpStatus": 503, "percentage": {"value": 100}}}}});
    let retry = json!({"routes": {"vs:shop/orders#0": {"timeout": "2s", "retries": {"attempts": 2, "retryOn": "5xx", "perTryTimeout": "500ms"}}}});
    let m = FilterManager::new(runtime());
    let report = m
        .apply(vec![
            filter(
                "jwt",
                "jwt",
                jwt,
                &[Capability::Clock, Capability::Crypto, Capability::Authn],
            ),
            filter("authz", "authz", authz, &[]),
            filter("routing", "routing", routing, &[Capability::Random]),
            filter("fault", "fault", fault, &[Capability::Random]),
            filter("retry", "retry", retry, &[Capability::Random]),
        ])
        .await;
    assert!(report.is_ok(), "load failed: {:?}", report.refused);
    m
}

/// A chain of the jwt component alone with this configuration.
async fn jwt_only(jwt: Value) -> FilterManager {
    let m = FilterManager::new(runtime());
    let report = m
        .apply(vec![filter(
            "jwt",
            "jwt",
            jwt,
            &[Capability::Clock, Capability::Crypto, Capability::Authn],
        )])
        .await;
    assert!(report.is_ok(), "load failed: {:?}", report.refused);
    m
}

fn with_token(path: &str, token: &str) -> http::request::Parts {
    let mut p = get(path);
    p.headers
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    p
}

#[tokio::test]
async fn authenticated_request_is_authorized_routed_and_timed() {
    let key = Key::new();
    let m = chain(&key).await;
    let mut rf = RequestFilters::new(&m.current(), conn());
    let mut req = with_token("/api/v2/items?x=1", &key.token("alice"));
    assert!(matches!(
        rf.on_request_headers(&mut req).await,
        Verdict::Continue
    ));
    assert_eq!(rf.request_principal(), Some("https://login.example/alice"));
    assert!(
        req.headers.get("authorization").is_none(),
        "token removed after verification"
    );
    assert_eq!(rf.metadata("mesh.authz.policy"), Some("shop/buyers"));
    assert_eq!(rf.metadata("mesh.route"), Some("vs:shop/orders#0"));
    let route = rf.plan().route.clone().expect("route chosen");
    assert_eq!(
        (route.service.as_str(), route.subset.as_deref()),
        (SVC, Some("v2"))
    );
    assert_eq!(req.uri.path(), "/v2/items");
    assert_eq!(req.uri.query(), Some("x=1"));
    assert_eq!(rf.plan().timeout, Some(Duration::from_secs(2)));
    assert_eq!(rf.plan().per_try_timeout, Some(Duration::from_millis(500)));
    let retry = rf
        .on_attempt(&AttemptInfo {
            number: 1,
            outcome: AttemptOutcome::Response(http::StatusCode::SERVICE_UNAVAILABLE),
            grpc_status: None,
            elapsed: Duration::from_millis(10),
        })
        .await;
    assert!(
        matches!(retry, RetryDecision::Retry { backoff, .. } if backoff < Duration::from_millis(25)),
        "{retry:?}"
    );
    let give_up = rf
        .on_attempt(&AttemptInfo {
            number: 3,
            outcome: AttemptOutcome::Response(http::StatusCode::SERVICE_UNAVAILABLE),
            grpc_status: None,
            elapsed: Duration::from_millis(50),
        })
        .await;
    assert_eq!(give_up, RetryDecision::GiveUp);
    let mut resp = response(200);
    assert!(matches!(
        rf.on_response_headers(&mut resp).await,
        Verdict::Continue
    ));
    assert_eq!(resp.headers["x-route"], "v2");
}

#[tokio::test]
async fn denials_faults_redirects_and_missing_routes() {
    let key = Key::new();
    let m = chain(&key).await;
    let token = key.token("bob");

    let status_body = |v: Verdict| match v {
        Verdict::Respond(r) => (
            r.status().as_u16(),
            String::from_utf8_lossy(r.body()).into_owned(),
            r.headers().clone(),
        ),
        Verdict::Continue => panic!("expected a local response"),
    };
    // No token: JWT passes, the ALLOW policy requires a request principal.
    let mut rf = RequestFilters::new(&m.current(), conn());
    let (status, body, _) = status_body(rf.on_request_headers(&mut get("/api/v2")).await);
    assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
    assert!(
        rf.response_flags().contains(&"RBAC"),
        "{:?}",
        rf.response_flags()
    );
    // Invalid token: 401 with www-authenticate.
    let mut rf = RequestFilters::new(&m.current(), conn());
    let (status, _, headers) = status_body(
        rf.on_request_headers(&mut with_token("/api/v2", "a.b.c"))
            .await,
    );
    assert_eq!(status, 401);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    // Dot segments are resolved before the DENY policy sees the path.
    let mut rf = RequestFilters::new(&m.current(), conn());
    let (status, _, _) = status_body(
        rf.on_request_headers(&mut with_token("/api/../admin", &token))
            .await,
    );
    assert_eq!(status, 403);
    assert_eq!(rf.metadata("mesh.authz.policy"), Some("shop/no-admin"));
    // Fault abort on its route.
    let mut rf = RequestFilters::new(&m.current(), conn());
    let (status, body, _) = status_body(
        rf.on_request_headers(&mut with_token("/api/fault", &token))
            .await,
    );
    assert_eq!((status, body.as_str()), (503, "fault filter abort"));
    assert!(
        rf.response_flags().contains(&"FI"),
        "{:?}",
        rf.response_flags()
    );
    // Redirect and no route.
    let mut rf = RequestFilters::new(&m.current(), conn());
    let (status, _, headers) = status_body(
        rf.on_request_headers(&mut with_token("/api/old", &token))
            .await,
    );
    assert_eq!(status, 301);
    assert!(
        headers["location"].to_str().unwrap().ends_with("/api/new"),
        "{headers:?}"
    );
    let mut rf = RequestFilters::new(&m.current(), conn());
    let (status, _, _) = status_body(
        rf.on_request_headers(&mut with_token("/api/none", &token))
            .await,
    );
    assert_eq!(status, 404);
    assert!(
        rf.response_flags().contains(&"NR"),
        "{:?}",
        rf.response_flags()
    );
}

/// ES512 (P-521, which ring lacks) through the jwt component and the host's
/// `crypto` capability: a valid token establishes the principal, a token
/// whose signature was altered is refused with 401.
#[tokio::test]
async fn es512_tokens_verify_through_the_crypto_capability() {
    use p521::ecdsa::signature::Signer;
    let mut secret = [9u8; 66];
    secret[0] = 0;
    let sk = p521::ecdsa::SigningKey::from_slice(&secret).unwrap();
    let point = p521::ecdsa::VerifyingKey::from(&sk).to_encoded_point(false);
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-521", "kid": "k521",
        "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())}]})
    .to_string();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signed = format!(
        "{}.{}",
        b64(json!({"alg": "ES512", "kid": "k521"})
            .to_string()
            .as_bytes()),
        b64(json!({"iss": ISS, "sub": "carol", "exp": now + 600})
            .to_string()
            .as_bytes())
    );
    let sig: p521::ecdsa::Signature = sk.sign(signed.as_bytes());
    let token = format!("{signed}.{}", b64(&sig.to_bytes()));
    let jwt = json!({"requestAuthentications": [{"namespace": "shop", "name": "jwt",
        "jwtRules": [{"issuer": ISS, "jwks": jwks}]}]});
    let m = jwt_only(jwt).await;

    let carol = (None, Some("https://login.example/carol".to_string()));
    assert_eq!(present(&m, &token).await, carol);

    // Flip one byte of the signature.
    let mut bad_sig = sig.to_bytes().to_vec();
    bad_sig[10] ^= 1;
    let bad = format!("{signed}.{}", b64(&bad_sig));
    assert_eq!(present(&m, &bad).await, (Some(401), None), "tampered token");

    // The filter remembers verified tokens: the same token again is
    // accepted, but its valid signature on a different payload is not.
    assert_eq!(present(&m, &token).await, carol);
    let (header, _) = signed.split_once('.').unwrap();
    let forged = format!(
        "{header}.{}.{}",
        b64(json!({"iss": ISS, "sub": "mallory", "exp": now + 600})
            .to_string()
            .as_bytes()),
        b64(&sig.to_bytes())
    );
    assert_eq!(
        present(&m, &forged).await,
        (Some(401), None),
        "a verified signature accepted on another payload"
    );
}

/// Runs the request-headers hooks on a request carrying `token`: the status
/// of the local answer (None when the request goes on) and the principal.
async fn present(m: &FilterManager, token: &str) -> (Option<u16>, Option<String>) {
    let mut rf = RequestFilters::new(&m.current(), conn());
    let mut req = with_token("/api/x", token);
    let status = match rf.on_request_headers(&mut req).await {
        Verdict::Continue => None,
        Verdict::Respond(r) => Some(r.status().as_u16()),
    };
    (status, rf.request_principal().map(str::to_string))
}

/// A client cannot forge the headers the JWT filter outputs: through the
/// real guest (which sees only the headers it selects), an
/// `outputClaimToHeaders` header sent by the client is removed even when
/// the request carries no token, and replaced by the verified claim when
/// it does (Envoy's `sanitizeHeaders`).
#[tokio::test]
async fn forged_jwt_output_headers_are_stripped() {
    let key = Key::new();
    let jwt = json!({"requestAuthentications": [{"namespace": "shop", "name": "jwt",
        "jwtRules": [{"issuer": ISS, "jwks": key.jwks(),
                      "outputClaimToHeaders": [{"header": "x-user", "claim": "sub"}]}]}]});
    let m = jwt_only(jwt).await;
    let mut rf = RequestFilters::new(&m.current(), conn());
    let mut req = get("/api/items");
    req.headers.insert("x-user", "admin".parse().unwrap());
    assert!(matches!(
        rf.on_request_headers(&mut req).await,
        Verdict::Continue
    ));
    assert!(req.headers.get("x-user").is_none(), "forged header removed");
    let mut rf = RequestFilters::new(&m.current(), conn());
    let mut req = with_token("/api/items", &key.token("alice"));
    req.headers.insert("x-user", "admin".parse().unwrap());
    assert!(matches!(
        rf.on_request_headers(&mut req).await,
        Verdict::Continue
    ));
    let users: Vec<_> = req.headers.get_all("x-user").iter().collect();
    assert_eq!(users, vec!["alice"], "only the verified claim");
}
