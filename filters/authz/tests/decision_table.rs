//! AuthorizationPolicy + request ⇒ decision, at a waypoint (Envoy RBAC
//! semantics): istio-semantics.md §1.3, §1.4, §1.5, §1.6, §1.9, §1.11.

mod common;

use common::*;
use filter_authz::{Authorizer, Rejection};
use serde_json::{Value, json};

/// Runs a section: one configuration, many requests.
fn section(name: &str, a: &Authorizer, rows: Vec<(&str, R, Outcome)>) -> usize {
    let n = rows.len();
    for (label, r, want) in rows {
        assert_eq!(r.eval(a), want, "[{name}] {label}");
    }
    n
}

fn none() -> Value {
    json!({})
}

#[test]
fn decision_table() {
    let mut rows = 0;

    // §1.3 / §1.11 A1–A4: empty-policy edge cases and decision order.
    rows += section(
        "A1 no policy",
        &authz(vec![], none()),
        vec![("anything", req(), allow())],
    );
    rows += section(
        "A2 spec {}",
        &authz(vec![policy("p", "ALLOW", Value::Null)], none()),
        vec![
            ("mTLS peer", req(), deny()),
            ("plaintext", req().plaintext(), deny()),
        ],
    );
    rows += section(
        "A3 rules [{}]",
        &authz(vec![policy("p", "ALLOW", json!([{}]))], none()),
        vec![(
            "any request",
            req().method("DELETE").path("/x"),
            allow_by("foo/p"),
        )],
    );
    rows += section(
        "A4 DENY {} + ALLOW {}",
        &authz(
            vec![
                policy("allow-all", "ALLOW", json!([{}])),
                policy("deny-all", "DENY", json!([{}])),
            ],
            none(),
        ),
        vec![("DENY first", req(), deny_by("foo/deny-all"))],
    );
    rows += section(
        "waypoint DENY/AUDIT without rules are no-ops",
        &authz(
            vec![
                policy("d", "DENY", Value::Null),
                policy("a", "AUDIT", Value::Null),
            ],
            none(),
        ),
        vec![("allowed", req(), allow())],
    );
    rows += section(
        "AUDIT never decides",
        &authz(
            vec![
                policy("audit", "AUDIT", json!([{}])),
                policy(
                    "only-x",
                    "ALLOW",
                    json!([{"from": [{"source": {"principals": ["cluster.local/ns/foo/sa/x"]}}]}]),
                ),
            ],
            none(),
        ),
        vec![
            (
                "x allowed",
                req().peer("cluster.local/ns/foo/sa/x"),
                allow_by("foo/only-x"),
            ),
            ("sleep denied despite AUDIT match", req(), deny()),
        ],
    );
    rows += section(
        "several ALLOW: any match allows",
        &authz(
            vec![
                policy(
                    "get",
                    "ALLOW",
                    json!([{"to": [{"operation": {"methods": ["GET"]}}]}]),
                ),
                policy(
                    "post-admin",
                    "ALLOW",
                    json!([{"to": [{"operation": {"methods": ["POST"], "paths": ["/admin"]}}]}]),
                ),
            ],
            none(),
        ),
        vec![
            ("GET", req(), allow_by("foo/get")),
            (
                "POST /admin",
                req().method("POST").path("/admin"),
                allow_by("foo/post-admin"),
            ),
            ("POST /other", req().method("POST").path("/other"), deny()),
        ],
    );

    // Attachment: a policy on Service B does not apply to Service A.
    let mut targeted = policy(
        "b-only",
        "ALLOW",
        json!([{"to": [{"operation": {"paths": ["/ok"]}}]}]),
    );
    targeted["targetServices"] = json!(["b.foo.svc.cluster.local"]);
    rows += section(
        "targetRefs Service",
        &authz(vec![targeted], none()),
        vec![
            ("service A: no policy applies", req().path("/x"), allow()),
            (
                "service B, not matching",
                req().path("/x").service("b.foo.svc.cluster.local"),
                deny(),
            ),
            (
                "service B, matching",
                req().path("/ok").service("b.foo.svc.cluster.local"),
                allow_by("foo/b-only"),
            ),
        ],
    );

    // A5 / A10 / A11: identities (waypoint sees the client's HBONE identity).
    rows += section(
        "A5 principals",
        &authz(
            vec![policy(
                "p",
                "ALLOW",
                json!([{"from": [{"source": {"principals": ["cluster.local/ns/a/sa/x"]}}]}]),
            )],
            none(),
        ),
        vec![
            (
                "peer x",
                req().peer("cluster.local/ns/a/sa/x"),
                allow_by("foo/p"),
            ),
            ("peer y", req().peer("cluster.local/ns/a/sa/y"), deny()),
            ("plaintext", req().plaintext(), deny()),
        ],
    );
    rows += section(
        "A10 namespaces prod-*",
        &authz(
            vec![policy(
                "p",
                "ALLOW",
                json!([{"from": [{"source": {"namespaces": ["prod-*"]}}]}]),
            )],
            none(),
        ),
        vec![
            (
                "prod-eu",
                req().peer("cluster.local/ns/prod-eu/sa/x"),
                allow_by("foo/p"),
            ),
            ("prod", req().peer("cluster.local/ns/prod/sa/x"), deny()),
            ("plaintext", req().plaintext(), deny()),
        ],
    );
    rows += section(
        "A11 DENY notNamespaces",
        &authz(
            vec![policy(
                "p",
                "DENY",
                json!([{"from": [{"source": {"notNamespaces": ["foo"]}}]}]),
            )],
            none(),
        ),
        vec![
            (
                "plaintext: no namespace ⇒ denied",
                req().plaintext(),
                deny_by("foo/p"),
            ),
            ("from foo", req(), allow()),
            (
                "from bar",
                req().peer("cluster.local/ns/bar/sa/x"),
                deny_by("foo/p"),
            ),
        ],
    );

    // A12 / A13 / A14 / A15.
    rows += section(
        "A12 paths /api/*",
        &authz(
            vec![policy(
                "p",
                "ALLOW",
                json!([{"to": [{"operation": {"paths": ["/api/*"]}}]}]),
            )],
            none(),
        ),
        vec![
            (
                "/api/v1 (query stripped)",
                req().path("/api/v1"),
                allow_by("foo/p"),
            ),
            ("/api", req().path("/api"), deny()),
            ("/API/v1 is case-sensitive", req().path("/API/v1"), deny()),
            (
                "/x/../api/v1 normalized",
                req().path("/x/../api/v1"),
                allow_by("foo/p"),
            ),
            (
                "/%61pi/v1 decoded",
                req().path("/%61pi/v1"),
                allow_by("foo/p"),
            ),
        ],
    );
    rows += section(
        "A13 hosts",
        &authz(
            vec![
                policy(
                    "p",
                    "ALLOW",
                    json!([{"to": [{"operation": {"hosts": ["httpbin.foo"]}}]}]),
                ),
                policy(
                    "q",
                    "ALLOW",
                    json!([{"to": [{"operation": {"hosts": ["other:*"]}}]}]),
                ),
            ],
            none(),
        ),
        vec![
            ("HTTPBIN.FOO", req().host("HTTPBIN.FOO"), allow_by("foo/p")),
            (
                "httpbin.foo:8000 not covered",
                req().host("httpbin.foo:8000"),
                deny(),
            ),
            (
                "other:8080 via other:*",
                req().host("other:8080"),
                allow_by("foo/q"),
            ),
        ],
    );
    rows += section(
        "A14 requestPrincipals",
        &authz(
            vec![policy(
                "p",
                "ALLOW",
                json!([{"from": [{"source": {"requestPrincipals": ["https://acc.example.com/123"]}}]}]),
            )],
            none(),
        ),
        vec![
            (
                "iss/123",
                req().jwt("https://acc.example.com", "123", json!({})),
                allow_by("foo/p"),
            ),
            (
                "iss/1234",
                req().jwt("https://acc.example.com", "1234", json!({})),
                deny(),
            ),
            ("no JWT", req(), deny()),
        ],
    );
    rows += section(
        "A15 claims[groups]",
        &authz(
            vec![policy(
                "p",
                "ALLOW",
                json!([{"when": [{"key": "request.auth.claims[groups]", "values": ["admin"]}]}]),
            )],
            none(),
        ),
        vec![
            (
                "[dev, admin]",
                req().jwt("i", "s", json!({"groups": ["dev", "admin"]})),
                allow_by("foo/p"),
            ),
            (
                "\"admin\"",
                req().jwt("i", "s", json!({"groups": "admin"})),
                allow_by("foo/p"),
            ),
            (
                "\"admins\"",
                req().jwt("i", "s", json!({"groups": "admins"})),
                deny(),
            ),
            ("no JWT", req(), deny()),
        ],
    );
    // A6–A9 and A17 are ztunnel quirks; A16 (a TCP port of the waypoint) is in
    // tcp_chain.rs. On an HTTP chain the HTTP fields are enforced.
    rows += section(
        "A6 at waypoint: principal + method",
        &authz(
            vec![policy(
                "p",
                "ALLOW",
                json!([{"from": [{"source": {"principals": ["cluster.local/ns/a/sa/x"]}}],
                                      "to": [{"operation": {"methods": ["GET"]}}]}]),
            )],
            none(),
        ),
        vec![
            (
                "GET from x",
                req().peer("cluster.local/ns/a/sa/x"),
                allow_by("foo/p"),
            ),
            (
                "POST from x",
                req().peer("cluster.local/ns/a/sa/x").method("POST"),
                deny(),
            ),
        ],
    );
    rows += section(
        "A7/A8 at waypoint: DENY method + port",
        &authz(
            vec![
                policy(
                    "p",
                    "DENY",
                    json!([{"from": [{"source": {"namespaces": ["dev"]}}],
                                     "to": [{"operation": {"methods": ["POST"], "ports": ["8080"]}}]}]),
                ),
                policy(
                    "q",
                    "DENY",
                    json!([{"to": [{"operation": {"methods": ["PUT"]}}]}]),
                ),
            ],
            none(),
        ),
        vec![
            (
                "GET from dev :8080",
                req().peer("cluster.local/ns/dev/sa/x").port(8080),
                allow(),
            ),
            (
                "POST from dev :8080",
                req()
                    .peer("cluster.local/ns/dev/sa/x")
                    .method("POST")
                    .port(8080),
                deny_by("foo/p"),
            ),
            (
                "POST from dev :9090",
                req()
                    .peer("cluster.local/ns/dev/sa/x")
                    .method("POST")
                    .port(9090),
                allow(),
            ),
            (
                "PUT denied (A8 is enforced at a waypoint)",
                req().method("PUT"),
                deny_by("foo/q"),
            ),
        ],
    );
    rows += section(
        "A9 at waypoint: DENY from namespaces OR requestPrincipals",
        &authz(
            vec![policy(
                "p",
                "DENY",
                json!([{"from": [{"source": {"namespaces": ["a"]}}, {"source": {"requestPrincipals": ["x/y"]}}]}]),
            )],
            none(),
        ),
        vec![
            (
                "ns b with JWT x/y",
                req()
                    .peer("cluster.local/ns/b/sa/s")
                    .jwt("x", "y", json!({})),
                deny_by("foo/p"),
            ),
            (
                "ns b without JWT",
                req().peer("cluster.local/ns/b/sa/s"),
                allow(),
            ),
        ],
    );
    rows += section(
        "A17 at waypoint: trustDomains",
        &authz(
            vec![policy(
                "p",
                "ALLOW",
                json!([{"from": [{"source": {"trustDomains": ["td1"]}}]}]),
            )],
            none(),
        ),
        vec![
            (
                "peer in td1",
                req().peer("td1/ns/a/sa/x"),
                allow_by("foo/p"),
            ),
            ("peer in td2", req().peer("td2/ns/a/sa/x"), deny()),
        ],
    );

    // §1.4 string forms and the remaining Source/Operation fields.
    rows += section(
        "principal forms",
        &authz(
            vec![
                policy(
                    "prefix",
                    "ALLOW",
                    json!([{"from": [{"source": {"principals": ["cluster.local/ns/a/*"]}}]}]),
                ),
                policy(
                    "suffix",
                    "ALLOW",
                    json!([{"from": [{"source": {"principals": ["*/sa/admin"]}}]}]),
                ),
            ],
            none(),
        ),
        vec![
            (
                "prefix",
                req().peer("cluster.local/ns/a/sa/any"),
                allow_by("foo/prefix"),
            ),
            (
                "suffix",
                req().peer("cluster.local/ns/z/sa/admin"),
                allow_by("foo/suffix"),
            ),
            ("neither", req().peer("cluster.local/ns/z/sa/user"), deny()),
        ],
    );
    rows += section(
        "principals * = any authenticated",
        &authz(
            vec![policy(
                "p",
                "ALLOW",
                json!([{"from": [{"source": {"principals": ["*"]}}]}]),
            )],
            none(),
        ),
        vec![
            ("mTLS", req(), allow_by("foo/p")),
            ("plaintext", req().plaintext(), deny()),
        ],
    );
    rows += section(
        "DENY notPrincipals",
        &authz(
            vec![policy(
                "p",
                "DENY",
                json!([{"from": [{"source": {"notPrincipals": ["cluster.local/ns/foo/sa/sleep"]}}]}]),
            )],
            none(),
        ),
        vec![
            ("sleep", req(), allow()),
            (
                "plaintext ⇒ not-match ⇒ deny",
                req().plaintext(),
                deny_by("foo/p"),
            ),
        ],
    );
    rows += section(
        "serviceAccounts",
        &authz(
            vec![policy(
                "p",
                "ALLOW",
                json!([{"from": [{"source": {"serviceAccounts": ["sleep", "bar/api"]}}]}]),
            )],
            none(),
        ),
        vec![
            ("sa in policy namespace", req(), allow_by("foo/p")),
            (
                "ns/sa, trust domain ignored",
                req().peer("other.td/ns/bar/sa/api"),
                allow_by("foo/p"),
            ),
            (
                "sleep in another namespace",
                req().peer("cluster.local/ns/bar/sa/sleep"),
                deny(),
            ),
        ],
    );
    rows += section(
        "trust domain aliases",
        &authz(
            vec![policy(
                "p",
                "ALLOW",
                json!([{"from": [{"source": {"principals": ["old-td/ns/foo/sa/sleep"]}}]}]),
            )],
            json!({"trustDomain": "new-td", "trustDomainAliases": ["old-td"]}),
        ),
        vec![
            (
                "peer in the new trust domain",
                req().peer("new-td/ns/foo/sa/sleep"),
                allow_by("foo/p"),
            ),
            (
                "peer in an unrelated trust domain",
                req().peer("evil-td/ns/foo/sa/sleep"),
                deny(),
            ),
        ],
    );
    rows += section(
        "ipBlocks / remoteIpBlocks",
        &authz(
            vec![
                policy(
                    "ip",
                    "ALLOW",
                    json!([{"from": [{"source": {"ipBlocks": ["10.0.0.0/8"], "notIpBlocks": ["10.9.0.0/16"]}}]}]),
                ),
                policy(
                    "remote",
                    "ALLOW",
                    json!([{"from": [{"source": {"remoteIpBlocks": ["203.0.113.7"]}}]}]),
                ),
            ],
            none(),
        ),
        vec![
            ("10.1.2.3", req().source("10.1.2.3"), allow_by("foo/ip")),
            ("10.9.1.1 excluded", req().source("10.9.1.1"), deny()),
            (
                "XFF rightmost is the remote ip",
                req()
                    .source("192.168.1.1")
                    .header("x-forwarded-for", "1.1.1.1, 203.0.113.7"),
                allow_by("foo/remote"),
            ),
            (
                "XFF leftmost is not",
                req()
                    .source("192.168.1.1")
                    .header("x-forwarded-for", "203.0.113.7, 1.1.1.1"),
                deny(),
            ),
            (
                "no XFF: connection address",
                req().source("203.0.113.7"),
                allow_by("foo/remote"),
            ),
        ],
    );
    rows += section(
        "numTrustedProxies = 1",
        &authz(
            vec![policy(
                "remote",
                "ALLOW",
                json!([{"from": [{"source": {"remoteIpBlocks": ["203.0.113.0/24"]}}]}]),
            )],
            json!({"numTrustedProxies": 1}),
        ),
        vec![(
            "second from the right",
            req()
                .source("192.168.1.1")
                .header("x-forwarded-for", "203.0.113.7, 1.1.1.1"),
            allow_by("foo/remote"),
        )],
    );
    rows += section(
        "methods, ports, hosts forms",
        &authz(
            vec![
                policy(
                    "m",
                    "ALLOW",
                    json!([{"to": [{"operation": {"methods": ["GE*"], "notPorts": ["9999"]}}]}]),
                ),
                policy(
                    "h",
                    "ALLOW",
                    json!([{"to": [{"operation": {"hosts": ["*.EXAMPLE.com"], "methods": ["*"]}}]}]),
                ),
            ],
            none(),
        ),
        vec![
            ("GET prefix", req(), allow_by("foo/m")),
            ("GET on excluded port", req().port(9999), deny()),
            (
                "POST to *.example.com",
                req().method("POST").host("api.Example.COM"),
                allow_by("foo/h"),
            ),
            ("POST elsewhere", req().method("POST"), deny()),
        ],
    );

    // §1.5 paths and normalization.
    rows += section(
        "path forms and templates",
        &authz(
            vec![
                policy(
                    "exact",
                    "ALLOW",
                    json!([{"to": [{"operation": {"paths": ["/exact"]}}]}]),
                ),
                policy(
                    "suffix",
                    "ALLOW",
                    json!([{"to": [{"operation": {"paths": ["*.html"]}}]}]),
                ),
                policy(
                    "one",
                    "ALLOW",
                    json!([{"to": [{"operation": {"paths": ["/one/{*}"]}}]}]),
                ),
                policy(
                    "any",
                    "ALLOW",
                    json!([{"to": [{"operation": {"paths": ["/any/{**}/"]}}]}]),
                ),
                policy(
                    "mixed",
                    "ALLOW",
                    json!([{"to": [{"operation": {"paths": ["/m/{*}/bar/{**}"]}}]}]),
                ),
            ],
            none(),
        ),
        vec![
            ("/exact", req().path("/exact"), allow_by("foo/exact")),
            ("/exact/ no", req().path("/exact/"), deny()),
            (
                "/x/page.html",
                req().path("/x/page.html"),
                allow_by("foo/suffix"),
            ),
            ("/one/bar", req().path("/one/bar"), allow_by("foo/one")),
            ("/one/bar/baz no", req().path("/one/bar/baz"), deny()),
            ("/any/bar/", req().path("/any/bar/"), allow_by("foo/any")),
            (
                "/any// (zero segments)",
                req().path("/any//"),
                allow_by("foo/any"),
            ),
            (
                "/any/bar/baz.txt (Istio's documented example)",
                req().path("/any/bar/baz.txt"),
                allow_by("foo/any"),
            ),
            ("/any/bar no", req().path("/any/bar"), deny()),
            (
                "/m/buzz/bar/",
                req().path("/m/buzz/bar/"),
                allow_by("foo/mixed"),
            ),
            (
                "/m/buzz/bar/baz",
                req().path("/m/buzz/bar/baz"),
                allow_by("foo/mixed"),
            ),
        ],
    );
    rows += section(
        "normalization",
        &authz(
            vec![policy(
                "deny-admin",
                "DENY",
                json!([{"to": [{"operation": {"paths": ["/admin*"]}}]}]),
            )],
            none(),
        ),
        vec![
            ("/public", req().path("/public"), allow()),
            (
                "/public/%2e%2e/admin",
                req().path("/public/%2e%2e/admin"),
                deny_by("foo/deny-admin"),
            ),
            (
                "/public/..\\admin",
                req().path("/public/..\\admin"),
                deny_by("foo/deny-admin"),
            ),
            (
                "%00 ⇒ 400",
                req().path("/admin%00"),
                Outcome::Rejected(Rejection::NulInPath),
            ),
            (
                "lower-case method ⇒ 400",
                req().method("get"),
                Outcome::Rejected(Rejection::BadMethod),
            ),
            (
                "header name with space ⇒ 400",
                req().header("x bad", "1"),
                Outcome::Rejected(Rejection::BadHeaderName),
            ),
            (
                "//admin unmerged by default",
                req().path("//admin"),
                allow(),
            ),
        ],
    );
    rows += section(
        "MERGE_SLASHES",
        &authz(
            vec![policy(
                "deny-admin",
                "DENY",
                json!([{"to": [{"operation": {"paths": ["/admin*"]}}]}]),
            )],
            json!({"pathNormalization": "MERGE_SLASHES"}),
        ),
        vec![(
            "//admin merged",
            req().path("//admin"),
            deny_by("foo/deny-admin"),
        )],
    );

    // §1.6 when keys.
    rows += section(
        "when keys",
        &authz(
            vec![
                policy(
                    "ip",
                    "ALLOW",
                    json!([{"when": [{"key": "source.ip", "values": ["10.0.0.5"]}, {"key": "destination.port", "values": ["8000"]}]}]),
                ),
                policy(
                    "hdr",
                    "ALLOW",
                    json!([{"when": [{"key": "request.headers[X-Token]", "values": ["secret-*"]}]}]),
                ),
                policy(
                    "present",
                    "ALLOW",
                    json!([{"when": [{"key": "request.headers[x-present]", "values": ["*"]}]}]),
                ),
                policy(
                    "ns",
                    "ALLOW",
                    json!([{"when": [{"key": "source.namespace", "values": ["bar"]}, {"key": "source.principal", "notValues": ["cluster.local/ns/bar/sa/evil"]}]}]),
                ),
                policy(
                    "dst",
                    "ALLOW",
                    json!([{"when": [{"key": "destination.ip", "values": ["10.200.0.0/16"]}]}]),
                ),
                policy(
                    "sni",
                    "ALLOW",
                    json!([{"when": [{"key": "connection.sni", "values": ["*"]}]}]),
                ),
            ],
            none(),
        ),
        vec![
            ("source.ip + destination.port", req(), allow_by("foo/ip")),
            (
                "source.ip wrong port",
                req().port(9000).source("10.0.0.6"),
                deny(),
            ),
            (
                "request.headers prefix",
                req().source("10.0.0.6").header("x-token", "secret-1"),
                allow_by("foo/hdr"),
            ),
            (
                "request.headers presence (empty value)",
                req().source("10.0.0.6").header("x-present", ""),
                allow_by("foo/present"),
            ),
            (
                "source.namespace + notValues principal",
                req().peer("cluster.local/ns/bar/sa/ok").source("10.0.0.6"),
                allow_by("foo/ns"),
            ),
            (
                "excluded principal",
                req()
                    .peer("cluster.local/ns/bar/sa/evil")
                    .source("10.0.0.6"),
                deny(),
            ),
            (
                "destination.ip",
                req().source("10.0.0.6").dest_ip("10.200.1.1"),
                allow_by("foo/dst"),
            ),
            (
                "connection.sni never present",
                req().source("10.0.0.6"),
                deny(),
            ),
        ],
    );
    rows += section(
        "request.auth.* keys",
        &authz(
            vec![
                policy(
                    "aud",
                    "ALLOW",
                    json!([{"when": [{"key": "request.auth.audiences", "values": ["api"]}]}]),
                ),
                policy(
                    "azp",
                    "ALLOW",
                    json!([{"when": [{"key": "request.auth.presenter", "values": ["web-*"]}]}]),
                ),
                policy(
                    "nested",
                    "ALLOW",
                    json!([{"when": [{"key": "request.auth.claims[org][team]", "values": ["core"]}]}]),
                ),
                policy(
                    "scope",
                    "ALLOW",
                    json!([{"when": [{"key": "request.auth.claims[scope]", "values": ["write"]}]}]),
                ),
                policy(
                    "principal",
                    "ALLOW",
                    json!([{"when": [{"key": "request.auth.principal", "values": ["i/admin"]}]}]),
                ),
            ],
            none(),
        ),
        vec![
            (
                "aud list",
                req().jwt("i", "s", json!({"aud": ["other", "api"]})),
                allow_by("foo/aud"),
            ),
            (
                "azp prefix",
                req().jwt("i", "s", json!({"azp": "web-app"})),
                allow_by("foo/azp"),
            ),
            (
                "nested claim",
                req().jwt("i", "s", json!({"org": {"team": "core"}})),
                allow_by("foo/nested"),
            ),
            (
                "space-delimited scope (split by the JWT filter)",
                req().jwt("i", "s", json!({"scope": ["read", "write"]})),
                allow_by("foo/scope"),
            ),
            (
                "numeric claim never matches",
                req().jwt("i", "s", json!({"org": {"team": 7}})),
                deny(),
            ),
            (
                "request.auth.principal",
                req().jwt("i", "admin", json!({})),
                allow_by("foo/principal"),
            ),
        ],
    );

    // §1.9 requestPrincipals split at the last '/'.
    rows += section(
        "requestPrincipals forms",
        &authz(
            vec![
                policy(
                    "any",
                    "ALLOW",
                    json!([{"from": [{"source": {"requestPrincipals": ["*"]}}], "to": [{"operation": {"paths": ["/any"]}}]}]),
                ),
                policy(
                    "anyiss",
                    "ALLOW",
                    json!([{"from": [{"source": {"requestPrincipals": ["*/alice"]}}], "to": [{"operation": {"paths": ["/a"]}}]}]),
                ),
                policy(
                    "isssuffix",
                    "ALLOW",
                    json!([{"from": [{"source": {"requestPrincipals": ["*.example.com/bob"]}}], "to": [{"operation": {"paths": ["/b"]}}]}]),
                ),
                policy(
                    "anysub",
                    "ALLOW",
                    json!([{"from": [{"source": {"requestPrincipals": ["https://a.com/path/*"]}}], "to": [{"operation": {"paths": ["/c"]}}]}]),
                ),
                policy(
                    "subprefix",
                    "ALLOW",
                    json!([{"from": [{"source": {"requestPrincipals": ["iss/svc-*"]}}], "to": [{"operation": {"paths": ["/d"]}}]}]),
                ),
                policy(
                    "subsuffix",
                    "ALLOW",
                    json!([{"from": [{"source": {"requestPrincipals": ["*-bot"]}}], "to": [{"operation": {"paths": ["/e"]}}]}]),
                ),
                policy(
                    "issprefix",
                    "ALLOW",
                    json!([{"from": [{"source": {"requestPrincipals": ["corp*"]}}], "to": [{"operation": {"paths": ["/f"]}}]}]),
                ),
            ],
            none(),
        ),
        vec![
            ("* needs a JWT", req().path("/any"), deny()),
            (
                "* with JWT",
                req().path("/any").jwt("i", "s", json!({})),
                allow_by("foo/any"),
            ),
            (
                "*/alice",
                req().path("/a").jwt("whatever", "alice", json!({})),
                allow_by("foo/anyiss"),
            ),
            (
                "*.example.com/bob",
                req()
                    .path("/b")
                    .jwt("https://id.example.com", "bob", json!({})),
                allow_by("foo/isssuffix"),
            ),
            (
                "issuer with '/'",
                req().path("/c").jwt("https://a.com/path", "x", json!({})),
                allow_by("foo/anysub"),
            ),
            (
                "iss/svc-*",
                req().path("/d").jwt("iss", "svc-1", json!({})),
                allow_by("foo/subprefix"),
            ),
            (
                "*-bot: sub suffix",
                req().path("/e").jwt("any", "ci-bot", json!({})),
                allow_by("foo/subsuffix"),
            ),
            (
                "corp*: iss prefix",
                req().path("/f").jwt("corp.example", "u", json!({})),
                allow_by("foo/issprefix"),
            ),
            // A value containing '/' anywhere is split there: "https://corp*" is iss "https:/" + sub prefix "corp".
            (
                "corp* does not see https:// issuers",
                req().path("/f").jwt("https://corp.example", "u", json!({})),
                deny(),
            ),
            (
                "wrong sub",
                req().path("/d").jwt("iss", "user", json!({})),
                deny(),
            ),
        ],
    );

    // Dry-run policies never enforce.
    let mut dry = policy("dry-deny", "DENY", json!([{}]));
    dry["dryRun"] = json!(true);
    rows += section(
        "dry-run",
        &authz(vec![dry], none()),
        vec![("not enforced", req(), allow())],
    );

    // CUSTOM: providers to ask; unknown or ambiguous providers fail closed.
    let custom = |name: &str, provider: &str, path: &str| {
        let mut p = policy(
            name,
            "CUSTOM",
            json!([{"to": [{"operation": {"paths": [path]}}]}]),
        );
        p["provider"] = json!({"name": provider});
        p
    };
    let providers = json!({"providers": [{"name": "ext-a"}, {"name": "ext-b"}]});
    rows += section(
        "CUSTOM",
        &authz(vec![custom("c", "ext-a", "/admin/*")], providers.clone()),
        vec![
            (
                "matching ⇒ ask ext-a",
                req().path("/admin/x"),
                Outcome::Allow(None, vec!["ext-a".into()]),
            ),
            ("not matching ⇒ no check", req().path("/public"), allow()),
        ],
    );
    rows += section(
        "CUSTOM unknown provider",
        &authz(vec![custom("c", "nope", "/admin/*")], providers.clone()),
        vec![
            ("deny rules", req().path("/admin/x"), deny_by("foo/c")),
            ("other paths unaffected", req().path("/x"), allow()),
        ],
    );
    rows += section(
        "CUSTOM two providers without the flag",
        &authz(
            vec![custom("c1", "ext-a", "/a"), custom("c2", "ext-b", "/b")],
            providers.clone(),
        ),
        vec![("deny", req().path("/a"), deny_by("foo/c1"))],
    );
    let mut with_flag = providers.clone();
    with_flag["multipleCustomProviders"] = json!(true);
    rows += section(
        "CUSTOM two providers with the flag",
        &authz(
            vec![custom("c1", "ext-b", "/x*"), custom("c2", "ext-a", "/x*")],
            with_flag,
        ),
        vec![(
            "both asked, by name",
            req().path("/x"),
            Outcome::Allow(None, vec!["ext-a".into(), "ext-b".into()]),
        )],
    );

    assert!(rows >= 60, "only {rows} rows");
    eprintln!("authorization decision table: {rows} rows");
}

