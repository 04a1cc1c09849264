//! Gateway API HTTPRoute semantics on a waypoint (istio-semantics.md §6).

mod common;

use common::*;
use filter_routing::{Decision, HeaderOp};
use serde_json::{Value, json};

fn backend(host: &str, weight: Option<u32>) -> Value {
    match weight {
        Some(w) => json!({"host": host, "port": 9080, "weight": w}),
        None => json!({"host": host, "port": 9080}),
    }
}

/// The backend host a request is forwarded to.
fn host(d: &Decision<'_>) -> String {
    match d {
        Decision::Forward(f) => f.service.to_owned(),
        other => panic!("expected forward, got {other:?}"),
    }
}

fn route(name: &str, ts: &str, rules: Value) -> Value {
    json!({"namespace": "bookinfo", "name": name, "creationTimestamp": ts, "rules": rules})
}

#[test]
fn path_prefix_is_element_wise() {
    let r = gw(json!([route(
        "r",
        "2024-01-01T00:00:00Z",
        json!([
            {"matches": [{"path": {"type": "PathPrefix", "value": "/foo/"}}], "backendRefs": [backend("foo", None)]},
        ])
    )]));
    for (path, matched) in [
        ("/foo", true),
        ("/foo/", true),
        ("/foo/bar", true),
        ("/foobar", false),
        ("/fo", false),
    ] {
        let d = get(path).route(&r);
        if matched {
            assert_eq!(host(&d), "foo", "{path}");
        } else {
            assert_eq!(status(&d), 404, "{path}: no matching rule is 404");
        }
    }
}

#[test]
fn default_match_and_match_kinds() {
    let r = gw(json!([route(
        "r",
        "2024-01-01T00:00:00Z",
        json!([
            {"matches": [{"path": {"type": "Exact", "value": "/exact"}}], "backendRefs": [backend("exact", None)]},
            {"matches": [{"path": {"type": "RegularExpression", "value": "/re/[0-9]+"}}], "backendRefs": [backend("regex", None)]},
            {"matches": [{"path": {"value": "/h"}, "headers": [{"name": "X-Env", "value": "a"}, {"name": "x-env", "value": "b"}]}],
             "backendRefs": [backend("header", None)]},
            {"matches": [{"path": {"value": "/q"}, "queryParams": [{"name": "v", "value": "1"}, {"name": "V", "type": "RegularExpression", "value": "x.*"}]}],
             "backendRefs": [backend("query", None)]},
        ])
    )]));
    let table: Vec<(Req, &str)> = vec![
        (get("/exact"), "exact"),
        (get("/exact/"), "404"),
        (get("/re/12"), "regex"),
        (get("/re/12/3"), "404"),
        (get("/h").header("x-env", "a"), "header"), // first of duplicate names wins
        (get("/h").header("x-env", "b"), "404"),
        (get("/q?v=1&V=xyz"), "query"), // names are case-sensitive
        (get("/q?v=1"), "404"),
    ];
    let name = |d: &Decision<'_>| {
        if status(d) == 404 {
            "404".to_owned()
        } else {
            host(d)
        }
    };
    for (req, want) in table {
        assert_eq!(
            name(&req.route(&r)),
            want,
            "{} {:?} {:?}",
            req.path,
            req.query,
            req.headers
        );
    }
    // A rule without matches gets PathPrefix "/", which outranks any regex.
    let r = gw(json!([route(
        "r",
        "t",
        json!([
            {"matches": [{"path": {"type": "RegularExpression", "value": "/re/[0-9]+"}}], "backendRefs": [backend("regex", None)]},
            {"backendRefs": [backend("default", None)]},
        ])
    )]));
    assert_eq!(host(&get("/re/1").route(&r)), "default");
    assert_eq!(host(&get("/anything").route(&r)), "default");
}

