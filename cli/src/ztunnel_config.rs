//! `meshctl ztunnel-config workloads|services|policies|log`: ztunnel's
//! view from its admin endpoint (15000), printed like istioctl.

use crate::admin;
use crate::cmd::{ZtLog, ZtServices, ZtWorkloads, ZtunnelCmd};
use crate::context::RunDir;
use crate::mesh::Mesh;
use crate::output::{Format, Table, print_structured};
use mesh_common::model::{Authorization, Service, Workload};
use serde::Deserialize;

/// What `/config_dump` returns (the parts we print).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Dump {
    /// Node.
    pub node: String,
    /// Workloads.
    pub workloads: Vec<Workload>,
    /// Services.
    pub services: Vec<Service>,
    /// L4 policies.
    pub policies: Vec<Authorization>,
    /// Uids of the workloads this ztunnel captured.
    pub enrolled: Vec<String>,
}

/// The config dump of `node` (default: the first node).
pub async fn dump(mesh: &Mesh, node: Option<&str>) -> anyhow::Result<Dump> {
    let node = match node {
        Some(n) => mesh.ztunnel_node(n)?,
        None => mesh.nodes().first().cloned().unwrap_or_default(),
    };
    let v = mesh.ztunnel_dump(&node).await?;
    Ok(serde_json::from_value(v)?)
}

/// Waypoint column: the waypoint's name or `None`.
fn waypoint_name(b: Option<&mesh_common::model::WaypointBinding>) -> String {
    b.map(|b| b.name.clone()).unwrap_or_else(|| "None".into())
}

/// The workloads table.
pub fn workloads_table(
    d: &Dump,
    namespace: Option<&str>,
    address: Option<&str>,
) -> (Table, Vec<Workload>) {
    let mut wls: Vec<Workload> = d
        .workloads
        .iter()
        .filter(|w| namespace.is_none_or(|n| w.namespace.eq_ignore_ascii_case(n)))
        .filter(|w| address.is_none_or(|a| w.addresses.iter().any(|ip| ip.to_string() == a)))
        .cloned()
        .collect();
    wls.sort_by(|a, b| {
        (format!("{}.{}", a.namespace, a.name), &a.node)
            .cmp(&(format!("{}.{}", b.namespace, b.name), &b.node))
    });
    let mut t = Table::new(&[
        "NAMESPACE",
        "POD NAME",
        "ADDRESS",
        "NODE",
        "WAYPOINT",
        "PROTOCOL",
    ]);
    for w in &wls {
        let addr = w
            .addresses
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let proto = match w.protocol {
            mesh_common::model::TunnelProtocol::Hbone => "HBONE",
            mesh_common::model::TunnelProtocol::Tcp => "TCP",
        };
        t.row([
            w.namespace.clone(),
            w.name.clone(),
            addr,
            w.node.clone(),
            waypoint_name(w.waypoint.as_ref()),
            proto.to_string(),
        ]);
    }
    (t, wls)
}

async fn workloads(rd: &RunDir, a: &ZtWorkloads) -> anyhow::Result<i32> {
    let mesh = Mesh::open(rd)?;
    let d = dump(&mesh, a.target.node.as_deref()).await?;
    let (t, wls) = workloads_table(&d, a.workload_namespace.as_deref(), a.address.as_deref());
    match a.out.output {
        Format::Table => t.print(),
        f => print_structured(&wls, f)?,
    }
    Ok(0)
}

async fn services(rd: &RunDir, a: &ZtServices) -> anyhow::Result<i32> {
    let mesh = Mesh::open(rd)?;
    let d = dump(&mesh, a.target.node.as_deref()).await?;
    let mut svcs: Vec<Service> = d
        .services
        .iter()
        .filter(|s| a.namespace.as_ref().is_none_or(|n| &s.namespace == n))
        .cloned()
        .collect();
    svcs.sort_by(|x, y| {
        (&x.namespace, &x.name, &x.hostname).cmp(&(&y.namespace, &y.name, &y.hostname))
    });
    if a.out.output != Format::Table {
        print_structured(&svcs, a.out.output)?;
        return Ok(0);
    }
    let mut t = Table::new(&[
        "NAMESPACE",
        "SERVICE NAME",
        "SERVICE VIP",
        "WAYPOINT",
        "ENDPOINTS",
    ]);
    for s in &svcs {
        let healthy = s
            .endpoints
            .iter()
            .filter(|e| {
                d.workloads.iter().any(|w| {
                    w.uid == e.workload_uid && w.status == mesh_common::model::HealthStatus::Healthy
                })
            })
            .count();
        let vips = s
            .vips
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(",");
        t.row([
            s.namespace.clone(),
            s.name.clone(),
            vips,
            waypoint_name(s.waypoint.as_ref()),
            format!("{healthy}/{}", s.endpoints.len()),
        ]);
    }
    t.print();
    Ok(0)
}

async fn policies(rd: &RunDir, a: &ZtServices) -> anyhow::Result<i32> {
    let mesh = Mesh::open(rd)?;
    let d = dump(&mesh, a.target.node.as_deref()).await?;
    let pols: Vec<Authorization> = d
        .policies
        .iter()
        .filter(|p| a.namespace.as_ref().is_none_or(|n| &p.namespace == n))
        .cloned()
        .collect();
    if a.out.output != Format::Table {
        print_structured(&pols, a.out.output)?;
        return Ok(0);
    }
    let mut t = Table::new(&["NAMESPACE", "POLICY NAME", "ACTION", "SCOPE"]);
    for p in &pols {
        t.row([
            p.namespace.clone(),
            p.name.clone(),
            format!("{:?}", p.action),
            format!("{:?}", p.scope),
        ]);
    }
    t.print();
    Ok(0)
}

async fn log(rd: &RunDir, a: &ZtLog) -> anyhow::Result<i32> {
    let mesh = Mesh::open(rd)?;
    let nodes: Vec<String> = match &a.pod {
        Some(p) => vec![mesh.ztunnel_node(p)?],
        None => mesh.nodes().to_vec(),
    };
    let level = if a.reset {
        Some("info".to_string())
    } else {
        a.level.clone()
    };
    for node in nodes {
        let t = mesh.ztunnel(&node, 15000);
        let current = match &level {
            Some(l) => {
                let q: String = l
                    .chars()
                    .map(|c| {
                        if c == ',' {
                            "%2C".to_string()
                        } else if c == '=' {
                            "%3D".to_string()
                        } else {
                            c.to_string()
                        }
                    })
                    .collect();
                let (status, body) =
                    admin::request(&t, http::Method::POST, &format!("/logging?level={q}")).await?;
                if status != 200 {
                    anyhow::bail!("ztunnel-{node} refused level {l:?}: {}", body.trim());
                }
                body
            }
            None => admin::get(&t, "/logging").await?,
        };
        println!("ztunnel-{node}:\ncurrent log level is {}", current.trim());
    }
    Ok(0)
}

/// Dispatch.
pub async fn run(rd: &RunDir, c: ZtunnelCmd) -> anyhow::Result<i32> {
    match c {
        ZtunnelCmd::Workloads(a) => workloads(rd, &a).await,
        ZtunnelCmd::Services(a) => services(rd, &a).await,
        ZtunnelCmd::Policies(a) => policies(rd, &a).await,
        ZtunnelCmd::Log(a) => log(rd, &a).await,
    }
}
