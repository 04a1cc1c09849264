//! The local mesh's network: names and addresses ([`NetPlan`]) and the
//! `ip` commands that build it.
//!
//! ```text
//!                   mesh<id>-fabric (netns): br0 10.<200+id>.0.1, the operator
//!                      │                         │
//!   mesh<id>-node1: eth0 10.<200+id>.0.11     mesh<id>-node2: eth0 10.<200+id>.0.12
//!     br0 10.<200+id>.1.1, ztunnel              br0 10.<200+id>.2.1, ztunnel
//!      ├─ mesh<id>-<ns>-<pod>  10.<200+id>.1.10…  ├─ …  10.<200+id>.2.10…
//!      └─ waypoints            10.<200+id>.1.200… └─ …
//!   services: VIPs 10.<210+id>.x.y (never routed: captured in the pod's netns)
//! ```
//!
//! Nothing is added to the host's own network namespace: the fabric is a
//! network namespace too, so host firewalls and routes are untouched.

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};

/// Network setup errors.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A command failed.
    #[error("`{cmd}` failed: {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// Its stderr.
        stderr: String,
    },
    /// A command could not start.
    #[error("cannot run `{cmd}`: {source} (install iproute2 and iptables: scripts/setup.sh)")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// Names and addresses of one local mesh (`id` keeps several apart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetPlan {
    /// 0–9.
    pub id: u8,
    /// Node names (`node1`, `node2`).
    pub nodes: Vec<String>,
    /// No network namespaces (not root): every address is a loopback
    /// address (127.<200+id>.x.x) in the host's namespace, ztunnel runs in
    /// shared mode and nothing captures the apps' traffic.
    #[serde(default)]
    pub loopback: bool,
}

impl NetPlan {
    /// A plan with `nodes` nodes.
    pub fn new(id: u8, nodes: usize) -> Self {
        NetPlan {
            id,
            nodes: (1..=nodes).map(|n| format!("node{n}")).collect(),
            loopback: false,
        }
    }

    fn b(&self) -> u8 {
        200 + self.id
    }

    /// First octet: 10 (network namespaces) or 127 (loopback mode).
    fn a(&self) -> u8 {
        if self.loopback { 127 } else { 10 }
    }

    /// Prefix of every netns and link name.
    pub fn prefix(&self) -> String {
        format!("mesh{}", self.id)
    }
    /// The fabric netns (operator, bridge between nodes).
    pub fn fabric_netns(&self) -> String {
        format!("{}-fabric", self.prefix())
    }
    /// The operator's address.
    pub fn operator_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.a(), self.b(), 0, 1)
    }
    /// Index (1-based) of a node.
    pub fn node_index(&self, node: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n == node).map(|i| i + 1)
    }
    /// Netns of node `n` (1-based).
    pub fn node_netns(&self, n: usize) -> String {
        format!("{}-node{n}", self.prefix())
    }
    /// Fabric address of node `n`.
    pub fn node_ip(&self, n: usize) -> Ipv4Addr {
        Ipv4Addr::new(self.a(), self.b(), 0, 10 + n as u8)
    }
    /// Gateway of node `n`'s pods.
    pub fn pod_gateway(&self, n: usize) -> Ipv4Addr {
        Ipv4Addr::new(self.a(), self.b(), n as u8, 1)
    }
    /// Address `host` in node `n`'s pod subnet.
    pub fn pod_ip(&self, n: usize, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.a(), self.b(), n as u8, host)
    }
    /// Service VIP number `k`.
    pub fn vip(&self, k: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(
            self.a(),
            210 + self.id,
            (k / 250) as u8,
            (10 + k % 250) as u8,
        ))
    }
    /// Netns of a pod.
    pub fn pod_netns(&self, namespace: &str, name: &str) -> String {
        format!("{}-{namespace}-{name}", self.prefix())
    }
    /// Netns of a waypoint instance.
    pub fn waypoint_netns(&self, namespace: &str, name: &str) -> String {
        format!("{}-wp-{namespace}-{name}", self.prefix())
    }
    /// ztunnel's `--netns-template` for this plan.
    pub fn netns_template(&self) -> String {
        format!("/var/run/netns/{}-{{namespace}}-{{name}}", self.prefix())
    }
    /// Push/CA endpoint.
    pub fn operator_url(&self) -> String {
        format!("https://{}:15012", self.operator_ip())
    }
}

