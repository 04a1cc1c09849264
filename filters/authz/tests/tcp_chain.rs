//! AuthorizationPolicy on a waypoint's TCP filter chain (a service port
//! whose protocol is not HTTP): istio-semantics.md §1.8 and row A16. HTTP
//! attributes cannot be known for a TCP connection: an ALLOW rule using one
//! is skipped (smaller allow), a DENY rule ignores them (wider deny).

mod common;

use common::*;
use serde_json::json;

fn check(name: &str, a: &filter_authz::Authorizer, rows: Vec<(&str, R, Outcome)>) {
    for (label, r, want) in rows {
        assert_eq!(r.eval_tcp(a), want, "[{name}] {label}");
    }
}

#[test]
fn a16_deny_with_only_a_method_denies_every_tcp_connection() {
    let a = authz(
        vec![policy(
            "deny-post",
            "DENY",
            json!([{"to": [{"operation": {"methods": ["POST"]}}]}]),
        )],
        json!({}),
    );
    check(
        "A16",
        &a,
        vec![
            ("mTLS peer", req(), deny_by("foo/deny-post")),
            ("plaintext", req().plaintext(), deny_by("foo/deny-post")),
        ],
    );
    // The same policy on an HTTP chain denies POST only.
    assert_eq!(req().method("GET").eval(&a), allow());
    assert_eq!(req().method("POST").eval(&a), deny_by("foo/deny-post"));
}

#[test]
fn deny_keeps_its_l4_fields_when_http_fields_are_dropped() {
    let a = authz(
        vec![policy(
            "deny-dev-post",
            "DENY",
            json!([{"from": [{"source": {"namespaces": ["dev"]}}],
                    "to": [{"operation": {"methods": ["POST"], "ports": ["8000"]}}]}]),
        )],
        json!({}),
    );
    check(
        "DENY ns+method+port",
        &a,
        vec![
            (
                "from dev to 8000",
                req().peer("cluster.local/ns/dev/sa/x"),
                deny_by("foo/deny-dev-post"),
            ),
            (
                "from dev to 9000",
                req().peer("cluster.local/ns/dev/sa/x").port(9000),
                allow(),
            ),
            ("from foo to 8000", req(), allow()),
        ],
    );
}

#[test]
fn allow_rules_with_http_fields_are_skipped() {
    let a = authz(
        vec![
            policy(
                "allow-get",
                "ALLOW",
                json!([{"from": [{"source": {"principals": ["cluster.local/ns/foo/sa/sleep"]}}],
                        "to": [{"operation": {"methods": ["GET"]}}]}]),
            ),
            policy(
                "allow-admin",
                "ALLOW",
                json!([{"from": [{"source": {"principals": ["cluster.local/ns/foo/sa/admin"]}}]},
                       {"when": [{"key": "request.headers[x-token]", "values": ["t"]}]}]),
            ),
        ],
        json!({}),
    );
    check(
        "ALLOW with HTTP fields",
        &a,
        vec![
            // allow-get's only rule uses a method: skipped, so sleep has no allow.
            ("sleep", req(), deny()),
            // allow-admin's first rule is pure L4 and still applies.
            (
                "admin",
                req().peer("cluster.local/ns/foo/sa/admin"),
                allow_by("foo/allow-admin"),
            ),
            ("plaintext", req().plaintext(), deny()),
        ],
    );
    // On an HTTP chain allow-get lets sleep's GET through.
    assert_eq!(req().eval(&a), allow_by("foo/allow-get"));
}

#[test]
fn l4_only_policies_behave_as_on_http() {
    let a = authz(
        vec![
            policy(
                "allow-ns",
                "ALLOW",
                json!([{"from": [{"source": {"namespaces": ["foo"], "notPrincipals": ["cluster.local/ns/foo/sa/bad"]}}],
                        "to": [{"operation": {"ports": ["8000"]}}]}]),
            ),
            policy(
                "deny-ip",
                "DENY",
                json!([{"from": [{"source": {"ipBlocks": ["10.9.0.0/16"]}}]}]),
            ),
        ],
        json!({}),
    );
    check(
        "L4 only",
        &a,
        vec![
            ("foo/sleep to 8000", req(), allow_by("foo/allow-ns")),
            ("foo/bad", req().peer("cluster.local/ns/foo/sa/bad"), deny()),
            (
                "other namespace",
                req().peer("cluster.local/ns/bar/sa/x"),
                deny(),
            ),
            ("port 9000", req().port(9000), deny()),
            (
                "denied block",
                req().source("10.9.1.1"),
                deny_by("foo/deny-ip"),
            ),
        ],
    );
}

#[test]
fn custom_and_audit_do_not_decide_tcp_connections() {
    let a = authz(
        vec![policy("audit-all", "AUDIT", json!([{}])), {
            let mut p = policy("ext", "CUSTOM", json!([{}]));
            p["provider"] = json!({"name": "ext-authz"});
            p
        }],
        json!({"providers": [{"name": "ext-authz"}]}),
    );
    check("CUSTOM/AUDIT", &a, vec![("any", req(), allow())]);
}

/// CUSTOM on a TCP chain: a policy with a known (HTTP) provider does not
/// apply, as istiod ignores HTTP providers on TCP chains; one naming an
/// unknown provider, or one of several providers without
/// `multipleCustomProviders`, denies what it matches with its HTTP fields
/// ignored (istiod's `buildTCP` generates deny rules: fail closed).
#[test]
fn custom_with_a_bad_provider_fails_closed_on_tcp() {
    let custom = |name: &str, provider: &str| {
        let mut p = policy(
            name,
            "CUSTOM",
            json!([{"to": [{"operation": {"paths": ["/admin"]}}]}]),
        );
        p["provider"] = json!({"name": provider});
        p
    };
    let providers = json!({"providers": [{"name": "ext"}, {"name": "other"}]});
    let a = authz(vec![custom("c", "ext")], providers.clone());
    check("known provider", &a, vec![("mTLS peer", req(), allow())]);
    let a = authz(vec![custom("c", "missing")], providers.clone());
    check(
        "unknown provider",
        &a,
        vec![
            ("mTLS peer", req(), deny_by("foo/c")),
            ("plaintext", req().plaintext(), deny_by("foo/c")),
        ],
    );
    let a = authz(
        vec![custom("c1", "ext"), custom("c2", "other")],
        providers.clone(),
    );
    assert!(
        matches!(req().eval_tcp(&a), Outcome::Deny(Some(_))),
        "two providers without multipleCustomProviders"
    );
    let mut both = providers;
    both["multipleCustomProviders"] = json!(true);
    let a = authz(vec![custom("c1", "ext"), custom("c2", "other")], both);
    check(
        "two providers allowed",
        &a,
        vec![("mTLS peer", req(), allow())],
    );
}
