//! `meshctl waypoint apply|generate|list|delete|status` with istioctl's
//! flags, messages and tables (istio-semantics §7.3), against the local
//! mesh's configuration.

use crate::cluster::store::{Store, load_objects};
use crate::cluster::{DATAPLANE_MODE, USE_WAYPOINT};
use crate::cmd::{
    WaypointApply, WaypointCmd, WaypointDelete, WaypointGenerate, WaypointList, WaypointStatus,
};
use crate::context::RunDir;
use crate::mesh::{Mesh, ObjectStatus, conditions_of};
use crate::output::{Format, Table, print_structured};
use anyhow::bail;
use operator::config::IstioObject;
use std::time::{Duration, Instant};

/// Class of waypoint Gateways.
pub const WAYPOINT_CLASS: &str = "istio-waypoint";
/// Label of the traffic type.
pub const WAYPOINT_FOR: &str = "istio.io/waypoint-for";
/// Revision label.
pub const REV: &str = "istio.io/rev";
const VALID: [&str; 4] = ["all", "none", "service", "workload"];

/// The Gateway YAML `istioctl waypoint generate` prints (keys sorted, as
/// sigs.k8s.io/yaml writes them).
pub fn gateway_yaml(
    name: &str,
    namespace: Option<&str>,
    traffic_type: Option<&str>,
    revision: Option<&str>,
) -> Result<String, String> {
    let name = if name.is_empty() { "waypoint" } else { name };
    if name == "none" {
        return Err("invalid name provided for waypoint, 'none' is a reserved value".into());
    }
    let mut labels = Vec::new();
    if let Some(t) = traffic_type.filter(|t| !t.is_empty()) {
        if !VALID.contains(&t) {
            return Err(format!(
                "invalid traffic type: {t}. Valid options are: [{}]",
                VALID.join(" ")
            ));
        }
        labels.push((WAYPOINT_FOR, t));
    }
    if let Some(r) = revision.filter(|r| !r.is_empty()) {
        labels.push((REV, r));
    }
    labels.sort();
    let mut y =
        String::from("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n");
    if !labels.is_empty() {
        y.push_str("  labels:\n");
        for (k, v) in labels {
            y.push_str(&format!("    {k}: {v}\n"));
        }
    }
    y.push_str(&format!("  name: {name}\n"));
    if let Some(ns) = namespace.filter(|n| !n.is_empty()) {
        y.push_str(&format!("  namespace: {ns}\n"));
    }
    y.push_str("spec:\n  gatewayClassName: istio-waypoint\n  listeners:\n  - name: mesh\n    port: 15008\n    protocol: HBONE\n");
    Ok(y)
}

/// A waypoint Gateway of the local mesh.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WaypointView {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Revision (`default`).
    pub revision: String,
    /// `istio.io/waypoint-for` (`none` when absent, as istioctl shows it).
    pub traffic_type: String,
    /// Programmed status.
    pub programmed: String,
    /// Programmed condition, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<crate::mesh::Condition>,
}

/// Waypoint Gateways in the config directory, with their status.
pub fn waypoints(rd: &RunDir, statuses: &[ObjectStatus]) -> anyhow::Result<Vec<WaypointView>> {
    let mut out = Vec::new();
    for o in load_objects(rd)? {
        let IstioObject::Gateway(g) = o else { continue };
        if g.spec.gateway_class_name != WAYPOINT_CLASS {
            continue;
        }
        let ns = g.metadata.namespace.clone().unwrap_or_default();
        let name = g.metadata.name.clone().unwrap_or_default();
        let labels = g.metadata.labels.clone().unwrap_or_default();
        let cond = conditions_of(statuses, "Gateway", &ns, &name)
            .iter()
            .find(|c| c.type_ == "Programmed")
            .cloned();
        out.push(WaypointView {
            revision: labels.get(REV).cloned().unwrap_or_else(|| "default".into()),
            traffic_type: labels
                .get(WAYPOINT_FOR)
                .cloned()
                .unwrap_or_else(|| "none".into()),
            programmed: cond
                .as_ref()
                .map(|c| c.status_str().to_string())
                .unwrap_or_else(|| "False".into()),
            condition: cond,
            namespace: ns,
            name,
        });
    }
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(out)
}