#[test]
fn plan_reports_audit_shadow_and_normalized_path() {
    let mut dry_allow = policy(
        "dry-allow",
        "ALLOW",
        json!([{"to": [{"operation": {"paths": ["/only"]}}]}]),
    );
    dry_allow["dryRun"] = json!(true);
    let a = authz(
        vec![policy("audit", "AUDIT", json!([{}])), dry_allow],
        none(),
    );
    let input_req = req().path("/a/./b/../c");
    let headers = input_req.headers.clone();
    let input = filter_authz::Input {
        method: "GET",
        authority: "httpbin.foo",
        path: &input_req.path,
        headers: &headers,
        source_principal: Some("cluster.local/ns/foo/sa/sleep"),
        source_address: "10.0.0.5",
        destination_address: "10.96.0.10",
        destination_port: 8000,
        destination_service: Some(SVC),
        request_auth: None,
    };
    let plan = a.evaluate(&input).unwrap();
    assert_eq!(plan.path, "/a/c");
    assert!(plan.path_changed());
    assert_eq!(plan.audit, Some("foo/audit"));
    assert_eq!(
        plan.shadow,
        Some((false, None)),
        "dry-run ALLOW present and not matching ⇒ would deny"
    );
    assert_eq!(
        plan.decision,
        filter_authz::Decision::Allow { policy: None }
    );
}

