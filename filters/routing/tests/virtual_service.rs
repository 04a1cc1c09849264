//! VirtualService semantics (istio-semantics.md §4.1–§4.3, §4.7), as tables.

mod common;

use common::*;
use filter_routing::{Decision, HeaderOp};
use serde_json::json;

#[test]
fn raw_prefix_first_match_wins_and_catch_all() {
    // §4.7: http[0] prefix /api → v2, http[1] no match → v1; /apix → v2.
    let r = vs(json!([
        {"match": [{"uri": {"prefix": "/api"}}], "route": [dest("v2", 0)]},
        {"route": [dest("v1", 0)]},
        {"match": [{"uri": {"prefix": "/"}}], "route": [dest("never", 0)]},
    ]));
    for (path, want, id) in [
        ("/apix", "v2", "vs:bookinfo/reviews#0"),
        ("/api/v1", "v2", "vs:bookinfo/reviews#0"),
        ("/ap", "v1", "vs:bookinfo/reviews#1"),
        ("/", "v1", "vs:bookinfo/reviews#1"),
    ] {
        let d = get(path).route(&r);
        assert_eq!(fwd(&d), (id.to_owned(), Some(want.to_owned())), "{path}");
    }
}

#[test]
fn uri_match_kinds() {
    let r = vs(json!([
        {"match": [{"uri": {"exact": "/exact"}}], "route": [dest("exact", 0)]},
        {"match": [{"uri": {"regex": "/re/[0-9]+"}}], "route": [dest("regex", 0)]},
        {"match": [{"uri": {"exact": "/CI"}, "ignoreUriCase": true}], "route": [dest("ci-exact", 0)]},
        {"match": [{"uri": {"prefix": "/Pre"}, "ignoreUriCase": true}], "route": [dest("ci-prefix", 0)]},
        {"match": [{"uri": {"regex": "/R[a-z]"}, "ignoreUriCase": true}], "route": [dest("ci-regex", 0)]},
        {"match": [{"uri": {"prefix": "/"}}], "route": [dest("fallback", 0)]},
    ]));
    let table = [
        ("/exact", "exact"),
        ("/exact/", "fallback"), // exact is whole-path
        ("/exact?x=1", "exact"), // query is not part of the path
        ("/re/123", "regex"),
        ("/re/123/x", "fallback"), // RE2 full match, not partial
        ("/re/", "fallback"),
        ("/ci", "ci-exact"),
        ("/cI", "ci-exact"),
        ("/preFIX", "ci-prefix"),
        ("/Rx", "ci-regex"),
        ("/rx", "fallback"), // ignoreUriCase does not apply to regex
    ];
    for (path, want) in table {
        assert_eq!(subset(&get(path).route(&r)), want, "{path}");
    }
}

#[test]
fn method_authority_scheme_headers() {
    let r = vs(json!([
        {"match": [{"method": {"exact": "POST"}}], "route": [dest("post", 0)]},
        {"match": [{"authority": {"exact": "reviews.bookinfo:9080"}}], "route": [dest("authority", 0)]},
        {"match": [{"scheme": {"exact": "https"}}], "route": [dest("https", 0)]},
        {"match": [{"headers": {"end-user": {"exact": "jason"}}}], "route": [dest("jason", 0)]},
        {"match": [{"headers": {"X-Pre": {"prefix": "ab"}}}], "route": [dest("prefix", 0)]},
        {"match": [{"headers": {"x-re": {"regex": "v[0-9]"}}}], "route": [dest("regex", 0)]},
        {"match": [{"headers": {"x-present": {}}}], "route": [dest("present", 0)]},
        {"match": [{"headers": {"x-star": {"regex": "*"}}}], "route": [dest("star", 0)]},
        {"match": [{"headers": {"x-multi": {"exact": "a,b"}}}], "route": [dest("multi", 0)]},
        {"match": [{"headers": {"uri": {"exact": "/never"}}}], "route": [dest("uri-key-ignored", 0)]},
    ]));
    let table: Vec<(Req, &str)> = vec![
        (get("/").method("POST"), "post"),
        (get("/").method("post"), "uri-key-ignored"), // methods are case-sensitive
        (get("/").authority("reviews.bookinfo:9080"), "authority"),
        (
            get("/").authority("REVIEWS.bookinfo:9080"),
            "uri-key-ignored",
        ),
        (get("/").authority("reviews.bookinfo"), "uri-key-ignored"), // port is part of :authority
        (get("/").scheme("https"), "https"),
        (get("/").header("end-user", "jason"), "jason"),
        (get("/").header("end-user", "Jason"), "uri-key-ignored"),
        (get("/").header("x-pre", "abc"), "prefix"),
        (get("/").header("x-re", "v1"), "regex"),
        (get("/").header("x-re", "v10"), "uri-key-ignored"),
        (get("/").header("x-present", ""), "present"),
        (get("/").header("x-star", "anything"), "star"),
        (
            get("/").header("x-multi", "a").header("x-multi", "b"),
            "multi",
        ),
        (get("/"), "uri-key-ignored"),
    ];
    for (req, want) in table {
        assert_eq!(
            subset(&req.route(&r)),
            want,
            "{} {} {:?}",
            req.method,
            req.authority,
            req.headers
        );
    }
}

