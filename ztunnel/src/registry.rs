//! What ztunnel knows about the mesh: workloads, services and L4 policies,
//! applied from pushed configuration (full snapshots or per-type deltas).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use mesh_common::model::{Authorization, Resource, Service, Workload};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// A complete configuration (the `--config-file` format, and what an admin
/// config dump prints).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Snapshot {
    /// Workloads (pods).
    #[serde(default)]
    pub workloads: Vec<Workload>,
    /// Services.
    #[serde(default)]
    pub services: Vec<Service>,
    /// L4 authorization policies (including converted PeerAuthentications).
    #[serde(default, alias = "policies")]
    pub authorizations: Vec<Authorization>,
}

/// One change to apply.
#[derive(Debug, Clone)]
pub enum Change {
    /// Replace everything.
    Snapshot(Snapshot),
    /// Upsert and remove workloads (by uid).
    Workloads {
        /// Added or changed.
        upserts: Vec<Workload>,
        /// Removed keys.
        removals: Vec<String>,
    },
    /// Upsert and remove services (by `namespace/hostname`).
    Services {
        /// Added or changed.
        upserts: Vec<Service>,
        /// Removed keys.
        removals: Vec<String>,
    },
    /// Upsert and remove policies (by `namespace/name`).
    Authorizations {
        /// Added or changed.
        upserts: Vec<Authorization>,
        /// Removed keys.
        removals: Vec<String>,
    },
}

/// Change counters, published to watchers after every applied change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Generation {
    /// Bumped on every change.
    pub any: u64,
    /// Bumped when policies or workloads (their policy lists) changed.
    pub policy: u64,
}

/// The indexed state.
#[derive(Debug, Default)]
pub struct State {
    workloads: HashMap<String, Arc<Workload>>,
    by_ip: HashMap<IpAddr, String>,
    services: HashMap<String, Arc<Service>>,
    by_vip: HashMap<IpAddr, String>,
    policies: HashMap<String, Arc<Authorization>>,
}

impl State {
    /// Workload by uid.
    pub fn workload(&self, uid: &str) -> Option<&Arc<Workload>> {
        self.workloads.get(uid)
    }
    /// Workload owning `ip`.
    pub fn workload_by_ip(&self, ip: IpAddr) -> Option<&Arc<Workload>> {
        self.by_ip.get(&ip).and_then(|uid| self.workloads.get(uid))
    }
    /// Service owning VIP `ip`.
    pub fn service_by_vip(&self, ip: IpAddr) -> Option<&Arc<Service>> {
        self.by_vip.get(&ip).and_then(|k| self.services.get(k))
    }
    /// All workloads.
    pub fn workloads(&self) -> impl Iterator<Item = &Arc<Workload>> {
        self.workloads.values()
    }
    /// All services.
    pub fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.services.values()
    }
    /// All policies.
    pub fn policies(&self) -> impl Iterator<Item = &Arc<Authorization>> {
        self.policies.values()
    }
    /// Services that have `uid` among their endpoints.
    pub fn services_of(&self, uid: &str) -> impl Iterator<Item = &Arc<Service>> {
        self.services
            .values()
            .filter(move |s| s.endpoints.iter().any(|e| e.workload_uid == uid))
    }

    /// The policies that apply to `dst` (global, its namespace, selected).
    pub fn policies_for<'a>(
        &'a self,
        dst: &'a Workload,
    ) -> impl Iterator<Item = &'a Authorization> + Clone {
        self.policies
            .values()
            .map(|p| p.as_ref())
            .filter(move |p| p.applies_to(&dst.namespace, &dst.authorization_policies))
    }

    /// A sorted copy for config dumps.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot {
            workloads: self.workloads.values().map(|w| (**w).clone()).collect(),
            services: self.services.values().map(|s| (**s).clone()).collect(),
            authorizations: self.policies.values().map(|p| (**p).clone()).collect(),
        };
        s.workloads.sort_by(|a, b| a.uid.cmp(&b.uid));
        s.services.sort_by_key(|s| s.key());
        s.authorizations.sort_by_key(|p| p.key());
        s
    }

    fn upsert_workload(&mut self, w: Workload) {
        self.remove_workload(&w.uid);
        for ip in &w.addresses {
            self.by_ip.insert(*ip, w.uid.clone());
        }
        self.workloads.insert(w.uid.clone(), Arc::new(w));
    }

    fn remove_workload(&mut self, uid: &str) {
        if let Some(old) = self.workloads.remove(uid) {
            for ip in &old.addresses {
                if self.by_ip.get(ip).is_some_and(|u| u == uid) {
                    self.by_ip.remove(ip);
                }
            }
        }
    }

    fn upsert_service(&mut self, s: Service) {
        let key = s.key();
        self.remove_service(&key);
        for vip in &s.vips {
            self.by_vip.insert(*vip, key.clone());
        }
        self.services.insert(key, Arc::new(s));
    }

    fn remove_service(&mut self, key: &str) {
        if let Some(old) = self.services.remove(key) {
            for vip in &old.vips {
                if self.by_vip.get(vip).is_some_and(|k| k == key) {
                    self.by_vip.remove(vip);
                }
            }
        }
    }
}