#[test]
fn precedence_across_rules_and_routes() {
    // Rules are listed in the "wrong" order; precedence must reorder them.
    let r = gw(json!([
        route(
            "b-newer",
            "2024-02-01T00:00:00Z",
            json!([
                {"matches": [{"path": {"value": "/api"}}], "backendRefs": [backend("newer-same-prefix", None)]},
            ])
        ),
        route(
            "a-older",
            "2024-01-01T00:00:00Z",
            json!([
                {"matches": [{"path": {"value": "/"}}], "backendRefs": [backend("root", None)]},
                {"matches": [{"path": {"type": "RegularExpression", "value": "/api/.*"}}], "backendRefs": [backend("regex", None)]},
                {"matches": [{"path": {"value": "/api"}}], "backendRefs": [backend("prefix-api", None)]},
                {"matches": [{"path": {"value": "/api/v1"}}], "backendRefs": [backend("prefix-api-v1", None)]},
                {"matches": [{"path": {"value": "/api"}, "method": "POST"}], "backendRefs": [backend("method", None)]},
                {"matches": [{"path": {"value": "/api"}, "headers": [{"name": "x", "value": "1"}]}], "backendRefs": [backend("header", None)]},
                {"matches": [{"path": {"value": "/api"}, "queryParams": [{"name": "q", "value": "1"}]}], "backendRefs": [backend("query", None)]},
                {"matches": [{"path": {"type": "Exact", "value": "/api/v1/x"}}], "backendRefs": [backend("exact", None)]},
            ])
        ),
    ]));
    let table: Vec<(Req, &str)> = vec![
        (get("/api/v1/x"), "exact"),         // Exact beats any prefix
        (get("/api/v1/y"), "prefix-api-v1"), // longest prefix
        (get("/api/v2").method("POST").header("x", "1"), "method"), // method beats headers
        (get("/api/v2").header("x", "1"), "header"),
        (get("/api/v2?q=1"), "query"),
        (get("/api/v2"), "prefix-api"), // older route wins the tie
        (get("/other"), "root"),
    ];
    for (req, want) in table {
        assert_eq!(
            host(&req.route(&r)),
            want,
            "{} {} {:?}",
            req.method,
            req.path,
            req.headers
        );
    }
    // Regex ranks below every prefix, even "/" (Istio: Exact > Prefix > Regex).
    let r = gw(json!([route(
        "r",
        "2024-01-01T00:00:00Z",
        json!([
            {"matches": [{"path": {"type": "RegularExpression", "value": "/api/.*"}}], "backendRefs": [backend("regex", None)]},
            {"matches": [{"path": {"value": "/"}}], "backendRefs": [backend("root", None)]},
        ])
    )]));
    assert_eq!(host(&get("/api/x").route(&r)), "root");
}

#[test]
fn weights_default_to_one_and_zero_sum_is_500() {
    let r = gw(json!([route(
        "r",
        "t",
        json!([
            {"matches": [{"path": {"value": "/even"}}], "backendRefs": [backend("a", None), backend("b", None)]},
            {"matches": [{"path": {"value": "/zero"}}], "backendRefs": [backend("z", Some(0)), backend("nz", Some(3))]},
            {"matches": [{"path": {"value": "/allzero"}}], "backendRefs": [backend("z", Some(0))]},
            {"matches": [{"path": {"value": "/none"}}]},
            {"matches": [{"path": {"value": "/invalid"}}], "backendRefs": [{"weight": 1}, backend("ok", Some(1))]},
        ])
    )]));
    assert_eq!(host(&get("/even").route_with(&r, 0)), "a");
    assert_eq!(host(&get("/even").route_with(&r, 1)), "b");
    let mut rng = SplitMix(7);
    let a = (0..4000)
        .filter(|_| host(&get("/even").route_with(&r, rng.next())) == "a")
        .count();
    assert!((1880..=2120).contains(&a), "a got {a} of 4000");
    for draw in 0..10 {
        assert_eq!(host(&get("/zero").route_with(&r, draw)), "nz");
    }
    for (path, id) in [
        ("/allzero", "httproute:bookinfo/r#2"),
        ("/none", "httproute:bookinfo/r#3"),
    ] {
        let Decision::Respond(reply) = get(path).route(&r) else {
            panic!("{path}")
        };
        assert_eq!(
            (reply.status, reply.route_id.as_deref()),
            (500, Some(id)),
            "{path}"
        );
    }
    // An invalid backend's share is answered 500 (flag NC).
    let Decision::Respond(reply) = get("/invalid").route_with(&r, 0) else {
        panic!()
    };
    assert_eq!((reply.status, reply.response_flag), (500, Some("NC")));
    assert_eq!(host(&get("/invalid").route_with(&r, 1)), "ok");
}

