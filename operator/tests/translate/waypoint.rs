//! Waypoint binding: `istio.io/use-waypoint` and `waypoint-for` (reference §7).

use crate::support::*;

#[test]
fn reference_7_waypoint_binding() {
    let gw = |for_: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: wp, namespace: foo, labels: {{istio.io/waypoint-for: {for_}}}}}\nspec: {{gatewayClassName: istio-waypoint, listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]}}\n"
        )
    };
    let mk = |for_: &str, svc_label: bool, pod_label: bool| {
        let mut cs = cs_with(&gw(for_));
        cs.waypoint_addresses
            .insert("foo/wp".into(), vec!["10.0.9.9".parse().unwrap()]);
        if pod_label {
            cs.pods[0]
                .labels
                .insert("istio.io/use-waypoint".into(), "wp".into());
        }
        let mut labels = BTreeMap::new();
        if svc_label {
            labels.insert("istio.io/use-waypoint".into(), "wp".into());
        }
        cs.services.push(operator::config::ServiceInfo {
            name: "app".into(),
            namespace: "foo".into(),
            labels,
            vips: vec!["10.96.1.1".parse().unwrap()],
            selector: Some(BTreeMap::from([("app".into(), "app".into())])),
            ..Default::default()
        });
        translate(&cs, &TranslateContext::default())
    };
    let t = mk("service", true, false);
    assert!(t.services[0].waypoint.is_some());
    let t = mk("workload", true, true);
    assert!(t.services[0].waypoint.is_none());
    let c = t
        .statuses
        .condition(
            &StatusTarget::new("Service", "foo", "app"),
            "istio.io/WaypointBound",
        )
        .unwrap();
    assert_eq!(
        (c.status, c.reason.as_str(), c.message.as_str()),
        (
            false,
            "UnsupportedTrafficType",
            "attempting to bind to traffic type \"service\" which the waypoint \"foo/wp\" does not support"
        )
    );
    assert!(
        t.workloads[0].waypoint.is_some(),
        "workload waypoint takes pod traffic"
    );
    let t = mk("all", true, true);
    assert!(t.services[0].waypoint.is_some() && t.workloads[0].waypoint.is_some());
    // not ready (no address)
    let mut cs = cs_with(&gw("service"));
    cs.services.push(operator::config::ServiceInfo {
        name: "app".into(),
        namespace: "foo".into(),
        labels: BTreeMap::from([("istio.io/use-waypoint".into(), "wp".into())]),
        ..Default::default()
    });
    let t = translate(&cs, &TranslateContext::default());
    let c = t
        .statuses
        .condition(
            &StatusTarget::new("Service", "foo", "app"),
            "istio.io/WaypointBound",
        )
        .unwrap();
    assert_eq!(
        (c.reason.as_str(), c.message.as_str()),
        ("WaypointIsNotReady", "waypoint \"foo/wp\" is not ready")
    );
}

/// `gateway.istio.io/name-override` names the rendered Deployment and
/// Service and, without `gateway.istio.io/service-account`, the service
/// account (hence the waypoint's SPIFFE identity); pods keep the
/// Gateway's name in `gateway.networking.k8s.io/gateway-name`. A Gateway
/// with a `Hostname` address is not managed (no objects rendered).
#[test]
fn waypoint_name_override_and_unmanaged_gateways() {
    let mut cs = operator::config::ConfigSet::default();
    for o in objects(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: wp, namespace: shop, annotations: {gateway.istio.io/name-override: shop-waypoint}}\n\
         spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: external, namespace: shop}\n\
         spec: {gatewayClassName: istio-waypoint, addresses: [{type: Hostname, value: wp.example.internal}], listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n",
    ) {
        cs.resources.push(o);
    }
    let wps = operator::translate::waypoints::discover(&cs);
    let wp = &wps["shop/wp"];
    assert_eq!(
        (
            wp.deployment_name.as_str(),
            wp.service_account.as_str(),
            wp.managed
        ),
        ("shop-waypoint", "shop-waypoint", true)
    );
    assert!(!wps["shop/external"].managed);
    let (sa, dep, svc) = operator::source::kube::waypoint_objects(wp, &Default::default());
    assert_eq!(sa.metadata.name.as_deref(), Some("shop-waypoint"));
    assert_eq!(dep.metadata.name.as_deref(), Some("shop-waypoint"));
    assert_eq!(svc.metadata.name.as_deref(), Some("shop-waypoint"));
    let selector = svc.spec.unwrap().selector.unwrap();
    assert_eq!(
        selector
            .get("gateway.networking.k8s.io/gateway-name")
            .map(String::as_str),
        Some("wp")
    );
}

/// A pod with an injected sidecar (`sidecar.istio.io/status`) in an
/// ambient namespace is not enrolled: istio-cni does not redirect it, so
/// ztunnel gets it as a plain TCP workload.
#[test]
fn sidecar_injected_pods_are_not_enrolled() {
    let mut cs = cs_with("");
    let enrolled = |cs: &operator::config::ConfigSet| {
        operator::translate::workloads::is_enrolled(cs, &cs.pods[0])
    };
    assert!(enrolled(&cs));
    cs.pods[0].annotations.insert(
        "sidecar.istio.io/status".into(),
        r#"{"containers":["istio-proxy"]}"#.into(),
    );
    assert!(!enrolled(&cs));
    let t = translate(&cs, &TranslateContext::default());
    assert_eq!(
        t.workloads[0].protocol,
        mesh_common::model::TunnelProtocol::Tcp
    );
}

/// `allowedRoutes.namespaces.from: Selector` admits exactly the namespaces
/// the selector matches, the waypoint's own namespace included (istiod's
/// `AllowsAttachmentFromNamespace`).
#[test]
fn allowed_routes_selector_decides_alone() {
    let mut cs = cs_with(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: wp, namespace: foo, labels: {istio.io/waypoint-for: all}}\n\
         spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE, allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {team: pay}}}}}]}\n",
    );
    cs.waypoint_addresses
        .insert("foo/wp".into(), vec!["10.0.9.9".parse().unwrap()]);
    cs.pods[0]
        .labels
        .insert("istio.io/use-waypoint".into(), "wp".into());
    let t = translate(&cs, &TranslateContext::default());
    assert!(
        t.workloads[0].waypoint.is_none(),
        "foo is not selected, even though the waypoint lives there"
    );
    cs.namespaces
        .get_mut("foo")
        .unwrap()
        .labels
        .insert("team".into(), "pay".into());
    let t = translate(&cs, &TranslateContext::default());
    assert_eq!(
        t.workloads[0].waypoint.as_ref().map(|w| w.name.as_str()),
        Some("wp")
    );
}
