//! The local mesh: network ([`net`]), pods ([`pods`]), the control plane
//! process ([`controlplane`], [`launcher`]), `up` and `down`, and [`Mesh`],
//! the read-only view every inspection command uses.

pub mod controlplane;
pub mod down;
pub mod kubeproxy;
pub mod launcher;
pub mod net;
pub mod pods;
pub mod state;
pub mod sync;
pub mod up;

use crate::admin::{self, AdminError, Target};
use crate::cluster::Cluster;
use crate::context::RunDir;
use launcher::WaypointRecord;
use serde::Deserialize;
use state::State;
use std::net::{Ipv4Addr, SocketAddr};

/// Inspection errors.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// No mesh.
    #[error(transparent)]
    Context(#[from] crate::context::ContextError),
    /// State unreadable.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// Cluster unreadable.
    #[error(transparent)]
    Store(#[from] crate::cluster::store::StoreError),
    /// An endpoint did not answer.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// Bad answer.
    #[error("{0}")]
    Answer(String),
    /// Unknown ztunnel.
    #[error("no ztunnel {0:?}: use ztunnel-<node> or <node> with one of {1}")]
    NoZtunnel(String, String),
}

/// A status condition as the operator's debug endpoint reports it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Condition {
    /// Type.
    #[serde(rename = "type")]
    pub type_: String,
    /// True/False.
    pub status: bool,
    /// Reason.
    pub reason: String,
    /// Message.
    pub message: String,
}

impl Condition {
    /// `True` / `False`.
    pub fn status_str(&self) -> &'static str {
        if self.status { "True" } else { "False" }
    }
}

/// Conditions of one object.
#[derive(Debug, Clone, Deserialize)]
pub struct ObjectStatus {
    /// Kind, namespace, name.
    pub target: StatusTargetJson,
    /// Conditions.
    pub conditions: Vec<Condition>,
}

/// Kind, namespace, name.
#[derive(Debug, Clone, Deserialize)]
pub struct StatusTargetJson {
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// A running local mesh (read-only view).
#[derive(Debug, Clone)]
pub struct Mesh {
    /// Run directory.
    pub rd: RunDir,
    /// State.
    pub state: State,
}

impl Mesh {
    /// Open the mesh in `rd`.
    pub fn open(rd: &RunDir) -> Result<Self, MeshError> {
        rd.require()?;
        Ok(Mesh {
            rd: rd.clone(),
            state: State::load(rd)?,
        })
    }

    /// The cluster model.
    pub fn cluster(&self) -> Result<Cluster, MeshError> {
        Ok(crate::cluster::store::load_cluster(&self.rd)?)
    }

    /// The operator's debug endpoint (15014).
    pub fn operator_debug(&self) -> Target {
        let plan = &self.state.plan;
        Target::new(
            (!plan.loopback).then(|| plan.fabric_netns()),
            SocketAddr::from((self.state.plan.operator_ip(), 15014)),
        )
    }

    /// Node names.
    pub fn nodes(&self) -> &[String] {
        &self.state.plan.nodes
    }

    /// Resolve `ztunnel-node1` / `node1` to a node name.
    pub fn ztunnel_node(&self, name: &str) -> Result<String, MeshError> {
        let n = name.strip_prefix("ztunnel-").unwrap_or(name);
        if self.state.plan.node_index(n).is_some() {
            Ok(n.to_string())
        } else {
            Err(MeshError::NoZtunnel(
                name.into(),
                self.nodes()
                    .iter()
                    .map(|n| format!("ztunnel-{n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ))
        }
    }

    /// A ztunnel endpoint on `port` (15000 admin, 15020 metrics, 15021 ready).
    pub fn ztunnel(&self, node: &str, port: u16) -> Target {
        let n = self.state.plan.node_index(node).unwrap_or(1);
        if self.state.plan.loopback {
            return Target::new(None, SocketAddr::from((self.state.plan.node_ip(n), port)));
        }
        Target::new(
            Some(self.state.plan.node_netns(n)),
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        )
    }

    /// Waypoint instances.
    pub fn waypoints(&self) -> Vec<WaypointRecord> {
        WaypointRecord::all(&self.rd)
    }

    /// A waypoint endpoint on `port` (15000 admin, 15020 metrics).
    pub fn waypoint(rec: &WaypointRecord, port: u16) -> Target {
        if rec.netns.is_empty() {
            return Target::new(None, SocketAddr::new(rec.ip, port));
        }
        Target::new(
            Some(rec.netns.clone()),
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        )
    }

    /// Find a waypoint by name (`deploy/waypoint`, `waypoint`, `waypoint.shop`).
    pub fn find_waypoint(&self, target: &str, namespace: &str) -> Option<WaypointRecord> {
        let t = target
            .strip_prefix("deploy/")
            .or_else(|| target.strip_prefix("deployment/"))
            .unwrap_or(target);
        let (name, ns) = t.split_once('.').unwrap_or((t, namespace));
        self.waypoints()
            .into_iter()
            .find(|w| w.name == name && w.namespace == ns)
    }

    /// Status conditions of every object (from the operator).
    pub async fn statuses(&self) -> Result<Vec<ObjectStatus>, MeshError> {
        let v = admin::get_json(&self.operator_debug(), "/debug/status").await?;
        let list = v
            .get("statuses")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        if list.is_null() {
            return Ok(Vec::new());
        }
        serde_json::from_value(list)
            .map_err(|e| MeshError::Answer(format!("operator /debug/status: {e}")))
    }

    /// A ztunnel's config dump.
    pub async fn ztunnel_dump(&self, node: &str) -> Result<serde_json::Value, MeshError> {
        Ok(admin::get_json(&self.ztunnel(node, 15000), "/config_dump").await?)
    }
}

/// Conditions of one object, if any.
pub fn conditions_of<'a>(
    all: &'a [ObjectStatus],
    kind: &str,
    ns: &str,
    name: &str,
) -> &'a [Condition] {
    all.iter()
        .find(|s| s.target.kind == kind && s.target.namespace == ns && s.target.name == name)
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[])
}