#[test]
fn without_headers_and_query_params() {
    let r = vs(json!([
        {"match": [{"withoutHeaders": {"x-debug": {}}, "uri": {"prefix": "/absent"}}], "route": [dest("no-debug", 0)]},
        {"match": [{"withoutHeaders": {"x-env": {"exact": "prod"}}, "uri": {"prefix": "/notprod"}}], "route": [dest("not-prod", 0)]},
        {"match": [{"queryParams": {"v": {"exact": "2"}}}], "route": [dest("v2", 0)]},
        {"match": [{"queryParams": {"flag": {"exact": ""}}}], "route": [dest("flag", 0)]},
        {"match": [{"queryParams": {"p": {}}}], "route": [dest("present", 0)]},
        {"match": [{"queryParams": {"r": {"regex": "[a-c]+"}}}], "route": [dest("regex", 0)]},
        {"route": [dest("default", 0)]},
    ]));
    let table: Vec<(Req, &str)> = vec![
        (get("/absent"), "no-debug"),
        (get("/absent").header("x-debug", "1"), "default"),
        (get("/notprod"), "not-prod"), // missing header is "" and "" != prod
        (get("/notprod").header("x-env", "dev"), "not-prod"),
        (get("/notprod").header("x-env", "prod"), "default"),
        (get("/q?v=2"), "v2"),
        (get("/q?v=1&v=2"), "default"), // first value only
        (get("/q?flag"), "flag"),
        (get("/q?flag="), "flag"),
        (get("/q?flag=1"), "default"),
        (get("/q?p=anything"), "present"),
        (get("/q?r=abc"), "regex"),
        (get("/q?r=abcd"), "default"),
    ];
    for (req, want) in table {
        assert_eq!(
            subset(&req.route(&r)),
            want,
            "{}?{:?} {:?}",
            req.path,
            req.query,
            req.headers
        );
    }
}

#[test]
fn weights_are_relative() {
    // §4.7: v1 w=1, v2 w=3 ⇒ 25% / 75%, exactly over one full cycle of draws.
    let r = vs(json!([{"route": [dest("v1", 1), dest("v2", 3)]}]));
    let mut counts = [0u32; 2];
    for draw in 0..4000 {
        match subset(&get("/").route_with(&r, draw)).as_str() {
            "v1" => counts[0] += 1,
            "v2" => counts[1] += 1,
            other => panic!("{other}"),
        }
    }
    assert_eq!(counts, [1000, 3000]);
    // 90/10 with a seeded generator: within 3 sigma of 10% over 10k draws.
    let r = vs(json!([{"route": [dest("v1", 90), dest("v2", 10)]}]));
    let mut rng = SplitMix(42);
    let n = 10_000;
    let v2 = (0..n)
        .filter(|_| subset(&get("/").route_with(&r, rng.next())) == "v2")
        .count();
    assert!((900..=1100).contains(&v2), "v2 got {v2} of {n}");
}

