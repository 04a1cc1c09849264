//! Table-driven translation over the seed's manifests and Istio's
//! documented examples (reference §1.11, §3, §5.5, §7).

use mesh_common::model::policy::{Decision, evaluate};
use mesh_common::model::{Authorization, Connection, LoadBalancer, TunnelProtocol};
use operator::config::parse::{ParsedDoc, parse_documents};
use operator::config::{ConfigSet, IstioObject, MeshSettings, NamespaceInfo, PodInfo};
use operator::controller::Controller;
use operator::translate::status::StatusTarget;
use operator::translate::{TranslateContext, translate};
use std::collections::BTreeMap;

fn data() -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/data")
}

fn seed() -> (
    std::sync::Arc<Controller>,
    Vec<operator::controller::Diagnostic>,
) {
    let snap = operator::source::file::load(
        &data().join("seed"),
        Some(&data().join("seed/inventory.yaml")),
    )
    .unwrap();
    assert!(snap.parse_errors.is_empty(), "{:?}", snap.parse_errors);
    let c = Controller::new(mesh_common::xds::store::ConfigStore::new());
    let d = c.apply(snap).unwrap();
    (c, d)
}

fn objects(yaml: &str) -> Vec<IstioObject> {
    parse_documents(yaml, "test", "default")
        .into_iter()
        .filter_map(|d| match d.unwrap() {
            ParsedDoc::Object(o) => Some(o),
            _ => None,
        })
        .collect()
}

fn cs_with(yaml: &str) -> ConfigSet {
    let mut cs = ConfigSet::default();
    for ns in ["foo", "bar", "dev", "istio-system"] {
        cs.namespaces.insert(
            ns.into(),
            NamespaceInfo {
                name: ns.into(),
                labels: BTreeMap::from([("istio.io/dataplane-mode".into(), "ambient".into())]),
            },
        );
    }
    cs.pods.push(PodInfo {
        name: "app-0".into(),
        namespace: "foo".into(),
        labels: BTreeMap::from([("app".into(), "app".into())]),
        service_account: "app".into(),
        node: "n1".into(),
        ips: vec!["10.0.0.2".parse().unwrap()],
        ready: true,
        ..Default::default()
    });
    for o in objects(yaml) {
        let v = operator::validate::validate(&o, &cs.mesh);
        assert!(v.is_valid(), "{:?}", v.errors);
        cs.resources.push(o);
    }
    cs
}

fn conn(id: Option<&str>, port: u16) -> Connection {
    Connection {
        src: "10.9.9.9:40000".parse().unwrap(),
        dst: format!("10.0.0.2:{port}").parse().unwrap(),
        src_identity: id.map(|s| format!("spiffe://{s}")),
    }
}

/// Decision at the destination ztunnel for the pod `foo/app-0`.
fn decide(cs: &ConfigSet, c: &Connection) -> Decision {
    let t = translate(cs, &TranslateContext::default());
    let w = t.workloads.iter().find(|w| w.name == "app-0").unwrap();
    let pols: Vec<&Authorization> = t
        .authorizations
        .iter()
        .filter(|p| p.applies_to(&w.namespace, &w.authorization_policies))
        .collect();
    evaluate(pols, c)
}

fn ztunnel_status(cs: &ConfigSet, name: &str) -> (bool, String, String) {
    let t = translate(cs, &TranslateContext::default());
    let c = t
        .statuses
        .condition(
            &StatusTarget::new("AuthorizationPolicy", "foo", name),
            "ZtunnelAccepted",
        )
        .unwrap()
        .clone();
    (c.status, c.reason, c.message)
}

const X: &str = "cluster.local/ns/a/sa/x";

