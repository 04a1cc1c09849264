//! `meshctl authz check`: would a request from a workload to a destination
//! be allowed, and by which policy? It follows the request the way the
//! proxies do, on the operator's translation (live from the running mesh,
//! or offline from files) and with the proxies' own evaluation code: the
//! waypoint's `authz` filter logic ([`filter_authz::Authorizer`], L7, with
//! the client's identity) and ztunnel's L4 evaluation
//! ([`mesh_common::model::policy::evaluate`]) at the destination, where the
//! source is the waypoint when the request went through one.

use crate::admin;
use crate::cluster::apply::offline_config;
use crate::cluster::manifest;
use crate::cmd::AuthzCheck;
use crate::context::RunDir;
use crate::mesh::Mesh;
use crate::output::{Format, print_structured};
use anyhow::{Context, bail};
use mesh_common::model::policy::{Decision as L4Decision, evaluate};
use mesh_common::model::{
    Authorization, Connection, Service, TunnelProtocol, WaypointBinding, WaypointConfig, Workload,
};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Exit code when the request would be denied.
pub const EXIT_DENIED: i32 = 3;

/// The parts of a translation the check needs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Snapshot {
    /// Workloads.
    pub workloads: Vec<Workload>,
    /// Services.
    pub services: Vec<Service>,
    /// L4 policies.
    pub authorizations: Vec<Authorization>,
    /// Waypoint configurations.
    pub waypoints: Vec<WaypointConfig>,
}

/// One enforcement point on the request's path.
#[derive(Debug, Clone, Serialize)]
pub struct Hop {
    /// `waypoint shop/waypoint` or `ztunnel (destination orders-v1-…)`.
    pub enforcer: String,
    /// `L7` or `L4`.
    pub layer: String,
    /// Source principal the enforcer sees.
    pub source_principal: Option<String>,
    /// Allowed?
    pub allowed: bool,
    /// Decision text (`ALLOW by shop/orders-l7`).
    pub decision: String,
}

/// The answer.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Source.
    pub source: String,
    /// Destination as addressed.
    pub destination: String,
    /// Request line.
    pub request: String,
    /// Enforcement points in order.
    pub hops: Vec<Hop>,
    /// Overall.
    pub allowed: bool,
}

fn principal(id: &str) -> String {
    id.strip_prefix("spiffe://").unwrap_or(id).to_string()
}

