//! The 50-policy set shared by the native benchmark here and the WASM
//! benchmark of the host (`host/benches/security_filters.rs`).

use serde_json::{Value, json};

/// 50 policies of every kind, none matching the benchmark request except
/// the last ALLOW, so every policy is evaluated.
pub fn policies() -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..15 {
        out.push(json!({"namespace": "bench", "name": format!("allow-{i:02}"), "action": "ALLOW", "rules": [{
            "from": [{"source": {"principals": [format!("cluster.local/ns/team-{i}/sa/*")], "namespaces": [format!("team-{i}")]}}],
            "to": [{"operation": {"methods": ["GET", "HEAD"], "paths": [format!("/api/v{i}/*"), "*.json"]}}]
        }]}));
    }
    for i in 0..10 {
        out.push(json!({"namespace": "bench", "name": format!("deny-{i:02}"), "action": "DENY", "rules": [{
            "to": [{"operation": {"paths": [format!("/admin/{i}/{{**}}")], "hosts": [format!("admin-{i}.example.com")]}}],
            "when": [{"key": "request.headers[x-debug]", "values": [format!("on-{i}")]}]
        }]}));
    }
    for i in 0..10 {
        out.push(json!({"namespace": "bench", "name": format!("jwt-{i:02}"), "action": "ALLOW", "rules": [{
            "from": [{"source": {"requestPrincipals": [format!("https://issuer-{i}.example.com/*")]}}],
            "when": [{"key": "request.auth.claims[groups]", "values": [format!("group-{i}")]}]
        }]}));
    }
    for i in 0..10 {
        out.push(json!({"namespace": "bench", "name": format!("net-{i:02}"), "action": "ALLOW", "rules": [{
            "from": [{"source": {"ipBlocks": [format!("10.{i}.0.0/16")], "notRemoteIpBlocks": ["192.168.0.0/16"]}}],
            "to": [{"operation": {"ports": [format!("{}", 9000 + i)]}}]
        }]}));
    }
    for i in 0..4 {
        out.push(json!({"namespace": "bench", "name": format!("audit-{i:02}"), "action": "AUDIT", "rules": [{
            "to": [{"operation": {"paths": [format!("/audit/{i}")]}}]
        }]}));
    }
    out.push(
        json!({"namespace": "bench", "name": "zz-allow-frontend", "action": "ALLOW", "rules": [{
            "from": [{"source": {"principals": ["cluster.local/ns/shop/sa/frontend"]}}],
            "to": [{"operation": {"methods": ["GET"], "paths": ["/products/{*}"]}}]
        }]}),
    );
    out
}