async fn statuses(rd: &RunDir) -> Vec<ObjectStatus> {
    match Mesh::open(rd) {
        Ok(m) => m.statuses().await.unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// Dispatch.
pub async fn run(rd: &RunDir, c: WaypointCmd) -> anyhow::Result<i32> {
    match c {
        WaypointCmd::Generate(a) => generate(&a),
        WaypointCmd::Apply(a) => apply(rd, &a).await,
        WaypointCmd::List(a) => list(rd, &a).await,
        WaypointCmd::Delete(a) => delete(rd, &a),
        WaypointCmd::Status(a) => status(rd, &a).await,
    }
}

fn generate(a: &WaypointGenerate) -> anyhow::Result<i32> {
    match gateway_yaml(
        &a.name,
        a.namespace.as_deref(),
        a.traffic_type.as_deref(),
        a.revision.as_deref(),
    ) {
        Ok(y) => {
            print!("{y}");
            Ok(0)
        }
        Err(e) => bail!("failed to create gateway: {e}"),
    }
}

async fn apply(rd: &RunDir, a: &WaypointApply) -> anyhow::Result<i32> {
    let ns = a.ns.namespace.clone();
    let yaml = gateway_yaml(
        &a.name,
        Some(&ns),
        a.traffic_type.as_deref(),
        a.revision.as_deref(),
    )
    .map_err(|e| anyhow::anyhow!("failed to create gateway: {e}"))?;
    let mut store = Store::open(rd)?;
    let Some(ns_labels) = store.cluster.namespaces.get(&ns).cloned() else {
        bail!("namespace: {ns} not found");
    };
    let has_waypoint = ns_labels.get(USE_WAYPOINT).is_some_and(|v| !v.is_empty());
    if a.enroll_namespace {
        if !a.overwrite && has_waypoint {
            println!(
                "⚠️ Warning: namespace ({ns}) already has an enrolled Waypoint. Consider adding the `--overwrite` flag to your apply command."
            );
            return Ok(0);
        }
        if ns_labels.get(DATAPLANE_MODE).map(String::as_str) != Some("ambient") {
            println!(
                "⚠️ Warning: namespace is not enrolled in ambient. Consider running\t`meshctl label namespace {ns} istio.io/dataplane-mode=ambient`"
            );
        }
    }
    let docs = crate::cluster::manifest::parse_text(&yaml, "waypoint", &ns)?;
    store.apply(docs)?;
    store.commit()?;
    let name = if a.name.is_empty() {
        "waypoint"
    } else {
        a.name.as_str()
    };
    println!("✅ waypoint {ns}/{name} applied");
    if a.wait {
        let deadline = Instant::now() + a.waypoint_timeout;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let st = statuses(rd).await;
            if conditions_of(&st, "Gateway", &ns, name)
                .iter()
                .any(|c| c.type_ == "Programmed" && c.status)
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("timed out while waiting for waypoint\t{ns}/{name}");
            }
        }
        println!("✅ waypoint {ns}/{name} is ready!");
    }
    if a.enroll_namespace {
        let mut store = Store::open(rd)?;
        store.label(
            "namespace",
            "",
            &ns,
            &[format!("{USE_WAYPOINT}={name}")],
            true,
        )?;
        store.commit()?;
        println!("✅ namespace {ns} labeled with \"{USE_WAYPOINT}: {name}\"");
    }
    Ok(0)
}

async fn list(rd: &RunDir, a: &WaypointList) -> anyhow::Result<i32> {
    let all = waypoints(rd, &statuses(rd).await)?;
    let shown: Vec<WaypointView> = all
        .into_iter()
        .filter(|w| a.all_namespaces || w.namespace == a.ns.namespace)
        .collect();
    if a.out.output != Format::Table {
        print_structured(&shown, a.out.output)?;
        return Ok(0);
    }
    if shown.is_empty() {
        println!("No waypoints found.");
        return Ok(0);
    }
    let mut t = if a.all_namespaces {
        Table::new(&[
            "NAMESPACE",
            "NAME",
            "REVISION",
            "TRAFFIC TYPE",
            "PROGRAMMED",
        ])
    } else {
        Table::new(&["NAME", "REVISION", "TRAFFIC TYPE", "PROGRAMMED"])
    };
    for w in shown {
        if a.all_namespaces {
            t.row([
                w.namespace,
                w.name,
                w.revision,
                w.traffic_type,
                w.programmed,
            ]);
        } else {
            t.row([w.name, w.revision, w.traffic_type, w.programmed]);
        }
    }
    t.print();
    Ok(0)
}

fn delete(rd: &RunDir, a: &WaypointDelete) -> anyhow::Result<i32> {
    let by_all = a.all || a.revision.is_some();
    if by_all && !a.names.is_empty() {
        bail!("cannot specify waypoint names when deleting all waypoints");
    }
    if !by_all && a.names.is_empty() {
        bail!(
            "must specify a waypoint name or delete all using --all or delete specific revision using --revision"
        );
    }
    let ns = &a.ns.namespace;
    let existing: Vec<WaypointView> = waypoints(rd, &[])?
        .into_iter()
        .filter(|w| &w.namespace == ns)
        .collect();
    let targets: Vec<String> = if by_all {
        existing
            .iter()
            .filter(|w| a.revision.as_ref().is_none_or(|r| &w.revision == r))
            .map(|w| w.name.clone())
            .collect()
    } else {
        let mut v = Vec::new();
        for n in &a.names {
            if existing.iter().any(|w| &w.name == n) {
                v.push(n.clone());
            } else {
                println!("waypoint {ns}/{n} not found");
            }
        }
        v
    };
    let mut store = Store::open(rd)?;
    for n in targets {
        match store.delete("Gateway", ns, &n) {
            Ok(()) => println!("waypoint {ns}/{n} deleted"),
            Err(_) => println!("waypoint {ns}/{n} not found"),
        }
    }
    store.commit()?;
    Ok(0)
}

