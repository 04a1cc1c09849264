//! Scale benchmark: 1,000 services / 10,000 workloads / 2,000 policies.
//!
//! ```text
//! cargo bench -p operator --bench scale                      # 50 proxies
//! SCALE_CLIENTS=100 SCALE_ROUNDS=7 cargo bench -p operator --bench scale
//! SCALE_APPLY_ONLY=50 cargo bench -p operator --bench scale  # no proxies (profiling)
//! ```
//!
//! Prints the full recompute (validate + translate + publish) time, the
//! operator RSS, and, for one changed AuthorizationPolicy (`SCALE_ROUNDS`
//! changes, median and worst), the delay until every connected proxy has it.
//!
//! The proxies are real [`XdsClient`]s on real HTTP/2 connections over
//! loopback, in a child process (this binary re-executed with
//! `SCALE_ROLE=proxies`), so the operator's RSS is its own and each side's
//! work is scheduled by the kernel as with separate proxies. Three instants
//! are reported per change, all from the moment `Controller::apply` is
//! called: the store holds the new revision (`apply` published it), the
//! server handed the delta frame to the HTTP/2 stream of every connection
//! (measured on the operator's response bodies), and every proxy applied it
//! (its handler ran; wall clock of the child process).

use http_body_util::BodyExt;
use mesh_common::model::ProxyKind;
use mesh_common::xds::client::{XdsClient, XdsClientConfig};
use mesh_common::xds::server::XdsServer;
use mesh_common::xds::store::ConfigStore;
use mesh_common::xds::transport::{self, Endpoint};
use operator::config::parse::{ParsedDoc, parse_value};
use operator::config::{
    ConfigSet, NamespaceInfo, PodInfo, ServiceInfo, ServicePortInfo, TargetPort,
};
use operator::controller::{Controller, Snapshot, SourcedObject};
use parking_lot::Mutex;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const NAMESPACES: usize = 100;
const SERVICES: usize = 1000;
const WORKLOADS: usize = 10_000;
const POLICIES: usize = 2000;
/// The principal of policy `ns-0/p-0` in change round `r` carries this marker.
const MARKER: &[u8] = b"sa/round-";

