//! Real processes in network namespaces (needs root; skipped otherwise).
//!
//! Topology per test (`k` keeps concurrent tests apart):
//!
//! ```text
//!  zt<k>-a1 ─┐                                  ┌─ zt<k>-b1
//!  zt<k>-a2 ─┤ br0  zt<k>-n1 ══ node link ══ zt<k>-n2  br0 ├─ zt<k>-b2
//!            │  (ztunnel --node n1)      (ztunnel --node n2) └─ zt<k>-wp (waypoint)
//! ```
//!
//! Pods `a*` run on node 1, `b*` on node 2: each a network namespace behind
//! its node's bridge, running unmodified programs (python's http.server,
//! curl). Each node runs the real `ztunnel` binary in in-pod mode inside the
//! node namespace; it enters the pods' namespaces itself. Names resolve
//! through `/etc/netns/<ns>/hosts`.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mesh_common::ca::CertificateAuthority;
use mesh_common::model::policy::{RbacAction, RbacMatch, RbacScope, StringMatch};
use mesh_common::model::{
    Authorization, Endpoint, Service, ServicePort, TrafficType, TunnelProtocol, WaypointBinding,
    Workload,
};
use ztunnel::registry::Snapshot;

const TD: &str = "cluster.local";

fn skip() -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: namespaced tests need root (ip netns, iptables, tcpdump)");
        return true;
    }
    for tool in ["ip", "iptables", "tcpdump", "curl", "python3"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            eprintln!("SKIPPED: {tool} not installed (scripts/setup.sh installs it)");
            return true;
        }
    }
    false
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn in_ns(ns: &str, args: &[&str]) -> String {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    run(&v)
}

/// `curl` from a pod; `Ok(body)` or `Err(exit code)`.
fn curl(ns: &str, url: &str) -> Result<String, i32> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-s", "-m", "5", url])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(out.status.code().unwrap_or(-1))
    }
}

struct Pod {
    name: &'static str,
    namespace: &'static str,
    sa: &'static str,
    node: usize,
    host: u8,
}

/// Pods of every topology: a1 (web), a2 (other) on n1; b1 (server), b2
/// (legacy ns) on n2.
const PODS: [Pod; 4] = [
    Pod {
        name: "a1",
        namespace: "shop",
        sa: "web",
        node: 1,
        host: 2,
    },
    Pod {
        name: "a2",
        namespace: "shop",
        sa: "other",
        node: 1,
        host: 3,
    },
    Pod {
        name: "b1",
        namespace: "shop",
        sa: "server",
        node: 2,
        host: 2,
    },
    Pod {
        name: "b2",
        namespace: "legacy",
        sa: "old",
        node: 2,
        host: 3,
    },
];

struct Topo {
    k: u8,
    dir: tempfile::TempDir,
    namespaces: Vec<String>,
    children: Vec<Child>,
    apps: Vec<(String, u32)>,
    ca: CertificateAuthority,
}

impl Drop for Topo {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in &mut self.children {
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
        }
        if std::env::var_os("KEEP_LOGS").is_some() {
            let keep = self.dir.path().to_path_buf();
            eprintln!("logs kept in {}", keep.display());
            std::mem::forget(std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().unwrap(),
            ));
        }
    }
}

impl Topo {
    fn ns(&self, name: &str) -> String {
        format!("zt{}-{name}", self.k)
    }

