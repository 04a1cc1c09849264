//! The operator's [`WaypointLauncher`] for the local mesh: each waypoint
//! Gateway gets a `waypoint` process in its own network namespace behind a
//! node's bridge (a "pod" with `istio.io/dataplane-mode=none`, never
//! captured), with a certificate for the Gateway's service account issued
//! by the operator's CA, configured over the push stream.

use super::net::{self, NetPlan};
use super::pods::{spawn_in, stop};
use super::state::Proc;
use crate::context::{RunDir, write_atomic};
use futures::future::BoxFuture;
use mesh_common::identity::SpiffeId;
use operator::lifecycle::{WaypointLauncher, WaypointSpec};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Host numbers of waypoint addresses on a node (10.x.n.200…).
pub const FIRST_WAYPOINT_HOST: u8 = 200;
/// Lifetime of waypoint certificates.
pub const WAYPOINT_CERT_TTL: Duration = Duration::from_secs(24 * 3600);

/// A waypoint instance (`waypoints/<ns>.<name>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaypointRecord {
    /// Gateway name.
    pub name: String,
    /// Gateway namespace.
    pub namespace: String,
    /// Node it runs behind.
    pub node: String,
    /// Address.
    pub ip: IpAddr,
    /// Its network namespace.
    pub netns: String,
    /// The process.
    pub proc: Proc,
    /// Identity it serves with.
    pub identity: String,
    /// Traffic type.
    pub traffic_type: String,
}

impl WaypointRecord {
    /// Record file.
    pub fn path(rd: &RunDir, namespace: &str, name: &str) -> PathBuf {
        rd.waypoints_dir().join(format!("{namespace}.{name}.json"))
    }

    /// Every record in the run directory.
    pub fn all(rd: &RunDir) -> Vec<WaypointRecord> {
        let Ok(dir) = std::fs::read_dir(rd.waypoints_dir()) else {
            return Vec::new();
        };
        let mut v: Vec<WaypointRecord> = dir
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
            .collect();
        v.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        v
    }
}

/// Starts waypoint processes for the operator.
pub struct LocalLauncher {
    rd: RunDir,
    plan: NetPlan,
    waypoint_bin: PathBuf,
    next: Mutex<u8>,
    records: Mutex<BTreeMap<String, WaypointRecord>>,
}

impl LocalLauncher {
    /// A launcher for `plan`, starting `waypoint_bin`.
    ///
    /// Waypoint processes still running from a previous control plane (a
    /// restart) are adopted: `ensure` hands back their address and the new
    /// operator pushes to them over their reconnected streams.
    pub fn new(rd: RunDir, plan: NetPlan, waypoint_bin: PathBuf) -> Self {
        let mut records = BTreeMap::new();
        let mut next = 0u8;
        for r in WaypointRecord::all(&rd) {
            if !r.proc.alive() {
                continue;
            }
            if let IpAddr::V4(ip) = r.ip {
                let k = ip.octets()[3].wrapping_sub(FIRST_WAYPOINT_HOST);
                next = next.max(k.wrapping_add(1) % 50);
            }
            tracing::info!(waypoint = %format!("{}/{}", r.namespace, r.name), ip = %r.ip, pid = r.proc.pid, "adopting a running waypoint");
            records.insert(format!("{}/{}", r.namespace, r.name), r);
        }
        LocalLauncher {
            rd,
            plan,
            waypoint_bin,
            next: Mutex::new(next),
            records: Mutex::new(records),
        }
    }