fn l4_hop(
    snap: &Snapshot,
    dst: &Workload,
    src_identity: Option<&str>,
    src_ip: IpAddr,
    dst_addr: SocketAddr,
) -> Hop {
    let enforcer = format!("ztunnel at {}/{} ({dst_addr})", dst.namespace, dst.name);
    if dst.protocol != TunnelProtocol::Hbone {
        return Hop {
            enforcer,
            layer: "L4".into(),
            source_principal: None,
            allowed: true,
            decision: "not enrolled: no ztunnel policy applies".into(),
        };
    }
    let conn = Connection {
        src: SocketAddr::new(src_ip, 0),
        dst: dst_addr,
        src_identity: src_identity.map(str::to_string),
    };
    let policies: Vec<&Authorization> = snap
        .authorizations
        .iter()
        .filter(|p| p.applies_to(&dst.namespace, &dst.authorization_policies))
        .collect();
    let d = evaluate(policies.iter().copied(), &conn);
    let decision = match &d {
        L4Decision::Allow(Some(p)) => format!("ALLOW by {p}"),
        L4Decision::Allow(None) => "ALLOW (no ALLOW policy applies)".into(),
        L4Decision::DeniedBy(p) if p.ends_with("istio_converted_static_strict") => {
            format!("DENY by {p} (STRICT mTLS: plaintext refused)")
        }
        L4Decision::DeniedBy(p) => format!("DENY by {p}"),
        L4Decision::NotAllowed => format!(
            "DENY: ALLOW policies apply ({}) and none matches",
            policies
                .iter()
                .filter(|p| p.action == mesh_common::model::RbacAction::Allow && !p.dry_run)
                .map(|p| format!("{}/{}", p.namespace, p.name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Hop {
        enforcer,
        layer: "L4".into(),
        source_principal: src_identity.map(principal),
        allowed: d.is_allowed(),
        decision,
    }
}

struct Request<'a> {
    a: &'a AuthzCheck,
    headers: Vec<(String, String)>,
    authority: String,
}

fn l7_hop(
    snap: &Snapshot,
    b: &WaypointBinding,
    r: &Request<'_>,
    src: Option<&str>,
    src_ip: IpAddr,
    dst: SocketAddr,
    service: Option<&str>,
) -> anyhow::Result<Hop> {
    let enforcer = format!("waypoint {}/{}", b.namespace, b.name);
    let wp = snap
        .waypoints
        .iter()
        .find(|w| w.name == b.name && w.namespace == b.namespace)
        .with_context(|| format!("no configuration for waypoint {}/{}", b.namespace, b.name))?;
    // The CUSTOM policies have a chain entry of their own (before JWT);
    // evaluate them with the others so they are reported.
    let mut cfg: Option<serde_json::Value> = None;
    for f in wp
        .filters
        .iter()
        .filter(|f| f.name == "authz" || f.name == "authz-custom")
    {
        match &mut cfg {
            None => cfg = Some(f.config.clone()),
            Some(c) => {
                for k in ["policies", "providers"] {
                    if let Some(more) = f.config.get(k).and_then(|v| v.as_array()) {
                        match c.get_mut(k).and_then(|v| v.as_array_mut()) {
                            Some(list) => list.extend(more.iter().cloned()),
                            None => c[k] = serde_json::Value::Array(more.clone()),
                        }
                    }
                }
            }
        }
    }
    let cfg = cfg.map(|c| c.to_string().into_bytes()).unwrap_or_default();
    let authorizer = filter_authz::Authorizer::from_json(&cfg)
        .map_err(|e| anyhow::anyhow!("waypoint {}/{}: authz config: {e}", b.namespace, b.name))?;
    let (iss, sub) = match &r.a.request_principal {
        Some(rp) => rp
            .rsplit_once('/')
            .map(|(i, s)| (i.to_string(), s.to_string()))
            .context("--request-principal must be issuer/subject")?,
        None => (String::new(), String::new()),
    };
    let claims =
        r.a.claims
            .clone()
            .unwrap_or_else(|| format!("{{\"iss\":{:?},\"sub\":{:?}}}", iss, sub));
    let src_p = src.map(principal);
    let (src_addr, dst_addr) = (src_ip.to_string(), dst.ip().to_string());
    let input = filter_authz::Input {
        method: &r.a.method,
        authority: &r.authority,
        path: &r.a.path,
        headers: &r.headers,
        source_principal: src_p.as_deref(),
        source_address: &src_addr,
        destination_address: &dst_addr,
        destination_port: dst.port(),
        destination_service: service,
        request_auth: r
            .a
            .request_principal
            .as_ref()
            .map(|_| filter_authz::RequestAuth {
                issuer: &iss,
                subject: &sub,
                audiences: &[],
                presenter: None,
                claims: &claims,
            }),
    };
    let (allowed, decision) = match authorizer.evaluate(&input) {
        Err(rej) => (false, format!("rejected before policies: {rej:?}")),
        Ok(plan) => {
            let mut text = match plan.decision {
                filter_authz::Decision::NoPolicies => (
                    true,
                    "ALLOW (no policy attached to this service or waypoint)".to_string(),
                ),
                filter_authz::Decision::Allow { policy: Some(p) } => {
                    (true, format!("ALLOW by {p}"))
                }
                filter_authz::Decision::Allow { policy: None } => {
                    (true, "ALLOW (no ALLOW policy applies)".to_string())
                }
                filter_authz::Decision::Deny { policy: Some(p) } => {
                    (false, format!("DENY by {p} (403 RBAC: access denied)"))
                }
                filter_authz::Decision::Deny { policy: None } => (
                    false,
                    "DENY: ALLOW policies apply and none matches (403 RBAC: access denied)"
                        .to_string(),
                ),
            };
            for c in &plan.custom {
                text.1.push_str(&format!(
                    "; CUSTOM policy {} asks its ext-authz provider first (not evaluated here)",
                    c.policy
                ));
            }
            text
        }
    };
    Ok(Hop {
        enforcer,
        layer: "L7".into(),
        source_principal: src_p,
        allowed,
        decision,
    })
}

async fn snapshot(rd: &RunDir, files: &[std::path::PathBuf]) -> anyhow::Result<Snapshot> {
    if files.is_empty() {
        let mesh = Mesh::open(rd).context(
            "authz check needs the running local mesh, or -f <manifests> to evaluate files",
        )?;
        let v = admin::get_json(&mesh.operator_debug(), "/debug/snapshot").await?;
        return Ok(serde_json::from_value(v)?);
    }
    let mut docs = Vec::new();
    for f in files {
        docs.extend(manifest::load(f, "default")?);
    }
    let cs = offline_config(docs).map_err(anyhow::Error::msg)?;
    let t = operator::translate::translate(&cs, &operator::translate::TranslateContext::default());
    Ok(Snapshot {
        workloads: t.workloads.to_vec(),
        services: t.services.to_vec(),
        authorizations: t.authorizations.to_vec(),
        waypoints: t.waypoints.to_vec(),
    })
}

fn find_source<'a>(snap: &'a Snapshot, from: &str, ns: &str) -> Option<&'a Workload> {
    let (kind, name) = from
        .split_once('/')
        .filter(|(k, _)| matches!(*k, "deploy" | "deployment" | "sts" | "statefulset" | "pod"))
        .unwrap_or(("pod", from));
    let (name, ns) = name.split_once('.').unwrap_or((name, ns));
    let mut c = snap.workloads.iter().filter(|w| w.namespace == ns);
    match kind {
        "pod" => snap
            .workloads
            .iter()
            .find(|w| w.namespace == ns && w.name == name)
            .or_else(|| {
                snap.workloads
                    .iter()
                    .find(|w| w.namespace == ns && w.workload_name == name)
            }),
        _ => c.find(|w| w.workload_name == name),
    }
}

/// `authz check`.
pub async fn check(rd: &RunDir, a: &AuthzCheck) -> anyhow::Result<i32> {
    let snap = snapshot(rd, &a.files).await?;
    let ns = a.ns.namespace.as_str();
    // Source.
    let (src_id, src_ip, src_desc) = if a.from.contains("/ns/") {
        (
            Some(format!("spiffe://{}", principal(&a.from))),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            a.from.clone(),
        )
    } else {
        let w = find_source(&snap, &a.from, ns).with_context(|| format!("no workload {:?} in namespace {ns} (use a pod name, deploy/<name>, or a principal td/ns/<ns>/sa/<sa>)", a.from))?;
        let id = (w.protocol == TunnelProtocol::Hbone).then(|| w.identity());
        let ip = first_ip(&w.addresses);
        (
            id.clone(),
            ip,
            format!(
                "{}/{} ({})",
                w.namespace,
                w.name,
                id.as_deref()
                    .map(principal)
                    .unwrap_or_else(|| "not enrolled: plaintext".into())
            ),
        )
    };
    // Destination.
    let (host, port) = match a.to.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_string(), p.parse::<u16>().unwrap_or(80)),
        _ => (a.to.clone(), 80),
    };
    let headers: Vec<(String, String)> = a
        .headers
        .iter()
        .filter_map(|h| {
            h.split_once(':')
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    let req = Request {
        a,
        headers,
        authority: if port == 80 {
            host.clone()
        } else {
            format!("{host}:{port}")
        },
    };
    let svc = snap.services.iter().find(|s| {
        s.hostname == host
            || (s.name == host && s.namespace == ns)
            || format!("{}.{}", s.name, s.namespace) == host
            || format!("{}.{}.svc", s.name, s.namespace) == host
            || s.vips.iter().any(|v| v.to_string() == host)
    });
    let mut hops = Vec::new();
    let destination;
    if let Some(s) = svc {
        destination = format!("service {}:{port}", s.hostname);
        let vip = s
            .vips
            .first()
            .copied()
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let endpoints: Vec<(&Workload, u16)> = s
            .endpoints
            .iter()
            .filter_map(|e| {
                Some((
                    snap.workloads.iter().find(|w| w.uid == e.workload_uid)?,
                    s.target_port(e, port).unwrap_or(port),
                ))
            })
            .collect();
        if endpoints.is_empty() {
            bail!("service {} has no endpoints", s.hostname);
        }
        match &s.waypoint {
            Some(b) => {
                hops.push(l7_hop(
                    &snap,
                    b,
                    &req,
                    src_id.as_deref(),
                    src_ip,
                    SocketAddr::new(vip, port),
                    Some(&s.hostname),
                )?);
                let wp_ip = first_ip(&b.addresses);
                for (w, tp) in endpoints {
                    let ip = first_ip(&w.addresses);
                    hops.push(l4_hop(
                        &snap,
                        w,
                        Some(&b.identity),
                        wp_ip,
                        SocketAddr::new(ip, tp),
                    ));
                }
            }
            None => {
                for (w, tp) in endpoints {
                    let ip = first_ip(&w.addresses);
                    hops.push(l4_hop(
                        &snap,
                        w,
                        src_id.as_deref(),
                        src_ip,
                        SocketAddr::new(ip, tp),
                    ));
                }
            }
        }
    } else {
        let short = host.split('.').next().unwrap_or(&host);
        let w = snap
            .workloads
            .iter()
            .find(|w| w.addresses.iter().any(|ip| ip.to_string() == host) || (w.name == short && (host == short || host.contains(&format!(".{}", w.namespace)) || w.namespace == ns)))
            .with_context(|| format!("no service or pod {host:?} (namespace {ns}): use a service name, its FQDN or VIP, or a pod name or IP"))?;
        let ip = first_ip(&w.addresses);
        destination = format!("pod {}/{} {ip}:{port}", w.namespace, w.name);
        match &w.waypoint {
            Some(b) => {
                hops.push(l7_hop(
                    &snap,
                    b,
                    &req,
                    src_id.as_deref(),
                    src_ip,
                    SocketAddr::new(ip, port),
                    None,
                )?);
                let wp_ip = first_ip(&b.addresses);
                hops.push(l4_hop(
                    &snap,
                    w,
                    Some(&b.identity),
                    wp_ip,
                    SocketAddr::new(ip, port),
                ));
            }
            None => hops.push(l4_hop(
                &snap,
                w,
                src_id.as_deref(),
                src_ip,
                SocketAddr::new(ip, port),
            )),
        }
    }
    // Once one enforcer denies, the later ones never see the request.
    if let Some(i) = hops.iter().position(|h| !h.allowed && h.layer == "L7") {
        for h in hops.iter_mut().skip(i + 1) {
            h.decision = format!("(not reached: denied earlier) {}", h.decision);
        }
    }
    let allowed = hops.iter().all(|h| h.allowed);
    let report = Report {
        source: src_desc,
        destination,
        request: format!("{} {}", a.method, a.path),
        hops,
        allowed,
    };
    if a.out.output != Format::Table {
        print_structured(&report, a.out.output)?;
    } else {
        print_report(&report);
    }
    Ok(if allowed { 0 } else { EXIT_DENIED })
}

fn print_report(r: &Report) {
    println!("{} from {} to {}", r.request, r.source, r.destination);
    for (i, h) in r.hops.iter().enumerate() {
        let mark = if h.allowed { "\u{2714}" } else { "\u{2718}" };
        println!(
            "{}. {mark} {} [{}] source {}",
            i + 1,
            h.enforcer,
            h.layer,
            h.source_principal.as_deref().unwrap_or("(none: plaintext)")
        );
        println!("     {}", h.decision);
    }
    println!("{}", if r.allowed { "ALLOWED" } else { "DENIED" });
}

/// The first address, or 0.0.0.0 for a resource without one.
fn first_ip(addrs: &[IpAddr]) -> IpAddr {
    addrs
        .first()
        .copied()
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}
