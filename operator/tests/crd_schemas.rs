//! Every example (seed + Istio docs) is accepted by the official CRD
//! schemas, by the operator's types, and by the CRDs the operator ships;
//! documents the official schemas reject are rejected too; the shipped CRDs
//! cover every property of the official ones.

mod support;

use operator::config::parse::{ParsedDoc, parse_value};
use serde_json::{Value, json};
use support::*;

fn ours() -> Vec<Value> {
    operator::crd::all_crds()
        .into_iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .collect()
}

fn gvk(doc: &Value) -> (String, String, String) {
    let av = doc["apiVersion"].as_str().unwrap();
    let (g, v) = av.rsplit_once('/').unwrap();
    (g.into(), v.into(), doc["kind"].as_str().unwrap().into())
}

#[test]
fn examples_accepted_by_official_schemas_our_types_and_our_crds() {
    let official = official_crds();
    let ours = ours();
    let mut count = 0;
    for f in example_files() {
        for doc in yaml_docs(&f) {
            let (g, v, k) = gvk(&doc);
            let name = format!("{} {k} {}", f.display(), doc["metadata"]["name"]);
            let s = schema_for(&official, &g, &v, &k)
                .unwrap_or_else(|| panic!("no official schema for {g}/{v} {k}"));
            let errs = check_document(s, &doc);
            assert!(errs.is_empty(), "official schema rejects {name}: {errs:?}");
            let parsed = parse_value(doc.clone(), &name, "default")
                .unwrap_or_else(|e| panic!("our types reject {name}: {e}"));
            let ParsedDoc::Object(obj) = parsed else {
                panic!("{name} not read as a resource")
            };
            // Round trip through our types and check against our CRD.
            let back = obj.to_value();
            let ours_schema = schema_for(&ours, &g, &v, &k)
                .unwrap_or_else(|| panic!("we ship no CRD for {g}/{v} {k}"));
            let errs = check_document(ours_schema, &back);
            assert!(errs.is_empty(), "our CRD rejects {name}: {errs:?}");
            // Nothing the user wrote is lost in the round trip.
            assert_eq!(
                strip_nulls(back["spec"].clone()),
                strip_nulls(doc.get("spec").cloned().unwrap_or(json!({}))),
                "{name}: spec changed in round trip"
            );
            count += 1;
        }
    }
    assert!(count >= 25, "only {count} documents checked");
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        Value::Number(n) => {
            // 5.0 and 5 are the same number for the schema.
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => json!(f as i64),
                _ => Value::Number(n),
            }
        }
        v => v,
    }
}

#[test]
fn documents_rejected_by_official_schemas_are_rejected() {
    let official = official_crds();
    let mesh = operator::config::MeshSettings::default();
    let cases = [
        json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "a", "namespace": "n"}, "spec": {"action": "PERMIT"}}),
        json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "a", "namespace": "n"}, "spec": {"rules": "everything"}}),
        json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "a", "namespace": "n"}, "spec": {"mtls": {"mode": "ON"}}}),
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "a", "namespace": "n"}, "spec": {"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a"}, "weight": "ninety"}]}]}}),
        json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "a", "namespace": "n"}, "spec": {"host": "a", "trafficPolicy": {"loadBalancer": {"simple": "FASTEST"}}}}),
        json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "a", "namespace": "n"}, "spec": {"host": "a", "subsets": [{"labels": {"v": "1"}}]}}),
        json!({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin", "metadata": {"name": "a", "namespace": "n"}, "spec": {"url": "file:///x.wasm", "phase": "EARLY"}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "a", "namespace": "n"}, "spec": {"gatewayClassName": "istio-waypoint", "listeners": [{"name": "mesh", "port": 70000, "protocol": "HBONE"}]}}),
        json!({"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry", "metadata": {"name": "a", "namespace": "n"}, "spec": {"tracing": [{"randomSamplingPercentage": 150}]}}),
    ];
    for doc in cases {
        let (g, v, k) = gvk(&doc);
        let s = schema_for(&official, &g, &v, &k).unwrap();
        assert!(
            !check_document(s, &doc).is_empty(),
            "official schema should reject {doc}"
        );
        let rejected = match parse_value(doc.clone(), "case", "default") {
            Err(_) => true,
            Ok(ParsedDoc::Object(o)) => !operator::validate::validate(&o, &mesh).is_valid(),
            Ok(_) => false,
        };
        assert!(
            rejected,
            "the operator accepts what the official schema rejects: {doc}"
        );
    }
}

#[test]
fn shipped_crds_cover_every_official_property() {
    let official = official_crds();
    let ours = ours();
    let kinds = [
        ("security.istio.io", "v1", "AuthorizationPolicy"),
        ("security.istio.io", "v1", "PeerAuthentication"),
        ("security.istio.io", "v1", "RequestAuthentication"),
        ("networking.istio.io", "v1", "VirtualService"),
        ("networking.istio.io", "v1", "DestinationRule"),
        ("telemetry.istio.io", "v1", "Telemetry"),
        ("extensions.istio.io", "v1alpha1", "WasmPlugin"),
        ("gateway.networking.k8s.io", "v1", "GatewayClass"),
        ("gateway.networking.k8s.io", "v1", "Gateway"),
        ("gateway.networking.k8s.io", "v1", "HTTPRoute"),
    ];
    let mut missing = Vec::new();
    for (g, v, k) in kinds {
        let o = schema_for(&official, g, v, k).unwrap();
        let m = schema_for(&ours, g, v, k).unwrap();
        let (mut op, mut mp) = (Vec::new(), Vec::new());
        property_paths(&o["properties"]["spec"], "spec", &mut op);
        property_paths(&m["properties"]["spec"], "spec", &mut mp);
        let preserved: Vec<&String> = mp.iter().filter(|(_, p)| *p).map(|(p, _)| p).collect();
        for (p, _) in &op {
            let covered = mp.iter().any(|(x, _)| x == p)
                || preserved.iter().any(|x| p.starts_with(x.as_str()));
            if !covered {
                missing.push(format!("{k}: {p}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "properties of the official CRDs missing from ours:\n{}",
        missing.join("\n")
    );
}

#[test]
fn crdgen_output_is_checked_in_and_current() {
    let generated = operator::crd::crdgen().unwrap();
    let path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("crds/crds.yaml");
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "operator/crds/crds.yaml is stale: run `cargo run -p operator -- crdgen > operator/crds/crds.yaml`"
    );
}