#[test]
fn weight_edge_cases() {
    // §4.7: single destination with weight 0 still takes 100%.
    let r = vs(json!([{"route": [dest("v1", 0)]}]));
    assert_eq!(subset(&get("/").route_with(&r, 12345)), "v1");
    // With several destinations, weight 0 gets nothing.
    let r = vs(json!([{"route": [dest("v0", 0), dest("v1", 5)]}]));
    for draw in 0..20 {
        assert_eq!(subset(&get("/").route_with(&r, draw)), "v1");
    }
    // Weights need not sum to 100.
    let r = vs(json!([{"route": [dest("a", 7), dest("b", 7)]}]));
    assert_eq!(subset(&get("/").route_with(&r, 0)), "a");
    assert_eq!(subset(&get("/").route_with(&r, 7)), "b");
    assert!(
        vs_err(json!([{"route": [dest("a", 0), dest("b", 0)]}]))
            .contains("total destination weight = 0")
    );
    assert!(vs_err(json!([{"route": [dest("a", -1), dest("b", 2)]}])).contains("weight -1 < 0"));
}

#[test]
fn no_route_is_404_nr_and_default_when_no_routes_apply() {
    let r = vs(json!([{"match": [{"uri": {"prefix": "/api"}}], "route": [dest("v1", 0)]}]));
    let d = get("/other").route(&r);
    let Decision::Respond(reply) = d else {
        panic!("{d:?}")
    };
    assert_eq!(
        (reply.status, reply.response_flag, reply.route_id),
        (404, Some("NR"), None)
    );
    // A service without VirtualService: default route (no action).
    assert_eq!(
        get("/").route(&filter_routing::Router::default()),
        Decision::Default
    );
    let mut other = get("/");
    other.service = Some("other.ns.svc.cluster.local".into());
    assert_eq!(other.route(&r), Decision::Default);
    // Unknown destination service: looked up by authority host and aliases.
    assert_eq!(
        subset(&get("/api").no_service().authority("reviews:9080").route(&r)),
        "v1"
    );
    assert_eq!(
        get("/api").no_service().authority("ratings").route(&r),
        Decision::Default
    );
}

#[test]
fn port_source_labels_gateways_and_source_namespace() {
    let r = vs(json!([
        {"match": [{"port": 8080, "uri": {"prefix": "/p"}}], "route": [dest("on-8080", 0)]},
        {"match": [{"sourceLabels": {"app": "x"}}], "route": [dest("labels", 0)]},
        {"match": [{"gateways": ["istio-system/gw"]}], "route": [dest("gateway", 0)]},
        {"match": [{"gateways": ["mesh"], "uri": {"prefix": "/mesh"}}], "route": [dest("mesh", 0)]},
        {"match": [{"sourceNamespace": "elsewhere"}], "route": [dest("srcns", 0)]},
        {"match": [{"uri": {"prefix": "/"}, "port": 9080}], "route": [dest("on-9080", 0)]},
    ]));
    assert_eq!(subset(&get("/p").port(8080).route(&r)), "on-8080");
    assert_eq!(subset(&get("/p").route(&r)), "on-9080");
    assert_eq!(subset(&get("/mesh").route(&r)), "mesh");
    // The `mesh` route has no port: on 7070 it applies, and nothing matches.
    assert_eq!(status(&get("/x").port(7070).route(&r)), 404);
    // When only port-restricted routes exist, other ports get the default route.
    let r = vs(json!([{"match": [{"port": 8080}], "route": [dest("on-8080", 0)]}]));
    assert_eq!(subset(&get("/x").port(8080).route(&r)), "on-8080");
    assert_eq!(get("/x").port(7070).route(&r), Decision::Default);
    // A VS whose every match is dropped behaves as if absent.
    let r = vs(json!([{"match": [{"sourceLabels": {"app": "x"}}], "route": [dest("labels", 0)]}]));
    assert_eq!(get("/").route(&r), Decision::Default);
    // `gateways: [mesh]` keeps a match whatever its source fields say
    // (istiod's `sourceMatchHTTP` checks them only without `gateways`).
    let r = vs(json!([
        {"match": [{"gateways": ["mesh"], "sourceNamespace": "elsewhere", "uri": {"prefix": "/g"}}], "route": [dest("gw-mesh", 0)]},
    ]));
    assert_eq!(subset(&get("/g").route(&r)), "gw-mesh");
}

