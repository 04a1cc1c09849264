//! Tier 2 (root): the seed guide from §3 to §10 and its Verify section,
//! driven through `meshctl` against a local mesh of real processes
//! (operator, two ztunnels in in-pod capture mode, waypoints, pods in
//! network namespaces) and real `curl`s inside the pods.

use mesh_e2e::{LocalMesh, metric_sum, repo, skip_unless_root};
use std::time::Duration;

const NS: &str = "shop";

fn file(p: &str) -> String {
    repo().join("examples").join(p).display().to_string()
}

fn app_pid(m: &LocalMesh, prefix: &str) -> u64 {
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.dir.path().join("state.json")).unwrap()).unwrap();
    st["pods"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v["app"]["pid"].as_u64().unwrap())
        .unwrap()
}

fn workloads(m: &LocalMesh) -> String {
    m.ok(&["ztunnel-config", "workloads", "--workload-namespace", NS])
        .stdout
}

#[test]
fn seed_walkthrough_sections_3_to_10_and_verify() {
    if skip_unless_root() {
        return;
    }
    let m = LocalMesh::up(1, &["--bare"]);

    // §2: control plane, ztunnel on every node, the Gateway API CRDs.
    let pods = m.ok(&["get", "pods", "-n", "istio-system"]).stdout;
    assert!(
        pods.contains("istiod")
            && pods.contains("ztunnel-node1")
            && pods.contains("ztunnel-node2")
            && !pods.contains("Failed"),
        "{pods}"
    );
    let ds = m
        .ok(&["get", "daemonset", "ztunnel", "-n", "istio-system"])
        .stdout;
    assert!(
        ds.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["ztunnel", "2", "2"]),
        "{ds}"
    );
    m.ok(&["get", "crd", "gateways.gateway.networking.k8s.io"]);

    // §3: before enrolment every workload is plain TCP; then a label, no restart.
    let before = workloads(&m);
    assert!(
        before.contains(" TCP") && !before.contains("HBONE"),
        "{before}"
    );
    let pid = app_pid(&m, "shop/orders-v1");
    assert_eq!(
        m.curl(NS, "deploy/web", "http://orders/api/health", &[]).0,
        "200"
    );
    m.ok(&["label", "namespace", NS, "istio.io/dataplane-mode=ambient"]);
    m.wait_for("every shop workload HBONE", Duration::from_secs(30), || {
        let w = workloads(&m);
        w.contains("HBONE") && !w.contains(" TCP")
    });
    let probe = m
        .ok(&["get", "pod", "probe", "-n", NS, "-o", "yaml"])
        .stdout;
    m.wait_for(
        "the redirection annotation",
        Duration::from_secs(30),
        || {
            m.ok(&["get", "pod", "probe", "-n", NS, "-o", "yaml"])
                .stdout
                .contains("ambient.istio.io/redirection: enabled")
        },
    );
    assert!(!probe.is_empty());
    // Excluding one pod, and taking it back.
    let probe_proto = |m: &LocalMesh| {
        workloads(m)
            .lines()
            .find(|l| l.contains(" probe "))
            .map(|l| l.split_whitespace().last().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    m.ok(&[
        "label",
        "pod",
        "probe",
        "-n",
        NS,
        "istio.io/dataplane-mode=none",
        "--overwrite",
    ]);
    m.wait_for("probe excluded (TCP)", Duration::from_secs(30), || {
        probe_proto(&m) == "TCP"
    });
    m.ok(&[
        "label",
        "pod",
        "probe",
        "-n",
        NS,
        "istio.io/dataplane-mode-",
    ]);
    m.wait_for("probe enrolled again", Duration::from_secs(30), || {
        probe_proto(&m) == "HBONE"
    });
    assert_eq!(
        app_pid(&m, "shop/orders-v1"),
        pid,
        "enrolment must not restart the app"
    );
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the app process is gone"
    );
    assert_eq!(
        m.curl(NS, "deploy/web", "http://orders/api/health", &[]).0,
        "200"
    );
    let zt = m
        .ok(&[
            "exec",
            "-n",
            "istio-system",
            "ds/ztunnel",
            "--",
            "curl",
            "-s",
            "localhost:15020/metrics",
        ])
        .stdout
        + &m.ok(&[
            "exec",
            "-n",
            "istio-system",
            "ztunnel-node2",
            "--",
            "curl",
            "-s",
            "localhost:15020/metrics",
        ])
        .stdout;
    assert!(
        metric_sum(
            &zt,
            "istio_tcp_connections_opened_total",
            &[("connection_security_policy", "mutual_tls")]
        ) > 0.0,
        "no mTLS connection in ztunnel metrics:\n{zt}"
    );

    // §4: STRICT + default deny + L4 allow for web.
    m.ok(&[
        "apply",
        "-f",
        &file("shop/10-peer-authentication.yaml"),
        "-f",
        &file("shop/11-deny-all.yaml"),
        "-f",
        &file("shop/12-orders-allow-web.yaml"),
    ]);
    m.wait_for("probe refused at L4", Duration::from_secs(30), || {
        m.curl(NS, "probe", "http://orders/api/health", &[]).0 != "200"
    });
    assert_eq!(
        m.curl(NS, "deploy/web", "http://orders/api/health", &[]).0,
        "200"
    );

    // §5: a waypoint for the namespace.
    let r = m
        .ok(&[
            "waypoint",
            "apply",
            "-n",
            NS,
            "--enroll-namespace",
            "--wait",
        ])
        .stdout;
    assert!(
        r.contains("✅ waypoint shop/waypoint applied")
            && r.contains("✅ waypoint shop/waypoint is ready!"),
        "{r}"
    );
    assert!(
        r.contains("✅ namespace shop labeled with \"istio.io/use-waypoint: waypoint\""),
        "{r}"
    );
    let gw = m
        .ok(&["get", "gateways.gateway.networking.k8s.io", "-n", NS])
        .stdout;
    assert!(
        gw.contains("waypoint") && gw.contains("istio-waypoint") && gw.contains("True"),
        "{gw}"
    );
    // Kubernetes' own namespaces exist, as on any cluster (istioctl's
    // `waypoint apply` defaults to `default`).
    let nss = m.ok(&["get", "ns"]).stdout;
    assert!(
        nss.contains("default") && nss.contains("kube-system") && nss.contains(NS),
        "{nss}"
    );
    let list = m.ok(&["waypoint", "list", "-n", NS]).stdout;
    // No --for: no istio.io/waypoint-for label, which istioctl lists as `none`.
    assert!(
        list.contains("waypoint") && list.contains("none") && list.contains("True"),
        "{list}"
    );
    // Behind the waypoint, orders' ztunnel sees the waypoint's identity: deny-all refuses it…
    m.wait_for(
        "web → orders refused at the waypoint → orders hop",
        Duration::from_secs(30),
        || m.curl(NS, "deploy/web", "http://orders/api/health", &[]).0 != "200",
    );
    // …until the waypoint's principal is allowed.
    m.ok(&["apply", "-f", &file("shop/13-orders-allow-waypoint.yaml")]);
    m.wait_for(
        "web → orders through the waypoint",
        Duration::from_secs(30),
        || m.curl(NS, "deploy/web", "http://orders/api/health", &[]).0 == "200",
    );

    // §6: subsets and the canary with its header escape hatch.
    m.ok(&[
        "apply",
        "-f",
        &file("shop/30-destination-rule.yaml"),
        "-f",
        &file("shop/31-virtual-service.yaml"),
    ]);
    m.wait_for("x-canary: always → v2", Duration::from_secs(30), || {
        (0..5).all(|_| {
            m.curl(
                NS,
                "deploy/web",
                "http://orders/api/health",
                &["-H", "x-canary: always"],
            )
            .1
            .contains("\"version\":\"v2\"")
        })
    });

    // §7: L7 authorization and JWT at the waypoint.
    m.ok(&[
        "apply",
        "-f",
        &file("shop/40-orders-l7.yaml"),
        "-f",
        &file("shop/41-request-authentication.yaml"),
        "-f",
        &file("shop/42-orders-require-jwt.yaml"),
    ]);
    m.wait_for("probe → orders 403", Duration::from_secs(30), || {
        m.curl(NS, "probe", "http://orders.shop/api/health", &[]).0 == "403"
    });
    assert_eq!(
        m.curl(NS, "deploy/web", "http://orders/api/health", &[]).0,
        "200"
    );
    assert_eq!(
        m.curl(
            NS,
            "deploy/web",
            "http://orders/api/orders",
            &["-X", "POST", "-d", "{}"]
        )
        .0,
        "200"
    );
    assert_eq!(
        m.curl(NS, "deploy/web", "http://orders/admin", &[]).0,
        "403"
    );
    // The seed's third call: POST outside /api/ is denied.
    assert_eq!(
        m.curl(
            NS,
            "deploy/web",
            "http://orders/admin/orders",
            &["-X", "POST", "-d", "{}"]
        )
        .0,
        "403"
    );
    let token = m
        .ok(&["jwt", "mint", "--sub", "alice"])
        .stdout
        .trim()
        .to_string();
    let bearer = format!("Authorization: Bearer {token}");
    assert_eq!(
        m.curl(
            NS,
            "probe",
            "http://orders.shop/api/health",
            &["-H", &bearer]
        )
        .0,
        "200",
        "a valid token admits probe"
    );
    assert_eq!(
        m.curl(
            NS,
            "probe",
            "http://orders.shop/api/health",
            &["-H", "Authorization: Bearer not.a.token"]
        )
        .0,
        "401"
    );
    // The guide's one-shot probe pod (default service account), removed afterwards.
    let r = m.ok(&[
        "run",
        "probe-once",
        "--rm",
        "-i",
        "-t",
        "--image=curlimages/curl",
        "-n",
        NS,
        "--restart=Never",
        "--",
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}\\n",
        "http://orders.shop/api/health",
    ]);
    assert_eq!(r.stdout.trim(), "403", "{}{}", r.stdout, r.stderr);
    assert!(
        m.run(&["get", "pod", "probe-once", "-n", NS]).code != 0,
        "--rm left the pod"
    );

    // §8: resilience (its own VirtualService), then fault injection (its own too).
    m.ok(&[
        "delete",
        "-f",
        &file("shop/31-virtual-service.yaml"),
        "-f",
        &file("shop/30-destination-rule.yaml"),
    ]);
    m.ok(&["apply", "-f", &file("resilience/orders-resilience.yaml")]);
    m.wait_for(
        "perTryTimeout 500ms × 3 attempts inside the 2s route timeout",
        Duration::from_secs(30),
        || {
            let t0 = std::time::Instant::now();
            let code = m
                .curl(NS, "deploy/web", "http://orders/api/slow/delay/1500", &[])
                .0;
            code == "504" && t0.elapsed() < Duration::from_secs(5)
        },
    );
    m.ok(&["delete", "virtualservice", "orders-resilience", "-n", NS]);
    m.ok(&["apply", "-f", &file("resilience/orders-fault.yaml")]);
    m.wait_for("aborts injected", Duration::from_secs(30), || {
        m.curl_many(
            NS,
            "deploy/web",
            "http://orders/api/health",
            20,
            &["--parallel", "--parallel-max", "20"],
        )
        .iter()
        .any(|c| c == "503")
    });
    let codes = m.curl_many(
        NS,
        "deploy/web",
        "http://orders/api/health",
        300,
        &["--parallel", "--parallel-max", "50"],
    );
    let aborted = codes.iter().filter(|c| *c == "503").count();
    assert_eq!(
        codes.len(),
        300,
        "one status per request expected, got {} lines",
        codes.len()
    );
    assert!(
        (6..=60).contains(&aborted),
        "10% abort expected (4.5σ bounds 6–60 of 300), got {aborted}"
    );
    // The seed calls fault + retries in one route a rejection; Istio
    // accepts it, and so do we (the seed's rule is opt-in).
    m.ok(&["apply", "-f", &file("resilience/fault-with-retries.yaml")]);
    m.ok(&[
        "delete",
        "virtualservice",
        "orders-fault-and-retries",
        "-n",
        NS,
    ]);
    m.ok(&["delete", "virtualservice", "orders-fault", "-n", NS]);
    m.ok(&["delete", "destinationrule", "orders-cb", "-n", NS]);
    m.ok(&[
        "apply",
        "-f",
        &file("shop/30-destination-rule.yaml"),
        "-f",
        &file("shop/31-virtual-service.yaml"),
    ]);

    // §9: telemetry.
    m.ok(&["apply", "-f", &file("shop/50-telemetry.yaml")]);
    m.wait_for(
        "an access log line for /api/health",
        Duration::from_secs(30),
        || {
            let _ = m.curl(NS, "deploy/web", "http://orders/api/health", &[]);
            m.ok(&[
                "logs",
                "-n",
                NS,
                "deploy/waypoint",
                "-c",
                "istio-proxy",
                "--tail",
                "50",
            ])
            .stdout
            .contains("/api/health")
        },
    );
    let wm = m.waypoint_metrics(NS, "waypoint");
    assert!(
        metric_sum(
            &wm,
            "istio_requests_total",
            &[
                ("reporter", "waypoint"),
                ("destination_service_name", "orders")
            ]
        ) > 0.0,
        "{wm}"
    );

    // §10: debugging commands.
    let svcs = m.ok(&["ztunnel-config", "services", "-n", NS]).stdout;
    assert!(
        svcs.lines()
            .any(|l| l.contains("orders") && l.contains("waypoint")),
        "{svcs}"
    );
    let lvl = m
        .ok(&[
            "ztunnel-config",
            "log",
            "ztunnel-node1",
            "--level=info,access:debug",
        ])
        .stdout;
    // istioctl's `logger:level` form; the header names the pod as
    // istioctl does (`<pod>.<namespace>:`).
    assert!(
        lvl.contains("ztunnel-node1.istio-system:\ncurrent log level is")
            && lvl.contains("access=debug"),
        "{lvl}"
    );
    m.ok(&["ztunnel-config", "log", "ztunnel-node1", "--level=info"]);
    let routes = m
        .ok(&["proxy-config", "routes", "deploy/waypoint", "-n", NS])
        .stdout;
    assert!(
        routes.contains("v1 90%, v2 10%") && routes.contains("header:x-canary=always"),
        "{routes}"
    );
    let clusters = m
        .ok(&["proxy-config", "clusters", "deploy/waypoint", "-n", NS])
        .stdout;
    assert!(
        clusters.contains("orders.shop.svc.cluster.local") && clusters.contains("v2"),
        "{clusters}"
    );
    assert!(
        m.ok(&[
            "logs",
            "-n",
            "istio-system",
            "ztunnel-node1",
            "--tail",
            "100"
        ])
        .stdout
        .lines()
        .count()
            > 0
    );

    // Verify: the guide's five checks, as one command.
    let v = m.run(&["verify"]);
    assert_eq!(
        v.code,
        0,
        "verify failed:\n{}\n{}\n{}",
        v.stdout,
        v.stderr,
        m.log_tail()
    );
    assert!(v.stdout.contains("all 6 checks passed"), "{}", v.stdout);
    let a = m.run(&["analyze", "-n", NS]);
    assert_eq!(a.code, 0, "{}", a.stdout);

    // down removes every network namespace of this mesh.
    drop(m);
    let left: Vec<String> = std::fs::read_dir("/var/run/netns")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("mesh1-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}
