//! `meshctl filter push|list|rollout|rollback`: WebAssembly filters as
//! WasmPlugin resources handed to the operator (file mode), which fetches,
//! digest-checks and delivers them to the waypoints they target, where they
//! are hot-swapped (canary percentage and automatic rollback included).

use crate::admin;
use crate::cluster::manifest;
use crate::cluster::store::{Store, load_objects};
use crate::cmd::{FilterCmd, FilterList, FilterPush, FilterRollback, FilterRollout};
use crate::context::{RunDir, write_atomic};
use crate::mesh::Mesh;
use crate::output::{Format, Table, print_structured, short_digest};
use anyhow::{Context, bail};
use operator::config::IstioObject;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One pushed version (history for rollback).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    /// Module URL.
    pub url: String,
    /// SHA-256.
    pub sha256: Option<String>,
    /// pluginConfig.
    pub config: Value,
}

fn history_file(rd: &RunDir, ns: &str, name: &str) -> PathBuf {
    rd.filters_dir().join(format!("{ns}.{name}.history.json"))
}

fn load_history(rd: &RunDir, ns: &str, name: &str) -> Vec<Version> {
    std::fs::read(history_file(rd, ns, name))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_history(rd: &RunDir, ns: &str, name: &str, h: &[Version]) -> anyhow::Result<()> {
    write_atomic(&history_file(rd, ns, name), &serde_json::to_vec_pretty(h)?)?;
    Ok(())
}

/// Resolve `--file`: a path, or a guest name in the build manifest.
pub fn module_path(file: &str) -> anyhow::Result<PathBuf> {
    let p = PathBuf::from(file);
    if p.is_file() {
        return Ok(p);
    }
    let manifest = crate::mesh::up::default_filters_dir().join("manifest.json");
    let m: Value = std::fs::read(&manifest)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    match m.pointer(&format!("/{file}/path")).and_then(Value::as_str) {
        Some(path) => Ok(PathBuf::from(path)),
        None => bail!(
            "{file:?} is neither a file nor a guest in {} (build guests with scripts/build-guests.sh)",
            manifest.display()
        ),
    }
}

fn target_ref(target: &str) -> anyhow::Result<Value> {
    let (kind, name) = target
        .split_once('/')
        .context("--target must be gateway/<name> or service/<name>")?;
    Ok(match kind.to_ascii_lowercase().as_str() {
        "gateway" | "gw" => {
            json!({"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": name})
        }
        "service" | "svc" => json!({"kind": "Service", "group": "", "name": name}),
        _ => bail!("--target must be gateway/<name> or service/<name>"),
    })
}

fn find_plugin(rd: &RunDir, ns: &str, name: &str) -> anyhow::Result<Option<Value>> {
    Ok(load_objects(rd)?.into_iter().find_map(|o| match o {
        IstioObject::WasmPlugin(p)
            if p.metadata.namespace.as_deref() == Some(ns)
                && p.metadata.name.as_deref() == Some(name) =>
        {
            serde_json::to_value(&p).ok()
        }
        _ => None,
    }))
}

fn apply_value(rd: &RunDir, v: Value, ns: &str) -> anyhow::Result<String> {
    let doc = manifest::parse_doc(v, "meshctl filter", ns)?;
    let mut store = Store::open(rd)?;
    let lines = store.apply(vec![doc])?;
    store.commit()?;
    Ok(lines.join("\n"))
}

async fn push(rd: &RunDir, a: &FilterPush) -> anyhow::Result<i32> {
    let ns = a.ns.namespace.as_str();
    let (url, sha) = match (&a.file, &a.url) {
        (Some(f), _) => {
            let src = module_path(f)?;
            let bytes =
                std::fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
            let sha = hex::encode(sha2::Sha256::digest(&bytes));
            let dst = rd.filters_dir().join("modules").join(format!("{sha}.wasm"));
            if !dst.exists() {
                write_atomic(&dst, &bytes)?;
            }
            (format!("file://{}", dst.display()), Some(sha))
        }
        (None, Some(u)) => (u.clone(), a.sha256.clone()),
        (None, None) => {
            bail!("give the module: --file <path or guest name> or --url <url> [--sha256 <hex>]")
        }
    };
    let config: Value = match &a.config {
        Some(c) => serde_json::from_str(c).context("--config must be JSON")?,
        None => Value::Null,
    };
    let mut spec = json!({"targetRefs": [target_ref(&a.target)?], "url": url, "failStrategy": if a.fail_open { "FAIL_OPEN" } else { "FAIL_CLOSE" }});
    if let Some(s) = &sha {
        spec["sha256"] = json!(s);
    }
    if !config.is_null() {
        spec["pluginConfig"] = config.clone();
    }
    if let Some(p) = &a.phase {
        spec["phase"] = json!(p);
    }
    if let Some(p) = a.priority {
        spec["priority"] = json!(p);
    }
    spec["capabilities"] = if a.capabilities.is_empty() {
        json!(["log", "metrics"])
    } else {
        json!(a.capabilities)
    };
    if a.memory.is_some() || a.cpu.is_some() {
        spec["limits"] = json!({"memory": a.memory, "cpu": a.cpu});
    }
    if let Some(c) = a.canary {
        spec["rollout"] = json!({"canaryPercentage": c});
    }
    let v = json!({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin", "metadata": {"name": a.name, "namespace": ns}, "spec": spec});
    let mut hist = load_history(rd, ns, &a.name);
    let version = Version {
        url: url.clone(),
        sha256: sha.clone(),
        config,
    };
    if hist.last() != Some(&version) {
        hist.push(version);
    }
    println!("{}", apply_value(rd, v, ns)?);
    save_history(rd, ns, &a.name, &hist)?;
    println!(
        "filter {ns}/{} → {} ({})",
        a.name,
        a.target,
        sha.as_deref()
            .map(short_digest)
            .unwrap_or_else(|| url.clone())
    );
    if a.wait
        && let Some(sha) = &sha
    {
        wait_running(
            rd,
            &format!("{ns}/{}", a.name),
            sha,
            Duration::from_secs(60),
        )
        .await?;
        println!(
            "✅ every waypoint serving {ns}/{} runs {}",
            a.name,
            short_digest(sha)
        );
    }
    Ok(0)
}

/// The name a waypoint's filter runtime gives a chain entry
/// (`shop/lang-tag` → `shop.lang-tag`).
pub use mesh_common::model::runtime_filter_name as runtime_name;

/// What one waypoint runs for each filter: name → (digest, canary digest, canary percent).
pub async fn running(mesh: &Mesh) -> Vec<(String, String, String, Option<(String, f64)>)> {
    let mut out = Vec::new();
    for w in mesh.waypoints() {
        let Ok(v) = admin::get_json(&Mesh::waypoint(&w, 15000), "/filters").await else {
            continue;
        };
        for ch in v
            .get("chains")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for f in ch
                .get("filters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = f
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let digest = f
                    .get("digest")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let canary = f.get("canary").filter(|c| !c.is_null()).map(|c| {
                    (
                        c.get("digest")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        c.get("percent").and_then(Value::as_f64).unwrap_or(0.0),
                    )
                });
                let wp = format!("{}/{}", w.namespace, w.name);
                if !out
                    .iter()
                    .any(|(x, n, d, _): &(String, String, String, _)| {
                        x == &wp && n == &name && d == &digest
                    })
                {
                    out.push((wp, name, digest, canary));
                }
            }
        }
    }
    out
}

async fn wait_running(rd: &RunDir, key: &str, sha: &str, timeout: Duration) -> anyhow::Result<()> {
    let mesh = Mesh::open(rd)?;
    let deadline = Instant::now() + timeout;
    loop {
        let r = running(&mesh).await;
        let want = runtime_name(key);
        let mine: Vec<_> = r.iter().filter(|(_, n, _, _)| *n == want).collect();
        if !mine.is_empty()
            && mine.iter().all(|(_, _, d, c)| {
                d.trim_start_matches("sha256:") == sha
                    || c.as_ref()
                        .is_some_and(|(cd, _)| cd.trim_start_matches("sha256:") == sha)
            })
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "timed out: no waypoint runs {key} {} yet (see `meshctl logs deploy/waypoint -n <ns>` and the operator log)",
                short_digest(sha)
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn list(rd: &RunDir, a: &FilterList) -> anyhow::Result<i32> {
    let plugins: Vec<Value> = load_objects(rd)?
        .into_iter()
        .filter_map(|o| match o {
            IstioObject::WasmPlugin(p)
                if a.all_namespaces
                    || p.metadata.namespace.as_deref() == Some(a.ns.namespace.as_str()) =>
            {
                serde_json::to_value(&p).ok()
            }
            _ => None,
        })
        .collect();
    let running = match Mesh::open(rd) {
        Ok(m) => running(&m).await,
        Err(_) => Vec::new(),
    };
    if a.out.output != Format::Table {
        let live: Vec<Value> = running.iter().map(|(w, n, d, c)| json!({"waypoint": w, "filter": n, "digest": d, "canary": c.as_ref().map(|(d, p)| json!({"digest": d, "percent": p}))})).collect();
        print_structured(
            &json!({"wasmPlugins": plugins, "running": live}),
            a.out.output,
        )?;
        return Ok(0);
    }
    let mut t = Table::new(&[
        "NAMESPACE",
        "NAME",
        "TARGET",
        "SHA256",
        "CANARY",
        "RUNNING ON",
    ]);
    for p in &plugins {
        let ns = p
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let name = p
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let target = p
            .pointer("/spec/targetRefs/0")
            .map(|r| {
                format!(
                    "{}/{}",
                    r.get("kind")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_lowercase(),
                    r.get("name").and_then(Value::as_str).unwrap_or_default()
                )
            })
            .unwrap_or_else(|| "-".into());
        let sha = p
            .pointer("/spec/sha256")
            .and_then(Value::as_str)
            .map(short_digest)
            .unwrap_or_else(|| "-".into());
        let canary = p
            .pointer("/spec/rollout/canaryPercentage")
            .and_then(Value::as_f64)
            .filter(|c| *c < 100.0)
            .map(|c| format!("{c}%"))
            .unwrap_or_else(|| "-".into());
        let key = runtime_name(&format!("{ns}/{name}"));
        let on: Vec<String> = running
            .iter()
            .filter(|(_, n, _, _)| n == &key)
            .map(|(w, _, d, c)| match c {
                Some((cd, pct)) => format!(
                    "{w} {} + {} {pct}%",
                    short_digest(d.trim_start_matches("sha256:")),
                    short_digest(cd.trim_start_matches("sha256:"))
                ),
                None => format!("{w} {}", short_digest(d.trim_start_matches("sha256:"))),
            })
            .collect();
        t.row([
            ns.to_string(),
            name.to_string(),
            target,
            sha,
            canary,
            if on.is_empty() {
                "-".into()
            } else {
                on.join(", ")
            },
        ]);
    }
    if t.is_empty() {
        println!("No filters found.");
    } else {
        t.print();
    }
    Ok(0)
}

fn rollout(rd: &RunDir, a: &FilterRollout) -> anyhow::Result<i32> {
    let ns = a.ns.namespace.as_str();
    if !(0.0..=100.0).contains(&a.percent) {
        bail!("--percent must be between 0 and 100");
    }
    let mut v = find_plugin(rd, ns, &a.name)?.with_context(|| {
        format!(
            "no filter {ns}/{} (see `meshctl filter list -n {ns}`)",
            a.name
        )
    })?;
    if a.percent >= 100.0 {
        if let Some(s) = v.get_mut("spec").and_then(Value::as_object_mut) {
            s.remove("rollout");
        }
    } else {
        v["spec"]["rollout"] = json!({"canaryPercentage": a.percent});
    }
    println!("{}", apply_value(rd, v, ns)?);
    println!(
        "filter {ns}/{}: new version on {}% of requests",
        a.name,
        a.percent.min(100.0)
    );
    Ok(0)
}

fn rollback(rd: &RunDir, a: &FilterRollback) -> anyhow::Result<i32> {
    let ns = a.ns.namespace.as_str();
    let mut hist = load_history(rd, ns, &a.name);
    if hist.len() < 2 {
        bail!(
            "filter {ns}/{} has no previous version to roll back to",
            a.name
        );
    }
    hist.pop();
    let prev = hist.last().cloned().context("history")?;
    let mut v =
        find_plugin(rd, ns, &a.name)?.with_context(|| format!("no filter {ns}/{}", a.name))?;
    let spec = v
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .context("WasmPlugin without spec")?;
    spec.insert("url".into(), json!(prev.url));
    match &prev.sha256 {
        Some(s) => spec.insert("sha256".into(), json!(s)),
        None => spec.remove("sha256"),
    };
    if prev.config.is_null() {
        spec.remove("pluginConfig");
    } else {
        spec.insert("pluginConfig".into(), prev.config.clone());
    }
    spec.remove("rollout");
    println!("{}", apply_value(rd, v, ns)?);
    save_history(rd, ns, &a.name, &hist)?;
    println!(
        "filter {ns}/{} rolled back to {}",
        a.name,
        prev.sha256.as_deref().map(short_digest).unwrap_or(prev.url)
    );
    Ok(0)
}

/// Dispatch.
pub async fn run(rd: &RunDir, c: FilterCmd) -> anyhow::Result<i32> {
    match c {
        FilterCmd::Push(a) => push(rd, &a).await,
        FilterCmd::List(a) => list(rd, &a).await,
        FilterCmd::Rollout(a) => rollout(rd, &a),
        FilterCmd::Rollback(a) => rollback(rd, &a),
    }
}
