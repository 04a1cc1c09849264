//! A minimal kube-proxy for the local mesh: in each node's network
//! namespace, `nat PREROUTING` DNATs a service VIP:port to one of its
//! endpoints (random, like kube-proxy's iptables mode). Traffic of pods that
//! are not captured by ztunnel (unenrolled, `dataplane-mode=none`) reaches
//! services this way; captured traffic never gets here — ztunnel takes it
//! inside the pod's own namespace first, exactly as with kube-proxy in a
//! cluster.

use super::net::{self, NetError, NetPlan};
use crate::cluster::{Cluster, Service};
use std::io::Write;
use std::process::{Command, Stdio};

/// The chain in each node's `nat` table.
pub const CHAIN: &str = "MESH-SERVICES";

/// Create the chain and the jump to it (once per node).
pub fn install(node_ns: &str) -> Result<(), NetError> {
    net::run(&[
        "ip", "netns", "exec", node_ns, "iptables", "-t", "nat", "-N", CHAIN,
    ])?;
    net::run(&[
        "ip",
        "netns",
        "exec",
        node_ns,
        "iptables",
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-j",
        CHAIN,
    ])?;
    Ok(())
}

fn target_port(
    s: &Service,
    p: &crate::cluster::ServicePort,
    pod: &crate::cluster::Pod,
) -> Option<u16> {
    match &p.target_port {
        None => Some(p.port),
        Some(serde_yaml::Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Some(serde_yaml::Value::String(name)) => name
            .parse()
            .ok()
            .or_else(|| pod.ports.iter().find(|c| &c.name == name).map(|c| c.port)),
        Some(_) => {
            tracing::warn!(service = %s.name, "unsupported targetPort");
            None
        }
    }
}

/// The `iptables-restore` input for the cluster's services.
pub fn rules(c: &Cluster) -> String {
    let mut out = format!("*nat\n:{CHAIN} - [0:0]\n-F {CHAIN}\n");
    for s in &c.services {
        let Some(vip) = s.cluster_ip else { continue };
        let eps: Vec<_> = c
            .pods
            .iter()
            .filter(|p| {
                p.ip.is_some()
                    && p.namespace == s.namespace
                    && s.selector
                        .as_ref()
                        .is_some_and(|sel| sel.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
            })
            .collect();
        for port in &s.ports {
            let targets: Vec<String> = eps
                .iter()
                .filter_map(|p| Some(format!("{}:{}", p.ip?, target_port(s, port, p)?)))
                .collect();
            let n = targets.len();
            for (i, t) in targets.iter().enumerate() {
                let prob = if i + 1 < n {
                    format!(
                        "-m statistic --mode random --probability {:.5} ",
                        1.0 / (n - i) as f64
                    )
                } else {
                    String::new()
                };
                out.push_str(&format!("-A {CHAIN} -d {vip}/32 -p tcp -m tcp --dport {} {prob}-j DNAT --to-destination {t}\n", port.port));
            }
        }
    }
    out.push_str("COMMIT\n");
    out
}

/// Replace the rules on every node.
pub fn sync(plan: &NetPlan, c: &Cluster) -> Result<(), NetError> {
    if plan.loopback {
        return Ok(());
    }
    let text = rules(c);
    for n in 1..=plan.nodes.len() {
        let ns = plan.node_netns(n);
        let cmd = format!("ip netns exec {ns} iptables-restore --noflush");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns, "iptables-restore", "--noflush"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| NetError::Spawn {
                cmd: cmd.clone(),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(text.as_bytes())
                .map_err(|source| NetError::Spawn {
                    cmd: cmd.clone(),
                    source,
                })?;
        }
        let out = child.wait_with_output().map_err(|source| NetError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
        if !out.status.success() {
            return Err(NetError::Command {
                cmd,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Pod, ServicePort};

    #[test]
    fn one_dnat_per_endpoint_with_kube_proxy_probabilities() {
        let mut c = Cluster::default();
        for (name, ip) in [("a", "10.0.1.10"), ("b", "10.0.2.10")] {
            c.pods.push(Pod {
                name: name.into(),
                namespace: "shop".into(),
                labels: [("app".to_string(), "orders".to_string())].into(),
                ip: ip.parse().ok(),
                ..Default::default()
            });
        }
        c.services.push(Service {
            name: "orders".into(),
            namespace: "shop".into(),
            cluster_ip: "10.96.0.10".parse().ok(),
            selector: Some([("app".to_string(), "orders".to_string())].into()),
            ports: vec![ServicePort {
                name: "http".into(),
                port: 80,
                target_port: Some(serde_yaml::Value::Number(8080.into())),
                app_protocol: None,
            }],
            ..Default::default()
        });
        let r = rules(&c);
        assert!(r.contains("-A MESH-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -m statistic --mode random --probability 0.50000 -j DNAT --to-destination 10.0.1.10:8080\n"), "{r}");
        assert!(r.contains("-A MESH-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.2.10:8080\n"), "{r}");
    }
}
