//! Helpers shared by the translation tests: the seed manifests, config
//! sets built from YAML, and L4 decisions.

pub use mesh_common::model::policy::{Decision, evaluate};
pub use mesh_common::model::{Authorization, Connection, LoadBalancer, TunnelProtocol};
pub use operator::config::parse::{ParsedDoc, parse_documents};
pub use operator::config::{ConfigSet, IstioObject, MeshSettings, NamespaceInfo, PodInfo};
pub use operator::controller::Controller;
pub use operator::translate::status::StatusTarget;
pub use operator::translate::{TranslateContext, translate};
pub use std::collections::BTreeMap;

pub fn data() -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/data")
}

pub fn seed() -> (
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

pub fn objects(yaml: &str) -> Vec<IstioObject> {
    parse_documents(yaml, "test", "default")
        .into_iter()
        .filter_map(|d| match d.unwrap() {
            ParsedDoc::Object(o) => Some(o),
            _ => None,
        })
        .collect()
}

pub fn cs_with(yaml: &str) -> ConfigSet {
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

pub fn conn(id: Option<&str>, port: u16) -> Connection {
    Connection {
        src: "10.9.9.9:40000".parse().unwrap(),
        dst: format!("10.0.0.2:{port}").parse().unwrap(),
        src_identity: id.map(|s| format!("spiffe://{s}")),
    }
}

/// Decision at the destination ztunnel for the pod `foo/app-0`.
pub fn decide(cs: &ConfigSet, c: &Connection) -> Decision {
    let t = translate(cs, &TranslateContext::default());
    let w = t.workloads.iter().find(|w| w.name == "app-0").unwrap();
    let pols: Vec<&Authorization> = t
        .authorizations
        .iter()
        .filter(|p| p.applies_to(&w.namespace, &w.authorization_policies))
        .collect();
    evaluate(pols, c)
}

pub fn ztunnel_status(cs: &ConfigSet, name: &str) -> (bool, String, String) {
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

pub const X: &str = "cluster.local/ns/a/sa/x";

/// The seed mesh (`tests/data/seed`) with `files` added next to it and
/// `inventory_extra` appended to its inventory, loaded and translated.
pub fn seed_translation_with(
    files: &[(&str, &str)],
    inventory_extra: &str,
) -> std::sync::Arc<operator::translate::Translation> {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(data().join("seed")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let inv = dir.path().join("inventory.yaml");
    if !inventory_extra.is_empty() {
        let mut text = std::fs::read_to_string(&inv).unwrap();
        text.push_str(inventory_extra);
        std::fs::write(&inv, text).unwrap();
    }
    let snap = operator::source::file::load(dir.path(), Some(&inv)).unwrap();
    assert!(snap.parse_errors.is_empty(), "{:?}", snap.parse_errors);
    let c = Controller::new(mesh_common::xds::store::ConfigStore::new());
    c.apply(snap).unwrap();
    c.translation().unwrap()
}

/// The routing filter's configuration in the first waypoint of `t`.
pub fn routing_config(
    t: &operator::translate::Translation,
) -> filter_model::routing::RoutingConfig {
    let routing = t.waypoints[0]
        .filters
        .iter()
        .find(|f| f.name == "routing")
        .expect("routing filter in the chain");
    serde_json::from_value(routing.config.clone()).unwrap()
}
