//! Test support: a structural OpenAPI v3 checker (what kube-apiserver checks
//! before CEL rules, with strict field validation as `kubectl apply` uses)
//! and loaders for the official CRDs under `../shared/crds` (read in place,
//! never copied).
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};

/// Where the official CRDs live.
pub fn crds_dir() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../shared/crds")
}

/// All CRD documents in a YAML file.
pub fn load_crds(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .filter(|v: &Value| {
            v.get("kind").and_then(|k| k.as_str()) == Some("CustomResourceDefinition")
        })
        .collect()
}

/// Every official CRD.
pub fn official_crds() -> Vec<Value> {
    let mut out = load_crds(&crds_dir().join("istio-1.30.3-crd-all.gen.yaml"));
    let mut files: Vec<_> = std::fs::read_dir(crds_dir().join("gateway-api-v1.6.1"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files {
        out.extend(load_crds(&f));
    }
    out
}

/// The schema of `group/version` `kind` in a CRD list.
pub fn schema_for<'a>(
    crds: &'a [Value],
    group: &str,
    version: &str,
    kind: &str,
) -> Option<&'a Value> {
    crds.iter()
        .filter(|c| {
            c.pointer("/spec/group").and_then(|g| g.as_str()) == Some(group)
                && c.pointer("/spec/names/kind").and_then(|k| k.as_str()) == Some(kind)
        })
        .flat_map(|c| {
            c.pointer("/spec/versions")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
        })
        .find(|v| v.get("name").and_then(|n| n.as_str()) == Some(version))
        .and_then(|v| v.pointer("/schema/openAPIV3Schema"))
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

/// Check `v` against `s`; errors carry JSON paths.
pub fn check(s: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    if v.is_null() {
        if s.get("nullable") == Some(&Value::Bool(true)) {
            return;
        }
        // apiserver drops nulls of optional fields in most cases; treat as absent.
        return;
    }
    let int_or_string = s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if int_or_string {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            errs.push(format!("{path}: must be integer or string"));
        }
    } else if let Some(t) = s.get("type").and_then(|t| t.as_str())
        && !type_ok(t, v)
    {
        errs.push(format!("{path}: expected {t}, got {v}"));
        return;
    }
    for comb in ["allOf"] {
        for sub in s.get(comb).and_then(|a| a.as_array()).into_iter().flatten() {
            check(sub, v, path, errs);
        }
    }
    if let Some(one) = s.get("oneOf").and_then(|a| a.as_array()) {
        let n = one.iter().filter(|sub| valid(sub, v)).count();
        if n != 1 {
            errs.push(format!(
                "{path}: must match exactly one of oneOf ({n} matched)"
            ));
        }
    }
    if let Some(any) = s.get("anyOf").and_then(|a| a.as_array())
        && !int_or_string
        && !any.iter().any(|sub| valid(sub, v))
    {
        errs.push(format!("{path}: must match anyOf"));
    }
    if let Some(not) = s.get("not")
        && valid(not, v)
    {
        errs.push(format!("{path}: must not match {not}"));
    }
    if let Some(e) = s.get("enum").and_then(|e| e.as_array())
        && !e.contains(v)
    {
        errs.push(format!("{path}: {v} not in enum {e:?}"));
    }
    if let Some(str_) = v.as_str() {
        if let Some(m) = s.get("maxLength").and_then(|m| m.as_u64())
            && str_.chars().count() as u64 > m
        {
            errs.push(format!("{path}: longer than {m}"));
        }
        if let Some(m) = s.get("minLength").and_then(|m| m.as_u64())
            && (str_.chars().count() as u64) < m
        {
            errs.push(format!("{path}: shorter than {m}"));
        }
        if let Some(p) = s.get("pattern").and_then(|p| p.as_str())
            && let Ok(re) = regex::Regex::new(p)
            && !re.is_match(str_)
        {
            errs.push(format!("{path}: {str_:?} does not match {p}"));
        }
    }
    if let Some(n) = v.as_f64() {
        if let Some(m) = s.get("minimum").and_then(|m| m.as_f64())
            && n < m
        {
            errs.push(format!("{path}: {n} < minimum {m}"));
        }
        if let Some(m) = s.get("maximum").and_then(|m| m.as_f64())
            && n > m
        {
            errs.push(format!("{path}: {n} > maximum {m}"));
        }
    }
    if let Some(a) = v.as_array() {
        if let Some(m) = s.get("maxItems").and_then(|m| m.as_u64())
            && a.len() as u64 > m
        {
            errs.push(format!("{path}: more than {m} items"));
        }
        if let Some(m) = s.get("minItems").and_then(|m| m.as_u64())
            && (a.len() as u64) < m
        {
            errs.push(format!("{path}: fewer than {m} items"));
        }
        if let Some(items) = s.get("items") {
            for (i, x) in a.iter().enumerate() {
                check(items, x, &format!("{path}[{i}]"), errs);
            }
        }
    }
    if let Some(o) = v.as_object() {
        for r in s
            .get("required")
            .and_then(|r| r.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(r) = r.as_str()
                && !o.contains_key(r)
            {
                errs.push(format!("{path}: missing required field {r:?}"));
            }
        }
        if let Some(m) = s.get("maxProperties").and_then(|m| m.as_u64())
            && o.len() as u64 > m
        {
            errs.push(format!("{path}: more than {m} properties"));
        }
        if let Some(m) = s.get("minProperties").and_then(|m| m.as_u64())
            && (o.len() as u64) < m
        {
            errs.push(format!("{path}: fewer than {m} properties"));
        }
        let preserve = s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        let props = s.get("properties").and_then(|p| p.as_object());
        let addl = s.get("additionalProperties");
        for (k, x) in o {
            let p = format!("{path}.{k}");
            if let Some(ps) = props.and_then(|p| p.get(k)) {
                check(ps, x, &p, errs);
            } else if let Some(a) = addl.filter(|a| a.is_object()) {
                check(a, x, &p, errs);
            } else if !preserve && (props.is_some() || addl.is_some()) {
                errs.push(format!("{p}: unknown field"));
            }
        }
    }
}

