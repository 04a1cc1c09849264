//! Validation messages and `analyze` codes, as Istio words them.

use crate::support::*;

#[test]
fn validation_messages_match_istio() {
    let mesh = MeshSettings::default();
    let cases: Vec<(&str, &str)> = vec![
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: ns}\nspec: {action: DENY}\n",
            "invalid policy d.ns: DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: ns}\nspec: {selector: {matchLabels: {a: b}}, targetRefs: [{kind: Service, group: \"\", name: x}]}\n",
            "invalid policy d.ns: only one of targetRefs or workloadSelector can be set",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: ns}\nspec: {rules: [{from: []}]}\n",
            "invalid policy d.ns: `from` must not be empty, found at rule 0",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: ns}\nspec: {rules: [{from: [{source: {serviceAccounts: [a], principals: [b]}}]}]}\n",
            "invalid policy d.ns: cannot set serviceAccounts with namespaces or principals, found at rule 0",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: ns}\nspec: {rules: [{when: [{key: destination.namespace, values: [x]}]}]}\n",
            "invalid policy d.ns: invalid `value` for `key` destination.namespace: attribute destination.namespace is replaced by the metadata.namespace",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: ns}\nspec: {action: ALLOW, provider: {name: x}, rules: [{}]}\n",
            "invalid policy d.ns: `provider` must not be with non CUSTOM action, found ALLOW",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: ns}\nspec: {targetRefs: [{kind: Pod, group: \"\", name: x}]}\n",
            "invalid policy d.ns: targetRef must be to one of [core/v1/Service networking.istio.io/v1/ServiceEntry gateway.networking.k8s.io/v1/Gateway gateway.networking.k8s.io/v1/GatewayClass] but was /Pod",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: ns}\nspec: {rules: [{to: [{operation: {paths: [\"/a/{**}/b\"]}}]}]}\n",
            "invalid policy d.ns: invalid or unsupported path /a/{**}/b, found in Paths. {**} is not the last operator",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p, namespace: ns}\nspec: {portLevelMtls: {\"80\": {mode: STRICT}}}\n",
            "mesh/namespace peer authentication cannot have port level mTLS",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r, namespace: ns}\nspec: {jwtRules: [{jwksUri: \"ftp://x/jwks\", issuer: a}]}\n",
            "URI scheme \"ftp\" is not supported",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns}\nspec: {hosts: [a], http: [{fault: {abort: {httpStatus: 503}}, redirect: {uri: /x}}]}\n",
            "HTTP route cannot contain both fault and redirect",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns}\nspec: {hosts: [a], http: [{route: [{destination: {host: a}, weight: 0}, {destination: {host: b}, weight: 0}]}]}\n",
            "total destination weight = 0",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns}\nspec: {hosts: [a], http: [{route: [{destination: {host: a}}], retries: {attempts: 2, retryOn: \"5xx,bogus\"}}]}\n",
            "\"bogus\" is not a valid retryOn policy",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns}\nspec: {hosts: [a], http: [{route: [{destination: {host: a}}], fault: {abort: {httpStatus: 503, percentage: {value: 101}}}}]}\n",
            "percentage 101 is neither 0.0, nor in range [0.0001, 100.0]",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns}\nspec: {hosts: [\"*\"], http: [{route: [{destination: {host: a}}]}]}\n",
            "wildcard host * is not allowed for virtual services bound to the mesh gateway",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns}\nspec: {hosts: [a]}\n",
            "http, tcp or tls must be provided in virtual service",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns}\nspec: {hosts: [a], tcp: [{match: [{destinationSubnets: [10.0.0.0/8, 10.1.0.0/40]}], route: [{destination: {host: a}}]}]}\n",
            "\"10.1.0.0/40\" is not a valid CIDR block",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns}\nspec: {hosts: [a], tcp: [{match: [{destinationSubnets: [db.example]}], route: [{destination: {host: a}}]}]}\n",
            "db.example is not a valid IP",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d, namespace: ns}\nspec: {host: a, subsets: [{name: v1}, {name: v1}]}\n",
            "duplicate subset names: v1",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d, namespace: ns}\nspec: {host: a, trafficPolicy: {outlierDetection: {consecutiveLocalOriginFailures: 2}}}\n",
            "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false",
        ),
        (
            "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t, namespace: ns}\nspec: {metrics: [{overrides: [{tagOverrides: {a: {operation: REMOVE, value: x}}}]}]}\n",
            "tagOverrides.value may only be set when operation is UPSERT",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: ns, annotations: {istio.io/dry-run: \"yes\"}}\nspec: {action: DENY, rules: [{}]}\n",
            "ns/d has annotation istio.io/dry-run with invalid value (yes): strconv.ParseBool: parsing \"yes\": invalid syntax",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: ns, annotations: {istio.io/dry-run: \"true\"}}\nspec: {action: AUDIT, rules: [{}]}\n",
            "the annotation istio.io/dry-run currently only supports action ALLOW/DENY, found action AUDIT in ns/d",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p, namespace: ns, annotations: {istio.io/dry-run: \"true\"}}\nspec: {mtls: {mode: STRICT}}\n",
            "ns/p has unsupported annotation istio.io/dry-run, please remove the annotation",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: ns}\nspec: {rules: [{to: [{operation: {ports: [\"+80\", \"70000\"]}}]}]}\n",
            "invalid policy d.ns: bad port (+80): strconv.ParseUint: parsing \"+80\": invalid syntax",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: ns}\nspec: {rules: [{to: [{operation: {ports: [\"70000\"]}}]}]}\n",
            "invalid policy d.ns: bad port (70000): <nil>",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: ns}\nspec: {rules: [{from: [{source: {serviceAccounts: [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q]}}]}]}\n",
            "invalid policy d.ns: may not have more than 16 values",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: ns}\nspec: {rules: [{when: [{key: source.ip, notValues: [\"\"]}]}]}\n",
            "invalid policy d.ns: invalid `notValue` for `key` source.ip: empty value not allowed, found in source.ip",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: ns}\nspec: {rules: [{when: [{key: source.serviceAccount, values: [a/b/c]}]}]}\n",
            "invalid policy d.ns: invalid `value` for `key` source.serviceAccount: expected format 'serviceAccount' or 'namespace/serviceAccount', found \"a/b/c\" in source.serviceAccount",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p, namespace: ns}\nspec: {selector: {matchLabels: {a: b}}, portLevelMtls: {\"0\": {mode: STRICT}}}\n",
            "port must be in range 1..65535",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r, namespace: ns}\nspec: {jwtRules: [{jwksUri: \"example.com/keys\", issuer: a}]}\n",
            "URI scheme \"\" is not supported",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r, namespace: ns}\nspec: {jwtRules: [{issuer: a, fromCookies: [\"\"], outputClaimToHeaders: [{header: X.Y, claim: sub}]}]}\n",
            "cookie name must be non-empty string",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r, namespace: ns}\nspec: {jwtRules: [{issuer: a, outputClaimToHeaders: [{header: X.Y, claim: sub}]}]}\n",
            "header name X.Y is not a valid header name",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns}\nspec: {hosts: [a], http: [{redirect: {uri: /x, redirectCode: 300}}]}\n",
            "Redirect Code 300 is not yet supported (supported: 301, 302, 303, 307, 308)",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d, namespace: ns}\nspec: {host: a, trafficPolicy: {tls: {mode: MUTUAL}}}\n",
            "client certificate required for mutual tls",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d, namespace: ns}\nspec: {host: a, trafficPolicy: {portLevelSettings: [{port: {number: 80}, tls: {mode: MUTUAL, clientCertificate: /c}}]}}\n",
            "private key required for mutual tls",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d, namespace: ns}\nspec: {host: a, trafficPolicy: {tls: {mode: SIMPLE, credentialName: s, caCertificates: /ca}}}\n",
            "cannot specify client certificates or CA certificate or CA CRL If credentialName is set",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d, namespace: ns}\nspec: {host: a, subsets: [{name: V1}]}\n",
            "subset name is invalid: V1",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns}\nspec: {hosts: [a], http: [{directResponse: {status: 700}}]}\n",
            "HTTP status 700 is not in range 200-599",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns}\nspec: {hosts: [a], http: [{match: [{headers: {x-user: {prefix: \"\"}}}], route: [{destination: {host: a}}]}]}\n",
            "\"headers\": prefix string match should not be empty",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: ns}\nspec: {rules: [{from: [{source: {principals: []}}]}]}\n",
            "invalid policy d.ns: `from.source` must not be empty, found at rule 0",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: ns}\nspec: {rules: [{to: [{operation: {ports: []}}]}]}\n",
            "invalid policy d.ns: `to.operation` must not be empty, found at rule 0",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns}\nspec: {hosts: [a], http: [{route: [{destination: {host: a}}], headers: {request: {set: {x-off: \"50% off\"}}}}]}\n",
            "single % not allowed.  Escape by doubling to %% or encase Envoy variable name in pair of %",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns}\nspec: {hosts: [a], http: [{redirect: {uri: /x, prefixRewrite: /y}}]}\n",
            "redirect may only specify one of uri or prefix_rewrite",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns}\nspec: {hosts: [a], http: [{match: [{uri: {exact: /v1}}], redirect: {prefixRewrite: /v2}}]}\n",
            "redirect prefix_rewrite requires all URI matches to use prefix match type",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns}\nspec: {hosts: [a], http: [{route: [{destination: {host: a}}], rewrite: {uriRegexRewrite: {match: \"(\", rewrite: /x}}}]}\n",
            "UriRegexRewrite has errors: \"HTTPRewrite.UriRegexRewrite.Match\" regex invalid: \"(\"",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns}\nspec: {hosts: [a], http: [{route: [{destination: {host: a}}], rewrite: {uriRegexRewrite: {match: \"^/a\", rewrite: \"\"}}}]}\n",
            "UriRegexRewrite requires both Rewrite and Match fields to be specified",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns}\nspec: {hosts: [a], http: [{route: [{destination: {host: a}}], mirrors: [{destination: {host: b}, percentage: {value: -1}}]}]}\n",
            "mirror percentage must have a min value of 0 (it has -1.000000)",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: ns}\nspec: {rules: [{when: [{key: source.trustDomain, values: [\"a*b\"]}]}]}\n",
            "invalid policy d.ns: invalid `value` for `key` source.trustDomain: wildcard is only allowed at the start or end, found in source.trustDomain: \"a*b\"",
        ),
    ];
    for (yaml, want) in cases {
        let o = objects(yaml).remove(0);
        let v = operator::validate::validate(&o, &mesh);
        assert!(
            v.errors.iter().any(|e| e == want),
            "want {want:?}\ngot {:?}",
            v.errors
        );
    }
}

/// Istio's webhook reports a bad dry-run annotation alone, and asks for
/// `provider.name` only once a CUSTOM policy has rules.
#[test]
fn dry_run_errors_come_alone_and_custom_without_rules_is_one_error() {
    let mesh = MeshSettings::default();
    let o = objects(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: ns, annotations: {istio.io/dry-run: x}}\nspec: {action: DENY}\n",
    )
    .remove(0);
    assert_eq!(operator::validate::validate(&o, &mesh).errors.len(), 1);
    let o = objects(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: ns}\nspec: {action: CUSTOM}\n",
    )
    .remove(0);
    let v = operator::validate::validate(&o, &mesh);
    assert_eq!(v.errors.len(), 1, "{:?}", v.errors);
    assert!(v.errors[0].contains("CUSTOM action without `rules`"));
}

/// The TCP-port warning of DENY rules, per rule with Istio's condition.
#[test]
fn deny_rules_with_only_http_attributes_warn() {
    let mesh = MeshSettings::default();
    let warns = |rules: &str| {
        let o = objects(&format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: d, namespace: ns}}\nspec: {{action: DENY, rules: {rules}}}\n"
        ))
        .remove(0);
        let v = operator::validate::validate(&o, &mesh);
        assert!(v.errors.is_empty(), "{rules}: {:?}", v.errors);
        v.warnings
            .iter()
            .filter(|w| w.contains("deny all traffic to TCP ports"))
            .count()
    };
    assert_eq!(warns("[{to: [{operation: {paths: [/admin]}}]}]"), 1);
    assert_eq!(
        warns("[{from: [{source: {namespaces: [a]}}], to: [{operation: {methods: [POST]}}]}]"),
        1
    );
    assert_eq!(
        warns("[{from: [{source: {requestPrincipals: [\"*\"]}}]}]"),
        1
    );
    assert_eq!(warns("[{from: [{source: {namespaces: [a]}}]}]"), 0);
    assert_eq!(
        warns("[{to: [{operation: {methods: [POST], ports: [\"80\"]}}]}]"),
        0
    );
    assert_eq!(
        warns("[{when: [{key: \"request.headers[x]\", values: [y]}]}]"),
        0
    );
    assert_eq!(
        warns("[{to: [{operation: {paths: [/a]}}]}, {to: [{operation: {paths: [/b]}}]}]"),
        2
    );
}

/// IST0130/IST0131 texts and cases as Istio's `analyzeUnreachableHTTPRules`.
#[test]
fn unreachable_rules_and_covered_prefix_matches() {
    let mesh = MeshSettings::default();
    let warnings = |http: &str| {
        let o = objects(&format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: v, namespace: ns}}\nspec:\n  hosts: [a]\n  http: {http}\n"
        ))
        .remove(0);
        let v = operator::validate::validate(&o, &mesh);
        assert!(v.errors.is_empty(), "{:?}", v.errors);
        v.warnings
    };
    assert_eq!(
        warnings(
            "[{route: [{destination: {host: a}}]}, {match: [{uri: {prefix: /x}}], route: [{destination: {host: a}}]}]"
        ),
        vec!["virtualService rule #1 not used (route without matches defined before)"]
    );
    assert_eq!(
        warnings(
            "[{route: [{destination: {host: a}}]}, {name: last, route: [{destination: {host: a}}]}]"
        ),
        vec!["virtualService rule \"last\" not used (only the last rule can have no matches)"]
    );
    assert_eq!(
        warnings(
            "[{match: [{uri: {exact: /x}}], route: [{destination: {host: a}}]}, {match: [{uri: {exact: /x}}], route: [{destination: {host: a}}]}]"
        ),
        vec![
            "virtualService rule #1 match #0 is not used (duplicate/overlapping match in rule #0)",
            "virtualService rule #1 not used (all matches used by prior rules)",
        ]
    );
    assert_eq!(
        warnings(
            "[{match: [{uri: {prefix: /debug}}], route: [{destination: {host: a}}]}, {match: [{uri: {prefix: /debugs}}], route: [{destination: {host: a}}]}]"
        ),
        vec![
            "virtualService rule #1 match #0 of prefix /debugs is not used (duplicate/overlapping match in rule #0 of prefix /debug on #0)"
        ]
    );
    // A header the earlier rule does not have: not covered.
    assert!(
        warnings("[{match: [{uri: {prefix: /debug}}], route: [{destination: {host: a}}]}, {match: [{uri: {prefix: /debugs}, headers: {x: {exact: y}}}], route: [{destination: {host: a}}]}]")
            .is_empty()
    );
}

#[test]
fn jwt_claim_routing_is_gateway_only() {
    let mesh = MeshSettings::default();
    let o = objects(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns}\nspec:\n  hosts: [a]\n  http: [{match: [{headers: {\"@request.auth.claims.sub\": {exact: u}}}], route: [{destination: {host: a}}]}]\n",
    )
    .remove(0);
    assert_eq!(
        operator::validate::validate(&o, &mesh).errors,
        vec![
            "JWT claim based routing (key: @request.auth.claims.sub) is only supported for gateway, found no gateways: []"
        ]
    );
}

#[test]
fn analyze_reports_istio_codes() {
    let (c, _) = seed();
    let cs = (*c.config().unwrap()).clone();
    let msgs = operator::analyze::analyze(&cs, Some("shop"));
    let codes: Vec<&str> = msgs.iter().map(|m| m.code).collect();
    // Three mesh VirtualServices define orders (as in Istio: IST0109).
    assert!(codes.contains(&"IST0109"), "{codes:?}");
    let m = msgs.iter().find(|m| m.code == "IST0109").unwrap();
    assert!(m.message.starts_with("The VirtualServices shop/orders,shop/orders-fault,shop/orders-resilience associated with mesh gateway define the same host orders.shop.svc.cluster.local"), "{}", m.message);
    assert!(!codes.contains(&"IST0173"), "both subsets select pods");
    // Take v2 pods away, reference a missing host and a missing namespace.
    let mut cs2 = cs.clone();
    cs2.pods.retain(|p| p.name != "orders-v2-0");
    cs2.resources.virtual_services.truncate(1);
    for o in objects(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x, namespace: shop}\nspec: {hosts: [x.shop.svc.cluster.local], http: [{route: [{destination: {host: nowhere}}]}]}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ns-ref, namespace: shop}\nspec: {selector: {matchLabels: {app: ghost}}, rules: [{from: [{source: {namespaces: [ghost-ns, \"prod-*\", \"sh*\", SHOP]}}]}]}\n---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t, namespace: shop}\nspec: {selector: {matchLabels: {app: ghost}}, tracing: [{randomSamplingPercentage: 1}]}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: db-tls, namespace: shop}\nspec: {host: mydbserver.prod.svc.cluster.local, trafficPolicy: {tls: {mode: SIMPLE}, portLevelSettings: [{port: {number: 443}, tls: {mode: SIMPLE}}]}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: p, namespace: shop}\nspec: {hosts: [y.shop.svc.cluster.local], http: [{route: [{destination: {host: orders, port: {number: 9999}}}]}]}\n",
    ) {
        cs2.resources.push(o);
    }
    // A namespace whose only pod is not in the mesh: its namespace-wide
    // policy (targetRefs or not) selects no workload (IST0127).
    cs2.namespaces.insert(
        "plain".into(),
        operator::config::NamespaceInfo {
            name: "plain".into(),
            ..Default::default()
        },
    );
    cs2.pods.push(operator::config::PodInfo {
        name: "legacy-0".into(),
        namespace: "plain".into(),
        ips: vec!["10.10.9.9".parse().unwrap()],
        ..Default::default()
    });
    for o in objects(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: plain-allow, namespace: plain}\nspec: {rules: [{}]}\n",
    ) {
        cs2.resources.push(o);
    }
    let msgs = operator::analyze::analyze(&cs2, None);
    assert!(
        msgs.iter()
            .any(|m| m.code == "IST0127" && m.resource.contains("plain/plain-allow")),
        "a pod outside the mesh is no workload for IST0127: {msgs:#?}"
    );
    let find = |code: &str| {
        msgs.iter()
            .filter(|m| m.code == code)
            .map(|m| m.message.clone())
            .collect::<Vec<_>>()
    };
    assert!(find("IST0173").iter().any(|m| m == "The Subset v2 defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream)."), "{msgs:#?}");
    assert!(
        find("IST0101").contains(&"Referenced host not found: \"nowhere\"".to_string()),
        "{msgs:#?}"
    );
    assert!(
        find("IST0101").contains(&"Referenced namespace not found: \"ghost-ns\"".to_string()),
        "{msgs:#?}"
    );
    // istioctl's namespace patterns: `prod-*` matches no namespace; `sh*`
    // and `SHOP` (case-insensitive) match `shop`.
    let ns_refs: Vec<String> = find("IST0101")
        .into_iter()
        .filter(|m| m.starts_with("Referenced namespace"))
        .collect();
    assert_eq!(
        ns_refs,
        vec![
            "Referenced namespace not found: \"ghost-ns\"".to_string(),
            "Referenced namespace not found: \"prod-*\"".to_string(),
        ]
    );
    assert!(
        find("IST0101").contains(&"Referenced selector not found: \"app=ghost\"".to_string()),
        "{msgs:#?}"
    );
    assert!(
        find("IST0101").contains(&"Referenced host:port not found: \"orders:9999\"".to_string()),
        "{msgs:#?}"
    );
    assert_eq!(
        find("IST0128"),
        vec![
            "DestinationRule shop/db-tls in namespace shop has TLS mode set to SIMPLE but no caCertificates are set to validate server identity for host: mydbserver.prod.svc.cluster.local"
        ]
    );
    assert_eq!(
        find("IST0129"),
        vec![
            "DestinationRule shop/db-tls in namespace shop has TLS mode set to SIMPLE but no caCertificates are set to validate server identity for host: mydbserver.prod.svc.cluster.local at port number:443"
        ]
    );
    assert!(
        find("IST0127").contains(
            &"No matching workloads for this resource with the following labels: app=ghost"
                .to_string()
        ),
        "{msgs:#?}"
    );
    assert!(msgs.iter().any(|m| {
        m.to_string()
            .starts_with("Error [IST0173] (DestinationRule shop/orders,orders-cb)")
            || m.to_string()
                .starts_with("Error [IST0173] (DestinationRule shop/orders)")
    }));
    // Invalid resources come back as IST0106.
    let mut cs3 = cs.clone();
    cs3.resources.push(objects("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: shop}\nspec: {action: DENY}\n").remove(0));
    assert!(
        operator::analyze::analyze(&cs3, None)
            .iter()
            .any(|m| m.code == "IST0106" && m.level == operator::analyze::Level::Error)
    );
}

/// Istio's Telemetry analyzers (IST0157, IST0159, IST0160, IST0002 for
/// Lightstep) and the VirtualService gateway analyzer (IST0101, IST0132,
/// IST0165), with Istio's message texts.
#[test]
fn analyze_telemetry_and_gateway_references() {
    let (c, _) = seed();
    let mut cs = (*c.config().unwrap()).clone();
    cs.mesh
        .apply_mesh_config("extensionProviders:\n- name: ls\n  lightstep: {address: x:8080}\n")
        .unwrap();
    for o in objects(
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t1, namespace: shop}\nspec: {selector: {matchLabels: {app: orders}}, tracing: [{providers: [{name: ls}]}]}\n---\n\
         apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t2, namespace: shop}\nspec: {selector: {matchLabels: {version: v1}}, accessLogging: [{filter: {expression: \"true\"}}]}\n---\n\
         apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: b, namespace: shop}\nspec: {accessLogging: [{disabled: true}]}\n---\n\
         apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: a, namespace: shop}\nspec: {tracing: [{randomSamplingPercentage: 1}]}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: shop}\nspec: {gatewayClassName: istio, listeners: [{name: http, port: 80, protocol: HTTP, hostname: \"*.example.com\"}]}\n---\n\
         apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: gw-ok, namespace: shop}\nspec: {hosts: [shop.example.com], gateways: [edge], http: [{route: [{destination: {host: web}}]}]}\n---\n\
         apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: gw-miss, namespace: shop}\nspec: {hosts: [a.other.org, b.other.org], gateways: [shop/edge, ghost], http: [{route: [{destination: {host: web}}]}]}\n---\n\
         apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: gw-internal, namespace: shop}\nspec: {hosts: [x.example.com], gateways: [\"shop/edge~istio-autogenerated-k8s-gateway~http\"], http: [{route: [{destination: {host: web}}]}]}\n",
    ) {
        cs.resources.push(o);
    }
    let msgs = operator::analyze::analyze(&cs, Some("shop"));
    let find = |code: &str| {
        let mut v: Vec<String> = msgs
            .iter()
            .filter(|m| m.code == code)
            .map(|m| format!("{} {}", m.resource, m.message))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        find("IST0157"),
        vec![
            "Telemetry shop/t2 The Telemetry t2 in namespace \"shop\" with empty providers will be ignored."
        ]
    );
    assert_eq!(
        find("IST0159"),
        vec![
            "Telemetry shop/t1 The Telemetries [t1 t2] in namespace \"shop\" select the same workload pod \"orders-v1-0\", which can lead to undefined behavior.",
            "Telemetry shop/t2 The Telemetries [t1 t2] in namespace \"shop\" select the same workload pod \"orders-v1-0\", which can lead to undefined behavior.",
        ]
    );
    // The seed has no selector-less Telemetry in shop: `a` and `b` are the two.
    assert_eq!(
        find("IST0160"),
        vec![
            "Telemetry shop/a The Telemetries [a b] in namespace \"shop\" have no workload selector, which can lead to undefined behavior.",
            "Telemetry shop/b The Telemetries [a b] in namespace \"shop\" have no workload selector, which can lead to undefined behavior.",
        ]
    );
    assert_eq!(
        find("IST0002"),
        vec![
            "Telemetry shop/t1 Deprecated: The Lightstep provider ls is deprecated, please migrate to OpenTelemetry provider."
        ]
    );
    assert_eq!(
        find("IST0132"),
        vec![
            "VirtualService shop/gw-miss one or more host [a.other.org b.other.org] defined in VirtualService shop/gw-miss not found in Gateway shop/edge.",
            "VirtualService shop/gw-miss one or more host [a.other.org b.other.org] defined in VirtualService shop/gw-miss not found in Gateway shop/ghost.",
        ]
    );
    assert!(
        find("IST0101").contains(
            &"VirtualService shop/gw-miss Referenced gateway not found: \"ghost\"".to_string()
        ),
        "{msgs:#?}"
    );
    assert_eq!(
        find("IST0165"),
        vec![
            "VirtualService shop/gw-internal Gateway reference in VirtualService shop/gw-internal is to an implementation-generated internal Gateway: shop/edge~istio-autogenerated-k8s-gateway~http."
        ]
    );
    // The default mesh has no default access-logging provider; with one,
    // an entry without providers is fine.
    cs.mesh
        .apply_mesh_config("defaultProviders:\n  accessLogging: [envoy]\n")
        .unwrap();
    assert!(
        operator::analyze::analyze(&cs, Some("shop"))
            .iter()
            .all(|m| m.code != "IST0157")
    );
}

/// IST0166: a selector that matches a Kubernetes Gateway's pods (here the
/// waypoint's) is reported; one matching no gateway pod is not.
#[test]
fn analyze_reports_selectors_on_gateway_pods() {
    let (c, _) = seed();
    let mut cs = (*c.config().unwrap()).clone();
    cs.pods.push(operator::config::PodInfo {
        name: "waypoint-7d9f".into(),
        namespace: "shop".into(),
        labels: [
            ("gateway.networking.k8s.io/gateway-name", "waypoint"),
            ("app", "waypoint"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        ..Default::default()
    });
    for o in objects(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: on-wp, namespace: shop}\nspec: {selector: {matchLabels: {app: waypoint}}, rules: [{}]}\n---\n\
         apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: ra-wp, namespace: shop}\nspec: {selector: {matchLabels: {app: waypoint}}, jwtRules: [{issuer: x, jwks: '{\"keys\":[]}'}]}\n---\n\
         apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t-web, namespace: shop}\nspec: {selector: {matchLabels: {app: web}}}\n",
    ) {
        cs.resources.push(o);
    }
    let msgs = operator::analyze::analyze(&cs, Some("shop"));
    let mut found: Vec<String> = msgs
        .iter()
        .filter(|m| m.code == "IST0166")
        .map(|m| format!("{} {}", m.resource, m.message))
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            "AuthorizationPolicy shop/on-wp Ineffective selector on Kubernetes Gateway waypoint. Use the TargetRef field instead.",
            "RequestAuthentication shop/ra-wp Ineffective selector on Kubernetes Gateway waypoint. Use the TargetRef field instead.",
        ]
    );
}

/// Namespace analyzers as istiod's `injection.Analyzer`: several kinds of
/// data-plane labels (the sidecar-to-ambient migration) is IST0123; a
/// namespace in neither mode is IST0102; istio-system is left out.
#[test]
fn analyze_namespaces_and_unverified_tls() {
    use operator::config::NamespaceInfo;
    let mut cs = operator::config::ConfigSet::default();
    let ns = |labels: &[(&str, &str)]| NamespaceInfo {
        name: String::new(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    cs.namespaces.insert(
        "both".into(),
        ns(&[
            ("istio-injection", "enabled"),
            ("istio.io/dataplane-mode", "ambient"),
        ]),
    );
    cs.namespaces.insert("plain".into(), ns(&[]));
    cs.namespaces
        .insert("off".into(), ns(&[("istio-injection", "disabled")]));
    cs.namespaces
        .insert("mesh".into(), ns(&[("istio.io/dataplane-mode", "ambient")]));
    cs.namespaces.insert("istio-system".into(), ns(&[]));
    for o in objects(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: skip, namespace: mesh}\n\
         spec: {host: db.example.com, trafficPolicy: {tls: {mode: SIMPLE, insecureSkipVerify: true}}}\n",
    ) {
        cs.resources.push(o);
    }
    let msgs = operator::analyze::analyze(&cs, None);
    let of = |code: &str| -> Vec<String> {
        msgs.iter()
            .filter(|m| m.code == code)
            .map(|m| format!("{} {}", m.resource, m.message))
            .collect()
    };
    assert_eq!(
        of("IST0123"),
        vec!["Namespace both The namespace has more than one type of injection labels [istio-injection=enabled istio.io/dataplane-mode=ambient], which may lead to undefined behavior. Make sure only one injection label exists.".to_string()]
    );
    assert_eq!(
        of("IST0102"),
        vec!["Namespace plain The namespace is not enabled for Istio injection. Run 'kubectl label namespace plain istio-injection=enabled' to enable it, or 'kubectl label namespace plain istio-injection=disabled' to explicitly mark it as not needing injection.".to_string()]
    );
    // `-n plain` keeps the namespace's own message.
    assert!(
        operator::analyze::analyze(&cs, Some("plain"))
            .iter()
            .any(|m| m.code == "IST0102")
    );
    // insecureSkipVerify does not excuse a SIMPLE origination without
    // caCertificates (istiod's CaCertificateAnalyzer).
    assert_eq!(of("IST0128").len(), 1, "{msgs:#?}");
}
