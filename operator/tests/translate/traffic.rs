//! DestinationRule merging (reference §5.5) and VirtualService TCP routes.

use crate::support::*;

#[test]
fn reference_5_5_destination_rule_merge() {
    let cs = {
        let mut cs = cs_with(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, namespace: foo}\nspec:\n  host: app\n  trafficPolicy:\n    loadBalancer: {simple: ROUND_ROBIN}\n    outlierDetection: {consecutive5xxErrors: 3}\n    portLevelSettings:\n    - port: {number: 8080}\n      connectionPool: {http: {http2MaxRequests: 7}}\n  subsets:\n  - name: v2\n    labels: {app: app}\n    trafficPolicy: {connectionPool: {http: {http2MaxRequests: 10}}}\n",
        );
        cs.services.push(operator::config::ServiceInfo {
            name: "app".into(),
            namespace: "foo".into(),
            vips: vec!["10.96.1.1".parse().unwrap()],
            ports: vec![
                operator::config::ServicePortInfo {
                    name: "http".into(),
                    port: 80,
                    target_port: operator::config::TargetPort::Number(80),
                    app_protocol: None,
                },
                operator::config::ServicePortInfo {
                    name: "alt".into(),
                    port: 8080,
                    target_port: operator::config::TargetPort::Number(8080),
                    app_protocol: None,
                },
            ],
            selector: Some(BTreeMap::from([("app".into(), "app".into())])),
            ..Default::default()
        });
        cs
    };
    let dr = operator::translate::destination::find(&cs, "app.foo.svc.cluster.local", "foo", "foo")
        .unwrap();
    let (_, pols) = operator::translate::destination::resolve(&dr, &[80, 8080]);
    let get = |port, subset: Option<&str>| {
        pols.iter()
            .find(|p| p.port == port && p.subset.as_deref() == subset)
            .unwrap()
            .clone()
    };
    // v2 on port 80 = ROUND_ROBIN + OD(3) + its own pool
    let v2 = get(80, Some("v2"));
    assert_eq!(v2.load_balancer, LoadBalancer::RoundRobin);
    assert_eq!(
        v2.outlier_detection
            .as_ref()
            .unwrap()
            .consecutive_5xx_errors,
        3
    );
    assert_eq!(v2.connection_pool.http2_max_requests, Some(10));
    // port 8080: top-level LB/OD not applied (port entry replaces the blocks)
    let p8080 = get(8080, None);
    assert_eq!(p8080.load_balancer, LoadBalancer::LeastRequest);
    assert!(p8080.outlier_detection.is_none());
    assert_eq!(p8080.connection_pool.http2_max_requests, Some(7));
    // outlierDetection: {} takes Envoy's defaults
    let od = operator::translate::destination::outlier(&Default::default());
    assert_eq!(
        (
            od.consecutive_5xx_errors,
            od.interval.as_secs(),
            od.base_ejection_time.as_secs(),
            od.max_ejection_percent
        ),
        (5, 10, 30, 10)
    );
}

/// VirtualService `tcp` routes reach the waypoint next to the `http` ones
/// (destination hosts resolved to FQDNs), for the waypoint's TCP path.
#[test]
fn virtual_service_tcp_routes_are_translated() {
    let t = seed_translation_with(
        &[(
            "08-tcp.yaml",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: orders-tcp, namespace: shop}\n\
         spec:\n  hosts: [orders]\n  tcp:\n  - match: [{port: 5432}]\n    route:\n    - {destination: {host: orders, subset: v1}, weight: 80}\n    - {destination: {host: orders, subset: v2}, weight: 20}\n",
        )],
        "",
    );
    let cfg = routing_config(&t);
    let orders = cfg
        .services
        .iter()
        .find(|s| s.host == "orders.shop.svc.cluster.local")
        .unwrap();
    let vs = orders
        .virtual_services
        .iter()
        .find(|v| v.name == "orders-tcp")
        .unwrap();
    assert_eq!(vs.tcp.len(), 1);
    assert!(vs.tcp[0].matches(5432, None, None) && !vs.tcp[0].matches(80, None, None));
    assert_eq!(
        vs.tcp[0].route[0].destination.host,
        "orders.shop.svc.cluster.local"
    );
    assert_eq!(vs.tcp[0].route[1].destination.subset.as_deref(), Some("v2"));
    assert_eq!(vs.tcp[0].route[1].weight, 20);
}