    fn pod_ip(&self, node: usize, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 100 + self.k, node as u8, host)
    }

    fn ip_of(&self, pod: &str) -> Ipv4Addr {
        let p = PODS.iter().find(|p| p.name == pod).unwrap();
        self.pod_ip(p.node, p.host)
    }

    fn vip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 96, self.k, 10)
    }

    fn link(&self, node: usize) -> String {
        format!("zt{}l{node}", self.k)
    }

    fn new(k: u8) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::new_root(TD, Duration::from_secs(3600)).unwrap();
        let mut t = Topo {
            k,
            dir,
            namespaces: vec![],
            children: vec![],
            apps: vec![],
            ca,
        };
        // Leftovers of an aborted run.
        for n in ["n1", "n2", "a1", "a2", "b1", "b2", "wp"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &t.ns(n)])
                .stderr(Stdio::null())
                .status();
        }
        for node in 1..=2usize {
            let ns = t.ns(&format!("n{node}"));
            t.add_ns(&ns);
            in_ns(&ns, &["ip", "link", "set", "lo", "up"]);
            in_ns(&ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
            in_ns(&ns, &["ip", "link", "add", "br0", "type", "bridge"]);
            let gw = format!("{}/24", t.pod_ip(node, 1));
            in_ns(&ns, &["ip", "addr", "add", &gw, "dev", "br0"]);
            in_ns(&ns, &["ip", "link", "set", "br0", "up"]);
        }
        let (l1, l2) = (t.link(1), t.link(2));
        run(&[
            "ip", "link", "add", &l1, "type", "veth", "peer", "name", &l2,
        ]);
        for node in 1..=2usize {
            let (ns, link) = (t.ns(&format!("n{node}")), t.link(node));
            run(&["ip", "link", "set", &link, "netns", &ns]);
            let addr = format!("10.{}.0.{node}/30", 100 + k);
            in_ns(&ns, &["ip", "addr", "add", &addr, "dev", &link]);
            in_ns(&ns, &["ip", "link", "set", &link, "up"]);
            let other = 3 - node;
            let (net, via) = (
                format!("10.{}.{other}.0/24", 100 + k),
                format!("10.{}.0.{other}", 100 + k),
            );
            in_ns(&ns, &["ip", "route", "add", &net, "via", &via]);
        }
        for p in &PODS {
            t.add_pod(p.name, p.node, p.host);
        }
        t.write_hosts();
        t
    }

    fn add_ns(&mut self, ns: &str) {
        run(&["ip", "netns", "add", ns]);
        self.namespaces.push(ns.to_string());
    }

    fn add_pod(&mut self, name: &str, node: usize, host: u8) {
        let ns = self.ns(name);
        self.add_ns(&ns);
        let (inner, outer) = (
            format!("zt{}{name}", self.k),
            format!("zt{}{name}p", self.k),
        );
        run(&[
            "ip", "link", "add", &inner, "type", "veth", "peer", "name", &outer,
        ]);
        run(&["ip", "link", "set", &inner, "netns", &ns]);
        let node_ns = self.ns(&format!("n{node}"));
        run(&["ip", "link", "set", &outer, "netns", &node_ns]);
        in_ns(
            &node_ns,
            &["ip", "link", "set", &outer, "master", "br0", "up"],
        );
        in_ns(&ns, &["ip", "link", "set", &inner, "name", "eth0"]);
        let addr = format!("{}/24", self.pod_ip(node, host));
        in_ns(&ns, &["ip", "addr", "add", &addr, "dev", "eth0"]);
        in_ns(&ns, &["ip", "link", "set", "eth0", "up"]);
        in_ns(&ns, &["ip", "link", "set", "lo", "up"]);
        let gw = self.pod_ip(node, 1).to_string();
        in_ns(&ns, &["ip", "route", "add", "default", "via", &gw]);
    }

    fn write_hosts(&self) {
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for p in &PODS {
            hosts.push_str(&format!("{} {}\n", self.ip_of(p.name), p.name));
        }
        hosts.push_str(&format!("{} svc svc.shop.svc.cluster.local\n", self.vip()));
        for ns in &self.namespaces {
            std::fs::create_dir_all(format!("/etc/netns/{ns}")).unwrap();
            std::fs::write(format!("/etc/netns/{ns}/hosts"), &hosts).unwrap();
        }
    }

    /// Starts `python3 -m http.server` in pod `name` serving `marker.txt`.
    fn start_app(&mut self, name: &str) -> u32 {
        let www = self.dir.path().join(format!("www-{name}"));
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("marker.txt"), format!("SECRET-PAYLOAD-{name}\n")).unwrap();
        let log = std::fs::File::create(self.dir.path().join(format!("app-{name}.log"))).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(name),
                "/usr/bin/python3",
                "-m",
                "http.server",
                "8080",
                "--bind",
                "0.0.0.0",
            ])
            .arg("--directory")
            .arg(&www)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let pid = child.id();
        self.children.push(child);
        self.apps.push((name.to_string(), pid));
        // Wait until it listens.
        let ip = self.ip_of(name);
        wait_for(&format!("app {name}"), || {
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.ns(name),
                    "curl",
                    "-s",
                    "-m",
                    "1",
                    &format!("http://{ip}:8080/marker.txt"),
                ])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        pid
    }

    fn workload(&self, p: &Pod, enrolled: bool) -> Workload {
        Workload {
            uid: format!("Kubernetes//Pod/{}/{}", p.namespace, p.name),
            name: p.name.into(),
            namespace: p.namespace.into(),
            service_account: p.sa.into(),
            node: format!("n{}", p.node),
            addresses: vec![IpAddr::V4(self.pod_ip(p.node, p.host))],
            protocol: if enrolled {
                TunnelProtocol::Hbone
            } else {
                TunnelProtocol::Tcp
            },
            trust_domain: TD.into(),
            ..Default::default()
        }
    }

    /// Every pod enrolled except those in `unenrolled` (by name).
    fn snapshot(&self, unenrolled: &[&str]) -> Snapshot {
        let workloads = PODS
            .iter()
            .map(|p| self.workload(p, !unenrolled.contains(&p.name)))
            .collect();
        let svc = Service {
            name: "svc".into(),
            namespace: "shop".into(),
            hostname: "svc.shop.svc.cluster.local".into(),
            vips: vec![IpAddr::V4(self.vip())],
            ports: vec![ServicePort {
                port: 80,
                target_port: 8080,
                ..Default::default()
            }],
            endpoints: vec![Endpoint {
                workload_uid: "Kubernetes//Pod/shop/b1".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        Snapshot {
            workloads,
            services: vec![svc],
            authorizations: vec![],
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("mesh.yaml")
    }

    fn write_config(&self, snap: &Snapshot) {
        let tmp = self.dir.path().join("mesh.yaml.tmp");
        std::fs::write(&tmp, serde_yaml::to_string(snap).unwrap()).unwrap();
        std::fs::rename(&tmp, self.config_path()).unwrap();
    }

    /// Starts both ztunnels on `snap` and waits until they are ready.
    fn start_ztunnels(&mut self, snap: &Snapshot) {
        self.write_config(snap);
        let (cert, key) = (
            self.dir.path().join("ca.pem"),
            self.dir.path().join("ca-key.pem"),
        );
        std::fs::write(&cert, self.ca.cert_pem()).unwrap();
        std::fs::write(&key, self.ca.key_pem()).unwrap();
        for node in 1..=2usize {
            let log = std::fs::File::create(self.dir.path().join(format!("ztunnel-n{node}.log")))
                .unwrap();
            let template = format!("/var/run/netns/zt{}-{{name}}", self.k);
            let child = Command::new("ip")
                .args(["netns", "exec", &self.ns(&format!("n{node}"))])
                .arg(env!("CARGO_BIN_EXE_ztunnel"))
                .args([
                    "--node",
                    &format!("n{node}"),
                    "--capture",
                    "inpod",
                    "--netns-template",
                    &template,
                ])
                .arg("--config-file")
                .arg(self.config_path())
                .arg("--ca-cert")
                .arg(&cert)
                .arg("--ca-key")
                .arg(&key)
                .args(["--log-level", "info,ztunnel=debug"])
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            self.children.push(child);
        }
        self.wait_ready();
    }

    fn wait_ready(&self) {
        for node in 1..=2usize {
            let ns = self.ns(&format!("n{node}"));
            wait_for(
                &format!("ztunnel on n{node} ready ({})", self.log_hint()),
                || ready_in(&ns),
            );
        }
    }

    fn log_hint(&self) -> String {
        format!("logs in {}", self.dir.path().display())
    }

    /// Does the ztunnel on `node` hold workload `name` with `protocol`
    /// (`HBONE` / `TCP`)? Config reaches the two ztunnels independently.
    fn sees(&self, node: usize, name: &str, protocol: &str) -> bool {
        serde_json::from_str::<serde_json::Value>(&self.admin(node, "/config_dump"))
            .ok()
            .and_then(|v| v["workloads"].as_array().cloned())
            .is_some_and(|ws| {
                ws.iter()
                    .any(|w| w["name"] == name && w["protocol"] == protocol)
            })
    }

    fn captured(&self, pod: &str) -> bool {
        in_ns(&self.ns(pod), &["iptables", "-t", "nat", "-S"]).contains("ZTUNNEL-OUTPUT")
    }

    fn admin(&self, node: usize, path: &str) -> String {
        in_ns(
            &self.ns(&format!("n{node}")),
            &[
                "curl",
                "-s",
                "-m",
                "2",
                &format!("http://127.0.0.1:15000{path}"),
            ],
        )
    }
}

/// Does the proxy in network namespace `ns` answer its readiness probe?
fn ready_in(ns: &str) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "curl",
            "-s",
            "-f",
            "-m",
            "1",
            "http://127.0.0.1:15021/healthz/ready",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// A packet capture on a node's link to the other node.
struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    fn start(t: &Topo, node: usize) -> Self {
        let file = t.dir.path().join(format!("link-{}.pcap", rand_suffix()));
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &t.ns(&format!("n{node}")),
                "tcpdump",
                "--immediate-mode",
                "-i",
                &t.link(node),
                "-U",
                "-s",
                "0",
                "-w",
            ])
            .arg(&file)
            .arg("tcp")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // tcpdump says "listening on ..." once the capture runs.
        let stderr = child.stderr.take().unwrap();
        let mut line = String::new();
        BufReader::new(stderr).read_line(&mut line).unwrap();
        assert!(line.contains("listening"), "tcpdump: {line}");
        Self { child, file }
    }

    /// Stops the capture; returns (raw pcap bytes, decoded packet lines).
    fn finish(mut self) -> (Vec<u8>, Vec<String>) {
        std::thread::sleep(Duration::from_millis(300));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = self.child.wait();
        let raw = std::fs::read(&self.file).unwrap();
        let text = run(&["tcpdump", "-nn", "-r", self.file.to_str().unwrap()]);
        (raw, text.lines().map(str::to_string).collect())
    }
}

