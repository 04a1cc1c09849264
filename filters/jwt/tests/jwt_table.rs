//! RequestAuthentication semantics with real keys (istio-semantics.md §2).

mod common;

use common::*;
use filter_jwt::token::JwtStatus;
use filter_jwt::{HeaderOp, Identity, Verdict};
use serde_json::{Value, json};

const RSA_ISS: &str = "https://rsa.example";
const EC_ISS: &str = "https://ec.example";
const ED_ISS: &str = "https://ed.example";

fn claims(iss: &str, sub: &str) -> Value {
    json!({"iss": iss, "sub": sub, "iat": NOW - 10, "exp": NOW + 3600})
}

fn with(mut c: Value, k: &str, v: Value) -> Value {
    c[k] = v;
    c
}

fn principal(v: &Verdict) -> Option<String> {
    match v {
        Verdict::Continue { identity, .. } => identity.as_ref().map(|i| i.principal.clone()),
        other => panic!("expected continue, got {other:?}"),
    }
}

fn rejected(v: &Verdict) -> (u16, JwtStatus) {
    match v {
        Verdict::Reject { status, reason, .. } => (*status, *reason),
        other => panic!("expected reject, got {other:?}"),
    }
}

#[test]
fn accepted_and_rejected_tokens() {
    let k = keys();
    let rsa = authn(vec![rule(RSA_ISS, vec![k.rsa_jwk("rsa1")], json!({}))]);
    let ec = authn(vec![rule(
        EC_ISS,
        vec![k.ec_jwk("ec1")],
        json!({"audiences": ["api.example.com"]}),
    )]);
    let ed = authn(vec![rule(
        ED_ISS,
        vec![k.ed_jwk("ed1")],
        json!({"fromHeaders": [{"name": "x-jwt"}]}),
    )]);
    let alice = claims(RSA_ISS, "alice");

    // Valid tokens from real keys.
    assert_eq!(
        principal(
            &get()
                .bearer(&token("RS256", "rsa1", alice.clone()))
                .run(&rsa)
        )
        .as_deref(),
        Some("https://rsa.example/alice")
    );
    assert_eq!(
        principal(
            &get()
                .bearer(&token("PS256", "rsa1", alice.clone()))
                .run(&rsa)
        )
        .as_deref(),
        Some("https://rsa.example/alice")
    );
    let ec_ok = with(claims(EC_ISS, "bob"), "aud", json!("api.example.com"));
    assert_eq!(
        principal(&get().bearer(&token("ES256", "ec1", ec_ok)).run(&ec)).as_deref(),
        Some("https://ec.example/bob")
    );
    let ec_sanitized = with(
        claims(EC_ISS, "bob"),
        "aud",
        json!(["other", "https://api.example.com/"]),
    );
    assert!(principal(&get().bearer(&token("ES256", "ec1", ec_sanitized)).run(&ec)).is_some());
    assert_eq!(
        principal(
            &get()
                .header("x-jwt", &token("EdDSA", "ed1", claims(ED_ISS, "carol")))
                .run(&ed)
        )
        .as_deref(),
        Some("https://ed.example/carol")
    );

    // Rejections: (label, authenticator, request, status, reason)
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(alice.to_string().as_bytes())
    );
    let hs_with_rsa_public_key = mint(json!({"alg": "HS256", "kid": "rsa1"}), alice.clone(), |m| {
        ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &k.rsa_public_pem()),
            m,
        )
        .as_ref()
        .to_vec()
    });
    let good = token("RS256", "rsa1", alice.clone());
    let mut parts: Vec<&str> = good.split('.').collect();
    let evil_payload = b64(with(alice.clone(), "sub", json!("admin"))
        .to_string()
        .as_bytes());
    parts[1] = &evil_payload;
    let tampered = parts.join(".");
    let cases: Vec<(&str, &filter_jwt::JwtAuthenticator, Req, u16, JwtStatus)> = vec![
        (
            "alg none",
            &rsa,
            get().bearer(&unsigned),
            401,
            JwtStatus::HeaderNotImplementedAlg,
        ),
        (
            "HS256 signed with the RSA public key",
            &rsa,
            get().bearer(&hs_with_rsa_public_key),
            401,
            JwtStatus::KidAlgMismatch,
        ),
        (
            "expired beyond the skew",
            &rsa,
            get().bearer(&token(
                "RS256",
                "rsa1",
                with(alice.clone(), "exp", json!(NOW - 61)),
            )),
            401,
            JwtStatus::Expired,
        ),
        (
            "not yet valid",
            &rsa,
            get().bearer(&token(
                "RS256",
                "rsa1",
                with(alice.clone(), "nbf", json!(NOW + 61)),
            )),
            401,
            JwtStatus::NotYetValid,
        ),
        (
            "wrong issuer",
            &rsa,
            get().bearer(&token(
                "RS256",
                "rsa1",
                claims("https://evil.example", "alice"),
            )),
            401,
            JwtStatus::UnknownIssuer,
        ),
        (
            "wrong audience",
            &ec,
            get().bearer(&token(
                "ES256",
                "ec1",
                with(claims(EC_ISS, "bob"), "aud", json!(["other"])),
            )),
            403,
            JwtStatus::AudienceNotAllowed,
        ),
        (
            "no audience when required",
            &ec,
            get().bearer(&token("ES256", "ec1", claims(EC_ISS, "bob"))),
            403,
            JwtStatus::AudienceNotAllowed,
        ),
        (
            "unknown kid",
            &rsa,
            get().bearer(&token("RS256", "other-kid", alice.clone())),
            401,
            JwtStatus::KidAlgMismatch,
        ),
        (
            "tampered payload",
            &rsa,
            get().bearer(&tampered),
            401,
            JwtStatus::VerificationFail,
        ),
        (
            "malformed base64",
            &rsa,
            get().bearer("e30.e$30.sig"),
            401,
            JwtStatus::BadFormat,
        ),
        (
            "malformed base64 header",
            &rsa,
            get().bearer("A.e30.sig"),
            401,
            JwtStatus::HeaderBadBase64,
        ),
        (
            "malformed base64 payload",
            &rsa,
            get().bearer(&format!("{}.A.sig", b64(br#"{"alg":"RS256"}"#))),
            401,
            JwtStatus::PayloadBadBase64,
        ),
        (
            "two sections",
            &rsa,
            get().bearer("e30.e30"),
            401,
            JwtStatus::BadFormat,
        ),
        (
            "oversized token",
            &rsa,
            get().bearer(&format!(
                "{}.{}.sig",
                b64(br#"{"alg":"RS256"}"#),
                "A".repeat(70_000)
            )),
            401,
            JwtStatus::TooLong,
        ),
        (
            "EdDSA token verified against the EC key set",
            &ec,
            get().bearer(&token(
                "EdDSA",
                "ec1",
                with(claims(EC_ISS, "bob"), "aud", json!("api.example.com")),
            )),
            401,
            JwtStatus::KidAlgMismatch,
        ),
    ];
    for (label, a, r, status, reason) in cases {
        assert_eq!(rejected(&r.run(a)), (status, reason), "{label}");
    }
}

#[test]
fn clock_skew_is_sixty_seconds() {
    let rsa = authn(vec![rule(RSA_ISS, vec![keys().rsa_jwk("rsa1")], json!({}))]);
    let c = claims(RSA_ISS, "alice");
    for (label, claims, ok) in [
        (
            "expired 30 s ago",
            with(c.clone(), "exp", json!(NOW - 30)),
            true,
        ),
        (
            "expired 60 s ago",
            with(c.clone(), "exp", json!(NOW - 60)),
            true,
        ),
        (
            "expired 61 s ago",
            with(c.clone(), "exp", json!(NOW - 61)),
            false,
        ),
        ("nbf in 60 s", with(c.clone(), "nbf", json!(NOW + 60)), true),
        (
            "nbf in 61 s",
            with(c.clone(), "nbf", json!(NOW + 61)),
            false,
        ),
        (
            "no exp at all",
            json!({"iss": RSA_ISS, "sub": "alice"}),
            true,
        ),
    ] {
        let v = get().bearer(&token("RS256", "rsa1", claims)).run(&rsa);
        assert_eq!(
            matches!(
                v,
                Verdict::Continue {
                    identity: Some(_),
                    ..
                }
            ),
            ok,
            "{label}: {v:?}"
        );
    }
}

#[test]
fn missing_tokens_and_locations() {
    let k = keys();
    let rsa = authn(vec![rule(RSA_ISS, vec![k.rsa_jwk("rsa1")], json!({}))]);
    let t = token("RS256", "rsa1", claims(RSA_ISS, "alice"));
    // No token: continue without identity.
    assert_eq!(
        get().run(&rsa),
        Verdict::Continue {
            identity: None,
            headers: vec![]
        }
    );
    // A header without the configured prefix is not a token location (istio#33545).
    assert_eq!(
        principal(
            &get()
                .header("authorization", &format!("Basic {t}"))
                .run(&rsa)
        ),
        None
    );
    // Default locations: Bearer header (removed after verification) and ?access_token= (kept).
    match get().bearer(&t).run(&rsa) {
        Verdict::Continue { headers, .. } => {
            assert_eq!(headers, vec![HeaderOp::Remove("authorization".into())])
        }
        other => panic!("{other:?}"),
    }
    match get().query(&format!("access_token={t}")).run(&rsa) {
        Verdict::Continue {
            identity: Some(_),
            headers,
        } => assert!(headers.is_empty()),
        other => panic!("{other:?}"),
    }
    // forwardOriginalToken keeps the header.
    let fwd = authn(vec![rule(
        RSA_ISS,
        vec![k.rsa_jwk("rsa1")],
        json!({"forwardOriginalToken": true}),
    )]);
    match get().bearer(&t).run(&fwd) {
        Verdict::Continue {
            headers,
            identity: Some(_),
        } => assert!(headers.is_empty()),
        other => panic!("{other:?}"),
    }
    // fromParams / fromCookies / fromHeaders with prefix.
    let custom = authn(vec![rule(
        RSA_ISS,
        vec![k.rsa_jwk("rsa1")],
        json!({
        "fromHeaders": [{"name": "x-token", "prefix": "JWT "}], "fromParams": ["tok"], "fromCookies": ["session"]}),
    )]);
    assert!(principal(&get().header("x-token", &format!("JWT {t}")).run(&custom)).is_some());
    assert!(principal(&get().query(&format!("a=1&tok={t}")).run(&custom)).is_some());
    assert!(
        principal(
            &get()
                .header("cookie", &format!("x=1; session={t}"))
                .run(&custom)
        )
        .is_some()
    );
    assert_eq!(
        principal(&get().bearer(&t).run(&custom)),
        None,
        "Authorization is not a location any more"
    );
    // Every token present must be valid.
    let bad = token(
        "RS256",
        "rsa1",
        with(claims(RSA_ISS, "alice"), "exp", json!(NOW - 3600)),
    );
    assert_eq!(
        rejected(
            &get()
                .bearer(&t)
                .query(&format!("access_token={bad}"))
                .run(&rsa)
        ),
        (401, JwtStatus::Expired)
    );
}

#[test]
fn www_authenticate_and_cors_preflight() {
    let rsa = authn(vec![rule(RSA_ISS, vec![keys().rsa_jwk("rsa1")], json!({}))]);
    let bad = get().query("x=1").bearer("not.a.jwt");
    match bad.run(&rsa) {
        Verdict::Reject {
            status: 401,
            www_authenticate,
            ..
        } => {
            assert_eq!(
                www_authenticate,
                "Bearer realm=\"http://httpbin.foo/headers?x=1\", error=\"invalid_token\""
            );
        }
        other => panic!("{other:?}"),
    }
    // The realm's path (with its query) is cut at 256 bytes, as Envoy's
    // `buildOriginalUri` does.
    let long = "a".repeat(300);
    match get().query(&long).bearer("not.a.jwt").run(&rsa) {
        Verdict::Reject {
            www_authenticate, ..
        } => {
            let path = "/headers?".to_string() + &long;
            assert_eq!(
                www_authenticate,
                format!(
                    "Bearer realm=\"http://httpbin.foo{}\", error=\"invalid_token\"",
                    &path[..256]
                )
            );
        }
        other => panic!("{other:?}"),
    }
    let preflight = get()
        .method("OPTIONS")
        .header("origin", "https://app")
        .header("access-control-request-method", "POST")
        .bearer("not.a.jwt");
    assert_eq!(preflight.run(&rsa), Verdict::Skip);
    // An OPTIONS request that is not a preflight is verified.
    assert!(matches!(
        get().method("OPTIONS").bearer("not.a.jwt").run(&rsa),
        Verdict::Reject { .. }
    ));
}

#[test]
fn outputs_and_claims() {
    let k = keys();
    let a = authn(vec![rule(
        ED_ISS,
        vec![k.ed_jwk("ed1")],
        json!({
            "fromHeaders": [{"name": "x-jwt"}],
            "outputPayloadToHeader": "x-jwt-payload",
            "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}, {"header": "x-team", "claim": "org.team"},
                                     {"header": "x-admin", "claim": "admin"}, {"header": "x-level", "claim": "level"},
                                     {"header": "x-groups", "claim": "groups"}, {"header": "x-missing", "claim": "nope"}],
            "spaceDelimitedClaims": ["roles"]
        }),
    )]);
    let c = json!({"iss": ED_ISS, "sub": "carol", "aud": ["a", "b"], "azp": "web", "org": {"team": "core"}, "admin": true,
                   "level": 3, "groups": ["g1"], "scope": "read write", "roles": "x y", "exp": NOW + 60});
    let t = token("EdDSA", "ed1", c.clone());
    let payload_b64 = t.split('.').nth(1).unwrap().to_owned();
    // A forged output header is stripped even though it is overwritten.
    let v = get().header("x-jwt", &t).header("x-sub", "forged").run(&a);
    let Verdict::Continue {
        identity: Some(id),
        headers,
    } = v
    else {
        panic!("{v:?}")
    };
    assert_eq!(
        headers,
        vec![
            HeaderOp::Remove("x-sub".into()),
            HeaderOp::Remove("x-jwt".into()),
            HeaderOp::Set("x-jwt-payload".into(), payload_b64),
            HeaderOp::Set("x-sub".into(), "carol".into()),
            HeaderOp::Set("x-team".into(), "core".into()),
            HeaderOp::Set("x-admin".into(), "true".into()),
            HeaderOp::Set("x-level".into(), "3".into()),
        ]
    );
    let Identity {
        principal,
        audiences,
        presenter,
        claims,
        ..
    } = id;
    assert_eq!(
        (principal.as_str(), audiences, presenter.as_deref()),
        (
            "https://ed.example/carol",
            vec!["a".to_owned(), "b".to_owned()],
            Some("web")
        )
    );
    let claims: Value = serde_json::from_str(&claims).unwrap();
    assert_eq!(claims["scope"], json!(["read", "write"]));
    assert_eq!(claims["roles"], json!(["x", "y"]));
    assert_eq!(claims["org"]["team"], json!("core"));
    // Without a token the forged header is still removed.
    assert_eq!(
        get().header("x-jwt-payload", "forged").run(&a),
        Verdict::Continue {
            identity: None,
            headers: vec![HeaderOp::Remove("x-jwt-payload".into())]
        }
    );
    // The guest sees only the headers `header_names` selects: the output
    // headers must be among them, or a forged one would never be seen, so
    // never stripped.
    let names = a.header_names();
    for h in ["x-jwt-payload", "x-sub", "x-team", "x-missing"] {
        assert!(names.iter().any(|n| n == h), "{h} in {names:?}");
    }
}

#[test]
fn several_rules_and_attachment() {
    let k = keys();
    let multi = authn(vec![
        rule(RSA_ISS, vec![k.rsa_jwk("rsa1")], json!({})),
        rule(EC_ISS, vec![k.ec_jwk("ec1")], json!({})),
        rule(
            ED_ISS,
            vec![k.ed_jwk("ed1")],
            json!({"fromHeaders": [{"name": "x-jwt"}]}),
        ),
        rule("https://hmac.example", vec![k.oct_jwk("h1")], json!({})),
    ]);
    assert_eq!(
        principal(
            &get()
                .bearer(&token("RS256", "rsa1", claims(RSA_ISS, "a")))
                .run(&multi)
        )
        .as_deref(),
        Some("https://rsa.example/a")
    );
    assert_eq!(
        principal(
            &get()
                .bearer(&token("ES256", "ec1", claims(EC_ISS, "b")))
                .run(&multi)
        )
        .as_deref(),
        Some("https://ec.example/b")
    );
    assert_eq!(
        principal(
            &get()
                .header("x-jwt", &token("EdDSA", "ed1", claims(ED_ISS, "c")))
                .run(&multi)
        )
        .as_deref(),
        Some("https://ed.example/c")
    );
    assert_eq!(
        principal(
            &get()
                .bearer(&token("HS256", "h1", claims("https://hmac.example", "d")))
                .run(&multi)
        )
        .as_deref(),
        Some("https://hmac.example/d")
    );
    assert_eq!(
        get().run(&multi),
        Verdict::Continue {
            identity: None,
            headers: vec![]
        }
    );
    assert_eq!(
        rejected(
            &get()
                .bearer(&token(
                    "RS256",
                    "rsa1",
                    claims("https://nobody.example", "x")
                ))
                .run(&multi)
        ),
        (401, JwtStatus::UnknownIssuer)
    );
    assert_eq!(
        rejected(
            &get()
                .bearer(&token(
                    "ES256",
                    "ec1",
                    with(claims(EC_ISS, "b"), "exp", json!(NOW - 100))
                ))
                .run(&multi)
        ),
        (401, JwtStatus::Expired)
    );
    // An Ed25519 token in the RSA/EC location is an unknown issuer there.
    assert_eq!(
        rejected(
            &get()
                .bearer(&token("EdDSA", "ed1", claims(ED_ISS, "c")))
                .run(&multi)
        ),
        (401, JwtStatus::UnknownIssuer)
    );

    // RequestAuthentication attached to one Service.
    let cfg = json!({"requestAuthentications": [{"namespace": "foo", "name": "ra", "targetServices": ["b.foo.svc.cluster.local"],
        "jwtRules": [rule(RSA_ISS, vec![k.rsa_jwk("rsa1")], json!({}))]}]});
    let scoped = filter_jwt::JwtAuthenticator::from_json(cfg.to_string().as_bytes()).unwrap();
    assert_eq!(get().bearer("garbage").run(&scoped), Verdict::Skip);
    assert!(matches!(
        get()
            .bearer("garbage")
            .service("b.foo.svc.cluster.local")
            .run(&scoped),
        Verdict::Reject { .. }
    ));
}

#[test]
fn verified_tokens_are_cached() {
    let rsa = authn(vec![rule(RSA_ISS, vec![keys().rsa_jwk("rsa1")], json!({}))]);
    let t = token("RS256", "rsa1", claims(RSA_ISS, "alice"));
    let counting = Counting::default();
    for _ in 0..3 {
        assert!(principal(&get().bearer(&t).run_with(&rsa, NOW, &counting)).is_some());
    }
    assert_eq!(counting.0.get(), 1, "signature checked once");
    // Time is still checked on cache hits.
    assert_eq!(
        rejected(&get().bearer(&t).run_with(&rsa, NOW + 3600 + 61, &counting)),
        (401, JwtStatus::Expired)
    );
    rsa.set_cache_capacity(0);
    let t2 = token("RS256", "rsa1", claims(RSA_ISS, "bob"));
    get().bearer(&t2).run_with(&rsa, NOW, &counting);
    get().bearer(&t2).run_with(&rsa, NOW, &counting);
    assert_eq!(counting.0.get(), 3);
}

#[test]
fn configuration_errors() {
    let err = |rules: Value| {
        let cfg = json!({"requestAuthentications": [{"namespace": "foo", "name": "ra", "jwtRules": rules}]});
        filter_jwt::JwtAuthenticator::from_json(cfg.to_string().as_bytes())
            .expect_err("refused")
            .to_string()
    };
    assert!(
        err(json!([{"jwks": "{\"keys\":[]}"}])).contains("issuer or jwksUri must be non-empty")
    );
    assert!(err(json!([{"issuer": "i", "jwks": "not json"}])).contains("jwks parse error"));
    assert!(err(json!([{"issuer": "i", "jwks": "{\"keys\":[]}", "outputClaimToHeaders": [{"header": "bad header", "claim": "sub"}]}])).contains("must match"));
    // A key set with no keys (JWKS unavailable at the control plane) fails closed.
    let empty = authn(vec![rule(RSA_ISS, vec![], json!({}))]);
    assert_eq!(
        rejected(
            &get()
                .bearer(&token("RS256", "rsa1", claims(RSA_ISS, "a")))
                .run(&empty)
        ),
        (401, JwtStatus::KidAlgMismatch)
    );
}
