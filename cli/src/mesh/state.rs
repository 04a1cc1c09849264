//! `state.json`: what `up` created, so `down` removes exactly that.

use super::net::NetPlan;
use crate::context::{RunDir, write_atomic};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// State errors.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Unreadable / unwritable.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Corrupt.
    #[error("{path}: {source} (remove the run directory with `meshctl down --force`)")]
    Json {
        /// File.
        path: PathBuf,
        /// Cause.
        source: serde_json::Error,
    },
}

/// A process the mesh started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    /// Pid.
    pub pid: u32,
    /// Network namespace it runs in.
    pub netns: Option<String>,
    /// Log file.
    pub log: PathBuf,
}

impl Proc {
    /// Is the process still alive?
    pub fn alive(&self) -> bool {
        pid_alive(self.pid)
    }
}

/// Is `pid` alive (and not a zombie)?
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Runtime state of one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRuntime {
    /// Its netns.
    pub netns: String,
    /// Host-side veth name.
    pub link: String,
    /// The app process.
    pub app: Option<Proc>,
}

/// The whole state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Network plan.
    pub plan: NetPlan,
    /// Node bootstrap tokens (node → token).
    pub node_tokens: BTreeMap<String, String>,
    /// The control plane (operator + waypoint launcher).
    pub controlplane: Option<Proc>,
    /// How the control plane was started (`meshctl` arguments), for
    /// `meshctl rollout restart deployment/istiod`.
    #[serde(default)]
    pub controlplane_args: Vec<String>,
    /// ztunnel per node.
    pub ztunnels: BTreeMap<String, Proc>,
    /// Pods by `namespace/name`.
    pub pods: BTreeMap<String, PodRuntime>,
    /// Next veth index for pods.
    pub next_link: u32,
    /// Next VIP index.
    pub next_vip: u32,
    /// Host part of the next pod address per node.
    pub next_host: BTreeMap<String, u8>,
    /// First-party filter components given to the operator.
    pub filters_dir: Option<PathBuf>,
}

impl State {
    /// A fresh state.
    pub fn new(plan: NetPlan) -> Self {
        State {
            plan,
            node_tokens: BTreeMap::new(),
            controlplane: None,
            controlplane_args: Vec::new(),
            ztunnels: BTreeMap::new(),
            pods: BTreeMap::new(),
            next_link: 0,
            next_vip: 0,
            next_host: BTreeMap::new(),
            filters_dir: None,
        }
    }

    /// Load from the run directory.
    pub fn load(rd: &RunDir) -> Result<Self, StateError> {
        let path = rd.state_file();
        let text = std::fs::read_to_string(&path).map_err(|source| StateError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| StateError::Json { path, source })
    }

    /// Save atomically.
    pub fn save(&self, rd: &RunDir) -> Result<(), StateError> {
        let path = rd.state_file();
        let text = serde_json::to_vec_pretty(self).map_err(|source| StateError::Json {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &text).map_err(|source| StateError::Io { path, source })
    }

    /// Node bootstrap tokens as `(node, token)`.
    pub fn nodes(&self) -> Vec<(String, String)> {
        self.plan
            .nodes
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    self.node_tokens.get(n).cloned().unwrap_or_default(),
                )
            })
            .collect()
    }
}
