//! Waypoint lifecycle: a Gateway of class `istio-waypoint` gets a running
//! waypoint — a process started by a [`WaypointLauncher`] (file mode) or a
//! Deployment/Service/ServiceAccount (Kubernetes, see
//! [`crate::source::kube`]) — and its `Programmed` condition turns `True`
//! once the waypoint has an address and has acknowledged its configuration
//! over the push stream.

use crate::controller::Controller;
use crate::translate::status::{Condition, StatusTarget};
use futures::future::BoxFuture;
use mesh_common::model::{ResourceType, TrafficType};
use mesh_common::xds::server::XdsServer;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What a launcher needs to start a waypoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaypointSpec {
    /// Gateway name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Service account (identity) it runs as.
    pub service_account: String,
    /// SPIFFE ID.
    pub identity: String,
    /// Traffic it takes.
    pub traffic_type: TrafficType,
}

impl WaypointSpec {
    /// `namespace/name` (the push resource name the waypoint subscribes to).
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Starts and stops waypoint instances (file mode; the CLI provides one that
/// spawns `waypoint` processes).
pub trait WaypointLauncher: Send + Sync + 'static {
    /// Make sure a waypoint serves `spec`; return the address it listens on.
    fn ensure(&self, spec: &WaypointSpec) -> BoxFuture<'_, Result<Vec<IpAddr>, String>>;
    /// Stop the waypoint `namespace/name`.
    fn remove(&self, key: &str) -> BoxFuture<'_, Result<(), String>>;
}

fn gw_target(key: &str) -> StatusTarget {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    StatusTarget::new("Gateway", ns, name)
}

/// Is the waypoint `key` connected and running the current version of its
/// configuration? With `once_is_enough`, any acknowledged version counts
/// (used to keep `Programmed` steady while a later change is in flight).
pub fn waypoint_synced(xds: &XdsServer, key: &str, once_is_enough: bool) -> bool {
    // Not just "acknowledged something": the waypoint may have subscribed
    // before its services were bound to it and acknowledged that older
    // snapshot. Programmed means it runs the current one.
    let current = if once_is_enough {
        0
    } else {
        xds.store()
            .revision_of(ResourceType::WaypointConfig, key)
            .unwrap_or(0)
    };
    xds.clients().iter().any(|c| {
        c.resource_names.iter().any(|n| n == key)
            && c.last_nack.is_none()
            && c.acked
                .get(&ResourceType::WaypointConfig)
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|v| v >= current)
    })
}

/// Keep `Accepted`/`Programmed` of every waypoint Gateway up to date, and
/// (with a launcher) start/stop waypoint processes. Runs until cancelled.
pub async fn run(
    controller: Arc<Controller>,
    xds: Arc<XdsServer>,
    launcher: Option<Arc<dyn WaypointLauncher>>,
    shutdown: CancellationToken,
) {
    let mut generation = controller.watch();
    let mut clients = xds.watch_clients();
    let mut launched: BTreeSet<String> = BTreeSet::new();
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    // Waypoints that have once run their current configuration.
    let mut ever_programmed: BTreeSet<String> = BTreeSet::new();
    loop {
        let cs = controller.config().unwrap_or_default();
        let wps = crate::translate::waypoints::discover(&cs);
        let td = cs.mesh.trust_domain.clone();
        if let Some(l) = &launcher {
            for (key, wp) in &wps {
                if launched.contains(key) || failed.contains_key(key) || !wp.managed {
                    continue;
                }
                if cs.waypoint_addresses.contains_key(key)
                    && !wp.addresses.is_empty()
                    && !launched.contains(key)
                {
                    // Assigned in the inventory: an externally managed process.
                    continue;
                }
                let spec = WaypointSpec {
                    name: wp.name.clone(),
                    namespace: wp.namespace.clone(),
                    service_account: wp.service_account.clone(),
                    identity: wp.identity(&td),
                    traffic_type: wp.traffic_type,
                };
                match l.ensure(&spec).await {
                    Ok(addrs) => {
                        tracing::info!(waypoint = %key, ?addrs, "waypoint started");
                        launched.insert(key.clone());
                        let _ = controller.set_waypoint_address(key, Some(addrs));
                    }
                    Err(e) => {
                        tracing::error!(waypoint = %key, "cannot start waypoint: {e}");
                        failed.insert(key.clone(), e);
                    }
                }
            }
            let gone: Vec<String> = launched
                .iter()
                .filter(|k| !wps.contains_key(*k))
                .cloned()
                .collect();
            for k in gone {
                if let Err(e) = l.remove(&k).await {
                    tracing::warn!(waypoint = %k, "stopping waypoint: {e}");
                }
                launched.remove(&k);
                let _ = controller.set_waypoint_address(&k, None);
            }
            failed.retain(|k, _| wps.contains_key(k));
        }
        for (key, wp) in &wps {
            let t = gw_target(key);
            controller.set_status(
                t.clone(),
                Condition::new("Accepted", true, "Accepted", "Resource accepted"),
            );
            let addrs = wp
                .addresses
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let programmed = if let Some(e) = failed.get(key) {
                Condition::new(
                    "Programmed",
                    false,
                    "Invalid",
                    format!("Failed to start the waypoint: {e}"),
                )
            } else if wp.addresses.is_empty() {
                Condition::new(
                    "Programmed",
                    false,
                    "AddressNotAssigned",
                    "Failed to assign to any requested addresses: waiting for the waypoint to be scheduled",
                )
            } else if !waypoint_synced(&xds, key, ever_programmed.contains(key)) {
                ever_programmed.remove(key);
                Condition::new(
                    "Programmed",
                    false,
                    "Pending",
                    format!(
                        "Assigned to {addrs}; waiting for the waypoint to acknowledge its configuration"
                    ),
                )
            } else {
                ever_programmed.insert(key.clone());
                Condition::new(
                    "Programmed",
                    true,
                    "Programmed",
                    format!(
                        "Resource programmed, assigned to service(s) {}",
                        assigned_services(wp, &cs.mesh.domain_suffix)
                    ),
                )
            };
            controller.set_status(t, programmed);
        }
        tokio::select! {
            _ = shutdown.cancelled() => {
                if let Some(l) = &launcher {
                    for k in &launched {
                        let _ = l.remove(k).await;
                    }
                }
                return;
            }
            r = generation.changed() => if r.is_err() { return },
            r = clients.changed() => if r.is_err() { return },
        }
    }
}

/// `<service host>:<listener port>` for each listener of a waypoint, joined
/// as istiod joins them (`a`, `a and b`, `a, b, and c`).
fn assigned_services(wp: &crate::translate::waypoints::WaypointInfo, domain: &str) -> String {
    let items: Vec<String> = wp
        .gateway
        .spec
        .listeners
        .iter()
        .map(|l| {
            format!(
                "{}.{}.svc.{domain}:{}",
                wp.deployment_name, wp.namespace, l.port
            )
        })
        .collect();
    human_join(&items)
}

/// istiod's `HumanReadableJoin`.
fn human_join(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [a] => a.clone(),
        [a, b] => format!("{a} and {b}"),
        [rest @ .., last] => format!("{}, and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::human_join;

    #[test]
    fn joins_like_istiod() {
        let s = |v: &[&str]| human_join(&v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(s(&[]), "");
        assert_eq!(s(&["a"]), "a");
        assert_eq!(s(&["a", "b"]), "a and b");
        assert_eq!(s(&["a", "b", "c"]), "a, b, and c");
    }
}