fn rand_suffix() -> u32 {
    rand::random()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Every TCP packet on the link is to or from port 15008.
fn only_hbone(lines: &[String]) -> bool {
    lines
        .iter()
        .all(|l| l.contains(".15008 >") || l.contains(".15008:"))
}

#[test]
fn curl_by_ip_and_vip_only_tls_on_the_link() {
    if skip() {
        return;
    }
    let mut t = Topo::new(1);
    t.start_app("b1");
    let snap = t.snapshot(&[]);
    t.start_ztunnels(&snap);
    assert!(t.captured("a1") && t.captured("b1"));

    let cap = Capture::start(&t, 1);
    assert_eq!(
        curl(&t.ns("a1"), "http://b1:8080/marker.txt").as_deref(),
        Ok("SECRET-PAYLOAD-b1\n")
    );
    assert_eq!(
        curl(
            &t.ns("a1"),
            &format!("http://{}:8080/marker.txt", t.ip_of("b1"))
        )
        .as_deref(),
        Ok("SECRET-PAYLOAD-b1\n")
    );
    assert_eq!(
        curl(&t.ns("a1"), "http://svc/marker.txt").as_deref(),
        Ok("SECRET-PAYLOAD-b1\n")
    );
    let (raw, lines) = cap.finish();
    assert!(lines.len() > 10, "capture saw too little: {lines:?}");
    assert!(
        only_hbone(&lines),
        "non-HBONE packets on the node link:\n{}",
        lines.join("\n")
    );
    assert!(
        !contains(&raw, "SECRET-PAYLOAD"),
        "plaintext payload visible on the link"
    );
    assert!(
        !contains(&raw, "GET /marker.txt"),
        "plaintext request visible on the link"
    );

    // Both ztunnels counted the connections with Istio's metric names.
    let m = in_ns(
        &t.ns("n2"),
        &["curl", "-s", "http://127.0.0.1:15020/metrics"],
    );
    assert!(
        m.lines().any(|l| l
            .starts_with("istio_tcp_connections_opened_total{reporter=\"destination\"")
            && l.contains("source_principal=\"spiffe://cluster.local/ns/shop/sa/web\"")
            && l.contains("destination_workload=\"b1\"")),
        "{m}"
    );
    // The admin dump lists certificates for the local identities.
    let dump = t.admin(1, "/config_dump");
    assert!(
        dump.contains("spiffe://cluster.local/ns/shop/sa/web"),
        "{dump}"
    );
    // Runtime log level change.
    let lvl = in_ns(
        &t.ns("n1"),
        &[
            "curl",
            "-s",
            "-X",
            "POST",
            "http://127.0.0.1:15000/logging?level=debug",
        ],
    );
    assert!(lvl.contains("debug"), "{lvl}");
}

/// The converted STRICT PeerAuthentication and the key a workload lists to
/// be under it (what the operator emits for a mesh-wide STRICT).
fn strict() -> (Authorization, String) {
    let key = format!(
        "istio-system/{}",
        mesh_common::model::policy::STATIC_STRICT_POLICY_NAME
    );
    (Authorization::static_strict("istio-system"), key)
}

#[test]
fn strict_refuses_plaintext_permissive_allows_it() {
    if skip() {
        return;
    }
    let mut t = Topo::new(2);
    t.start_app("b1");
    // a2 is not in the mesh: its connections arrive as plaintext.
    let mut snap = t.snapshot(&["a2"]);
    let (strict, key) = strict();
    snap.authorizations.push(strict);
    for w in snap.workloads.iter_mut().filter(|w| w.name == "b1") {
        w.authorization_policies.push(key.clone());
    }
    t.start_ztunnels(&snap);
    assert!(!t.captured("a2"));
    assert_eq!(
        curl(&t.ns("a1"), "http://b1:8080/marker.txt").as_deref(),
        Ok("SECRET-PAYLOAD-b1\n")
    );
    let refused = curl(&t.ns("a2"), "http://b1:8080/marker.txt");
    assert!(
        refused.is_err(),
        "STRICT let plaintext through: {refused:?}"
    );

    // PERMISSIVE (no converted policy): plaintext is accepted on 15006.
    let plain = t.snapshot(&["a2"]);
    t.write_config(&plain);
    wait_for("plaintext accepted after switching to PERMISSIVE", || {
        curl(&t.ns("a2"), "http://b1:8080/marker.txt").as_deref() == Ok("SECRET-PAYLOAD-b1\n")
    });
}

#[test]
fn deny_all_then_allow_exactly_one_principal() {
    if skip() {
        return;
    }
    let mut t = Topo::new(3);
    t.start_app("b1");
    let mut snap = t.snapshot(&[]);
    snap.authorizations = vec![
        Authorization {
            name: "deny-all".into(),
            namespace: "shop".into(),
            scope: RbacScope::Namespace,
            action: RbacAction::Allow,
            rules: vec![],
            dry_run: false,
        },
        Authorization {
            name: "allow-web".into(),
            namespace: "shop".into(),
            scope: RbacScope::Namespace,
            action: RbacAction::Allow,
            rules: vec![vec![vec![RbacMatch {
                principals: vec![StringMatch::parse("cluster.local/ns/shop/sa/web")],
                ..Default::default()
            }]]],
            dry_run: false,
        },
    ];
    t.start_ztunnels(&snap);
    assert_eq!(
        curl(&t.ns("a1"), "http://b1:8080/marker.txt").as_deref(),
        Ok("SECRET-PAYLOAD-b1\n")
    );
    assert!(
        curl(&t.ns("a2"), "http://b1:8080/marker.txt").is_err(),
        "sa/other was let in"
    );
    assert!(
        curl(&t.ns("a2"), "http://svc/marker.txt").is_err(),
        "sa/other was let in via the VIP"
    );
    // Denials are counted by the destination.
    let m = in_ns(
        &t.ns("n2"),
        &["curl", "-s", "http://127.0.0.1:15020/metrics"],
    );
    assert!(
        m.contains("response_flags=\"AuthorizationPolicyDenied\""),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_bound_to_waypoint_goes_through_the_waypoint() {
    if skip() {
        return;
    }
    use mesh_common::hbone::{HboneConfig, HboneServer, InboundRequest};
    use mesh_common::identity::SpiffeId;
    use mesh_common::tls::{self, RotatingCert};
    use tokio::io::AsyncWriteExt;

    let mut t = Topo::new(4);
    t.start_app("b1");
    // The waypoint "pod" behind node 2.
    t.add_pod("wp", 2, 9);
    t.write_hosts();
    let wp_ip = t.pod_ip(2, 9);
    // Stand-in waypoint (the real one lives in host/): an HBONE server with
    // the waypoint's identity listening inside the waypoint pod's network
    // namespace, answering each CONNECT with an HTTP response describing it.
    let ns =
        ztunnel::netns::Netns::open(Path::new(&format!("/var/run/netns/{}", t.ns("wp")))).unwrap();
    let listener = ns
        .run(move || ztunnel::netns::listen_socket(SocketAddr::new(IpAddr::V4(wp_ip), 15008)))
        .unwrap()
        .unwrap();
    let id = SpiffeId::new(TD, "shop", "waypoint");
    let cert =
        RotatingCert::from_bundle(&t.ca.issue_workload(&id, Duration::from_secs(3600)).unwrap())
            .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = HboneServer::new(
        tokio::net::TcpListener::from_std(listener).unwrap(),
        tls::server_config(cert).unwrap(),
        HboneConfig::default(),
    );
    tokio::spawn(server.run(
        |req: InboundRequest| async move {
            let body = format!(
                "via-waypoint authority={} peer={}\n",
                req.authority(),
                req.peer().map(|p| p.to_string()).unwrap_or_default()
            );
            if let Ok(mut s) = req.accept() {
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(resp.as_bytes()).await.ok();
                s.shutdown().await.ok();
            }
        },
        stop.clone(),
    ));
    let mut snap = t.snapshot(&[]);
    snap.services[0].waypoint = Some(WaypointBinding {
        name: "waypoint".into(),
        namespace: "shop".into(),
        addresses: vec![IpAddr::V4(wp_ip)],
        hbone_port: 15008,
        identity: id.to_string(),
        traffic_type: TrafficType::Service,
    });
    t.start_ztunnels(&snap);
    let ns_a1 = t.ns("a1");
    let vip = t.vip();
    let (via_vip, direct) = tokio::task::spawn_blocking(move || {
        (
            curl(&ns_a1, "http://svc/marker.txt"),
            curl(&ns_a1, "http://b1:8080/marker.txt"),
        )
    })
    .await
    .unwrap();
    assert_eq!(
        via_vip.as_deref(),
        Ok(
            format!("via-waypoint authority={vip}:80 peer=spiffe://cluster.local/ns/shop/sa/web\n")
                .as_str()
        )
    );
    // A service waypoint does not see pod-IP traffic.
    assert_eq!(direct.as_deref(), Ok("SECRET-PAYLOAD-b1\n"));
    stop.cancel();
    drop(ns);
}

#[test]
fn enrol_and_unenrol_at_runtime_without_restarting_the_pod() {
    if skip() {
        return;
    }
    let mut t = Topo::new(5);
    let pid = t.start_app("b2");
    // Namespace `legacy` (pod b2) starts outside the mesh.
    t.start_ztunnels(&t.snapshot(&["b2"]));
    assert!(!t.captured("b2"));

    // Plaintext to the unenrolled pod: the payload is visible on the link
    // (this is what the capture checks would catch).
    let cap = Capture::start(&t, 1);
    assert_eq!(
        curl(&t.ns("a1"), "http://b2:8080/marker.txt").as_deref(),
        Ok("SECRET-PAYLOAD-b2\n")
    );
    let (raw, _) = cap.finish();
    assert!(contains(&raw, "SECRET-PAYLOAD-b2"));

    // Enrol the namespace: capture appears, traffic becomes HBONE.
    t.write_config(&t.snapshot(&[]));
    wait_for("b2 captured", || t.captured("b2"));
    t.wait_ready();
    wait_for("both ztunnels see b2 as HBONE", || {
        t.sees(1, "b2", "HBONE") && t.sees(2, "b2", "HBONE")
    });
    let cap = Capture::start(&t, 1);
    assert_eq!(
        curl(&t.ns("a1"), "http://b2:8080/marker.txt").as_deref(),
        Ok("SECRET-PAYLOAD-b2\n")
    );
    let (raw, lines) = cap.finish();
    assert!(
        !lines.is_empty() && only_hbone(&lines),
        "{}",
        lines.join("\n")
    );
    assert!(!contains(&raw, "SECRET-PAYLOAD-b2"));

    // Unenrol: rules removed, plain traffic works again.
    t.write_config(&t.snapshot(&["b2"]));
    wait_for("b2 released", || !t.captured("b2"));
    wait_for("both ztunnels see b2 as TCP", || {
        t.sees(1, "b2", "TCP") && t.sees(2, "b2", "TCP")
    });
    assert_eq!(
        curl(&t.ns("a1"), "http://b2:8080/marker.txt").as_deref(),
        Ok("SECRET-PAYLOAD-b2\n")
    );

    // `istio.io/dataplane-mode=none` is never captured, even when marked HBONE.
    let mut snap = t.snapshot(&[]);
    for w in snap.workloads.iter_mut().filter(|w| w.name == "b2") {
        w.labels
            .insert("istio.io/dataplane-mode".into(), "none".into());
    }
    t.write_config(&snap);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(!t.captured("b2"));

    // The app process was never restarted.
    let (_, app_pid) = t.apps.iter().find(|(n, _)| n == "b2").unwrap();
    assert_eq!(*app_pid, pid);
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok(),
        "app process gone"
    );
    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .unwrap()
            .contains("http.server")
    );
}

/// The waypoint binary (host/), if built: `WAYPOINT_BIN`, or next to ztunnel.
fn waypoint_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WAYPOINT_BIN") {
        return Some(PathBuf::from(p));
    }
    let sibling = Path::new(env!("CARGO_BIN_EXE_ztunnel")).with_file_name("waypoint");
    sibling.exists().then_some(sibling)
}