fn env_usize(k: &str, default: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kb() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

fn wall_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// Round number after the marker in `bytes`, if any.
fn find_round(bytes: &[u8]) -> Option<u64> {
    let at = bytes.windows(MARKER.len()).position(|w| w == MARKER)? + MARKER.len();
    let digits: Vec<u8> = bytes[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

fn obj(v: serde_json::Value) -> SourcedObject {
    match parse_value(v, "bench", "default").unwrap() {
        ParsedDoc::Object(o) => SourcedObject {
            object: o,
            origin: None,
        },
        _ => unreachable!(),
    }
}

fn policy(i: usize, principal: &str) -> SourcedObject {
    let ns = format!("ns-{}", i % NAMESPACES);
    let svc = i % SERVICES;
    let spec = match i % 4 {
        0 => {
            json!({"selector": {"matchLabels": {"app": format!("svc-{svc}")}}, "rules": [{"from": [{"source": {"principals": [principal]}}], "to": [{"operation": {"ports": ["8080"]}}]}]})
        }
        1 => {
            json!({"action": "DENY", "rules": [{"from": [{"source": {"notNamespaces": [ns.clone(), "istio-system"]}}], "to": [{"operation": {"ports": [format!("{}", 9000 + i % 100)]}}]}]})
        }
        2 => {
            json!({"selector": {"matchLabels": {"app": format!("svc-{svc}")}}, "rules": [{"from": [{"source": {"namespaces": ["ns-1", "ns-2"]}}], "to": [{"operation": {"methods": ["GET"], "paths": ["/api/*"]}}]}]})
        }
        _ => {
            json!({"action": "DENY", "rules": [{"when": [{"key": "source.ip", "values": [format!("10.{}.0.0/16", i % 250)]}]}]})
        }
    };
    obj(
        json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": format!("p-{i}"), "namespace": ns}, "spec": spec}),
    )
}

fn snapshot(changed_principal: &str) -> Snapshot {
    let mut base = ConfigSet::default();
    for n in 0..NAMESPACES {
        let mut labels =
            BTreeMap::from([("istio.io/dataplane-mode".to_string(), "ambient".to_string())]);
        if n < 10 {
            labels.insert("istio.io/use-waypoint".into(), "waypoint".into());
        }
        base.namespaces.insert(
            format!("ns-{n}"),
            NamespaceInfo {
                name: format!("ns-{n}"),
                labels,
            },
        );
    }
    for s in 0..SERVICES {
        base.services.push(ServiceInfo {
            name: format!("svc-{s}"),
            namespace: format!("ns-{}", s % NAMESPACES),
            vips: vec![format!("10.96.{}.{}", s / 250, s % 250).parse().unwrap()],
            ports: vec![ServicePortInfo {
                name: "http".into(),
                port: 80,
                target_port: TargetPort::Number(8080),
                app_protocol: Some("http".into()),
            }],
            selector: Some(BTreeMap::from([("app".to_string(), format!("svc-{s}"))])),
            ..Default::default()
        });
    }
    for w in 0..WORKLOADS {
        let s = w % SERVICES;
        base.pods.push(PodInfo {
            name: format!("svc-{s}-{w}"),
            namespace: format!("ns-{}", s % NAMESPACES),
            labels: BTreeMap::from([
                ("app".to_string(), format!("svc-{s}")),
                ("version".to_string(), format!("v{}", w % 2)),
            ]),
            service_account: format!("sa-{s}"),
            node: format!("node-{}", w % 50),
            ips: vec![
                format!("10.{}.{}.{}", 100 + w / 65536, (w / 256) % 256, w % 256)
                    .parse()
                    .unwrap(),
            ],
            ready: true,
            ..Default::default()
        });
    }
    for n in 0..10 {
        base.waypoint_addresses.insert(
            format!("ns-{n}/waypoint"),
            vec![format!("10.200.0.{n}").parse().unwrap()],
        );
    }
    let mut objects: Vec<SourcedObject> = Vec::new();
    objects.push(obj(json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "default", "namespace": "istio-system"}, "spec": {"mtls": {"mode": "STRICT"}}})));
    for n in 0..10 {
        let ns = format!("ns-{n}");
        objects.push(obj(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "waypoint", "namespace": ns}, "spec": {"gatewayClassName": "istio-waypoint", "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}})));
        objects.push(obj(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "split", "namespace": ns}, "spec": {"hosts": [format!("svc-{n}")], "http": [{"route": [{"destination": {"host": format!("svc-{n}"), "subset": "v0"}, "weight": 90}, {"destination": {"host": format!("svc-{n}"), "subset": "v1"}, "weight": 10}]}]}})));
        objects.push(obj(json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "dr", "namespace": ns}, "spec": {"host": format!("svc-{n}"), "subsets": [{"name": "v0", "labels": {"version": "v0"}}, {"name": "v1", "labels": {"version": "v1"}}], "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 100}}}}})));
    }
    for i in 0..POLICIES {
        let p = if i == 0 {
            changed_principal
        } else {
            "cluster.local/ns/ns-1/sa/sa-1"
        };
        objects.push(policy(i, p));
    }
    Snapshot {
        base,
        objects,
        ..Default::default()
    }
}

fn round_snapshot(r: u64) -> Snapshot {
    snapshot(&format!("cluster.local/ns/ns-9/sa/round-{r}"))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if std::env::var("SCALE_ROLE").as_deref() == Ok("proxies") {
        proxies_main();
    } else {
        operator_main();
    }
}

/// The child process: `SCALE_CLIENTS` ztunnel push clients. Prints
/// `synced`, then `applied <round> <first> <last>` (wall-clock nanoseconds)
/// once every client applied a round's change; exits when stdin closes.
fn proxies_main() {
    let n = env_usize("SCALE_CLIENTS", 50);
    let addr: std::net::SocketAddr = std::env::var("SCALE_ADDR").unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let rounds: Arc<Mutex<HashMap<u64, Vec<u128>>>> = Arc::default();
        let mut clients = Vec::new();
        for i in 0..n {
            let rounds = rounds.clone();
            let cfg = XdsClientConfig::new(
                Endpoint::plaintext(addr),
                format!("node-{i}"),
                ProxyKind::Ztunnel,
            );
            clients.push(XdsClient::start(
                cfg,
                move |u: &mesh_common::xds::client::Update<'_>| {
                    if u.upserted.iter().any(|k| k == "ns-0/p-0")
                        && let Some(p) = u.state.authorizations.get("ns-0/p-0")
                        && let Some(r) = find_round(format!("{:?}", p.rules).as_bytes())
                    {
                        let now = wall_nanos();
                        let mut rounds = rounds.lock();
                        let v = rounds.entry(r).or_default();
                        v.push(now);
                        if v.len() == n {
                            let (a, b) = (v.iter().min().unwrap(), v.iter().max().unwrap());
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(out, "applied {r} {a} {b}");
                            let _ = out.flush();
                        }
                    }
                    Ok(())
                },
            ));
        }
        for c in &clients {
            c.wait_synced(Duration::from_secs(600)).await.unwrap();
        }
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "synced");
            let _ = out.flush();
        }
        // Until the parent closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        })
        .await
        .unwrap();
        drop(clients);
    });
}