#[test]
fn filters() {
    let r = gw(json!([route(
        "r",
        "t",
        json!([
            {"matches": [{"path": {"value": "/hdr"}}],
             "filters": [
                {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                    "set": [{"name": "x-set", "value": "1"}], "add": [{"name": "x-add", "value": "2"}], "remove": ["x-rm"]}},
                {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "x-resp", "value": "3"}]}}],
             "backendRefs": [{"host": "b", "filters": [{"type": "RequestHeaderModifier",
                "requestHeaderModifier": {"set": [{"name": "x-backend", "value": "4"}]}}]}]},
            {"matches": [{"path": {"value": "/strip"}}],
             "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}],
             "backendRefs": [backend("b", None)]},
            {"matches": [{"path": {"value": "/pre"}}],
             "filters": [{"type": "URLRewrite", "urlRewrite": {"hostname": "new.host",
                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/bar/"}}}],
             "backendRefs": [backend("b", None)]},
            {"matches": [{"path": {"value": "/full"}}],
             "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/replaced"}}}],
             "backendRefs": [backend("b", None)]},
        ])
    )]));
    let Decision::Forward(f) = get("/hdr").route(&r) else {
        panic!()
    };
    assert_eq!(
        f.request_headers,
        vec![
            HeaderOp::Remove("x-rm".into()),
            HeaderOp::Set("x-set".into(), "1".into()),
            HeaderOp::Add("x-add".into(), "2".into()),
            HeaderOp::Set("x-backend".into(), "4".into()),
        ]
    );
    assert_eq!(
        f.response_headers,
        vec![HeaderOp::Add("x-resp".into(), "3".into())]
    );
    for (path, want, auth) in [
        ("/strip/x/y", "/x/y", None),
        ("/strip", "/", None),
        ("/strip/", "/", None),
        ("/pre/x", "/bar/x", Some("new.host")),
        ("/pre", "/bar", Some("new.host")),
        ("/full/a/b?q=1", "/replaced", None),
    ] {
        let Decision::Forward(f) = get(path).route(&r) else {
            panic!("{path}")
        };
        assert_eq!(f.path.as_deref(), Some(want), "{path}");
        assert_eq!(f.authority.as_deref(), auth, "{path}");
    }
}

