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
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x, namespace: shop}\nspec: {hosts: [x.shop.svc.cluster.local], http: [{route: [{destination: {host: nowhere}}]}]}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ns-ref, namespace: shop}\nspec: {selector: {matchLabels: {app: ghost}}, rules: [{from: [{source: {namespaces: [ghost-ns]}}]}]}\n",
    ) {
        cs2.resources.push(o);
    }
    let msgs = operator::analyze::analyze(&cs2, None);
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