/// `mirror` + `mirrorPercentage` and `mirrors[]` reach the routing filter as
/// one list, short hosts resolved in the VirtualService's namespace; an
/// unset percentage stays unset (100 %).
#[test]
fn virtual_service_mirrors_and_cors_are_translated() {
    let t = seed_translation_with(
        &[(
            "08-mirror.yaml",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: orders-mirror, namespace: shop}\n\
         spec:\n  hosts: [orders]\n  http:\n  - match: [{uri: {prefix: /a}}]\n    route: [{destination: {host: orders, subset: v1}}]\n    mirror: {host: orders, subset: v2}\n    mirrorPercentage: {value: 25}\n    corsPolicy: {allowOrigins: [{exact: https://a.example}], maxAge: 24h, allowCredentials: true}\n\
         \x20 - route: [{destination: {host: orders, subset: v1}}]\n    mirrors: [{destination: {host: orders, subset: v2}}]\n",
        )],
        "",
    );
    let vs = vs_named(&t, "orders-mirror");
    let m0 = &vs.http[0].mirrors;
    assert_eq!(m0.len(), 1);
    assert_eq!(m0[0].destination.host, "orders.shop.svc.cluster.local");
    assert_eq!(m0[0].destination.subset.as_deref(), Some("v2"));
    assert_eq!(m0[0].percentage.map(|p| p.value), Some(25.0));
    let cors = vs.http[0]
        .cors_policy
        .as_ref()
        .expect("corsPolicy translated");
    assert_eq!(
        cors.allow_origins[0].exact.as_deref(),
        Some("https://a.example")
    );
    assert_eq!(cors.max_age.map(|d| d.as_millis()), Some(86_400_000));
    assert_eq!(cors.allow_credentials, Some(true));
    let m1 = &vs.http[1].mirrors;
    assert_eq!(m1.len(), 1);
    assert_eq!(m1[0].percentage, None);
}

/// HTTPRoute `RequestMirror` and `CORS` filters reach the routing filter:
/// the mirror backend resolved to its hostname with the share in parts
/// per million, the CORS origins converted as Istio's `createCorsFilter`
/// does.
#[test]
fn http_route_mirror_and_cors_filters_are_translated() {
    let t = seed_translation_with(
        &[(
            "08-httproute.yaml",
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web-route, namespace: shop}\n\
             spec:\n  parentRefs: [{group: \"\", kind: Service, name: web, port: 80}]\n  rules:\n\
             \x20 - filters:\n    - type: RequestMirror\n      requestMirror: {backendRef: {name: orders, port: 80}, percent: 25}\n\
             \x20   - type: CORS\n      cors:\n        allowOrigins: [\"*\", \"https://a.example\", \"https://dev.*\", \"https://*.example.com\"]\n\
             \x20       allowMethods: [GET]\n        allowCredentials: true\n        maxAge: 30\n\
             \x20   backendRefs: [{name: web, port: 80}]\n",
        )],
        "",
    );
    let cfg = routing_config(&t);
    let route = cfg
        .services
        .iter()
        .flat_map(|s| &s.http_routes)
        .find(|r| r.name == "web-route")
        .expect("translated");
    let filters = &route.rules[0].filters;
    let mirror = filters
        .iter()
        .find_map(|f| f.request_mirror.as_ref())
        .expect("mirror");
    assert_eq!(
        mirror.host.as_deref(),
        Some("orders.shop.svc.cluster.local")
    );
    assert_eq!(mirror.port, Some(80));
    assert_eq!(mirror.per_million, Some(250_000));
    let cors = filters
        .iter()
        .find_map(|f| f.cors_policy.as_ref())
        .expect("cors");
    let origins: Vec<(Option<&str>, Option<&str>, Option<&str>)> = cors
        .allow_origins
        .iter()
        .map(|m| (m.exact.as_deref(), m.prefix.as_deref(), m.regex.as_deref()))
        .collect();
    assert_eq!(
        origins,
        vec![
            (None, None, Some(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s?#]+$")),
            (Some("https://a.example"), None, None),
            (None, Some("https://dev."), None),
            (None, None, Some(r"^https://.*\.example\.com$")),
        ]
    );
    assert_eq!(cors.allow_methods, vec!["GET".to_string()]);
    assert_eq!(cors.allow_credentials, Some(true));
    assert_eq!(cors.max_age.map(|d| d.as_millis()), Some(30_000));
    assert_eq!(cors.unmatched_preflights.as_deref(), Some("IGNORE"));
}

/// `redirect.prefixRewrite` reaches the routing filter (it used to be
/// dropped by the CRD type, so a redirect with only `prefixRewrite` was
/// refused as empty).
#[test]
fn redirect_prefix_rewrite_is_translated() {
    let t = seed_translation_with(
        &[(
            "08-redirect.yaml",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: orders-moved, namespace: shop}\n\
             spec:\n  hosts: [orders]\n  http:\n  - match: [{uri: {prefix: /v1}}]\n    redirect: {prefixRewrite: /v2}\n",
        )],
        "",
    );
    let vs = vs_named(&t, "orders-moved");
    let rd = vs.http[0].redirect.as_ref().expect("redirect");
    assert_eq!(rd.prefix_rewrite.as_deref(), Some("/v2"));
}

/// A VirtualService the routing filter cannot compile (here a `delegate`
/// route, which the filter does not implement) is dropped alone, with its
/// error in the status; the waypoint's other routes are pushed. It used to
/// make the filter refuse the whole routing configuration.
#[test]
fn a_virtual_service_the_filter_refuses_is_dropped_alone() {
    let t = seed_translation_with(
        &[(
            "08-delegate.yaml",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: orders-delegate, namespace: shop}\n\
             spec:\n  hosts: [orders]\n  http:\n  - match: [{uri: {prefix: /d}}]\n    delegate: {name: other, namespace: shop}\n",
        )],
        "",
    );
    assert!(vs_applied(&t, "orders"));
    assert!(!vs_applied(&t, "orders-delegate"));
    filter_routing_compiles(&routing_config(&t));
    let target =
        operator::translate::status::StatusTarget::new("VirtualService", "shop", "orders-delegate");
    let c = t
        .statuses
        .condition(&target, "Reconciled")
        .expect("a status for the dropped VirtualService");
    assert_eq!(c.reason, "Invalid", "{c:?}");
    assert!(
        c.message
            .contains("HTTP route, redirect or direct_response is required"),
        "the routing filter's own error: {c:?}"
    );
}

fn filter_routing_compiles(cfg: &filter_model::routing::RoutingConfig) {
    let json = serde_json::to_vec(cfg).unwrap();
    assert!(
        filter_routing::Router::from_json(&json).is_ok(),
        "the pushed routing configuration compiles"
    );
}

/// A VirtualService host with a wildcard applies to the services it
/// matches (istiod's `host.Name.Matches`).
#[test]
fn wildcard_virtual_service_hosts_apply() {
    let t = seed_translation_with(
        &[(
            "08-wildcard.yaml",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: all-shop, namespace: shop}\n\
             spec:\n  hosts: [\"*.shop.svc.cluster.local\"]\n  http:\n  - match: [{uri: {prefix: /w}}]\n    directResponse: {status: 204}\n",
        )],
        "",
    );
    let cfg = routing_config(&t);
    for host in [
        "web.shop.svc.cluster.local",
        "orders.shop.svc.cluster.local",
    ] {
        let svc = cfg
            .services
            .iter()
            .find(|s| s.host == host)
            .unwrap_or_else(|| panic!("{host} has routes"));
        assert!(
            svc.virtual_services.iter().any(|v| v.name == "all-shop"),
            "{host}"
        );
    }
}

/// An HTTPRoute in another namespace than the service's and the
/// waypoint's is a consumer route: the waypoint does not apply it.
#[test]
fn consumer_http_routes_are_not_applied_by_the_waypoint() {
    let route = |ns: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r-{ns}, namespace: {ns}}}\n\
             spec:\n  parentRefs: [{{group: \"\", kind: Service, name: web, namespace: shop, port: 80}}]\n  rules:\n\
             \x20 - backendRefs: [{{name: web, namespace: shop, port: 80}}]\n"
        )
    };
    let t = seed_translation_with(
        &[
            ("08-producer.yaml", &route("shop")),
            ("09-consumer.yaml", &route("client")),
        ],
        "",
    );
    let cfg = routing_config(&t);
    let names: Vec<&str> = cfg
        .services
        .iter()
        .flat_map(|s| &s.http_routes)
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, vec!["r-shop"]);
}

/// The deprecated `outlierDetection.consecutiveErrors` is ignored, as
/// istiod ignores it: the 5xx detector keeps Envoy's default of 5 and the
/// gateway-error detector stays off.
#[test]
fn deprecated_consecutive_errors_is_ignored() {
    let o: operator::crd::networking::OutlierDetection =
        serde_json::from_value(serde_json::json!({ "consecutiveErrors": 1 })).unwrap();
    let od = operator::translate::destination::outlier(&o);
    assert_eq!(od.consecutive_5xx_errors, 5);
    assert_eq!(od.consecutive_gateway_errors, 0);
}

/// The seed mesh plus a namespace `other`, not bound to any waypoint, with
/// a `ratings` service.
fn seed_with_other_namespace(
    files: &[(&str, &str)],
) -> std::sync::Arc<operator::translate::Translation> {
    let inv = std::fs::read_to_string(data().join("seed/inventory.yaml"))
        .unwrap()
        .replace(
            "  - name: istio-system\n",
            "  - name: istio-system\n  - name: other\n    labels: {istio.io/dataplane-mode: ambient}\n",
        )
        .replace(
            "services:\n",
            "services:\n  - {name: ratings, namespace: other, vip: 10.96.0.30, selector: {app: ratings}, ports: [{name: http, port: 80, targetPort: 9080}]}\n",
        )
        .replace(
            "workloads:\n",
            "workloads:\n  - {name: ratings-0, namespace: other, serviceAccount: ratings, node: node-2, ip: 10.10.2.9, labels: {app: ratings}, workload: ratings}\n",
        );
    let mut all: Vec<(&str, &str)> = files.to_vec();
    all.push(("inventory.yaml", &inv));
    seed_translation_with(&all, "")
}

/// A route to a service the waypoint does not serve (another namespace's,
/// not bound to it) gets a cluster in the waypoint's configuration, as
/// istiod adds the routes' extra services; the waypoint does not serve
/// it. An HTTPRoute (a mesh route) resolves a backend in another
/// namespace without a ReferenceGrant.
#[test]
fn routes_to_services_not_bound_here_get_clusters() {
    let t = seed_with_other_namespace(&[
        (
            "08-vs.yaml",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: orders-ratings, namespace: shop}\n\
             spec:\n  hosts: [orders]\n  http:\n  - match: [{uri: {prefix: /ratings}}]\n    route: [{destination: {host: ratings.other.svc.cluster.local}}]\n",
        ),
        (
            "09-route.yaml",
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web-route, namespace: shop}\n\
             spec:\n  parentRefs: [{group: \"\", kind: Service, name: web, port: 80}]\n  rules:\n\
             \x20 - backendRefs: [{name: ratings, namespace: other, port: 80}]\n",
        ),
    ]);
    let wp = &t.waypoints[0];
    let ratings = wp
        .services
        .iter()
        .find(|s| s.hostname == "ratings.other.svc.cluster.local")
        .expect("a cluster for the route's destination");
    assert!(ratings.route_only);
    assert_eq!(ratings.endpoints.len(), 1);
    assert_eq!(ratings.endpoints[0].ports.get(&80), Some(&9080));
    for served in [
        "orders.shop.svc.cluster.local",
        "web.shop.svc.cluster.local",
    ] {
        let s = wp.services.iter().find(|s| s.hostname == served).unwrap();
        assert!(!s.route_only, "{served}");
    }
    let cfg = routing_config(&t);
    let backend = cfg
        .services
        .iter()
        .flat_map(|s| &s.http_routes)
        .find(|r| r.name == "web-route")
        .map(|r| r.rules[0].backend_refs[0].host.clone())
        .expect("translated");
    assert_eq!(backend.as_deref(), Some("ratings.other.svc.cluster.local"));
    // Without the routes, no cluster for it.
    let t = seed_with_other_namespace(&[]);
    assert!(
        !t.waypoints[0]
            .services
            .iter()
            .any(|s| s.hostname.starts_with("ratings."))
    );
}

/// The DestinationRule a waypoint applies to a service is the one a proxy
/// of the waypoint's namespace sees (istiod's `destinationRule`): its own
/// namespace's first, then what the service's namespace exports to it; a
/// rule exported only to its own namespace (`exportTo: ["."]`) is not
/// seen from another namespace.
#[test]
fn destination_rules_are_looked_up_from_the_waypoint_namespace() {
    let dr = |ns: &str, export: &str, subset: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: ratings-{ns}, namespace: {ns}}}\n\
             spec:\n  host: ratings.other.svc.cluster.local\n  exportTo: {export}\n  subsets: [{{name: {subset}, labels: {{app: ratings}}}}]\n"
        )
    };
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: orders-ratings, namespace: shop}\n\
              spec:\n  hosts: [orders]\n  http:\n  - match: [{uri: {prefix: /ratings}}]\n    route: [{destination: {host: ratings.other.svc.cluster.local}}]\n";
    let subsets = |t: &operator::translate::Translation| -> Vec<String> {
        t.waypoints[0]
            .services
            .iter()
            .find(|s| s.hostname == "ratings.other.svc.cluster.local")
            .expect("ratings cluster")
            .subsets
            .iter()
            .map(|s| s.name.clone())
            .collect()
    };
    // Private to `other`: the shop waypoint does not see it.
    let t = seed_with_other_namespace(&[
        ("08-vs.yaml", vs),
        ("09-dr.yaml", &dr("other", "[\".\"]", "private")),
    ]);
    assert!(subsets(&t).is_empty(), "{:?}", subsets(&t));
    // Exported to everyone: seen.
    let t = seed_with_other_namespace(&[
        ("08-vs.yaml", vs),
        ("09-dr.yaml", &dr("other", "[\"*\"]", "public")),
    ]);
    assert_eq!(subsets(&t), vec!["public".to_string()]);
    // One in the waypoint's own namespace wins over the service's.
    let t = seed_with_other_namespace(&[
        ("08-vs.yaml", vs),
        ("09-dr.yaml", &dr("other", "[\"*\"]", "public")),
        ("10-dr.yaml", &dr("shop", "[\".\"]", "local")),
    ]);
    assert_eq!(subsets(&t), vec!["local".to_string()]);
}