#[test]
fn rewrites() {
    let r = vs(json!([
        {"match": [{"uri": {"prefix": "/api/"}}], "rewrite": {"uri": "/v2/"}, "route": [dest("p", 0)]},
        {"match": [{"uri": {"exact": "/login"}}], "rewrite": {"uri": "/auth/login", "authority": "auth.example"}, "route": [dest("e", 0)]},
        {"match": [{"uri": {"regex": "/r/.*"}}], "rewrite": {"uri": "/whole"}, "route": [dest("r", 0)]},
        {"match": [{"uri": {"prefix": "/service/"}}],
         "rewrite": {"uriRegexRewrite": {"match": "^/service/([^/]+)(/.*)$", "rewrite": "\\2/instance/\\1"}},
         "route": [dest("rr", 0)]},
        {"rewrite": {"uri": "/v9"}, "route": [dest("catch", 0)]},
    ]));
    let table = [
        ("/api/users?x=1", "/v2/users", None),
        ("/login", "/auth/login", Some("auth.example")),
        ("/r/anything", "/whole", None),
        ("/service/foo/v1/api", "/v1/api/instance/foo", None),
        ("/foo", "/v9foo", None), // no uri match = prefix "/" replaced
    ];
    for (path, want_path, want_auth) in table {
        let Decision::Forward(f) = get(path).route(&r) else {
            panic!("{path}")
        };
        assert_eq!(f.path.as_deref(), Some(want_path), "{path}");
        assert_eq!(f.authority.as_deref(), want_auth, "{path}");
    }
}

#[test]
fn redirects() {
    let r = vs(json!([
        {"match": [{"uri": {"exact": "/old"}}], "redirect": {"uri": "/new"}},
        {"match": [{"uri": {"prefix": "/v1/"}}], "redirect": {"prefixRewrite": "/v2/", "redirectCode": 308}},
        {"match": [{"uri": {"exact": "/secure"}}], "redirect": {"scheme": "https"}},
        {"match": [{"uri": {"exact": "/host"}}], "redirect": {"authority": "other.example", "derivePort": "FROM_REQUEST_PORT"}},
        {"match": [{"uri": {"exact": "/port443"}}], "redirect": {"scheme": "https", "port": 443}},
        {"match": [{"uri": {"exact": "/port80"}}], "redirect": {"port": 80}},
        {"match": [{"uri": {"exact": "/q"}}], "redirect": {"uri": "/n?a=b"}},
    ]));
    let table = [
        ("/old?x=1", 301, "http://reviews:9080/new?x=1"),
        ("/v1/items", 308, "http://reviews:9080/v2/items"),
        ("/secure", 301, "https://reviews:9080/secure"),
        ("/host", 301, "http://other.example:9080/host"),
        ("/port443", 301, "https://reviews:9080/port443"), // 443 dropped; request port kept
        ("/port80", 301, "http://reviews:9080/port80"),
        ("/q?x=1", 301, "http://reviews:9080/n?a=b"),
    ];
    for (path, code, location) in table {
        let Decision::Respond(reply) = get(path).route(&r) else {
            panic!("{path}")
        };
        assert_eq!(reply.status, code, "{path}");
        assert_eq!(
            reply.headers,
            vec![("location".to_owned(), location.to_owned())],
            "{path}"
        );
        assert!(reply.body.is_empty());
    }
    // http → https on the default port drops ":80".
    let Decision::Respond(reply) = get("/secure").authority("reviews:80").route(&r) else {
        panic!()
    };
    assert_eq!(reply.headers[0].1, "https://reviews/secure");
    assert!(
        vs_err(json!([{"redirect": {"uri": "/x", "redirectCode": 305}}]))
            .contains("305 is not a valid redirect code")
    );
}

