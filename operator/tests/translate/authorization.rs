//! L4 authorization as ztunnel enforces it (reference §1.7, §1.11), the
//! waypoint's auto-allow policy, and policy-only changes.

use crate::support::*;

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

#[test]
fn a_gateway_ref_attaches_to_the_whole_waypoint_whatever_the_ref_order() {
    for refs in [
        "[{kind: Service, group: \"\", name: orders}, {kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]",
        "[{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}, {kind: Service, group: \"\", name: orders}]",
    ] {
        let (c, _) = seed();
        let mut snap = operator::source::file::load(
            &data().join("seed"),
            Some(&data().join("seed/inventory.yaml")),
        )
        .unwrap();
        let extra = objects(&format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: both, namespace: shop}}\nspec:\n  targetRefs: {refs}\n  action: DENY\n  rules: [{{to: [{{operation: {{paths: [/admin]}}}}]}}]\n"
        ));
        snap.objects.push(operator::controller::SourcedObject {
            object: extra[0].clone(),
            origin: None,
        });
        c.apply(snap).unwrap();
        let t = c.translation().unwrap();
        let authz: filter_model::authz::AuthzConfig =
            serde_json::from_value(t.waypoints[0].filters[1].config.clone()).unwrap();
        let p = authz
            .policies
            .iter()
            .find(|p| p.name == "both")
            .expect("policy attached");
        assert!(
            p.target_services.is_empty(),
            "{refs}: the Gateway ref covers every service of the waypoint, got {:?}",
            p.target_services
        );
    }
}

/// CUSTOM policies run before JWT validation (Istio's waypoint chain:
/// ext_authz → jwt_authn → RBAC), in the authz filter's ext-authz build
/// with the provider's upstream; AUDIT/DENY/ALLOW stay after JWT.
#[test]
fn custom_policies_run_first_in_the_ext_authz_build() {
    let t = seed_translation_with(
        &[(
            "90-custom.yaml",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ext-check, namespace: shop}\n\
         spec:\n  targetRefs: [{kind: Service, group: \"\", name: orders}]\n  action: CUSTOM\n  provider: {name: ext}\n  rules: [{to: [{operation: {paths: [/admin/*]}}]}]\n",
        )],
        "meshConfig:\n  extensionProviders:\n  - name: ext\n    envoyExtAuthzHttp: {service: authz.shop.svc.cluster.local, port: 8000}\n",
    );
    let w = &t.waypoints[0];
    let chain: Vec<&str> = w.filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        chain,
        vec!["authz-custom", "jwt", "authz", "routing", "fault", "retry"]
    );
    let custom = &w.filters[0];
    assert!(
        custom.module.url.ends_with("authz-ext"),
        "{:?}",
        custom.module
    );
    assert!(custom.capabilities.iter().any(|c| c == "outbound-http"));
    assert_eq!(
        custom.upstreams.get("ext").map(String::as_str),
        Some("http://authz.shop.svc.cluster.local:8000")
    );
    let cfg: filter_model::authz::AuthzConfig =
        serde_json::from_value(custom.config.clone()).unwrap();
    assert_eq!(
        cfg.policies
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        vec!["ext-check"]
    );
    assert_eq!(cfg.providers.len(), 1);
    let rest: filter_model::authz::AuthzConfig =
        serde_json::from_value(w.filters[2].config.clone()).unwrap();
    assert!(
        rest.policies
            .iter()
            .all(|p| p.action != filter_model::authz::Action::Custom)
    );
    assert!(!rest.policies.is_empty());
    assert!(
        !w.filters[2]
            .capabilities
            .iter()
            .any(|c| c == "outbound-http")
    );
}

/// `selector: {}` (no `matchLabels`) attaches a policy to no workload at
/// ztunnel, as istiod's `buildWorkloadPolicies` requires a label selector;
/// `matchLabels: {}` attaches it to every workload of the namespace.
#[test]
fn an_empty_selector_attaches_to_no_workload_at_ztunnel() {
    let deny = |selector: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: d, namespace: foo}}\nspec: {{selector: {selector}, action: DENY, rules: [{{}}]}}\n"
        )
    };
    let cs = cs_with(&deny("{}"));
    assert_eq!(decide(&cs, &conn(Some(X), 80)), Decision::Allow(None));
    let cs = cs_with(&deny("{matchLabels: {}}"));
    assert_eq!(
        decide(&cs, &conn(Some(X), 80)),
        Decision::DeniedBy("foo/d".into())
    );
}
