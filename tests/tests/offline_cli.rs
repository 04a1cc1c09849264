//! Tier 1 (no root, no processes started): the real `meshctl` binary on
//! the repository's examples — waypoint YAML and errors exactly as
//! istioctl prints them, analyze codes and exit status, authorization
//! explained hop by hop, install rendering, JWT minting.

use mesh_e2e::{binary, meshctl, repo};

fn built() -> bool {
    binary("meshctl", "meshctl").is_some()
}

#[test]
fn waypoint_generate_prints_istioctls_gateway() {
    if !built() {
        return;
    }
    let r = meshctl(&["waypoint", "generate", "--for", "service", "-n", "shop"]).ok();
    let seed = std::fs::read_to_string(repo().join("examples/shop/20-waypoint.yaml")).unwrap();
    let seed_yaml: String = seed
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        r.stdout, seed_yaml,
        "generate and examples/shop/20-waypoint.yaml differ"
    );
    let r = meshctl(&["waypoint", "generate", "--for", "pods"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("invalid traffic type: pods. Valid options are: [all none service workload]"),
        "{}",
        r.stderr
    );
    let r = meshctl(&["waypoint", "generate", "--name", "none"]);
    assert!(
        r.stderr
            .contains("invalid name provided for waypoint, 'none' is a reserved value"),
        "{}",
        r.stderr
    );
}

#[test]
fn analyze_examples_is_clean_and_a_bad_reference_is_ist0101() {
    if !built() {
        return;
    }
    let r = meshctl(&["analyze", "examples/shop", "-n", "shop"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("No validation issues found when analyzing namespace: shop."),
        "{}",
        r.stdout
    );
    // The canary VirtualService next to the fault VirtualService: one host, two VS.
    let r = meshctl(&[
        "analyze",
        "examples/shop",
        "examples/resilience/orders-fault.yaml",
        "-n",
        "shop",
    ]);
    assert!(r.stdout.contains("[IST0109]"), "{}", r.stdout);
    assert_eq!(r.code, 79);
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: shop}\nspec:\n  hosts: [orders.shop.svc.cluster.local]\n  http:\n  - route:\n    - destination: {host: orders.shop.svc.cluster.local, subset: v3}\n",
    )
    .unwrap();
    let r = meshctl(&[
        "analyze",
        "examples/shop/01-workloads.yaml",
        "examples/shop/30-destination-rule.yaml",
        bad.to_str().unwrap(),
        "-n",
        "shop",
        "-o",
        "json",
    ]);
    let msgs: serde_json::Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    assert!(
        msgs.as_array()
            .unwrap()
            .iter()
            .any(|m| m["code"] == "IST0101"
                && m["message"]
                    .as_str()
                    .unwrap()
                    .contains("host+subset in destinationrule")),
        "{msgs:#}"
    );
}