#[test]
fn direct_response_and_response_headers() {
    let r = vs(json!([
        {"match": [{"uri": {"exact": "/text"}}], "directResponse": {"status": 503, "body": {"string": "down"}},
         "headers": {"response": {"set": {"x-reason": "maint"}}}},
        {"match": [{"uri": {"exact": "/bytes"}}], "directResponse": {"status": 200, "body": {"bytes": "aGk="}}},
        {"match": [{"uri": {"exact": "/empty"}}], "directResponse": {"status": 204}},
    ]));
    let Decision::Respond(t) = get("/text").route(&r) else {
        panic!()
    };
    assert_eq!((t.status, t.body.as_slice()), (503, b"down".as_slice()));
    assert_eq!(
        t.headers,
        vec![
            ("content-type".into(), "text/plain".into()),
            ("x-reason".into(), "maint".into())
        ]
    );
    assert_eq!(t.route_id.as_deref(), Some("vs:bookinfo/reviews#0"));
    let Decision::Respond(b) = get("/bytes").route(&r) else {
        panic!()
    };
    assert_eq!(b.body, b"hi");
    let Decision::Respond(e) = get("/empty").route(&r) else {
        panic!()
    };
    assert!(e.headers.is_empty() && e.body.is_empty());
}

#[test]
fn header_operations_order() {
    // Single destination: route ops then destination ops in one parser
    // (removals first, then set/add sorted by name).
    let r = vs(json!([{
        "headers": {"request": {"set": {"b": "1", "a": "1", ":authority": "new.host"},
                                "add": {"c": "1", "host": "ignored.when.set"}, "remove": ["r1", ":path"]},
                    "response": {"add": {"x-resp": "1"}}},
        "route": [{"destination": {"host": SVC, "port": {"number": 9090}},
                   "headers": {"request": {"set": {"a": "2"}, "remove": ["r2"]}}}]
    }]));
    let Decision::Forward(f) = get("/").route(&r) else {
        panic!()
    };
    assert_eq!(
        f.request_headers,
        vec![
            HeaderOp::Remove("r1".into()),
            HeaderOp::Remove("r2".into()),
            HeaderOp::Set("a".into(), "1".into()),
            HeaderOp::Set("b".into(), "1".into()),
            HeaderOp::Add("c".into(), "1".into()),
            HeaderOp::Set("a".into(), "2".into()),
        ]
    );
    assert_eq!(
        f.response_headers,
        vec![HeaderOp::Add("x-resp".into(), "1".into())]
    );
    assert_eq!(f.authority.as_deref(), Some("new.host"));
    assert_eq!(f.port, Some(9090));
    // Weighted destinations: the destination's parser runs before the route's.
    let r = vs(json!([{
        "headers": {"request": {"set": {"a": "route"}}},
        "route": [{"destination": {"host": SVC, "subset": "v1"}, "weight": 1,
                   "headers": {"request": {"set": {"a": "dest"}, "add": {":authority": "dest.host"}}}},
                  {"destination": {"host": SVC, "subset": "v2"}, "weight": 1}]
    }]));
    let Decision::Forward(f) = get("/").route_with(&r, 0) else {
        panic!()
    };
    assert_eq!(
        f.request_headers,
        vec![
            HeaderOp::Set("a".into(), "dest".into()),
            HeaderOp::Set("a".into(), "route".into())
        ]
    );
    assert_eq!(f.authority.as_deref(), Some("dest.host"));
}

#[test]
fn validation_errors() {
    let cases = [
        (
            json!([{"route": [dest("a", 0)], "redirect": {"uri": "/x"}}]),
            "both route and redirect",
        ),
        (
            json!([{"route": [dest("a", 0)], "directResponse": {"status": 200}}]),
            "both route and direct_response",
        ),
        (
            json!([{"redirect": {"uri": "/x"}, "rewrite": {"uri": "/y"}}]),
            "both rewrite and redirect",
        ),
        (
            json!([{"match": [{"uri": {"prefix": "/"}}]}]),
            "HTTP route, redirect or direct_response is required",
        ),
        (
            json!([{"redirect": {}}]),
            "redirect must specify URI, authority, scheme, or port",
        ),
        (
            json!([{"redirect": {"uri": "/a", "prefixRewrite": "/b"}}]),
            "may only specify one of uri or prefix_rewrite",
        ),
        (
            json!([{"match": [{"uri": {"regex": "(unclosed"}}], "route": [dest("a", 0)]}]),
            "regex",
        ),
        (json!([{"directResponse": {"status": 601}}]), "not in range"),
        (
            json!([{"match": [{"uri": {"regex": "a".repeat(1025)}}], "route": [dest("a", 0)]}]),
            "regex is too large, max length allowed is 1024",
        ),
        (
            json!([{"match": [{"headers": {"x": {"prefix": ""}}}], "route": [dest("a", 0)]}]),
            "prefix string match should not be empty",
        ),
        (
            json!([{"directResponse": {"status": 200, "body": {"string": "x".repeat(1024 * 1024 + 1)}}}]),
            "1 MB",
        ),
    ];
    for (http, want) in cases {
        let err = vs_err(http.clone());
        assert!(err.contains(want), "{http}: {err}");
    }
}

