//! Native cost of authorizing one request against 50 AuthorizationPolicies
//! (the baseline for the same work inside the `authz` WASM filter).
//!
//! Run: `cargo bench --manifest-path filters/Cargo.toml -p filter-authz --bench authz_50_policies`

use filter_authz::{Authorizer, Decision, Input, RequestAuth};
use serde_json::json;
use std::hint::black_box;
use std::time::Instant;

#[path = "support/policies.rs"]
mod policies;
use policies::policies;

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
    let cfg = json!({"policies": policies()});
    let authz = Authorizer::from_json(cfg.to_string().as_bytes()).expect("compiles");
    assert_eq!(authz.policy_count(), 50);
    let headers: Vec<(String, String)> = vec![
        ("user-agent".into(), "bench/1.0".into()),
        ("accept".into(), "application/json".into()),
        (
            "x-request-id".into(),
            "4f1c2a6e-1b2d-4c3e-9f00-123456789abc".into(),
        ),
        ("x-forwarded-for".into(), "203.0.113.9".into()),
    ];
    let audiences = vec!["shop".to_owned()];
    let claims = r#"{"iss":"https://login.example.com","sub":"u-1","groups":["customers"]}"#;
    let input = Input {
        method: "GET",
        authority: "products.shop.svc.cluster.local:8080",
        path: "/products/42",
        headers: &headers,
        source_principal: Some("cluster.local/ns/shop/sa/frontend"),
        source_address: "10.244.1.7",
        destination_address: "10.96.4.2",
        destination_port: 8080,
        destination_service: Some("products.shop.svc.cluster.local"),
        request_auth: Some(RequestAuth {
            issuer: "https://login.example.com",
            subject: "u-1",
            audiences: &audiences,
            presenter: None,
            claims,
        }),
    };
    let plan = authz.evaluate(&input).expect("valid request");
    assert_eq!(
        plan.decision,
        Decision::Allow {
            policy: Some("bench/zz-allow-frontend")
        }
    );
    measure("authz/50 policies/allow (last policy)", 20_000, || {
        black_box(
            authz
                .evaluate(black_box(&input))
                .map(|p| p.decision == Decision::NoPolicies)
                .ok(),
        );
    });
    let denied = Input {
        source_principal: Some("cluster.local/ns/other/sa/x"),
        ..input
    };
    assert!(matches!(
        authz.evaluate(&denied).unwrap().decision,
        Decision::Deny { policy: None }
    ));
    measure("authz/50 policies/deny (nothing matches)", 20_000, || {
        black_box(
            authz
                .evaluate(black_box(&denied))
                .map(|p| p.decision == Decision::NoPolicies)
                .ok(),
        );
    });
    let dotted = Input {
        path: "/products/./x/../42",
        ..input
    };
    measure(
        "authz/50 policies/allow + path normalization",
        20_000,
        || {
            black_box(
                authz
                    .evaluate(black_box(&dotted))
                    .map(|p| p.decision == Decision::NoPolicies)
                    .ok(),
            );
        },
    );
    let cfg_bytes = cfg.to_string();
    measure("authz/configure (parse + compile 50)", 200, || {
        black_box(
            Authorizer::from_json(black_box(cfg_bytes.as_bytes()))
                .map(|a| a.policy_count())
                .ok(),
        );
    });
}