#[test]
fn configuration_errors_name_the_policy() {
    let err = |rules: Value| {
        Authorizer::from_json(
            json!({"policies": [policy("bad", "ALLOW", rules)]})
                .to_string()
                .as_bytes(),
        )
        .expect_err("refused")
        .to_string()
    };
    let cases = [
        (
            json!([{"when": [{"key": "request.bogus", "values": ["x"]}]}]),
            "invalid policy bad.foo: unknown attribute request.bogus",
        ),
        (
            json!([{"when": [{"key": "destination.namespace", "values": ["x"]}]}]),
            "replaced by the metadata.namespace",
        ),
        (
            json!([{"when": [{"key": "source.ip"}]}]),
            "at least one of `values` or `notValues` must be set",
        ),
        (
            json!([{"from": [{"source": {"ipBlocks": ["10.0.0.0/40"]}}]}]),
            "bad CIDR range",
        ),
        (
            json!([{"from": [{"source": {"ipBlocks": ["not-an-ip"]}}]}]),
            "bad IP address",
        ),
        (
            json!([{"to": [{"operation": {"ports": ["99999"]}}]}]),
            "bad port",
        ),
        (
            json!([{"to": [{"operation": {"paths": ["/{**}/foo/{*}"]}}]}]),
            "{**} is not the last operator",
        ),
        (
            json!([{"to": [{"operation": {"paths": ["/foo/{*}.txt"]}}]}]),
            "beyond a supported path template",
        ),
    ];
    for (rules, want) in cases {
        let e = err(rules.clone());
        assert!(e.contains(want), "{rules}: {e}");
    }
}