async fn status(rd: &RunDir, a: &WaypointStatus) -> anyhow::Result<i32> {
    let deadline = Instant::now() + a.waypoint_timeout;
    let namespace = (!a.all_namespaces).then_some(a.namespace.as_str());
    loop {
        let all: Vec<WaypointView> = waypoints(rd, &statuses(rd).await)?
            .into_iter()
            .filter(|w| {
                namespace.is_none_or(|n| w.namespace == n)
                    && a.name.as_ref().is_none_or(|n| &w.name == n)
            })
            .collect();
        if all.is_empty() {
            println!("No waypoints found.");
            return Ok(0);
        }
        let ready = all.iter().all(|w| w.programmed == "True");
        if ready || !a.wait || Instant::now() > deadline {
            let mut t = if namespace.is_none() {
                Table::new(&["NAMESPACE", "NAME", "STATUS", "TYPE", "REASON", "MESSAGE"])
            } else {
                Table::new(&["NAME", "STATUS", "TYPE", "REASON", "MESSAGE"])
            };
            for w in &all {
                let (s, ty, r, m) = match &w.condition {
                    Some(c) => (
                        c.status_str().to_string(),
                        c.type_.clone(),
                        c.reason.clone(),
                        c.message.clone(),
                    ),
                    None => (
                        "False".into(),
                        "Programmed".into(),
                        "Pending".into(),
                        "no status yet (is the local mesh up?)".into(),
                    ),
                };
                if namespace.is_none() {
                    t.row([w.namespace.clone(), w.name.clone(), s, ty, r, m]);
                } else {
                    t.row([w.name.clone(), s, ty, r, m]);
                }
            }
            t.print();
            if !ready && a.wait {
                let w = all
                    .iter()
                    .find(|w| w.programmed != "True")
                    .map(|w| format!("{}/{}", w.namespace, w.name))
                    .unwrap_or_default();
                bail!("timed out while retrieving status for waypoint\t{w}");
            }
            return Ok(0);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::{Cli, Cmd, WaypointCmd};
    use clap::Parser;

    fn status(args: &[&str]) -> WaypointStatus {
        let mut argv = vec!["meshctl", "waypoint", "status"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().cmd {
            Cmd::Waypoint(WaypointCmd::Status(s)) => s,
            other => panic!("{other:?}"),
        }
    }

    /// istioctl's `waypoint status` flags: namespace `default`, `-A`,
    /// `--wait` true unless `--wait=false`.
    #[test]
    fn waypoint_status_flags_follow_istioctl() {
        let s = status(&[]);
        assert_eq!(
            (s.namespace.as_str(), s.all_namespaces, s.wait),
            ("default", false, true)
        );
        let s = status(&["-n", "shop", "--wait=false"]);
        assert_eq!((s.namespace.as_str(), s.wait), ("shop", false));
        let s = status(&["-A", "-w"]);
        assert!(s.all_namespaces && s.wait);
        // Like a cobra bool flag, `--wait` never takes the next argument.
        let s = status(&["--wait", "--name", "waypoint"]);
        assert!(s.wait && s.name.as_deref() == Some("waypoint"));
    }

    use crate::cluster::manifest::Doc;

    /// Parse a generated Gateway.
    fn gateway_docs(name: &str, ns: &str, traffic_type: Option<&str>) -> anyhow::Result<Vec<Doc>> {
        let y = gateway_yaml(name, Some(ns), traffic_type, None).map_err(anyhow::Error::msg)?;
        Ok(crate::cluster::manifest::parse_text(&y, "waypoint", ns)?)
    }

    #[test]
    fn generate_matches_istioctl() {
        assert_eq!(
            gateway_yaml("waypoint", Some("shop"), Some("service"), None).unwrap(),
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  labels:\n    istio.io/waypoint-for: service\n  name: waypoint\n  namespace: shop\nspec:\n  gatewayClassName: istio-waypoint\n  listeners:\n  - name: mesh\n    port: 15008\n    protocol: HBONE\n"
        );
        // No --for: no label (istiod picks the default at runtime); no -n: no namespace.
        let y = gateway_yaml("waypoint", None, None, None).unwrap();
        assert!(!y.contains("labels") && !y.contains("namespace"), "{y}");
        assert_eq!(
            gateway_yaml("none", None, None, None).unwrap_err(),
            "invalid name provided for waypoint, 'none' is a reserved value"
        );
        assert_eq!(
            gateway_yaml("w", None, Some("pods"), None).unwrap_err(),
            "invalid traffic type: pods. Valid options are: [all none service workload]"
        );
        let y = gateway_yaml("w", Some("a"), Some("workload"), Some("canary")).unwrap();
        assert!(
            y.contains("    istio.io/rev: canary\n    istio.io/waypoint-for: workload\n"),
            "{y}"
        );
        // What the operator parses back.
        let docs = gateway_docs("pods-wp", "payments", Some("workload")).unwrap();
        assert!(
            matches!(&docs[0], Doc::Istio(IstioObject::Gateway(g)) if g.spec.gateway_class_name == WAYPOINT_CLASS)
        );
    }
}