#[test]
fn claim_routing_never_matches_at_a_waypoint() {
    let r = vs(json!([
        {"match": [{"headers": {"@request.auth.claims.group": {"exact": "admin"}}}], "route": [dest("claims", 0)]},
        {"route": [dest("default", 0)]},
    ]));
    assert_eq!(
        subset(
            &get("/")
                .header("@request.auth.claims.group", "admin")
                .route(&r)
        ),
        "default"
    );
}

/// `corsPolicy` as Envoy's CORS filter applies a route's policy.
#[test]
fn cors_policy_preflights_and_actual_requests() {
    let r = vs(json!([
        {"match": [{"uri": {"prefix": "/ignore"}}], "route": [dest("v1", 0)],
         "corsPolicy": {"allowOrigins": [{"exact": "https://a.example"}], "unmatchedPreflights": "IGNORE"}},
        {"match": [{"uri": {"prefix": "/any"}}], "route": [dest("v1", 0)],
         "corsPolicy": {"allowOrigins": [{"exact": "*"}]}},
        {"route": [dest("v1", 0)],
         "corsPolicy": {"allowOrigins": [{"exact": "https://a.example"}, {"prefix": "https://dev."}],
                        "allowMethods": ["GET", "POST"], "allowHeaders": ["x-a", "x-b"],
                        "exposeHeaders": ["x-c"], "maxAge": "24h", "allowCredentials": true}},
    ]));
    let preflight = |path: &str, origin: &str| {
        get(path)
            .method("OPTIONS")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
    };
    // Allowed preflight: answered locally with the allow headers.
    let Decision::Respond(reply) = preflight("/x", "https://dev.example").route(&r) else {
        panic!("preflight answered locally")
    };
    assert_eq!(reply.status, 200);
    let h = |name: &str| {
        reply
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        h("access-control-allow-origin").as_deref(),
        Some("https://dev.example")
    );
    assert_eq!(
        h("access-control-allow-methods").as_deref(),
        Some("GET,POST")
    );
    assert_eq!(
        h("access-control-allow-headers").as_deref(),
        Some("x-a,x-b")
    );
    assert_eq!(h("access-control-max-age").as_deref(), Some("86400"));
    assert_eq!(
        h("access-control-allow-credentials").as_deref(),
        Some("true")
    );
    // Another origin's preflight goes upstream (FORWARD by default) ...
    assert!(matches!(
        preflight("/x", "https://evil.example").route(&r),
        Decision::Forward(_)
    ));
    // ... or is answered without CORS headers with IGNORE.
    let Decision::Respond(reply) = preflight("/ignore", "https://evil.example").route(&r) else {
        panic!()
    };
    assert!(reply.headers.is_empty());
    // Actual requests: allowed origins get the response headers.
    let Decision::Forward(f) = get("/x").header("origin", "https://a.example").route(&r) else {
        panic!()
    };
    assert!(f.response_headers.contains(&HeaderOp::Set(
        "access-control-allow-origin".into(),
        "https://a.example".into()
    )));
    assert!(f.response_headers.contains(&HeaderOp::Set(
        "access-control-expose-headers".into(),
        "x-c".into()
    )));
    let Decision::Forward(f) = get("/x").header("origin", "https://evil.example").route(&r) else {
        panic!()
    };
    assert!(f.response_headers.is_empty());
    // A matcher of "*" allows every origin, echoed back.
    let Decision::Forward(f) = get("/any").header("origin", "https://b.example").route(&r) else {
        panic!()
    };
    assert_eq!(
        f.response_headers,
        vec![HeaderOp::Set(
            "access-control-allow-origin".into(),
            "https://b.example".into()
        )]
    );
    // Not a CORS request: untouched.
    let Decision::Forward(f) = get("/x").route(&r) else {
        panic!()
    };
    assert!(f.response_headers.is_empty());
}