/// Child process holding the proxies; killed on drop.
struct Proxies {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Drop for Proxies {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxies {
    fn spawn(addr: std::net::SocketAddr, n: usize) -> Proxies {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .env("SCALE_ROLE", "proxies")
            .env("SCALE_ADDR", addr.to_string())
            .env("SCALE_CLIENTS", n.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(stdout).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Proxies { child, lines }
    }

    fn line(&self, timeout: Duration) -> String {
        self.lines
            .recv_timeout(timeout)
            .expect("the proxies process answers")
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn operator_main() {
    let clients_n = env_usize("SCALE_CLIENTS", 50);
    let rounds_n = env_usize("SCALE_ROUNDS", 5) as u64;
    let (rss0, _) = rss_kb();
    let snap = snapshot("cluster.local/ns/ns-1/sa/sa-1");
    let store = ConfigStore::new();
    let controller = Controller::new(store.clone());
    let t0 = Instant::now();
    controller.apply(snap.clone()).unwrap();
    let first = t0.elapsed();
    let stats = controller.stats();
    let t = controller.translation().unwrap();
    println!(
        "scale: {} services, {} workloads, {} policies (+{} converted), {} waypoints",
        t.services.len(),
        t.workloads.len(),
        POLICIES,
        t.authorizations.len() - POLICIES,
        t.waypoints.len()
    );
    drop(t);
    println!(
        "full recompute (validate + translate + publish, cold store): {} (translate {}, publish {})",
        ms(first),
        ms(stats.translate),
        ms(stats.publish)
    );
    // A full recompute with an inventory change (forces the full path).
    let mut snap2 = snap.clone();
    snap2.base.pods[0].ready = false;
    let t1 = Instant::now();
    controller.apply(snap2).unwrap();
    let s2 = controller.stats();
    println!(
        "full recompute (one pod changed, warm store): {} (translate {}, publish {})",
        ms(t1.elapsed()),
        ms(s2.translate),
        ms(s2.publish)
    );
    let cs = controller.config().unwrap();
    let t2 = Instant::now();
    let tr = operator::translate::translate(&cs, &Default::default());
    println!("translate() alone: {}", ms(t2.elapsed()));
    drop((tr, cs));
    controller.apply(snap.clone()).unwrap();
    drop(snap);
    let (rss, hwm) = rss_kb();
    println!(
        "operator RSS after recompute: {} MiB (peak {} MiB; process baseline {} MiB)",
        rss / 1024,
        hwm / 1024,
        rss0 / 1024
    );

    let apply_only = env_usize("SCALE_APPLY_ONLY", 0) as u64;
    if apply_only > 0 {
        // Profiling aid: one-policy changes without proxies.
        let mut times = Vec::new();
        for r in 1..=apply_only {
            let s = round_snapshot(r);
            let t = Instant::now();
            controller.apply(s).unwrap();
            times.push(t.elapsed());
        }
        println!(
            "one-policy change, controller apply only ({apply_only}×): median {}, max {}",
            ms(median(times.clone())),
            ms(times.iter().copied().max().unwrap_or_default())
        );
        return;
    }

    // Push server; every delta frame carrying a round marker is time-stamped
    // when hyper takes it from the response body for the HTTP/2 stream.
    let handed: Arc<Mutex<HashMap<u64, Vec<u128>>>> = Arc::default();
    let xds = XdsServer::new(store.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let x = xds.clone();
    let hd = handed.clone();
    let h: transport::Handler = Arc::new(move |req, _| {
        let x = x.clone();
        let hd = hd.clone();
        Box::pin(async move {
            x.handle(req).map(|body| {
                body.map_frame(move |f| {
                    if let Some(d) = f.data_ref()
                        && d.len() < (1 << 20)
                        && let Some(r) = find_round(d)
                    {
                        hd.lock().entry(r).or_default().push(wall_nanos());
                    }
                    f
                })
                .boxed()
            })
        })
    });
    tokio::spawn(transport::serve(listener, None, h, stop.clone()));

    let ts = Instant::now();
    let proxies = Proxies::spawn(addr, clients_n);
    let l = tokio::task::block_in_place(|| proxies.line(Duration::from_secs(900)));
    assert_eq!(l, "synced");
    println!(
        "{clients_n} proxies (child process) connected and synced (initial full push) in {}",
        ms(ts.elapsed())
    );
    // Let the last ACKs arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss, hwm) = rss_kb();
    println!(
        "operator RSS with {clients_n} proxies connected: {} MiB (peak {} MiB)",
        rss / 1024,
        hwm / 1024
    );
    // The server trims the heap once large initial pushes are ACKed
    // (`mesh_common::mem::trim_soon`, after a quiet period).
    tokio::time::sleep(mesh_common::mem::SETTLE * 4).await;
    let (rss, _) = rss_kb();
    println!(
        "operator RSS with {clients_n} proxies connected, after the initial pushes settled: {} MiB",
        rss / 1024
    );

    let (mut stored, mut hand_first, mut hand_all, mut prx_first, mut prx_all) =
        (vec![], vec![], vec![], vec![], vec![]);
    for r in 1..=rounds_n {
        let s = round_snapshot(r);
        let start = wall_nanos();
        let rev0 = store.revision();
        let t = Instant::now();
        controller.apply(s).unwrap();
        let apply_d = t.elapsed();
        assert!(store.revision() > rev0, "the change reached the store");
        let since = |n: u128| Duration::from_nanos((n - start) as u64);
        // Server hand-off to every connection.
        let deadline = Instant::now() + Duration::from_secs(60);
        let (h_first, h_last) = loop {
            {
                let hd = handed.lock();
                if let Some(v) = hd.get(&r)
                    && v.len() >= clients_n
                {
                    break (
                        since(*v.iter().min().unwrap()),
                        since(*v.iter().max().unwrap()),
                    );
                }
            }
            assert!(Instant::now() < deadline, "delta not sent to every proxy");
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        let line = tokio::task::block_in_place(|| proxies.line(Duration::from_secs(60)));
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!((f[0], f[1]), ("applied", r.to_string().as_str()), "{line}");
        let (p_first, p_last) = (since(f[2].parse().unwrap()), since(f[3].parse().unwrap()));
        println!(
            "  round {r}: apply {} (store updated), server → all {clients_n} connections {} (first {}), applied by all {clients_n} proxies {} (first {}); fast path: {}",
            ms(apply_d),
            ms(h_last),
            ms(h_first),
            ms(p_last),
            ms(p_first),
            controller.stats().fast_path
        );
        stored.push(apply_d);
        hand_first.push(h_first);
        hand_all.push(h_last);
        prx_first.push(p_first);
        prx_all.push(p_last);
        // Changes arrive spaced out; let ACKs and deferred work settle.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let worst = |v: &Vec<Duration>| ms(v.iter().copied().max().unwrap_or_default());
    println!(
        "one-policy change, {clients_n} proxies, median of {rounds_n} (worst): controller apply {} ({}); server → all connections {} ({}), first {}; applied by all proxies {} ({}), first {}",
        ms(median(stored.clone())),
        worst(&stored),
        ms(median(hand_all.clone())),
        worst(&hand_all),
        ms(median(hand_first)),
        ms(median(prx_all.clone())),
        worst(&prx_all),
        ms(median(prx_first)),
    );
    let (rss, hwm) = rss_kb();
    println!(
        "operator RSS after the changes: {} MiB (peak {} MiB)",
        rss / 1024,
        hwm / 1024
    );
    drop(proxies);
    stop.cancel();
}
