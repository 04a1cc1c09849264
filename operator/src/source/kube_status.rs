//! The `status` bodies the operator writes to Kubernetes objects
//! (server-side apply): conditions with stable transition times, and
//! Gateway API's per-parent form for HTTPRoutes.

use std::collections::HashMap;

use super::kube::CONTROLLER_NAME;
use crate::translate::status::{Condition, StatusTarget};

fn now() -> String {
    k8s_openapi::chrono::Utc::now().to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true)
}

/// The JSON `status` for a target. An HTTPRoute's status is Gateway API's `parents[]`: one entry
/// per `parentRefs` entry (`parent_refs`), each with the route's
/// conditions and this controller's name.
pub fn status_body(
    target: &StatusTarget,
    conds: &[Condition],
    generation: Option<i64>,
    parent_refs: &[serde_json::Value],
    transitions: &mut HashMap<(StatusTarget, String), (bool, String)>,
) -> serde_json::Value {
    let mut stamp = |c: &Condition| {
        let key = (target.clone(), c.type_.clone());
        let e = transitions.entry(key).or_insert_with(|| (c.status, now()));
        if e.0 != c.status {
            *e = (c.status, now());
        }
        e.1.clone()
    };
    let cs: Vec<serde_json::Value> = conds
        .iter()
        .map(|c| {
            serde_json::json!({
                "type": c.type_, "status": c.status_str(), "reason": c.reason, "message": c.message,
                "lastTransitionTime": stamp(c), "observedGeneration": generation.unwrap_or(0),
            })
        })
        .collect();
    match target.kind.as_str() {
        "Gateway" | "Service" => serde_json::json!({ "conditions": cs }),
        "HTTPRoute" => {
            let parents: Vec<serde_json::Value> = parent_refs
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "parentRef": p, "controllerName": CONTROLLER_NAME, "conditions": cs.clone(),
                    })
                })
                .collect();
            serde_json::json!({ "parents": parents })
        }
        _ => serde_json::json!({ "conditions": cs, "observedGeneration": generation.unwrap_or(0) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HTTPRoute's status names each parent with this controller and
    /// the route's conditions (Gateway API `RouteParentStatus`).
    #[test]
    fn http_route_status_has_one_entry_per_parent() {
        let target = StatusTarget::new("HTTPRoute", "shop", "web-route");
        let conds = [Condition::new(
            "Accepted",
            true,
            "Accepted",
            "Route was valid",
        )];
        let parents = [
            serde_json::json!({"group": "", "kind": "Service", "name": "web", "port": 80}),
            serde_json::json!({"group": "", "kind": "Service", "name": "orders"}),
        ];
        let mut transitions = HashMap::new();
        let body = status_body(&target, &conds, Some(3), &parents, &mut transitions);
        let p = body["parents"].as_array().unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0]["parentRef"]["name"], "web");
        assert_eq!(p[1]["parentRef"]["name"], "orders");
        assert_eq!(p[0]["controllerName"], CONTROLLER_NAME);
        let c = &p[0]["conditions"][0];
        assert_eq!(
            (c["type"].as_str(), c["status"].as_str()),
            (Some("Accepted"), Some("True"))
        );
        assert_eq!(c["observedGeneration"], 3);
        assert!(
            c["lastTransitionTime"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
    }
}
