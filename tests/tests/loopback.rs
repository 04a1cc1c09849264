//! Tier 3 (no root needed): `meshctl up --loopback` — operator, ztunnels in
//! shared mode, a waypoint and the apps, each on its own 127.x address, no
//! network namespaces and no capture. The guide's checks run through the
//! waypoint's plain-HTTP listener (waypoint → HBONE → ztunnel → app).

use mesh_e2e::{LocalMesh, binary, guest_dir};

#[test]
fn loopback_mesh_verifies_through_the_waypoint() {
    for (b, p) in [
        ("meshctl", "meshctl"),
        ("ztunnel", "ztunnel"),
        ("waypoint", "waypoint"),
    ] {
        if binary(b, p).is_none() {
            return;
        }
    }
    if !guest_dir().join("routing.wasm").is_file() {
        eprintln!("SKIPPED: first-party filters not built (scripts/build-guests.sh)");
        return;
    }
    let m = LocalMesh::up(4, &["--loopback"]);
    let w = m
        .ok(&[
            "ztunnel-config",
            "workloads",
            "--workload-namespace",
            "shop",
        ])
        .stdout;
    assert_eq!(
        w.lines()
            .filter(|l| l.contains("127.204.") && l.ends_with("HBONE"))
            .count(),
        4,
        "{w}"
    );
    let v = m.run(&["verify", "--requests", "400"]);
    assert_eq!(v.code, 0, "{}\n{}\n{}", v.stdout, v.stderr, m.log_tail());
    assert!(
        v.stdout.contains("all 6 checks passed (loopback mode"),
        "{}",
        v.stdout
    );
    let routes = m
        .ok(&["proxy-config", "routes", "deploy/waypoint", "-n", "shop"])
        .stdout;
    assert!(routes.contains("v1 90%, v2 10%"), "{routes}");

    // VirtualService `tcp` routes reach the waypoint and show up as such.
    let vs = m.dir.path().join("orders-tcp.yaml");
    std::fs::write(
        &vs,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: orders-tcp, namespace: shop}\n\
         spec:\n  hosts: [orders]\n  tcp:\n  - match: [{port: 5432}]\n    route:\n    - {destination: {host: orders, subset: v1}, weight: 80}\n    - {destination: {host: orders, subset: v2}, weight: 20}\n",
    )
    .unwrap();
    m.ok(&["apply", "-f", vs.to_str().unwrap()]);
    let mut last = String::new();
    m.wait_for(
        "tcp routes at the waypoint",
        std::time::Duration::from_secs(20),
        || {
            last = m
                .ok(&["proxy-config", "routes", "deploy/waypoint", "-n", "shop"])
                .stdout;
            last.contains("(tcp) port 5432") && last.contains("v1 80%, v2 20%")
        },
    );
}
