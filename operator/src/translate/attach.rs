//! `targetRefs` attachment of policies to waypoints (§1.2), with the
//! `WaypointAccepted` status.

use super::status::{Condition, StatusTarget, Statuses};
use super::waypoints::{WAYPOINT_CLASS, WaypointInfo};
use crate::config::ConfigSet;
use crate::crd::PolicyTargetReference;
use std::collections::BTreeMap;

/// Where a policy applies: waypoint key → service FQDNs (empty = whole waypoint).
pub type Attachments = BTreeMap<String, Vec<String>>;

/// Resolve `refs` of a policy `kind` in `ns`/`name`. `bound` maps waypoint
/// key → bound service hostnames; `svc_waypoint` maps hostname → waypoint.
pub fn attach(
    cs: &ConfigSet,
    waypoints: &BTreeMap<String, WaypointInfo>,
    svc_waypoint: &BTreeMap<String, String>,
    policy: &StatusTarget,
    refs: &[PolicyTargetReference],
    statuses: &mut Statuses,
) -> Attachments {
    let (kind, ns) = (policy.kind.as_str(), policy.namespace.as_str());
    let mut out: Attachments = BTreeMap::new();
    if refs.is_empty() {
        return out;
    }
    let root = &cs.mesh.root_namespace;
    let mut errors: Vec<(String, String)> = Vec::new();
    let mut bound_to: Vec<String> = Vec::new();
    // Waypoints attached as a whole (Gateway or GatewayClass refs): they
    // cover every service, whatever order the refs come in.
    let mut whole: Vec<String> = Vec::new();
    for r in refs {
        match (r.group(), r.kind.as_str()) {
            ("gateway.networking.k8s.io", "Gateway") => {
                let key = format!("{ns}/{}", r.name);
                if waypoints.contains_key(&key) {
                    whole.push(key.clone());
                    bound_to.push(key);
                } else {
                    errors.push((
                        "TargetNotFound".into(),
                        format!("Gateway {ns}/{} was not found", r.name),
                    ));
                }
            }
            ("gateway.networking.k8s.io", "GatewayClass") => {
                if ns != root {
                    errors.push((
                        "Invalid".into(),
                        format!("{kind} must be in the root namespace `{root}` when referencing a GatewayClass"),
                    ));
                } else if r.name == WAYPOINT_CLASS {
                    whole.extend(waypoints.keys().cloned());
                    bound_to.push(format!("GatewayClass {}", r.name));
                } else {
                    errors.push((
                        "TargetNotFound".into(),
                        format!("GatewayClass {} was not found", r.name),
                    ));
                }
            }
            ("", "Service") => {
                let exists = cs
                    .services
                    .iter()
                    .any(|s| s.namespace == ns && s.name == r.name);
                let host = super::workloads::hostname(cs, &r.name, ns);
                if !exists {
                    errors.push((
                        "TargetNotFound".into(),
                        format!("Service {ns}/{} was not found", r.name),
                    ));
                } else if let Some(wp) = svc_waypoint.get(&host) {
                    let hosts = out.entry(wp.clone()).or_default();
                    if !hosts.contains(&host) {
                        hosts.push(host);
                    }
                    bound_to.push(wp.to_string());
                } else {
                    errors.push((
                        "AncestorNotBound".into(),
                        format!("Service {ns}/{} is not bound to a waypoint", r.name),
                    ));
                }
            }
            ("networking.istio.io", "ServiceEntry") => {
                errors.push((
                    "TargetNotFound".into(),
                    format!("ServiceEntry {ns}/{} was not found", r.name),
                ));
            }
            (g, k) => errors.push(("Invalid".into(), format!("unsupported targetRef {g}/{k}"))),
        }
    }
    for wp in whole {
        out.insert(wp, Vec::new());
    }
    let target = policy.clone();
    bound_to.sort();
    bound_to.dedup();
    let cond = if errors.is_empty() {
        Condition::new(
            "WaypointAccepted",
            true,
            "Accepted",
            format!("bound to {}", bound_to.join(", ")),
        )
    } else if out.is_empty() {
        let (reason, _) = errors[0].clone();
        let msg = errors
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        Condition::new("WaypointAccepted", false, &reason, msg)
    } else {
        let msg = errors
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        Condition::new("WaypointAccepted", true, "PartiallyInvalid", msg)
    };
    statuses.set(target, cond);
    out
}
