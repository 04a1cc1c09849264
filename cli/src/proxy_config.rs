//! `meshctl proxy-config routes|clusters|filters <waypoint>`: a waypoint's
//! serving configuration from its admin endpoint (15000).

use crate::admin;
use crate::cmd::{ProxyArgs, ProxyCmd};
use crate::context::RunDir;
use crate::mesh::Mesh;
use crate::output::{Format, Table, print_structured, short_digest};
use anyhow::Context;
use filter_model::StringMatch;
use filter_model::routing::{HttpMatchRequest, HttpRoute, RoutingConfig};
use serde_json::Value;

fn sm(m: &StringMatch) -> String {
    match (&m.exact, &m.prefix, &m.regex) {
        (Some(e), _, _) => format!("={e}"),
        (_, Some(p), _) => format!("^{p}"),
        (_, _, Some(r)) => format!("~{r}"),
        _ => " present".into(),
    }
}

/// One match in a compact form (`uri^/api/ headers:x-canary=always`).
pub fn describe_match(m: &HttpMatchRequest) -> String {
    let mut parts = Vec::new();
    if let Some(u) = &m.uri {
        parts.push(format!("uri{}", sm(u)));
    }
    if let Some(x) = &m.method {
        parts.push(format!("method{}", sm(x)));
    }
    if let Some(x) = &m.authority {
        parts.push(format!("authority{}", sm(x)));
    }
    for (k, v) in &m.headers {
        parts.push(format!("header:{k}{}", sm(v)));
    }
    for (k, v) in &m.without_headers {
        parts.push(format!("!header:{k}{}", sm(v)));
    }
    for (k, v) in &m.query_params {
        parts.push(format!("query:{k}{}", sm(v)));
    }
    if let Some(p) = m.port {
        parts.push(format!("port={p}"));
    }
    if parts.is_empty() {
        "/*".into()
    } else {
        parts.join(" ")
    }
}

