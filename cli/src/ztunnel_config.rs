//! `meshctl ztunnel-config workloads|services|policies|certificates|log`: ztunnel's
//! view from its admin endpoint (15000), printed like istioctl.

use crate::admin;
use crate::cmd::{ZtCerts, ZtLog, ZtServices, ZtWorkloads, ZtunnelCmd};
use crate::context::RunDir;
use crate::mesh::Mesh;
use crate::output::{Format, Table, print_structured};
use mesh_common::model::{Authorization, Service, Workload};
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

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
    /// Workload certificates.
    pub certificates: Vec<CertDump>,
}

/// One identity's certificates in the dump.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CertDump {
    /// SPIFFE ID.
    pub identity: String,
    /// Leaf first, then intermediates.
    pub chain: Vec<CertEntry>,
    /// Trusted roots.
    pub roots: Vec<CertEntry>,
}

/// Serial and validity (RFC 3339) of one certificate.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CertEntry {
    /// Lower-case hex.
    pub serial_number: String,
    /// Validity start.
    pub not_before: String,
    /// Validity end.
    pub not_after: String,
}

impl CertEntry {
    /// istioctl's VALID CERT: now is inside the validity window.
    fn valid_at(&self, now: SystemTime) -> bool {
        let parse = |s: &str| humantime::parse_rfc3339(s).ok();
        match (parse(&self.not_before), parse(&self.not_after)) {
            (Some(nb), Some(na)) => now > nb && now < na,
            _ => false,
        }
    }

    /// The serial as istioctl prints it (`%x` of the number: no leading
    /// zeros).
    fn serial(&self) -> String {
        let s = self.serial_number.trim_start_matches('0');
        if s.is_empty() {
            "0".into()
        } else {
            s.to_lowercase()
        }
    }
}

/// The `certificates` table: a row per certificate, as `istioctl
/// ztunnel-config certificates` prints it.
pub fn certificates_table(certs: &[CertDump], now: SystemTime) -> Table {
    let mut t = Table::new(&[
        "CERTIFICATE NAME",
        "TYPE",
        "STATUS",
        "VALID CERT",
        "SERIAL NUMBER",
        "NOT AFTER",
        "NOT BEFORE",
    ]);
    for c in certs {
        if c.chain.is_empty() {
            t.row([
                c.identity.clone(),
                "NA".into(),
                "Unavailable".into(),
                "false".into(),
                "NA".into(),
                "NA".into(),
                "NA".into(),
            ]);
            continue;
        }
        let kinds = c
            .chain
            .iter()
            .enumerate()
            .map(|(i, e)| (if i == 0 { "Leaf" } else { "Intermediate" }, e))
            .chain(c.roots.iter().map(|e| ("Root", e)));
        for (kind, e) in kinds {
            t.row([
                c.identity.clone(),
                kind.into(),
                "Available".into(),
                e.valid_at(now).to_string(),
                e.serial(),
                e.not_after.clone(),
                e.not_before.clone(),
            ]);
        }
    }
    t
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

async fn certificates(rd: &RunDir, a: &ZtCerts) -> anyhow::Result<i32> {
    let mesh = Mesh::open(rd)?;
    let d = dump(&mesh, a.target.node.as_deref()).await?;
    match a.out.output {
        Format::Table => certificates_table(&d.certificates, SystemTime::now()).print(),
        f => print_structured(&d.certificates, f)?,
    }
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
        match &a.level {
            Some(l) => Some(log_filter(l).map_err(|e| anyhow::anyhow!(e))?),
            None => None,
        }
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
        println!(
            "ztunnel-{node}.istio-system:\ncurrent log level is {}",
            current.trim()
        );
    }
    Ok(0)
}