#[test]
fn reference_1_11_ztunnel_table() {
    // (policies, connection, allowed?)
    let cases: Vec<(&str, &str, Connection, bool)> = vec![
        ("A1", "", conn(Some(X), 80), true),
        (
            "A2",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {}\n",
            conn(Some(X), 80),
            false,
        ),
        (
            "A3",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {rules: [{}]}\n",
            conn(None, 80),
            true,
        ),
        (
            "A4",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: foo}\nspec: {action: DENY, rules: [{}]}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: foo}\nspec: {rules: [{}]}\n",
            conn(Some(X), 80),
            false,
        ),
        (
            "A5 allow x",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {rules: [{from: [{source: {principals: [cluster.local/ns/a/sa/x]}}]}]}\n",
            conn(Some(X), 80),
            true,
        ),
        (
            "A5 deny y",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {rules: [{from: [{source: {principals: [cluster.local/ns/a/sa/x]}}]}]}\n",
            conn(Some("cluster.local/ns/a/sa/y"), 80),
            false,
        ),
        (
            "A5 deny plaintext",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {rules: [{from: [{source: {principals: [cluster.local/ns/a/sa/x]}}]}]}\n",
            conn(None, 80),
            false,
        ),
        (
            "A6",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {selector: {matchLabels: {app: app}}, rules: [{from: [{source: {principals: [cluster.local/ns/a/sa/x]}}], to: [{operation: {methods: [GET]}}]}]}\n",
            conn(Some(X), 80),
            false,
        ),
        (
            "A7",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {action: DENY, rules: [{from: [{source: {namespaces: [dev]}}], to: [{operation: {methods: [POST], ports: [\"8080\"]}}]}]}\n",
            conn(Some("cluster.local/ns/dev/sa/z"), 8080),
            false,
        ),
        (
            "A7 other port",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {action: DENY, rules: [{from: [{source: {namespaces: [dev]}}], to: [{operation: {methods: [POST], ports: [\"8080\"]}}]}]}\n",
            conn(Some("cluster.local/ns/dev/sa/z"), 9090),
            true,
        ),
        (
            "A8",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {action: DENY, rules: [{to: [{operation: {methods: [POST]}}]}]}\n",
            conn(Some(X), 80),
            true,
        ),
        (
            "A9",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {action: DENY, rules: [{from: [{source: {namespaces: [a]}}, {source: {requestPrincipals: [x]}}]}]}\n",
            conn(Some("cluster.local/ns/b/sa/z"), 80),
            true,
        ),
        (
            "A10 prod-eu",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {rules: [{from: [{source: {namespaces: [\"prod-*\"]}}]}]}\n",
            conn(Some("cluster.local/ns/prod-eu/sa/z"), 80),
            true,
        ),
        (
            "A10 prod",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {rules: [{from: [{source: {namespaces: [\"prod-*\"]}}]}]}\n",
            conn(Some("cluster.local/ns/prod/sa/z"), 80),
            false,
        ),
        (
            "A10 plaintext",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {rules: [{from: [{source: {namespaces: [\"prod-*\"]}}]}]}\n",
            conn(None, 80),
            false,
        ),
        (
            "A11",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {action: DENY, rules: [{from: [{source: {notNamespaces: [foo]}}]}]}\n",
            conn(None, 80),
            false,
        ),
        (
            "A17",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {selector: {matchLabels: {app: app}}, rules: [{from: [{source: {trustDomains: [td1]}}]}]}\n",
            conn(Some("td1/ns/a/sa/x"), 80),
            false,
        ),
        (
            "mesh-wide deny in root",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: istio-system}\nspec: {action: DENY, rules: [{from: [{source: {principals: [\"*/sa/x\"]}}]}]}\n",
            conn(Some(X), 80),
            false,
        ),
        (
            "other namespace policy ignored",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: bar}\nspec: {}\n",
            conn(Some(X), 80),
            true,
        ),
        (
            "when destination.port",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {rules: [{when: [{key: destination.port, values: [\"8080\"]}]}]}\n",
            conn(Some(X), 8080),
            true,
        ),
        (
            "when source.ip notValues",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {rules: [{when: [{key: source.ip, notValues: [10.9.0.0/16]}]}]}\n",
            conn(Some(X), 80),
            false,
        ),
        (
            "serviceAccounts bare name uses policy namespace",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {rules: [{from: [{source: {serviceAccounts: [x]}}]}]}\n",
            conn(Some("cluster.local/ns/foo/sa/x"), 80),
            true,
        ),
        (
            "serviceAccounts ignores trust domain",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {rules: [{from: [{source: {serviceAccounts: [a/x]}}]}]}\n",
            conn(Some("other.td/ns/a/sa/x"), 80),
            true,
        ),
        (
            "targetRefs policy not sent to ztunnel",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {targetRefs: [{kind: Service, group: \"\", name: app}]}\n",
            conn(Some(X), 80),
            true,
        ),
        (
            "remoteIpBlocks is HTTP at ztunnel (ALLOW rule dropped)",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {rules: [{from: [{source: {remoteIpBlocks: [10.9.9.9]}}]}]}\n",
            conn(Some(X), 80),
            false,
        ),
    ];
    for (name, yaml, c, allowed) in cases {
        let cs = cs_with(yaml);
        let d = decide(&cs, &c);
        assert_eq!(d.is_allowed(), allowed, "{name}: {d:?}");
    }
}

#[test]
fn reference_1_7_status_messages() {
    let cs = cs_with(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a6, namespace: foo}\nspec: {selector: {matchLabels: {app: app}}, rules: [{from: [{source: {principals: [x]}}], to: [{operation: {methods: [GET], paths: [/x]}}]}]}\n",
    );
    assert_eq!(
        ztunnel_status(&cs, "a6"),
        (true, "UnsupportedValue".into(), "ztunnel does not support HTTP attributes (found: methods, paths). In ambient mode you must use a waypoint proxy to enforce HTTP rules. Within an ALLOW policy, rules matching HTTP attributes are omitted. This will be more restrictive than requested.".into())
    );
    let cs = cs_with(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a7, namespace: foo}\nspec: {action: DENY, rules: [{from: [{source: {namespaces: [dev]}}], to: [{operation: {methods: [POST], ports: [\"8080\"]}}]}]}\n",
    );
    assert!(ztunnel_status(&cs, "a7").2.ends_with("DENY policy with HTTP attributes is enforced without the HTTP rules. This will be more restrictive than requested."));
    let cs = cs_with(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a8, namespace: foo}\nspec: {action: DENY, rules: [{to: [{operation: {methods: [POST]}}], when: [{key: \"request.headers[x-a]\", values: [b]}]}]}\n",
    );
    let (_, _, m) = ztunnel_status(&cs, "a8");
    assert!(
        m.starts_with(
            "ztunnel does not support HTTP attributes (found: methods, request.headers[x-a])."
        ),
        "{m}"
    );
    assert!(m.ends_with("After omitting unsupported HTTP attributes, this DENY policy has no enforceable rules at ztunnel and will have no effect. Deploy a waypoint proxy and use a targetRef to enforce this policy."));
    let cs = cs_with(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: c, namespace: foo}\nspec: {action: CUSTOM, provider: {name: x}, rules: [{}]}\n",
    );
    assert_eq!(
        ztunnel_status(&cs, "c"),
        (
            false,
            "UnsupportedValue".into(),
            "ztunnel does not support the CUSTOM action".into()
        )
    );
    let cs = cs_with(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ok, namespace: foo}\nspec: {rules: [{from: [{source: {namespaces: [dev]}}]}]}\n",
    );
    assert_eq!(
        ztunnel_status(&cs, "ok"),
        (true, "Accepted".into(), "attached to ztunnel".into())
    );
    let cs = cs_with(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: dry, namespace: foo, annotations: {istio.io/dry-run: \"true\"}}\nspec: {action: DENY, rules: [{}]}\n",
    );
    let (ok, reason, m) = ztunnel_status(&cs, "dry");
    assert!(
        !ok && reason == "UnsupportedValue" && m.contains("dry-run"),
        "{m}"
    );
    assert!(
        decide(&cs, &conn(Some(X), 80)).is_allowed(),
        "dry-run DENY not sent"
    );
}

#[test]
fn reference_3_peer_authentication() {
    let pa = |ns: &str, name: &str, body: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {body}\n---\n"
        )
    };
    // mesh STRICT: plaintext denied, any mesh identity passes
    let cs = cs_with(&pa("istio-system", "default", "{mtls: {mode: STRICT}}"));
    assert!(!decide(&cs, &conn(None, 80)).is_allowed());
    assert!(decide(&cs, &conn(Some(X), 80)).is_allowed());
    // mesh STRICT + namespace PERMISSIVE ⇒ plaintext allowed
    let cs = cs_with(
        &(pa("istio-system", "default", "{mtls: {mode: STRICT}}")
            + &pa("foo", "ns", "{mtls: {mode: PERMISSIVE}}")),
    );
    assert!(decide(&cs, &conn(None, 80)).is_allowed());
    // workload STRICT + 8080 PERMISSIVE
    let cs = cs_with(&pa(
        "foo",
        "w",
        "{selector: {matchLabels: {app: app}}, mtls: {mode: STRICT}, portLevelMtls: {\"8080\": {mode: PERMISSIVE}}}",
    ));
    assert!(decide(&cs, &conn(None, 8080)).is_allowed());
    match decide(&cs, &conn(None, 9090)) {
        Decision::DeniedBy(p) => assert_eq!(p, "foo/converted_peer_authentication_w"),
        d => panic!("expected deny, got {d:?}"),
    }
    // mesh STRICT + workload DISABLE ⇒ plaintext allowed (ambient)
    let cs = cs_with(
        &(pa("istio-system", "default", "{mtls: {mode: STRICT}}")
            + &pa(
                "foo",
                "w",
                "{selector: {matchLabels: {app: app}}, mtls: {mode: DISABLE}}",
            )),
    );
    assert!(decide(&cs, &conn(None, 80)).is_allowed());
    // PERMISSIVE + 9000 STRICT
    let cs = cs_with(&pa(
        "foo",
        "w",
        "{selector: {matchLabels: {app: app}}, mtls: {mode: PERMISSIVE}, portLevelMtls: {\"9000\": {mode: STRICT}}}",
    ));
    assert!(!decide(&cs, &conn(None, 9000)).is_allowed());
    assert!(decide(&cs, &conn(None, 80)).is_allowed());
    // namespace STRICT, workload UNSET with 8080 PERMISSIVE: merged policy replaces static strict
    let cs = cs_with(
        &(pa("foo", "ns", "{mtls: {mode: STRICT}}")
            + &pa(
                "foo",
                "w",
                "{selector: {matchLabels: {app: app}}, portLevelMtls: {\"8080\": {mode: PERMISSIVE}}}",
            )),
    );
    let t = translate(&cs, &TranslateContext::default());
    let w = t.workloads.iter().find(|w| w.name == "app-0").unwrap();
    assert_eq!(
        w.authorization_policies,
        vec!["foo/converted_peer_authentication_w".to_string()]
    );
    assert!(decide(&cs, &conn(None, 8080)).is_allowed());
    assert!(!decide(&cs, &conn(None, 81)).is_allowed());
}

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
        vec!["https://accounts.example.com/.well-known/jwks.json"]
    );
}

#[test]
fn seed_sharp_edge_fault_with_retries_is_rejected_and_last_good_kept() {
    let (c, _) = seed();
    let mut snap = operator::source::file::load(
        &data().join("seed"),
        Some(&data().join("seed/inventory.yaml")),
    )
    .unwrap();
    let bad = objects(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: orders-fault, namespace: shop}\nspec:\n  hosts: [orders.shop.svc.cluster.local]\n  http:\n  - fault: {abort: {httpStatus: 500, percentage: {value: 100}}}\n    retries: {attempts: 3}\n    route: [{destination: {host: orders.shop.svc.cluster.local}}]\n",
    );
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
    // Istio itself accepts the combination: the setting turns the rule off.
    let mesh = MeshSettings {
        reject_fault_with_retries: false,
        ..Default::default()
    };
    assert!(operator::validate::validate(&bad[0], &mesh).is_valid());
}

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
    let dr =
        operator::translate::destination::find(&cs, "app.foo.svc.cluster.local", "foo").unwrap();
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

#[test]
fn auto_allow_waypoint_policy_lets_the_waypoint_reach_its_workloads() {
    let (c, _) = seed();
    let mut cs = (*c.config().unwrap()).clone();
    cs.mesh.auto_allow_waypoint_policy = true;
    let t = translate(&cs, &TranslateContext::default());
    let orders = t
        .workloads
        .iter()
        .find(|w| w.name == "orders-v1-0")
        .unwrap();
    assert!(
        orders
            .authorization_policies
            .contains(&"shop/istio_allow_waypoint_shop_waypoint".to_string())
    );
    let pols: Vec<&Authorization> = t
        .authorizations
        .iter()
        .filter(|p| p.applies_to("shop", &orders.authorization_policies))
        .collect();
    let from_wp = Connection {
        src: "10.10.3.1:5000".parse().unwrap(),
        dst: "10.10.2.2:8080".parse().unwrap(),
        src_identity: Some("spiffe://cluster.local/ns/shop/sa/waypoint".into()),
    };
    assert!(evaluate(pols.clone(), &from_wp).is_allowed());
    // Off (Istio's default): the destination ztunnel sees the waypoint identity and the seed's L4 allow does not cover it.
    let t = translate(&c.config().unwrap(), &TranslateContext::default());
    let orders = t
        .workloads
        .iter()
        .find(|w| w.name == "orders-v1-0")
        .unwrap();
    let pols: Vec<&Authorization> = t
        .authorizations
        .iter()
        .filter(|p| p.applies_to("shop", &orders.authorization_policies))
        .collect();
    assert!(!evaluate(pols, &from_wp).is_allowed());
}

#[test]
fn policy_only_change_takes_the_fast_path_with_the_same_result() {
    let (c, _) = seed();
    let mut snap = operator::source::file::load(
        &data().join("seed"),
        Some(&data().join("seed/inventory.yaml")),
    )
    .unwrap();
    for so in &mut snap.objects {
        if let IstioObject::AuthorizationPolicy(ap) = &mut so.object
            && ap.metadata.name.as_deref() == Some("orders-allow-web")
        {
            ap.spec.rules.as_mut().unwrap()[0].from.as_mut().unwrap()[0]
                .source
                .as_mut()
                .unwrap()
                .principals = Some(vec!["cluster.local/ns/shop/sa/probe".into()]);
        }
    }
    c.apply(snap).unwrap();
    assert!(c.stats().fast_path);
    let fast = c.translation().unwrap();
    let full = translate(&c.config().unwrap(), &c.context());
    assert_eq!(fast.authorizations, full.authorizations);
    assert_eq!(*fast.workloads, *full.workloads);
    assert!(format!("{:?}", fast.authorizations).contains("sa/probe"));
    // A selector change is not policy-only: full path.
    let mut snap = operator::source::file::load(
        &data().join("seed"),
        Some(&data().join("seed/inventory.yaml")),
    )
    .unwrap();
    for so in &mut snap.objects {
        if let IstioObject::AuthorizationPolicy(ap) = &mut so.object
            && ap.metadata.name.as_deref() == Some("orders-allow-web")
        {
            ap.spec.selector = None;
        }
    }
    c.apply(snap).unwrap();
    assert!(!c.stats().fast_path);
}

/// Tracing providers: an `opentelemetry` provider without `http` is
/// OTLP/gRPC (Istio's default), with `http` it is OTLP/HTTP on its path.
#[test]
fn tracing_provider_protocol_follows_the_extension_provider() {
    for (provider, want) in [
        (
            "{service: otel.istio-system.svc.cluster.local, port: 4317}",
            "grpc://otel.istio-system.svc.cluster.local:4317",
        ),
        (
            "{service: otel.istio-system.svc.cluster.local, port: 4318, http: {path: /v1/traces}}",
            "http://otel.istio-system.svc.cluster.local:4318/v1/traces",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(data().join("seed")).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
        let inv = dir.path().join("inventory.yaml");
        let mut text = std::fs::read_to_string(&inv).unwrap();
        text.push_str(&format!(
            "meshConfig:\n  extensionProviders:\n  - name: otel\n    opentelemetry: {provider}\n"
        ));
        std::fs::write(&inv, text).unwrap();
        std::fs::write(
            dir.path().join("07-telemetry.yaml"),
            "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh-default, namespace: istio-system}\n\
             spec:\n  tracing:\n  - providers: [{name: otel}]\n    randomSamplingPercentage: 5.0\n",
        )
        .unwrap();
        let snap = operator::source::file::load(dir.path(), Some(&inv)).unwrap();
        assert!(snap.parse_errors.is_empty(), "{:?}", snap.parse_errors);
        let c = Controller::new(mesh_common::xds::store::ConfigStore::new());
        c.apply(snap).unwrap();
        let t = c.translation().unwrap();
        assert_eq!(
            t.waypoints[0].telemetry.tracing.otlp_endpoint.as_deref(),
            Some(want),
            "{provider}"
        );
    }
}

/// VirtualService `tcp` routes reach the waypoint next to the `http` ones
/// (destination hosts resolved to FQDNs), for the waypoint's TCP path.
#[test]
fn virtual_service_tcp_routes_are_translated() {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(data().join("seed")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        dir.path().join("08-tcp.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: orders-tcp, namespace: shop}\n\
         spec:\n  hosts: [orders]\n  tcp:\n  - match: [{port: 5432}]\n    route:\n    - {destination: {host: orders, subset: v1}, weight: 80}\n    - {destination: {host: orders, subset: v2}, weight: 20}\n",
    )
    .unwrap();
    let inv = dir.path().join("inventory.yaml");
    let snap = operator::source::file::load(dir.path(), Some(&inv)).unwrap();
    assert!(snap.parse_errors.is_empty(), "{:?}", snap.parse_errors);
    let c = Controller::new(mesh_common::xds::store::ConfigStore::new());
    c.apply(snap).unwrap();
    let t = c.translation().unwrap();
    let routing = t.waypoints[0]
        .filters
        .iter()
        .find(|f| f.name == "routing")
        .unwrap();
    let cfg: filter_model::routing::RoutingConfig =
        serde_json::from_value(routing.config.clone()).unwrap();
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