#[test]
fn authz_check_explains_each_hop() {
    if !built() {
        return;
    }
    let allowed = meshctl(&[
        "authz",
        "check",
        "-f",
        "examples/shop",
        "-n",
        "shop",
        "--from",
        "deploy/web",
        "--to",
        "orders",
        "--path",
        "/api/health",
    ]);
    assert_eq!(allowed.code, 0, "{}{}", allowed.stdout, allowed.stderr);
    assert!(
        allowed.stdout.contains("waypoint shop/waypoint [L7]"),
        "{}",
        allowed.stdout
    );
    assert!(
        allowed.stdout.contains("ALLOW by shop/orders-l7"),
        "{}",
        allowed.stdout
    );
    // The waypoint → orders hop is allowed by the waypoint's L4 hole.
    assert!(
        allowed
            .stdout
            .contains("ALLOW by shop/orders-allow-waypoint"),
        "{}",
        allowed.stdout
    );
    let probe = meshctl(&[
        "authz",
        "check",
        "-f",
        "examples/shop",
        "-n",
        "shop",
        "--from",
        "probe",
        "--to",
        "orders.shop",
        "--path",
        "/api/health",
    ]);
    assert_eq!(probe.code, 3, "{}{}", probe.stdout, probe.stderr);
    assert!(
        probe.stdout.contains("403 RBAC: access denied"),
        "{}",
        probe.stdout
    );
    // A valid token makes any caller acceptable (orders-require-jwt).
    let jwt = meshctl(&[
        "authz",
        "check",
        "-f",
        "examples/shop",
        "-n",
        "shop",
        "--from",
        "probe",
        "--to",
        "orders",
        "--request-principal",
        "https://accounts.example.com/alice",
    ]);
    assert!(
        jwt.stdout.contains("ALLOW by shop/orders-require-jwt"),
        "{}",
        jwt.stdout
    );
    // web outside /api/ is denied at L7.
    let admin = meshctl(&[
        "authz",
        "check",
        "-f",
        "examples/shop",
        "-n",
        "shop",
        "--from",
        "deploy/web",
        "--to",
        "orders",
        "-X",
        "POST",
        "--path",
        "/admin",
    ]);
    assert_eq!(admin.code, 3, "{}", admin.stdout);
    // Without the waypoint's hole, deny-all refuses the second hop (L4).
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(repo().join("examples/shop"))
        .unwrap()
        .filter_map(Result::ok)
    {
        if !f.file_name().to_string_lossy().starts_with("13-") {
            std::fs::copy(f.path(), dir.path().join(f.file_name())).unwrap();
        }
    }
    let r = meshctl(&[
        "authz",
        "check",
        "-f",
        dir.path().to_str().unwrap(),
        "-n",
        "shop",
        "--from",
        "deploy/web",
        "--to",
        "orders",
        "--path",
        "/api/health",
    ]);
    assert_eq!(r.code, 3, "{}", r.stdout);
    assert!(
        r.stdout.contains("ALLOW policies apply")
            && r.stdout
                .contains("[L4] source cluster.local/ns/shop/sa/waypoint"),
        "{}",
        r.stdout
    );
}

#[test]
fn install_renders_crds_and_the_data_plane() {
    if !built() {
        return;
    }
    let r = meshctl(&["install", "--set", "profile=ambient", "--skip-confirmation"]).ok();
    let kinds: Vec<String> = serde_yaml::Deserializer::from_str(&r.stdout)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .filter_map(|v: serde_yaml::Value| {
            v.get("kind").and_then(|k| k.as_str()).map(str::to_string)
        })
        .collect();
    for k in [
        "CustomResourceDefinition",
        "Deployment",
        "DaemonSet",
        "GatewayClass",
        "ClusterRole",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    let r = meshctl(&["install", "--set", "profile=default"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("ambient"), "{}", r.stderr);
}

#[test]
fn minted_tokens_carry_the_issuer_and_kid() {
    if !built() {
        return;
    }
    let t = meshctl(&["jwt", "mint", "--sub", "bob"]).ok().stdout;
    let parts: Vec<&str> = t.trim().split('.').collect();
    assert_eq!(parts.len(), 3, "{t}");
    let payload = String::from_utf8(b64url(parts[1])).unwrap();
    assert!(
        payload.contains("\"sub\":\"bob\"")
            && payload.contains("\"iss\":\"https://accounts.example.com\""),
        "{payload}"
    );
}

fn b64url(s: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = alphabet.iter().position(|&a| a == c).unwrap_or(0) as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    out
}

/// A document that does not parse is reported as IST0106 and the rest of
/// the files are still analyzed (istioctl reports schema errors per
/// resource).
#[test]
fn analyze_reports_a_broken_document_and_goes_on() {
    if !built() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("broken.yaml");
    std::fs::write(
        &f,
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {rules: [null]}\n---\n\
         apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: foo}\nspec: {hosts: [nowhere.foo.svc.cluster.local], http: [{route: [{destination: {host: ghost}}]}]}\n",
    )
    .unwrap();
    let r = meshctl(&["analyze", f.to_str().unwrap(), "-A"]);
    assert_eq!(r.code, 79, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("Error [IST0106] (AuthorizationPolicy foo/p)")
            && r.stdout.contains("expected struct Rule"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("[IST0101] (VirtualService foo/v)"),
        "the other document is analyzed: {}",
        r.stdout
    );
    assert_eq!(
        r.stdout.matches("expected struct Rule").count(),
        1,
        "the parse error is said once: {}",
        r.stdout
    );
}