/// Destinations (`v1 90%, v2 10%`) or the action of a route.
pub fn describe_action(r: &HttpRoute, service: &str) -> String {
    if let Some(d) = &r.direct_response {
        return format!("direct response {}", d.status);
    }
    if let Some(rd) = &r.redirect {
        return format!("redirect {}", rd.uri.clone().unwrap_or_default());
    }
    let total: i64 = r.route.iter().map(|d| i64::from(d.weight.max(0))).sum();
    let n = r.route.len();
    r.route
        .iter()
        .map(|d| {
            let host = if d.destination.host == service
                || service.starts_with(&format!("{}.", d.destination.host))
            {
                String::new()
            } else {
                d.destination.host.clone()
            };
            let subset = d.destination.subset.clone().unwrap_or_default();
            let name = match (host.is_empty(), subset.is_empty()) {
                (true, true) => "(service)".to_string(),
                (true, false) => subset,
                (false, true) => host,
                (false, false) => format!("{host}|{subset}"),
            };
            let pct = if n == 1 {
                100.0
            } else if total > 0 {
                100.0 * f64::from(d.weight.max(0)) / total as f64
            } else {
                0.0
            };
            format!("{name} {pct:.0}%")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn config(
    mesh: &Mesh,
    a: &ProxyArgs,
) -> anyhow::Result<(crate::mesh::launcher::WaypointRecord, Value)> {
    let rec = mesh
        .find_waypoint(&a.target, &a.ns.namespace)
        .with_context(|| {
            let known: Vec<String> = mesh
                .waypoints()
                .iter()
                .map(|w| format!("deploy/{} -n {}", w.name, w.namespace))
                .collect();
            format!(
                "no waypoint {:?} in namespace {}: known waypoints: {}",
                a.target,
                a.ns.namespace,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )
        })?;
    let v = admin::get_json(&Mesh::waypoint(&rec, 15000), "/config_dump").await?;
    Ok((rec, v))
}

fn routing(cfg: &Value) -> anyhow::Result<RoutingConfig> {
    let f = cfg
        .pointer("/config/filters")
        .and_then(Value::as_array)
        .and_then(|fs| {
            fs.iter()
                .find(|f| f.get("name").and_then(Value::as_str) == Some("routing"))
        })
        .and_then(|f| f.get("config"))
        .cloned()
        .unwrap_or(Value::Null);
    if f.is_null() {
        return Ok(RoutingConfig::default());
    }
    Ok(serde_json::from_value(f)?)
}

async fn routes(rd: &RunDir, a: &ProxyArgs) -> anyhow::Result<i32> {
    let mesh = Mesh::open(rd)?;
    let (_, v) = config(&mesh, a).await?;
    let r = routing(&v)?;
    if a.out.output != Format::Table {
        print_structured(&r, a.out.output)?;
        return Ok(0);
    }
    let services: Vec<String> = v
        .pointer("/config/services")
        .and_then(Value::as_array)
        .map(|s| {
            s.iter()
                .filter_map(|x| {
                    x.get("hostname")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut t = Table::new(&["SERVICE", "NAME", "MATCH", "ROUTE", "VIRTUAL SERVICE"]);
    for host in &services {
        let sr = r.services.iter().find(|s| &s.host == host);
        let mut any = false;
        for vs in sr
            .map(|s| s.virtual_services.as_slice())
            .unwrap_or_default()
        {
            for (i, route) in vs.http.iter().enumerate() {
                let m = if route.matches.is_empty() {
                    "/*".to_string()
                } else {
                    route
                        .matches
                        .iter()
                        .map(describe_match)
                        .collect::<Vec<_>>()
                        .join(" | ")
                };
                let name = route.name.clone().unwrap_or_else(|| format!("#{i}"));
                t.row([
                    host.clone(),
                    name,
                    m,
                    describe_action(route, host),
                    format!("{}.{}", vs.name, vs.namespace),
                ]);
                any = true;
            }
        }
        for vs in sr
            .map(|s| s.virtual_services.as_slice())
            .unwrap_or_default()
        {
            for (i, tcp) in vs.tcp.iter().enumerate() {
                let m = if tcp.matches.is_empty() {
                    "(tcp) *".to_string()
                } else {
                    let ports: Vec<String> = tcp
                        .matches
                        .iter()
                        .map(|m| m.port.map_or("*".to_string(), |p| p.to_string()))
                        .collect();
                    format!("(tcp) port {}", ports.join(" | "))
                };
                // Same rendering as an HTTP route's weighted destinations.
                let as_http = HttpRoute {
                    route: tcp
                        .route
                        .iter()
                        .map(|d| filter_model::routing::HttpRouteDestination {
                            destination: d.destination.clone(),
                            weight: d.weight,
                            headers: None,
                        })
                        .collect(),
                    ..Default::default()
                };
                t.row([
                    host.clone(),
                    format!("tcp#{i}"),
                    m,
                    describe_action(&as_http, host),
                    format!("{}.{}", vs.name, vs.namespace),
                ]);
                any = true;
            }
        }
        for hr in sr.map(|s| s.http_routes.as_slice()).unwrap_or_default() {
            t.row([
                host.clone(),
                "-".into(),
                "(HTTPRoute)".into(),
                "-".into(),
                format!("{}.{} (HTTPRoute)", hr.name, hr.namespace),
            ]);
            any = true;
        }
        if !any {
            t.row([
                host.clone(),
                "default".into(),
                "/*".into(),
                "(service) 100%".into(),
                "-".into(),
            ]);
        }
    }
    t.print();
    Ok(0)
}

async fn clusters(rd: &RunDir, a: &ProxyArgs) -> anyhow::Result<i32> {
    let mesh = Mesh::open(rd)?;
    let (rec, v) = config(&mesh, a).await?;
    let c = admin::get_json(&Mesh::waypoint(&rec, 15000), "/clusters").await?;
    if a.out.output != Format::Table {
        print_structured(&c, a.out.output)?;
        return Ok(0);
    }
    let dr_of = |svc: &str| -> String {
        v.pointer("/config/services")
            .and_then(Value::as_array)
            .and_then(|s| {
                s.iter()
                    .find(|x| x.get("hostname").and_then(Value::as_str) == Some(svc))
            })
            .and_then(|x| x.get("destinationRule").and_then(Value::as_str))
            .map(|d| {
                d.split_once('/')
                    .map(|(ns, n)| format!("{n}.{ns}"))
                    .unwrap_or_else(|| d.to_string())
            })
            .unwrap_or_default()
    };
    let mut t = Table::new(&[
        "SERVICE FQDN",
        "PORT",
        "SUBSET",
        "DIRECTION",
        "TYPE",
        "ENDPOINTS",
        "DESTINATION RULE",
    ]);
    for cl in c
        .get("clusters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let svc = cl
            .get("service")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let port = cl.get("port").map(|p| p.to_string()).unwrap_or_default();
        let subset = cl
            .get("subset")
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_string();
        let hosts = cl
            .get("hosts")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let ready = hosts
            .iter()
            .filter(|h| h.get("ready").and_then(Value::as_bool).unwrap_or(false))
            .count();
        t.row([
            svc.clone(),
            port,
            subset,
            "outbound".into(),
            "EDS".into(),
            format!("{ready}/{}", hosts.len()),
            dr_of(&svc),
        ]);
    }
    t.print();
    Ok(0)
}

async fn filters(rd: &RunDir, a: &ProxyArgs) -> anyhow::Result<i32> {
    let mesh = Mesh::open(rd)?;
    let (rec, _) = config(&mesh, a).await?;
    let f = admin::get_json(&Mesh::waypoint(&rec, 15000), "/filters").await?;
    if a.out.output != Format::Table {
        print_structured(&f, a.out.output)?;
        return Ok(0);
    }
    let mut t = Table::new(&["CHAIN", "FILTER", "VERSION", "DIGEST", "CANARY"]);
    for (i, ch) in f
        .get("chains")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        for x in ch
            .get("filters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let canary = match x.get("canary") {
                Some(c) if !c.is_null() => format!(
                    "{}% → {}",
                    c.get("percent").map(|p| p.to_string()).unwrap_or_default(),
                    short_digest(c.get("digest").and_then(Value::as_str).unwrap_or_default())
                ),
                _ => "-".into(),
            };
            t.row([
                i.to_string(),
                x.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                x.get("version")
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .unwrap_or_default(),
                short_digest(x.get("digest").and_then(Value::as_str).unwrap_or_default()),
                canary,
            ]);
        }
    }
    t.print();
    Ok(0)
}

/// Dispatch.
pub async fn run(rd: &RunDir, c: ProxyCmd) -> anyhow::Result<i32> {
    match c {
        ProxyCmd::Routes(a) => routes(rd, &a).await,
        ProxyCmd::Clusters(a) => clusters(rd, &a).await,
        ProxyCmd::Filters(a) => filters(rd, &a).await,
    }
}
