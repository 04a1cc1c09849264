//! CUSTOM authorization through the real waypoint: the authz filter's
//! ext-authz build asks a provider over `outbound-http`, ahead of JWT
//! validation as in Istio's waypoint chain (ext_authz → jwt_authn → RBAC).

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn custom_provider_is_asked_before_jwt_validation() {
    let up = Upstream::start("app", "127.0.0.1").await;
    // The provider: the test upstream answers the status in `x-status`
    // (forwarded into the check request) and records what it was sent.
    let provider = Upstream::start("provider", "127.0.0.3").await;
    let mut cfg = config(vec![up.endpoint(&[])], json!({}));
    let jwks = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
    cfg["filters"] = json!([
        {
            "name": "authz-custom",
            "module": { "sha256": "", "url": guest("authz-ext").display().to_string() },
            "capabilities": ["log", "metrics", "outbound-http"],
            "upstreams": { "ext": format!("http://{}", provider.addr) },
            "config": {
                "providers": [{ "name": "ext", "includeRequestHeadersInCheck": ["x-status"] }],
                "policies": [{ "namespace": "test", "name": "ext-check", "action": "CUSTOM",
                               "provider": { "name": "ext" }, "rules": [{}] }],
            },
        },
        {
            "name": "jwt",
            "module": { "sha256": "", "url": guest("jwt").display().to_string() },
            "capabilities": ["log", "metrics", "clock", "crypto", "authn"],
            "config": { "requestAuthentications": [{ "namespace": "test", "name": "jwt",
                "jwtRules": [{ "issuer": "https://issuer.test", "jwks": jwks }] }] },
        },
    ]);
    let wp = TestWaypoint::start(&cfg).await;
    let url = wp.url("/");

    // The provider denies: its answer wins although the token is invalid
    // (JWT would have said 401).
    let (s, _, _) = get(
        &url,
        &[("authorization", "Bearer not-a-jwt"), ("x-status", "403")],
    )
    .await;
    assert_eq!(s, 403, "the provider decides first");
    assert_eq!(
        up.seen.requests.load(std::sync::atomic::Ordering::SeqCst),
        0
    );

    // The provider allows: it saw the client's token; JWT then refuses it.
    let (s, _, h) = get(&url, &[("authorization", "Bearer not-a-jwt")]).await;
    assert_eq!(s, 401, "{h:?}");
    let seen = provider.seen.last_headers.lock().clone().unwrap();
    assert_eq!(seen["authorization"], "Bearer not-a-jwt");

    // No token: both let it through.
    let (s, body, _) = get(&url, &[]).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        up.seen.requests.load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    let m = wp.metrics().await;
    assert_eq!(
        metric(
            &m,
            "istio_requests_total",
            &[("response_code", "403"), ("response_flags", "UAEX")]
        ),
        Some(1.0),
        "{m}"
    );
}