/// A VirtualService not exported to the waypoint's namespace does not
/// apply there.
#[test]
fn virtual_services_follow_export_to() {
    let vs = |export: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: orders-x, namespace: shop}}\n\
             spec:\n  hosts: [orders]\n  exportTo: {export}\n  http:\n  - match: [{{uri: {{prefix: /x}}}}]\n    directResponse: {{status: 204}}\n"
        )
    };
    for (export, applies) in [("[\".\"]", true), ("[\"*\"]", true), ("[other]", false)] {
        let t = seed_translation_with(&[("08-vs.yaml", &vs(export))], "");
        let found = vs_applied(&t, "orders-x");
        assert_eq!(found, applies, "exportTo {export}");
    }
}

/// Only a name without a dot is short: `orders.shop` is taken as written
/// (istiod's `ResolveShortnameToFQDN`), so a VirtualService for it does
/// not apply to `orders.shop.svc.cluster.local`; `orders` does.
#[test]
fn two_part_hosts_are_not_expanded() {
    let vs = |host: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: orders-h, namespace: shop}}\n\
             spec:\n  hosts: [\"{host}\"]\n  http:\n  - match: [{{uri: {{prefix: /h}}}}]\n    directResponse: {{status: 204}}\n"
        )
    };
    for (host, applies) in [("orders", true), ("orders.shop", false)] {
        let t = seed_translation_with(&[("08-vs.yaml", &vs(host))], "");
        let found = vs_applied(&t, "orders-h");
        assert_eq!(found, applies, "{host}");
    }
}

/// `outlierDetectionHttpErrorCodes` reaches the waypoint's outlier
/// detection (it was dropped by the CRD type).
#[test]
fn outlier_detection_http_error_codes_are_translated() {
    let o: operator::crd::networking::OutlierDetection = serde_json::from_value(
        serde_json::json!({ "consecutive5xxErrors": 3, "outlierDetectionHttpErrorCodes": [429, 503] }),
    )
    .unwrap();
    let od = operator::translate::destination::outlier(&o);
    assert_eq!(od.http_error_codes, vec![429, 503]);
    assert_eq!(od.consecutive_5xx_errors, 3);
}

/// Is the VirtualService `name` in the first waypoint's routing
/// configuration?
fn vs_applied(t: &operator::translate::Translation, name: &str) -> bool {
    routing_config(t)
        .services
        .iter()
        .flat_map(|s| &s.virtual_services)
        .any(|v| v.name == name)
}

/// The VirtualService `name` as pushed to the first waypoint.
fn vs_named(
    t: &operator::translate::Translation,
    name: &str,
) -> filter_model::routing::VirtualServiceRoutes {
    routing_config(t)
        .services
        .into_iter()
        .flat_map(|s| s.virtual_services)
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("{name} translated"))
}