/// Run a command; error with its stderr when it fails.
pub fn run(args: &[&str]) -> Result<String, NetError> {
    let cmd = args.join(" ");
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NetError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(NetError::Command {
            cmd,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -n <ns> …`.
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String, NetError> {
    let mut v = vec!["ip", "-n", ns];
    v.extend_from_slice(args);
    run(&v)
}

/// Create a network namespace (removing a leftover of the same name).
pub fn add_netns(name: &str) -> Result<(), NetError> {
    let _ = del_netns(name);
    run(&["ip", "netns", "add", name])?;
    ip_in(name, &["link", "set", "lo", "up"])?;
    Ok(())
}

/// Delete a network namespace and its `/etc/netns` directory (ignores absence).
pub fn del_netns(name: &str) -> Result<(), NetError> {
    let _ = std::fs::remove_dir_all(format!("/etc/netns/{name}"));
    if std::path::Path::new(&format!("/var/run/netns/{name}")).exists() {
        run(&["ip", "netns", "del", name])?;
    }
    Ok(())
}

/// Pids of the processes living in the named network namespaces (their
/// `/proc/<pid>/ns/net` is the namespace file's inode).
pub fn pids_in_netns(names: &[String]) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let inodes: Vec<u64> = names
        .iter()
        .filter_map(|n| std::fs::metadata(format!("/var/run/netns/{n}")).ok())
        .map(|m| m.ino())
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc_dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| inodes.contains(&m.ino()))
        })
        .collect()
}

/// Network namespaces whose name starts with `prefix-`.
pub fn list_netns(prefix: &str) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir("/var/run/netns") else {
        return Vec::new();
    };
    let p = format!("{prefix}-");
    let mut v: Vec<String> = rd
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&p))
        .collect();
    v.sort();
    v
}

/// Connect `inner_ns` to the bridge `br0` of `outer_ns` with a veth pair
/// called `link` (outer end) / `eth0` (inner end), give the inner end
/// `addr/24` and a default route via `gateway`.
pub fn attach(
    outer_ns: &str,
    inner_ns: &str,
    link: &str,
    addr: Ipv4Addr,
    gateway: Option<Ipv4Addr>,
) -> Result<(), NetError> {
    let peer = format!("{link}c");
    let _ = run(&["ip", "link", "del", link]);
    run(&[
        "ip", "link", "add", link, "type", "veth", "peer", "name", &peer,
    ])?;
    run(&["ip", "link", "set", &peer, "netns", inner_ns])?;
    run(&["ip", "link", "set", link, "netns", outer_ns])?;
    ip_in(outer_ns, &["link", "set", link, "master", "br0", "up"])?;
    ip_in(inner_ns, &["link", "set", &peer, "name", "eth0"])?;
    ip_in(
        inner_ns,
        &["addr", "add", &format!("{addr}/24"), "dev", "eth0"],
    )?;
    ip_in(inner_ns, &["link", "set", "eth0", "up"])?;
    if let Some(gw) = gateway {
        ip_in(
            inner_ns,
            &["route", "add", "default", "via", &gw.to_string()],
        )?;
    }
    Ok(())
}

/// Create `br0` with `addr/24` in `ns`.
pub fn add_bridge(ns: &str, addr: Ipv4Addr) -> Result<(), NetError> {
    ip_in(ns, &["link", "add", "br0", "type", "bridge"])?;
    ip_in(ns, &["addr", "add", &format!("{addr}/24"), "dev", "br0"])?;
    ip_in(ns, &["link", "set", "br0", "up"])?;
    Ok(())
}

/// Build the fabric and the nodes (nothing in loopback mode).
pub fn build(plan: &NetPlan) -> Result<(), NetError> {
    if plan.loopback {
        return Ok(());
    }
    let fabric = plan.fabric_netns();
    add_netns(&fabric)?;
    add_bridge(&fabric, plan.operator_ip())?;
    for n in 1..=plan.nodes.len() {
        let ns = plan.node_netns(n);
        add_netns(&ns)?;
        attach(
            &fabric,
            &ns,
            &format!("m{}n{n}", plan.id),
            plan.node_ip(n),
            None,
        )?;
        run(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])?;
        add_bridge(&ns, plan.pod_gateway(n))?;
        super::kubeproxy::install(&ns)?;
        ip_in(
            &fabric,
            &[
                "route",
                "add",
                &format!("10.{}.{n}.0/24", 200 + plan.id),
                "via",
                &plan.node_ip(n).to_string(),
            ],
        )?;
        for m in (1..=plan.nodes.len()).filter(|m| *m != n) {
            ip_in(
                &ns,
                &[
                    "route",
                    "add",
                    &format!("10.{}.{m}.0/24", 200 + plan.id),
                    "via",
                    &plan.node_ip(m).to_string(),
                ],
            )?;
        }
    }
    Ok(())
}

/// Write `/etc/netns/<ns>/hosts` (bind-mounted over `/etc/hosts` by `ip netns exec`).
pub fn write_hosts(ns: &str, content: &str) -> std::io::Result<()> {
    let dir = format!("/etc/netns/{ns}");
    std::fs::create_dir_all(&dir)?;
    crate::context::write_atomic(
        std::path::Path::new(&format!("{dir}/hosts")),
        content.as_bytes(),
    )
}

/// Move the calling thread into the network namespace `name` (threads it
/// starts afterwards inherit it). Unlike `ip netns exec`, the mount
/// namespace stays the host's.
pub fn enter_netns(name: &str) -> Result<(), NetError> {
    let path = format!("/var/run/netns/{name}");
    let cmd = format!("setns {path}");
    let f = std::fs::File::open(&path).map_err(|source| NetError::Spawn {
        cmd: cmd.clone(),
        source,
    })?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| NetError::Command {
        cmd,
        stderr: e.to_string(),
    })
}

/// Is the process running as root (network namespaces need it)?
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_names_and_addresses() {
        let p = NetPlan::new(3, 2);
        assert_eq!(p.node_netns(2), "mesh3-node2");
        assert_eq!(p.pod_ip(1, 10).to_string(), "10.203.1.10");
        assert_eq!(p.vip(0).to_string(), "10.213.0.10");
        assert_eq!(p.vip(251).to_string(), "10.213.1.11");
        assert_eq!(
            p.netns_template(),
            "/var/run/netns/mesh3-{namespace}-{name}"
        );
        assert_eq!(p.operator_url(), "https://10.203.0.1:15012");
        assert_eq!(p.node_index("node2"), Some(2));
    }
}