/// With the real waypoint (host/): a Service bound to it is reached through
/// it, and the destination ztunnel sees the waypoint's identity. b1 only
/// admits the waypoint's principal, so the same request straight to the pod
/// IP is refused, proving the VIP path went through the waypoint. A second
/// service port declared `tcp-raw` carries bytes that are not HTTP through
/// the waypoint's TCP path to an echo server.
#[test]
fn service_bound_to_the_real_waypoint() {
    if skip() {
        return;
    }
    let Some(wp_bin) = waypoint_bin() else {
        eprintln!(
            "SKIPPED: real waypoint binary not found (cargo build -p waypoint, or set WAYPOINT_BIN)"
        );
        return;
    };
    let mut t = Topo::new(6);
    t.start_app("b1");
    t.add_pod("wp", 2, 9);
    t.write_hosts();
    let wp_ip = t.pod_ip(2, 9);
    let wp_id = mesh_common::identity::SpiffeId::new(TD, "shop", "waypoint");
    let bundle =
        t.ca.issue_workload(&wp_id, Duration::from_secs(3600))
            .unwrap();
    let dir = t.dir.path().to_path_buf();
    std::fs::write(dir.join("wp-chain.pem"), &bundle.chain_pem).unwrap();
    std::fs::write(dir.join("wp-key.pem"), &bundle.key_pem).unwrap();
    std::fs::write(dir.join("wp-roots.pem"), &bundle.roots_pem).unwrap();
    let b1 = t.ip_of("b1");
    let wp_cfg = serde_json::json!({
        "name": "waypoint",
        "namespace": "shop",
        "identity": wp_id.to_string(),
        "trafficType": "service",
        "services": [{
            "hostname": "svc.shop.svc.cluster.local",
            "name": "svc",
            "namespace": "shop",
            "vips": [t.vip().to_string()],
            "ports": [
                {"port": 80, "targetPort": 8080, "name": "http"},
                {"port": 9000, "targetPort": 9000, "name": "tcp-raw"},
            ],
            "endpoints": [{
                "workloadUid": "Kubernetes//Pod/shop/b1",
                "name": "b1",
                "namespace": "shop",
                "address": b1.to_string(),
                "ports": {"80": 8080, "9000": 9000},
                "hbone": true,
                "identity": format!("spiffe://{TD}/ns/shop/sa/server"),
            }],
        }],
        "filters": [],
    });
    std::fs::write(
        dir.join("wp.json"),
        serde_json::to_vec_pretty(&wp_cfg).unwrap(),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("waypoint.log")).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &t.ns("wp")])
        .arg(&wp_bin)
        .arg("--config")
        .arg(dir.join("wp.json"))
        .args([
            "--hbone-addr",
            "0.0.0.0:15008",
            "--http-addr",
            "off",
            "--admin-addr",
            "off",
        ])
        .args([
            "--metrics-addr",
            "127.0.0.1:15020",
            "--ready-addr",
            "127.0.0.1:15021",
        ])
        .arg("--cert-chain")
        .arg(dir.join("wp-chain.pem"))
        .arg("--key")
        .arg(dir.join("wp-key.pem"))
        .arg("--roots")
        .arg(dir.join("wp-roots.pem"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    t.children.push(child);
    wait_for(&format!("waypoint ready ({})", t.log_hint()), || {
        ready_in(&t.ns("wp"))
    });

    // A raw TCP echo server on b1:9000 (the service's `tcp-raw` port).
    let echo = Command::new("ip")
        .args([
            "netns",
            "exec",
            &t.ns("b1"),
            "/usr/bin/python3",
            "-c",
            TCP_ECHO,
        ])
        .spawn()
        .unwrap();
    t.children.push(echo);

    let mut snap = t.snapshot(&[]);
    snap.services[0].ports.push(ServicePort {
        port: 9000,
        target_port: 9000,
        name: "tcp-raw".into(),
        ..Default::default()
    });
    snap.services[0].waypoint = Some(WaypointBinding {
        name: "waypoint".into(),
        namespace: "shop".into(),
        addresses: vec![IpAddr::V4(wp_ip)],
        hbone_port: 15008,
        identity: wp_id.to_string(),
        traffic_type: TrafficType::Service,
    });
    // b1 admits only the waypoint.
    snap.authorizations.push(Authorization {
        name: "only-waypoint".into(),
        namespace: "shop".into(),
        scope: RbacScope::WorkloadSelector,
        action: RbacAction::Allow,
        rules: vec![vec![vec![RbacMatch {
            principals: vec![StringMatch::parse("cluster.local/ns/shop/sa/waypoint")],
            ..Default::default()
        }]]],
        dry_run: false,
    });
    for w in snap.workloads.iter_mut().filter(|w| w.name == "b1") {
        w.authorization_policies.push("shop/only-waypoint".into());
    }
    t.start_ztunnels(&snap);
    assert_eq!(
        curl(&t.ns("a1"), "http://svc/marker.txt").as_deref(),
        Ok("SECRET-PAYLOAD-b1\n"),
        "via the waypoint ({})",
        t.log_hint()
    );
    assert!(
        curl(&t.ns("a1"), "http://b1:8080/marker.txt").is_err(),
        "direct pod traffic bypassed the policy"
    );
    let m = in_ns(
        &t.ns("n2"),
        &["curl", "-s", "http://127.0.0.1:15020/metrics"],
    );
    assert!(
        m.lines().any(|l| l
            .starts_with("istio_tcp_connections_opened_total{reporter=\"destination\"")
            && l.contains("source_principal=\"spiffe://cluster.local/ns/shop/sa/waypoint\"")),
        "{m}"
    );
    // The TCP port: bytes that are not HTTP go through the waypoint's TCP
    // path unchanged (and b1 still admits only the waypoint).
    let vip = t.vip();
    let mut echoed = String::new();
    for _ in 0..50 {
        echoed = in_ns(
            &t.ns("a1"),
            &[
                "/usr/bin/python3",
                "-c",
                TCP_CLIENT,
                &vip.to_string(),
                "9000",
            ],
        );
        if !echoed.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        echoed.trim(),
        "00ff0d0a6e6f742d68747470",
        "TCP echo through the waypoint ({})",
        t.log_hint()
    );
    let wm = in_ns(
        &t.ns("wp"),
        &["curl", "-s", "http://127.0.0.1:15020/metrics"],
    );
    assert!(
        wm.contains("istio_requests_total"),
        "waypoint saw no request: {wm}"
    );
    assert!(
        wm.lines().any(|l| l
            .starts_with("istio_tcp_connections_opened_total{reporter=\"waypoint\"")
            && l.contains("source_principal=\"spiffe://cluster.local/ns/shop/sa/web\"")
            && l.contains("request_protocol=\"tcp\"")),
        "waypoint saw no TCP connection: {wm}"
    );
}

/// A one-connection-at-a-time TCP echo server on port 9000.
const TCP_ECHO: &str = r#"
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 9000))
s.listen(16)
while True:
    c, _ = s.accept()
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.close()
"#;

/// Sends 12 bytes (not HTTP) to argv[1]:argv[2], prints the echo as hex
/// (nothing on failure).
const TCP_CLIENT: &str = r#"
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    m = bytes([0, 255, 13, 10]) + b'not-http'
    c.sendall(m)
    got = b''
    while len(got) < len(m):
        d = c.recv(100)
        if not d:
            break
        got += d
    print(got.hex())
except OSError:
    pass
"#;
