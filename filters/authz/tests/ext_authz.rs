//! CUSTOM action: Envoy ext_authz HTTP semantics (istio-semantics.md §1.3).

use filter_authz::Authorizer;
use filter_authz::extauthz::{CheckResponse, CheckResult};
use serde_json::json;

fn provider(extra: serde_json::Value) -> Authorizer {
    let mut p = json!({"name": "ext"});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    let cfg = json!({
        "providers": [p],
        "policies": [{"namespace": "foo", "name": "c", "action": "CUSTOM", "provider": {"name": "ext"}, "rules": [{}]}]
    });
    Authorizer::from_json(cfg.to_string().as_bytes()).unwrap()
}

fn check(a: &Authorizer, answer: Result<CheckResponse, String>) -> CheckResult {
    let input = filter_authz::Input {
        path: "/p",
        ..Default::default()
    };
    let plan = a.evaluate(&input).unwrap();
    assert_eq!(plan.custom.len(), 1);
    plan.custom[0].provider.interpret(answer)
}

fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> Result<CheckResponse, String> {
    Ok(CheckResponse {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        body: body.as_bytes().to_vec(),
    })
}

#[test]
fn check_request_carries_method_path_host_and_selected_headers() {
    let a = provider(
        json!({"pathPrefix": "/check", "includeRequestHeadersInCheck": ["x-user*"],
                             "includeAdditionalHeadersInCheck": {"x-from": "waypoint"}, "timeout": "2s"}),
    );
    let input = filter_authz::Input {
        path: "/p",
        ..Default::default()
    };
    let plan = a.evaluate(&input).unwrap();
    let headers: Vec<(String, String)> = [
        ("authorization", "Bearer t"),
        ("x-user-id", "7"),
        ("cookie", "secret"),
        ("x-user-id", "8"),
    ]
    .iter()
    .map(|(k, v)| ((*k).into(), (*v).into()))
    .collect();
    let req = plan.custom[0]
        .provider
        .check_request("POST", "httpbin.foo", "/p?q=1", &headers);
    assert_eq!(
        (
            req.upstream.as_str(),
            req.method.as_str(),
            req.path.as_str(),
            req.timeout_ms
        ),
        ("ext", "POST", "/check/p?q=1", 2000)
    );
    assert_eq!(
        req.headers,
        vec![
            ("host".to_owned(), "httpbin.foo".to_owned()),
            ("authorization".to_owned(), "Bearer t".to_owned()),
            ("x-user-id".to_owned(), "7,8".to_owned()),
            ("x-from".to_owned(), "waypoint".to_owned()),
        ]
    );
    assert_eq!(
        provider(json!({})).evaluate(&input).unwrap().custom[0]
            .provider
            .check_request("GET", "h", "/", &[])
            .timeout_ms,
        600_000
    );
}

#[test]
fn answers() {
    let a = provider(
        json!({"headersToUpstreamOnAllow": ["x-auth-*"], "headersToDownstreamOnAllow": ["x-trace"]}),
    );
    assert_eq!(
        check(
            &a,
            resp(
                200,
                &[
                    ("x-auth-user", "bob"),
                    ("x-other", "1"),
                    ("x-trace", "t"),
                    ("x-envoy-auth-headers-to-remove", "authorization, x-old")
                ],
                ""
            )
        ),
        CheckResult::Allow {
            upstream_set: vec![("x-auth-user".into(), "bob".into())],
            upstream_remove: vec!["authorization".into(), "x-old".into()],
            downstream_add: vec![("x-trace".into(), "t".into())],
        }
    );
    // 2xx other than 200 denies, with the provider's status, headers and body.
    match check(&a, resp(201, &[("x-a", "1"), ("host", "h")], "nope")) {
        CheckResult::Deny {
            status,
            headers,
            body,
        } => {
            assert_eq!((status, body.as_slice()), (201, b"nope".as_slice()));
            assert_eq!(headers, vec![("x-a".to_owned(), "1".to_owned())]);
        }
        other => panic!("{other:?}"),
    }
    match check(&a, resp(401, &[("www-authenticate", "Basic")], "login")) {
        CheckResult::Deny { status, .. } => assert_eq!(status, 401),
        other => panic!("{other:?}"),
    }
    // 5xx and failures: fail closed with 403 by default.
    for answer in [resp(503, &[], "down"), Err("connection refused".into())] {
        assert_eq!(
            check(&a, answer),
            CheckResult::Deny {
                status: 403,
                headers: vec![],
                body: vec![]
            }
        );
    }
    let a = provider(json!({"statusOnError": "503"}));
    assert!(matches!(
        check(&a, Err("timeout".into())),
        CheckResult::Deny { status: 503, .. }
    ));
    let a = provider(json!({"failOpen": true}));
    assert!(matches!(
        check(&a, resp(500, &[], "")),
        CheckResult::Allow { .. }
    ));
    // headersToDownstreamOnDeny restricts the denial's headers (plus location / www-authenticate).
    let a = provider(json!({"headersToDownstreamOnDeny": ["x-reason"]}));
    match check(
        &a,
        resp(
            302,
            &[("location", "/login"), ("x-reason", "r"), ("x-secret", "s")],
            "",
        ),
    ) {
        CheckResult::Deny { headers, .. } => assert_eq!(
            headers,
            vec![
                ("location".to_owned(), "/login".to_owned()),
                ("x-reason".to_owned(), "r".to_owned())
            ]
        ),
        other => panic!("{other:?}"),
    }
}