/// Istio matches a request principal as `payload.iss` and `payload.sub`
/// metadata: a token without `sub` matches no pattern, not even one with
/// an empty subject part, nor `*`; `notRequestPrincipals` then applies.
#[test]
fn request_principals_need_both_iss_and_sub() {
    let a = authz(
        vec![
            policy(
                "bare-issuer",
                "ALLOW",
                json!([{"from": [{"source": {"requestPrincipals": ["issuer-a"]}}], "to": [{"operation": {"paths": ["/a"]}}]}]),
            ),
            policy(
                "any",
                "ALLOW",
                json!([{"from": [{"source": {"requestPrincipals": ["*"]}}], "to": [{"operation": {"paths": ["/any"]}}]}]),
            ),
            policy(
                "not-any",
                "ALLOW",
                json!([{"from": [{"source": {"notRequestPrincipals": ["*"]}}], "to": [{"operation": {"paths": ["/anon"]}}]}]),
            ),
        ],
        json!({}),
    );
    let no_sub = || req().jwt("issuer-a", "", json!({})).without_claim("sub");
    assert_eq!(no_sub().path("/a").eval(&a), deny());
    assert_eq!(no_sub().path("/any").eval(&a), deny());
    assert_eq!(no_sub().path("/anon").eval(&a), allow_by("foo/not-any"));
    let full = || req().jwt("issuer-a", "bob", json!({}));
    assert_eq!(full().path("/any").eval(&a), allow_by("foo/any"));
}
