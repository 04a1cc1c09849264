//! Applying core documents (Namespace, Service, Deployment, StatefulSet,
//! Pod) to the cluster model, and building an operator [`ConfigSet`] from
//! manifests alone (offline `analyze` and `authz check`).

use super::manifest::Doc;
use super::store::replica_name;
use super::{Cluster, Owner, Pod, Workload};
use operator::config::{ConfigSet, IstioObject};
use std::net::{IpAddr, Ipv4Addr};

impl Cluster {
    /// Apply one core document; returns kubectl's verb (`created`,
    /// `configured`, `unchanged`). Istio documents are not handled here.
    pub fn apply_core(&mut self, d: Doc) -> &'static str {
        match d {
            Doc::Namespace(name, labels) => {
                let e = self.namespaces.entry(name).or_default();
                let before = e.clone();
                e.extend(labels);
                if before == *e {
                    "unchanged"
                } else {
                    "configured"
                }
            }
            Doc::Noop(..) | Doc::Istio(_) => "unchanged",
            Doc::Service(mut s) => {
                self.namespaces.entry(s.namespace.clone()).or_default();
                match self
                    .services
                    .iter_mut()
                    .find(|x| x.namespace == s.namespace && x.name == s.name)
                {
                    Some(x) => {
                        if s.cluster_ip.is_none() {
                            s.cluster_ip = x.cluster_ip;
                        }
                        let changed = *x != s;
                        *x = s;
                        if changed { "configured" } else { "unchanged" }
                    }
                    None => {
                        self.services.push(s);
                        "created"
                    }
                }
            }
            Doc::Workload(w) => {
                self.namespaces.entry(w.namespace.clone()).or_default();
                let verb =
                    match self.workloads.iter_mut().find(|x| {
                        x.namespace == w.namespace && x.name == w.name && x.kind == w.kind
                    }) {
                        Some(x) if *x == w => "unchanged",
                        Some(x) => {
                            *x = w.clone();
                            "configured"
                        }
                        None => {
                            self.workloads.push(w.clone());
                            "created"
                        }
                    };
                self.sync_replicas(&w);
                verb
            }
            Doc::Pod(p) => {
                self.namespaces.entry(p.namespace.clone()).or_default();
                match self
                    .pods
                    .iter_mut()
                    .find(|x| x.namespace == p.namespace && x.name == p.name)
                {
                    Some(x) => {
                        let before = x.clone();
                        x.labels = p.labels;
                        x.annotations = p.annotations;
                        if before == *x {
                            "unchanged"
                        } else {
                            "configured"
                        }
                    }
                    None => {
                        self.pods.push(p);
                        "created"
                    }
                }
            }
        }
    }

    /// Make a workload's pods match its replicas and template labels
    /// (labels change in place: ambient needs no restart).
    pub fn sync_replicas(&mut self, w: &Workload) {
        let names: Vec<String> = (0..w.replicas).map(|i| replica_name(w, i)).collect();
        let owned = |p: &Pod| {
            p.namespace == w.namespace
                && p.owner
                    .as_ref()
                    .is_some_and(|o| o.name == w.name && o.kind == w.kind)
        };
        self.pods.retain(|p| !owned(p) || names.contains(&p.name));
        for name in names {
            match self
                .pods
                .iter_mut()
                .find(|p| p.namespace == w.namespace && p.name == name)
            {
                Some(p) => {
                    p.labels = w.template.labels.clone();
                    p.annotations = w.template.annotations.clone();
                }
                None => self.pods.push(Pod {
                    name,
                    namespace: w.namespace.clone(),
                    labels: w.template.labels.clone(),
                    annotations: w.template.annotations.clone(),
                    service_account: w.template.service_account.clone(),
                    node: w.template.node.clone().unwrap_or_default(),
                    ip: None,
                    owner: Some(Owner {
                        kind: w.kind.clone(),
                        name: w.name.clone(),
                    }),
                    ports: w.template.ports.clone(),
                    subdomain: if w.kind == "StatefulSet" {
                        w.service_name.clone()
                    } else {
                        None
                    },
                }),
            }
        }
    }
}

/// Placeholder address of waypoints that were never started (offline):
/// TEST-NET-3, never routed.
pub const OFFLINE_WAYPOINT_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));

/// A [`ConfigSet`] from manifests alone: core objects become the inventory
/// (pods get TEST-NET addresses, services TEST-NET VIPs), Istio objects the
/// resources, and every waypoint Gateway is assumed deployed.
pub fn offline_config(docs: Vec<Doc>) -> Result<ConfigSet, String> {
    let mut c = Cluster::default();
    let mut objects: Vec<IstioObject> = Vec::new();
    for d in docs {
        match d {
            Doc::Istio(o) => objects.push(o),
            core => {
                c.apply_core(core);
            }
        }
    }
    for (i, p) in c.pods.iter_mut().enumerate() {
        if p.node.is_empty() {
            p.node = "node1".into();
        }
        if p.ip.is_none() {
            p.ip = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, (i % 250 + 1) as u8)));
        }
    }
    for (i, s) in c.services.iter_mut().enumerate() {
        if !s.headless && s.cluster_ip.is_none() {
            s.cluster_ip = Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, (i % 250 + 1) as u8)));
        }
    }
    let mut cs = ConfigSet::default();
    c.inventory(&[("node1".into(), "offline".into())])
        .apply(&mut cs, "manifests")
        .map_err(|e| e.to_string())?;
    for o in objects {
        cs.resources.push(o);
    }
    for key in operator::translate::waypoints::discover(&cs).keys() {
        cs.waypoint_addresses
            .entry(key.clone())
            .or_insert_with(|| vec![OFFLINE_WAYPOINT_ADDRESS]);
    }
    Ok(cs)
}