    fn start(&self, spec: &WaypointSpec) -> Result<WaypointRecord, String> {
        let key = spec.key();
        let k = {
            let mut n = self.next.lock();
            let k = *n;
            *n = n.wrapping_add(1) % 50;
            k
        };
        // Spread waypoints over the nodes, starting with the last one.
        let nodes = self.plan.nodes.len().max(1);
        let n = nodes - (k as usize % nodes);
        let ip = self.plan.pod_ip(n, FIRST_WAYPOINT_HOST + k);
        // In its own network namespace behind the node (loopback mode: on
        // its own loopback address in ours).
        let (netns, bind, local) = if self.plan.loopback {
            (String::new(), ip.to_string(), ip.to_string())
        } else {
            let netns = self.plan.waypoint_netns(&spec.namespace, &spec.name);
            net::add_netns(&netns).map_err(|e| e.to_string())?;
            net::attach(
                &self.plan.node_netns(n),
                &netns,
                &format!("m{}w{k}", self.plan.id),
                ip,
                Some(self.plan.pod_gateway(n)),
            )
            .map_err(|e| e.to_string())?;
            (netns, "0.0.0.0".to_string(), "127.0.0.1".to_string())
        };
        // Certificate from the operator's CA (same state directory).
        let id = SpiffeId::parse(&spec.identity).map_err(|e| e.to_string())?;
        let ca = operator::ca::load_or_create(&self.rd.operator_dir().join("ca"), &id.trust_domain)
            .map_err(|e| e.to_string())?;
        let bundle = ca
            .issue_workload(&id, WAYPOINT_CERT_TTL)
            .map_err(|e| e.to_string())?;
        let dir = self
            .rd
            .waypoints_dir()
            .join(format!("{}.{}", spec.namespace, spec.name));
        let files = [
            ("chain.pem", &bundle.chain_pem),
            ("key.pem", &bundle.key_pem),
            ("roots.pem", &bundle.roots_pem),
        ];
        for (f, pem) in files {
            write_atomic(&dir.join(f), pem.as_bytes())
                .map_err(|e| format!("{}: {e}", dir.join(f).display()))?;
        }
        let s = |p: &str| dir.join(p).display().to_string();
        let args: Vec<String> = [
            "--xds-address",
            &self.plan.operator_url(),
            "--xds-root-cert",
            &self.rd.roots_file().display().to_string(),
            "--name",
            &spec.name,
            "--namespace",
            &spec.namespace,
            "--node",
            &format!(
                "{}-{}",
                spec.name,
                self.plan.nodes.get(n - 1).cloned().unwrap_or_default()
            ),
            "--hbone-addr",
            &format!("{bind}:15008"),
            "--http-addr",
            &format!("{bind}:15080"),
            "--admin-addr",
            &format!("{local}:15000"),
            "--metrics-addr",
            &format!("{bind}:15020"),
            "--ready-addr",
            &format!("{bind}:15021"),
            "--cert-chain",
            &s("chain.pem"),
            "--key",
            &s("key.pem"),
            "--roots",
            &s("roots.pem"),
            "--worker-threads",
            "1",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        let log = self
            .rd
            .log_file(&format!("waypoint-{}-{}", spec.namespace, spec.name));
        let proc = spawn_in(
            (!netns.is_empty()).then_some(netns.as_str()),
            &self.waypoint_bin,
            &args,
            &log,
        )
        .map_err(|e| e.to_string())?;
        let rec = WaypointRecord {
            name: spec.name.clone(),
            namespace: spec.namespace.clone(),
            node: self.plan.nodes.get(n - 1).cloned().unwrap_or_default(),
            ip: IpAddr::V4(ip),
            netns,
            proc,
            identity: spec.identity.clone(),
            traffic_type: spec.traffic_type.as_str().to_string(),
        };
        let path = WaypointRecord::path(&self.rd, &spec.namespace, &spec.name);
        let json = serde_json::to_vec_pretty(&rec).map_err(|e| e.to_string())?;
        write_atomic(&path, &json).map_err(|e| format!("{}: {e}", path.display()))?;
        tracing::info!(waypoint = %key, %ip, pid = rec.proc.pid, "waypoint process started");
        Ok(rec)
    }
}

/// Stop a waypoint instance and remove its namespace and record.
pub fn remove_record(rd: &RunDir, rec: &WaypointRecord) {
    stop(&rec.proc, Duration::from_secs(6));
    if !rec.netns.is_empty() {
        let _ = net::del_netns(&rec.netns);
    }
    let _ = std::fs::remove_file(WaypointRecord::path(rd, &rec.namespace, &rec.name));
    let _ = std::fs::remove_dir_all(
        rd.waypoints_dir()
            .join(format!("{}.{}", rec.namespace, rec.name)),
    );
}

impl WaypointLauncher for LocalLauncher {
    fn ensure(&self, spec: &WaypointSpec) -> BoxFuture<'_, Result<Vec<IpAddr>, String>> {
        let spec = spec.clone();
        Box::pin(async move {
            if let Some(r) = self.records.lock().get(&spec.key())
                && r.proc.alive()
            {
                return Ok(vec![r.ip]);
            }
            let rec = tokio::task::block_in_place(|| self.start(&spec))?;
            let ip = rec.ip;
            self.records.lock().insert(spec.key(), rec);
            Ok(vec![ip])
        })
    }

    fn remove(&self, key: &str) -> BoxFuture<'_, Result<(), String>> {
        let key = key.to_string();
        Box::pin(async move {
            let rec = self.records.lock().remove(&key);
            if let Some(r) = rec {
                let rd = self.rd.clone();
                tokio::task::spawn_blocking(move || remove_record(&rd, &r))
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(waypoint = %key, "waypoint process stopped");
            }
            Ok(())
        })
    }
}