/// istioctl's `--level` (`[<logger>:]<level>,...`, levels trace, debug,
/// info, warning/warn, error, critical, off) as ztunnel's log filter
/// (`<logger>=<level>,...`; warning is `warn`, critical `error`).
fn log_filter(levels: &str) -> Result<String, String> {
    let level = |l: &str| -> Result<&'static str, String> {
        Ok(match l {
            "trace" => "trace",
            "debug" => "debug",
            "info" => "info",
            "warning" | "warn" => "warn",
            "error" | "critical" => "error",
            "off" => "off",
            other => return Err(format!("unrecognized logging level: {other}")),
        })
    };
    levels
        .split(',')
        .map(|part| {
            // `a::b:level` names a logger with a path: the level is after
            // the last `:` or `=`.
            match part.rfind([':', '=']) {
                Some(i) if i > 0 => {
                    let logger = part[..i].trim_end_matches(':');
                    Ok(format!("{logger}={}", level(&part[i + 1..])?))
                }
                _ => level(part).map(str::to_string),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|v| v.join(","))
}

/// Dispatch.
pub async fn run(rd: &RunDir, c: ZtunnelCmd) -> anyhow::Result<i32> {
    match c {
        ZtunnelCmd::Workloads(a) => workloads(rd, &a).await,
        ZtunnelCmd::Services(a) => services(rd, &a).await,
        ZtunnelCmd::Policies(a) => policies(rd, &a).await,
        ZtunnelCmd::Certificates(a) => certificates(rd, &a).await,
        ZtunnelCmd::Log(a) => log(rd, &a).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istioctl_levels_become_ztunnel_filters() {
        assert_eq!(log_filter("debug").unwrap(), "debug");
        assert_eq!(log_filter("warning").unwrap(), "warn");
        assert_eq!(log_filter("critical").unwrap(), "error");
        assert_eq!(
            log_filter("access:debug,info").unwrap(),
            "access=debug,info"
        );
        assert_eq!(
            log_filter("hickory_server::server=off").unwrap(),
            "hickory_server::server=off"
        );
        assert_eq!(
            log_filter("loud").unwrap_err(),
            "unrecognized logging level: loud"
        );
    }
    use std::time::Duration;

    fn entry(serial: &str, nb: &str, na: &str) -> CertEntry {
        CertEntry {
            serial_number: serial.into(),
            not_before: nb.into(),
            not_after: na.into(),
        }
    }

    /// istioctl's layout: one row per certificate (Leaf, Intermediate,
    /// Root), serials as `%x` (no leading zeros), VALID CERT from the
    /// validity window, an identity without certificate as Unavailable.
    #[test]
    fn certificates_table_rows() {
        let now = humantime::parse_rfc3339("2026-11-27T12:00:00Z").unwrap();
        let certs = vec![
            CertDump {
                identity: "spiffe://cluster.local/ns/shop/sa/web".into(),
                chain: vec![
                    entry("00ab12", "2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z"),
                    entry("cd", "2026-11-20T00:00:00Z", "2026-11-26T00:00:00Z"),
                ],
                roots: vec![entry("EF", "2026-01-01T00:00:00Z", "2036-01-01T00:00:00Z")],
            },
            CertDump {
                identity: "spiffe://cluster.local/ns/shop/sa/new".into(),
                ..Default::default()
            },
        ];
        let out = certificates_table(&certs, now).render();
        let rows: Vec<Vec<&str>> = out
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows.len(), 4, "{out}");
        assert_eq!(
            rows[0],
            [
                "spiffe://cluster.local/ns/shop/sa/web",
                "Leaf",
                "Available",
                "true",
                "ab12",
                "2026-11-28T00:00:00Z",
                "2026-11-27T00:00:00Z"
            ]
        );
        assert_eq!(rows[1][1..5], ["Intermediate", "Available", "false", "cd"]);
        assert_eq!(rows[2][1..5], ["Root", "Available", "true", "ef"]);
        assert_eq!(
            rows[3][1..],
            ["NA", "Unavailable", "false", "NA", "NA", "NA"]
        );
        assert!(!entry("1", "garbage", "x").valid_at(now + Duration::from_secs(1)));
    }
}