#[test]
fn redirects() {
    let r = gw(json!([route(
        "r",
        "t",
        json!([
            {"matches": [{"path": {"value": "/default"}}],
             "filters": [{"type": "RequestRedirect", "requestRedirect": {"hostname": "x.example"}}]},
            {"matches": [{"path": {"value": "/https"}}],
             "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]},
            {"matches": [{"path": {"value": "/path"}}],
             "filters": [{"type": "RequestRedirect", "requestRedirect": {
                "path": {"type": "ReplaceFullPath", "replaceFullPath": "/full"}, "port": 8443}}]},
        ])
    )]));
    let table = [
        ("/default", 302, "http://x.example:9080/default"), // CRD default 302, request port kept
        ("/https", 301, "https://reviews:9080/https"),
        ("/path/x", 302, "http://reviews:8443/full"),
    ];
    for (path, code, location) in table {
        let Decision::Respond(reply) = get(path).route(&r) else {
            panic!("{path}")
        };
        assert_eq!(
            (reply.status, reply.headers[0].1.as_str()),
            (code, location),
            "{path}"
        );
    }
    // On port 80 the derived port is the scheme default and is omitted.
    let Decision::Respond(reply) = get("/default").port(80).authority("reviews").route(&r) else {
        panic!()
    };
    assert_eq!(reply.headers[0].1, "http://x.example/default");
}

#[test]
fn unsupported_filter_drops_the_route_and_parent_port_restricts() {
    let r = gw(json!([
        route(
            "bad",
            "2024-01-01T00:00:00Z",
            json!([
                {"matches": [{"path": {"value": "/bad"}}], "backendRefs": [backend("bad", None)]},
                {"filters": [{"type": "ExtensionRef"}], "backendRefs": [backend("bad", None)]},
            ])
        ),
        route(
            "good",
            "2024-01-02T00:00:00Z",
            json!([
                {"matches": [{"path": {"value": "/good"}}], "backendRefs": [backend("good", None)]},
            ])
        ),
    ]));
    assert_eq!(status(&get("/bad").route(&r)), 404);
    assert_eq!(host(&get("/good").route(&r)), "good");
    // Only an unsupported route: the service has no routes at all.
    let r = gw(json!([route(
        "bad",
        "t",
        json!([{"filters": [{"type": "ExtensionRef"}]}])
    )]));
    assert_eq!(get("/").route(&r), Decision::Default);
    // parentRefs[].port: every match restricted to that service port.
    let mut hr = route("p", "t", json!([{"backendRefs": [backend("p", None)]}]));
    hr["port"] = json!(9080);
    let r = gw(json!([hr]));
    assert_eq!(host(&get("/").route(&r)), "p");
    assert_eq!(get("/").port(8080).route(&r), Decision::Default);
}

/// `RequestMirror`: the resolved backend gets every request (no percent),
/// or none at 0 %; an unresolved backend mirrors nothing.
#[test]
fn request_mirror() {
    let r = gw(json!([route(
        "r",
        "t",
        json!([
            {"matches": [{"path": {"value": "/all"}}],
             "filters": [{"type": "RequestMirror", "requestMirror": {"host": "shadow", "port": 8080}}],
             "backendRefs": [backend("b", None)]},
            {"matches": [{"path": {"value": "/none"}}],
             "filters": [{"type": "RequestMirror", "requestMirror": {"host": "shadow", "perMillion": 0}}],
             "backendRefs": [backend("b", None)]},
            {"matches": [{"path": {"value": "/bad"}}],
             "filters": [{"type": "RequestMirror", "requestMirror": {}}],
             "backendRefs": [backend("b", None)]},
        ])
    )]));
    let Decision::Forward(f) = get("/all").route(&r) else {
        panic!()
    };
    assert_eq!(f.service, "b");
    assert_eq!(
        f.mirrors.iter().map(|m| m.encode()).collect::<Vec<_>>(),
        vec!["shadow||8080"]
    );
    for path in ["/none", "/bad"] {
        let Decision::Forward(f) = get(path).route(&r) else {
            panic!("{path}")
        };
        assert!(f.mirrors.is_empty(), "{path}");
    }
}

/// The `CORS` filter, as the operator converts it (`corsPolicy` with
/// `unmatchedPreflights: IGNORE`): an allowed preflight is answered with
/// the allow headers, another origin's preflight is answered without them
/// (never forwarded), actual requests from allowed origins get the
/// response headers.
#[test]
fn cors_filter() {
    let r = gw(json!([route(
        "r",
        "t",
        json!([
            {"filters": [{"type": "CORS", "corsPolicy": {
                "allowOrigins": [{"exact": "https://a.example"}, {"prefix": "https://dev."}],
                "allowMethods": ["GET"], "maxAge": "5s", "unmatchedPreflights": "IGNORE"}}],
             "backendRefs": [backend("b", None)]},
        ])
    )]));
    let preflight = |origin: &str| {
        get("/x")
            .method("OPTIONS")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
    };
    let Decision::Respond(reply) = preflight("https://dev.example").route(&r) else {
        panic!("allowed preflight answered locally")
    };
    assert!(reply.headers.contains(&(
        "access-control-allow-origin".into(),
        "https://dev.example".into()
    )));
    assert!(
        reply
            .headers
            .contains(&("access-control-max-age".into(), "5".into()))
    );
    let Decision::Respond(reply) = preflight("https://evil.example").route(&r) else {
        panic!("other origins' preflights are not forwarded")
    };
    assert!(reply.headers.is_empty());
    let Decision::Forward(f) = get("/x").header("origin", "https://a.example").route(&r) else {
        panic!()
    };
    assert_eq!(f.service, "b");
    assert!(f.response_headers.contains(&HeaderOp::Set(
        "access-control-allow-origin".into(),
        "https://a.example".into()
    )));
}
