//! The seed guide's manifests translate as Istio would.

use crate::support::*;

#[test]
fn seed_translates_like_istio() {
    let (c, diags) = seed();
    let t = c.translation().unwrap();
    assert!(
        diags
            .iter()
            .all(|d| d.severity != operator::controller::Severity::Error),
        "{diags:?}"
    );
    // ztunnel view
    assert_eq!(t.workloads.len(), 4);
    assert!(
        t.workloads
            .iter()
            .all(|w| w.protocol == TunnelProtocol::Hbone)
    );
    let orders = t
        .workloads
        .iter()
        .find(|w| w.name == "orders-v1-0")
        .unwrap();
    assert_eq!(
        orders.authorization_policies,
        vec![
            "istio-system/istio_converted_static_strict".to_string(),
            "shop/orders-allow-web".to_string()
        ]
    );
    assert_eq!(orders.canonical_revision, "v1");
    assert!(
        orders.waypoint.is_none(),
        "service waypoint does not take pod traffic"
    );
    let names: Vec<String> = t
        .authorizations
        .iter()
        .map(|a| format!("{}/{}", a.namespace, a.name))
        .collect();
    assert_eq!(
        names,
        vec![
            "shop/deny-all",
            "shop/orders-allow-web",
            "istio-system/istio_converted_static_strict"
        ]
    );
    let orders_svc = t.services.iter().find(|s| s.name == "orders").unwrap();
    let wp = orders_svc.waypoint.as_ref().unwrap();
    assert_eq!(
        (
            wp.name.as_str(),
            wp.addresses[0].to_string().as_str(),
            wp.identity.as_str()
        ),
        (
            "waypoint",
            "10.10.3.1",
            "spiffe://cluster.local/ns/shop/sa/waypoint"
        )
    );
    assert_eq!(orders_svc.endpoints.len(), 2);
    assert_eq!(orders_svc.endpoints[0].ports[&80], 8080);
    // web → orders allowed, probe → orders denied (L4)
    let pols: Vec<&Authorization> = t
        .authorizations
        .iter()
        .filter(|p| p.applies_to("shop", &orders.authorization_policies))
        .collect();
    let c1 = Connection {
        src: "10.10.1.2:5000".parse().unwrap(),
        dst: "10.10.2.2:8080".parse().unwrap(),
        src_identity: Some("spiffe://cluster.local/ns/shop/sa/web".into()),
    };
    assert!(evaluate(pols.clone(), &c1).is_allowed());
    let c2 = Connection {
        src_identity: Some("spiffe://cluster.local/ns/shop/sa/probe".into()),
        ..c1.clone()
    };
    assert_eq!(evaluate(pols.clone(), &c2), Decision::NotAllowed);
    let c3 = Connection {
        src_identity: None,
        ..c1
    };
    assert_eq!(
        evaluate(pols, &c3),
        Decision::DeniedBy("istio-system/istio_converted_static_strict".into())
    );
    // statuses
    let st = |k: &str, ns: &str, n: &str, ty: &str| {
        t.statuses
            .condition(&StatusTarget::new(k, ns, n), ty)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        st(
            "AuthorizationPolicy",
            "shop",
            "orders-l7",
            "WaypointAccepted"
        )
        .message,
        "bound to shop/waypoint"
    );
    assert_eq!(
        st("AuthorizationPolicy", "shop", "deny-all", "ZtunnelAccepted").message,
        "attached to ztunnel"
    );
    assert_eq!(
        st("Service", "shop", "orders", "istio.io/WaypointBound").message,
        "Successfully attached to waypoint shop/waypoint"
    );
    // waypoint view
    let w = &t.waypoints[0];
    assert_eq!(
        (w.namespace.as_str(), w.name.as_str()),
        ("shop", "waypoint")
    );
    let so = w.service("orders.shop.svc.cluster.local").unwrap();
    assert_eq!(
        so.subsets
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        vec!["v1", "v2"]
    );
    assert_eq!(so.subset_endpoints(Some("v2")).count(), 1);
    let p = so.traffic_policy(80, Some("v2"));
    assert_eq!(p.connection_pool.max_connections, Some(100));
    assert_eq!(p.connection_pool.http2_max_requests, Some(200));
    assert_eq!(p.load_balancer, LoadBalancer::LeastRequest);
    let od = p.outlier_detection.unwrap();
    assert_eq!(
        (
            od.consecutive_5xx_errors,
            od.max_ejection_percent,
            od.base_ejection_time.as_secs()
        ),
        (5, 50, 30)
    );
    let chain: Vec<&str> = w.filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(chain, vec!["jwt", "authz", "routing", "fault", "retry"]);
    let authz: filter_model::authz::AuthzConfig =
        serde_json::from_value(w.filters[1].config.clone()).unwrap();
    assert_eq!(authz.policies.len(), 2);
    assert!(
        authz
            .policies
            .iter()
            .all(|p| p.target_services == vec!["orders.shop.svc.cluster.local".to_string()])
    );
    let jwt: filter_model::jwt::JwtConfig =
        serde_json::from_value(w.filters[0].config.clone()).unwrap();
    assert_eq!(
        jwt.request_authentications[0].jwt_rules[0].jwks, r#"{"keys":[]}"#,
        "unfetched JWKS fails closed"
    );
    let routing: filter_model::routing::RoutingConfig =
        serde_json::from_value(w.filters[2].config.clone()).unwrap();
    let svc = &routing.services[0];
    assert_eq!(
        svc.virtual_services
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>(),
        vec!["orders", "orders-fault", "orders-resilience"]
    );
    assert_eq!(svc.virtual_services[0].http[1].route[1].weight, 10);
    let retry: filter_model::retry::RetryConfig =
        serde_json::from_value(w.filters[4].config.clone()).unwrap();
    let r = &retry.routes["vs:shop/orders-resilience#0"];
    assert_eq!(r.timeout.unwrap().as_millis(), 2000);
    assert_eq!(r.retries.as_ref().unwrap().attempts, 3);
    assert!(w.telemetry.access_log.enabled);
    assert_eq!(w.telemetry.tracing.sampling_percentage, 5.0);
    assert_eq!(
        t.wanted_jwks.iter().collect::<Vec<_>>(),
        vec![(
            &"https://accounts.example.com/.well-known/jwks.json".to_string(),
            &std::time::Duration::from_secs(5)
        )],
        "fetched with Istio's default 5s timeout"
    );
}