/// Shared, watchable registry.
#[derive(Debug)]
pub struct Registry {
    state: RwLock<State>,
    generation: watch::Sender<Generation>,
    synced: watch::Sender<bool>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            state: RwLock::new(State::default()),
            generation: watch::Sender::new(Generation::default()),
            synced: watch::Sender::new(false),
        }
    }
}

impl Registry {
    /// An empty, not yet synced registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Read access.
    pub fn read(&self) -> parking_lot::RwLockReadGuard<'_, State> {
        self.state.read()
    }

    /// Applies a change and notifies watchers.
    pub fn apply(&self, change: Change) {
        let policy_changed = {
            let mut st = self.state.write();
            match change {
                Change::Snapshot(snap) => {
                    *st = State::default();
                    for w in snap.workloads {
                        st.upsert_workload(w);
                    }
                    for s in snap.services {
                        st.upsert_service(s);
                    }
                    for p in snap.authorizations {
                        st.policies.insert(p.key(), Arc::new(p));
                    }
                    true
                }
                Change::Workloads { upserts, removals } => {
                    for k in removals {
                        st.remove_workload(&k);
                    }
                    for w in upserts {
                        st.upsert_workload(w);
                    }
                    true
                }
                Change::Services { upserts, removals } => {
                    for k in removals {
                        st.remove_service(&k);
                    }
                    for s in upserts {
                        st.upsert_service(s);
                    }
                    false
                }
                Change::Authorizations { upserts, removals } => {
                    for k in removals {
                        st.policies.remove(&k);
                    }
                    for p in upserts {
                        st.policies.insert(p.key(), Arc::new(p));
                    }
                    true
                }
            }
        };
        self.generation.send_modify(|g| {
            g.any += 1;
            if policy_changed {
                g.policy += 1;
            }
        });
    }

    /// Marks the initial configuration as received (readiness).
    pub fn mark_synced(&self) {
        self.synced.send_replace(true);
    }

    /// Has the initial configuration been received?
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until [`Registry::mark_synced`].
    pub async fn synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Watch changes.
    pub fn subscribe(&self) -> watch::Receiver<Generation> {
        self.generation.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wl(uid: &str, ip: &str) -> Workload {
        Workload {
            uid: uid.into(),
            name: uid.into(),
            namespace: "ns".into(),
            service_account: "sa".into(),
            addresses: vec![ip.parse().unwrap()],
            ..Default::default()
        }
    }

    #[test]
    fn indexes_follow_upserts_and_removals() {
        let r = Registry::new();
        r.apply(Change::Workloads {
            upserts: vec![wl("a", "10.0.0.1"), wl("b", "10.0.0.2")],
            removals: vec![],
        });
        assert_eq!(
            r.read()
                .workload_by_ip("10.0.0.1".parse().unwrap())
                .unwrap()
                .uid,
            "a"
        );
        // a moves to a new IP: old index entry is gone.
        r.apply(Change::Workloads {
            upserts: vec![wl("a", "10.0.0.3")],
            removals: vec!["b".into()],
        });
        let st = r.read();
        assert!(st.workload_by_ip("10.0.0.1".parse().unwrap()).is_none());
        assert!(st.workload_by_ip("10.0.0.2".parse().unwrap()).is_none());
        assert_eq!(
            st.workload_by_ip("10.0.0.3".parse().unwrap()).unwrap().uid,
            "a"
        );
        drop(st);
        let g = *r.subscribe().borrow();
        assert_eq!(g.any, 2);
        assert_eq!(g.policy, 2);
    }

    #[test]
    fn snapshot_file_format_parses() {
        let y = r#"
workloads:
  - uid: c//Pod/ns/a
    name: a
    namespace: ns
    serviceAccount: sa
    node: n1
    addresses: [10.0.0.1]
    protocol: HBONE
services:
  - name: s
    namespace: ns
    hostname: s.ns.svc.cluster.local
    vips: [10.96.0.1]
    ports: [{port: 80, targetPort: 8080}]
    endpoints: [{workloadUid: c//Pod/ns/a}]
authorizations:
  - name: deny-all
    namespace: ns
    scope: Namespace
    action: Allow
"#;
        let s: Snapshot = serde_yaml::from_str(y).unwrap();
        let r = Registry::new();
        r.apply(Change::Snapshot(s));
        let st = r.read();
        let svc = st.service_by_vip("10.96.0.1".parse().unwrap()).unwrap();
        assert_eq!(svc.name, "s");
        let w = st.workload("c//Pod/ns/a").unwrap();
        assert_eq!(st.policies_for(w).count(), 1);
        assert_eq!(st.services_of("c//Pod/ns/a").count(), 1);
    }
}