/// Does `v` satisfy `s`?
pub fn valid(s: &Value, v: &Value) -> bool {
    let mut e = Vec::new();
    check(s, v, "", &mut e);
    e.is_empty()
}

/// Validate a whole document (`metadata` is not checked) against a schema.
pub fn check_document(schema: &Value, doc: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let mut d = doc.clone();
    if let Some(o) = d.as_object_mut() {
        o.remove("metadata");
        o.remove("apiVersion");
        o.remove("kind");
    }
    let mut s = schema.clone();
    if let Some(p) = s.get_mut("properties").and_then(|p| p.as_object_mut()) {
        p.remove("metadata");
        p.remove("apiVersion");
        p.remove("kind");
    }
    check(&s, &d, "", &mut errs);
    errs
}

/// Property paths of a schema (`spec.a.b[]`), stopping under
/// preserve-unknown-fields.
pub fn property_paths(s: &Value, path: &str, out: &mut Vec<(String, bool)>) {
    let preserve = s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    out.push((path.to_string(), preserve));
    if let Some(p) = s.get("properties").and_then(|p| p.as_object()) {
        for (k, v) in p {
            property_paths(v, &format!("{path}.{k}"), out);
        }
    }
    if let Some(i) = s.get("items") {
        property_paths(i, &format!("{path}[]"), out);
    }
    if let Some(a) = s.get("additionalProperties").filter(|a| a.is_object()) {
        property_paths(a, &format!("{path}{{}}"), out);
    }
}

/// Multi-doc YAML file → JSON values.
pub fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The seed and example documents.
pub fn example_files() -> Vec<PathBuf> {
    let data = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/data");
    let mut v: Vec<PathBuf> = std::fs::read_dir(data.join("seed"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    v.retain(|p| !p.ends_with("inventory.yaml"));
    v.sort();
    v.push(data.join("istio-examples.yaml"));
    v
}