#[test]
fn fault_with_retries_is_valid_as_in_istio_and_the_seed_rule_is_opt_in() {
    let bad = objects(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: orders-fault, namespace: shop}\nspec:\n  hosts: [orders.shop.svc.cluster.local]\n  http:\n  - fault: {abort: {httpStatus: 500, percentage: {value: 100}}}\n    retries: {attempts: 3}\n    route: [{destination: {host: orders.shop.svc.cluster.local}}]\n",
    );
    // Istio accepts the combination (reference §4.5, §4.7, §10.3).
    assert!(operator::validate::validate(&bad[0], &MeshSettings::default()).is_valid());

    // With the seed guide's rule turned on, the route is refused and the
    // last good version keeps serving.
    let (c, _) = seed();
    let mut snap = operator::source::file::load(
        &data().join("seed"),
        Some(&data().join("seed/inventory.yaml")),
    )
    .unwrap();
    snap.base.mesh.reject_fault_with_retries = true;
    for so in &mut snap.objects {
        if so.object.key().name == "orders-fault" {
            so.object = bad[0].clone();
        }
    }
    let diags = c.apply(snap).unwrap();
    let d = diags
        .iter()
        .find(|d| d.severity == operator::controller::Severity::Error)
        .expect("rejected");
    assert!(d.message.starts_with("HTTP route 0 combines fault injection with retries: move the fault into its own VirtualService"), "{d}");
    assert!(d.message.ends_with("keeping the last good version"), "{d}");
    let t = c.translation().unwrap();
    let routing: filter_model::routing::RoutingConfig =
        serde_json::from_value(t.waypoints[0].filters[2].config.clone()).unwrap();
    let fault_vs = routing.services[0]
        .virtual_services
        .iter()
        .find(|v| v.name == "orders-fault")
        .unwrap();
    let abort = fault_vs.http[0]
        .fault
        .as_ref()
        .unwrap()
        .abort
        .as_ref()
        .unwrap();
    assert_eq!(
        abort.http_status,
        Some(503),
        "previous version still served"
    );
}

/// A rule's `timeout` bounds the operator's JWKS fetch for its source.
#[test]
fn jwt_rule_timeout_bounds_the_jwks_fetch() {
    let t = seed_translation_with(
        &[(
            "09-ra-timeout.yaml",
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: slow, namespace: shop}\n\
         spec:\n  targetRefs: [{kind: Service, group: \"\", name: orders}]\n  jwtRules: [{issuer: https://slow.example, jwksUri: https://slow.example/jwks, timeout: 1500ms}]\n",
        )],
        "",
    );
    assert_eq!(
        t.wanted_jwks.get("https://slow.example/jwks"),
        Some(&std::time::Duration::from_millis(1500))
    );
}
