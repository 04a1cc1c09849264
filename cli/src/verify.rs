//! `meshctl verify`: the seed guide's Verify section against the local
//! mesh, each layer proven independently, each check printed with its
//! evidence and PASS/FAIL; the exit status is non-zero when any fails.

use crate::admin;
use crate::cmd::VerifyArgs;
use crate::context::RunDir;
use crate::mesh::{Mesh, conditions_of};
use crate::prom;
use std::process::Command;

/// Expected share of `v2` (the canary VirtualService's weight).
pub const V2_WEIGHT: f64 = 0.10;
/// Accepted deviation, in standard deviations of the binomial.
pub const SIGMAS: f64 = 4.5;

/// One check's outcome.
#[derive(Debug, Clone)]
pub struct Check {
    /// Title.
    pub title: String,
    /// The guide's command and ours.
    pub command: String,
    /// Evidence lines.
    pub evidence: Vec<String>,
    /// Passed?
    pub pass: bool,
    /// One-line summary.
    pub summary: String,
}

fn print_check(i: usize, n: usize, c: &Check) {
    println!("[{i}/{n}] {}", c.title);
    println!("      $ {}", c.command);
    for e in &c.evidence {
        println!("      {e}");
    }
    println!(
        "      {} {}\n",
        if c.pass {
            "\u{2714} PASS"
        } else {
            "\u{2718} FAIL"
        },
        c.summary
    );
}

/// `curl` inside a pod's network namespace: the status codes printed with `-w`.
pub fn curl_codes(
    netns: Option<&str>,
    urls: &[String],
    extra: &[String],
) -> Result<Vec<String>, String> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "curl"]);
            c
        }
        None => Command::new("curl"),
    };
    let netns = netns.unwrap_or("the host's network namespace");
    let out = cmd
        .args(["-s", "-m", "10", "-w", "%{http_code}\\n"])
        .args(extra)
        // curl pairs each -o with one URL.
        .args(urls.iter().flat_map(|u| ["-o", "/dev/null", u.as_str()]))
        .output()
        .map_err(|e| format!("cannot run curl in {netns}: {e}"))?;
    let codes: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    if codes.is_empty() {
        return Err(format!(
            "curl printed nothing (exit {:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(codes)
}

async fn check_hbone(mesh: &Mesh, ns: &str) -> Check {
    let command = format!(
        "meshctl ztunnel-config workloads --workload-namespace {ns}   (istioctl ztunnel-config workloads --workload-namespace {ns})"
    );
    let title = "mTLS / L4: ztunnel sees the workloads over HBONE".to_string();
    match crate::ztunnel_config::dump(mesh, None).await {
        Err(e) => Check {
            title,
            command,
            evidence: vec![],
            pass: false,
            summary: format!("cannot read ztunnel's config: {e}"),
        },
        Ok(d) => {
            let (t, wls) = crate::ztunnel_config::workloads_table(&d, Some(ns), None);
            let hbone = wls
                .iter()
                .filter(|w| w.protocol == mesh_common::model::TunnelProtocol::Hbone)
                .count();
            let mut captured = 0;
            for node in mesh.nodes() {
                if let Ok(nd) = crate::ztunnel_config::dump(mesh, Some(node)).await {
                    captured += wls.iter().filter(|w| nd.enrolled.contains(&w.uid)).count();
                }
            }
            let pass = !wls.is_empty() && hbone == wls.len() && captured == wls.len();
            Check {
                title,
                command,
                evidence: t.render().lines().map(str::to_string).collect(),
                pass,
                summary: format!(
                    "{hbone}/{} workloads HBONE, {captured}/{} served by their node's ztunnel",
                    wls.len(),
                    wls.len()
                ),
            }
        }
    }
}

async fn check_programmed(mesh: &Mesh, ns: &str) -> Check {
    let command = format!(
        "meshctl get gateways.gateway.networking.k8s.io waypoint -n {ns} -o jsonpath='{{.status.conditions[?(@.type==\"Programmed\")].status}}'"
    );
    let title = "The waypoint is healthy and programmed".to_string();
    let statuses = match mesh.statuses().await {
        Ok(s) => s,
        Err(e) => {
            return Check {
                title,
                command,
                evidence: vec![],
                pass: false,
                summary: format!("cannot read statuses from the operator: {e}"),
            };
        }
    };
    let c = conditions_of(&statuses, "Gateway", ns, "waypoint")
        .iter()
        .find(|c| c.type_ == "Programmed")
        .cloned();
    match c {
        Some(c) => Check {
            title,
            command,
            evidence: vec![format!(
                "Programmed={} reason={} message={}",
                c.status_str(),
                c.reason,
                c.message
            )],
            pass: c.status,
            summary: format!("Programmed={}", c.status_str()),
        },
        None => Check {
            title,
            command,
            evidence: vec![],
            pass: false,
            summary: format!(
                "no waypoint Gateway {ns}/waypoint (apply examples/shop/20-waypoint.yaml)"
            ),
        },
    }
}

fn netns_of(mesh: &Mesh, ns: &str, owner: &str) -> Option<String> {
    let c = mesh.cluster().ok()?;
    let p = c.pods.iter().find(|p| {
        p.namespace == ns && (p.name == owner || p.owner.as_ref().is_some_and(|o| o.name == owner))
    })?;
    Some(mesh.state.plan.pod_netns(&p.namespace, &p.name))
}

/// Who sends the test requests: a pod (curl inside its network namespace)
/// or, in loopback mode, the host through the waypoint's plain-HTTP listener.
#[derive(Debug, Clone)]
pub struct Client {
    /// Network namespace (`None`: the host's).
    pub netns: Option<String>,
    /// URL requested.
    pub url: String,
    /// Extra curl arguments (headers).
    pub extra: Vec<String>,
}

impl Client {
    /// curl from pod `from` (a pod or workload name) to `url`.
    pub fn pod(mesh: &Mesh, ns: &str, from: &str, url: &str) -> Result<Self, String> {
        let netns = netns_of(mesh, ns, from).ok_or_else(|| format!("no pod {from} in {ns}"))?;
        Ok(Client {
            netns: Some(netns),
            url: url.into(),
            extra: vec![],
        })
    }

    /// Loopback mode: through the shop waypoint's plain-HTTP listener, with
    /// a token from the examples' issuer when `token`.
    pub fn waypoint_http(mesh: &Mesh, ns: &str, token: bool) -> Result<Self, String> {
        let w = mesh
            .find_waypoint("waypoint", ns)
            .ok_or_else(|| format!("no waypoint {ns}/waypoint"))?;
        let mut extra = vec![
            "-H".to_string(),
            format!("Host: orders.{ns}.svc.cluster.local"),
        ];
        if token {
            let a = crate::cmd::JwtMint {
                key: None,
                kid: "mesh-example".into(),
                iss: "https://accounts.example.com".into(),
                sub: "verify".into(),
                aud: None,
                ttl: std::time::Duration::from_secs(600),
                claims: vec![],
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let claims = crate::jwt::claims(&a, now).map_err(|e| e.to_string())?;
            let t = crate::jwt::sign(crate::jwt::EXAMPLE_KEY.as_bytes(), &a.kid, &claims)
                .map_err(|e| e.to_string())?;
            extra.extend(["-H".to_string(), format!("Authorization: Bearer {t}")]);
        }
        Ok(Client {
            netns: None,
            url: format!("http://{}:15080/api/health", w.ip),
            extra,
        })
    }
}

fn check_call(title: String, command: String, client: Result<Client, String>, want: &str) -> Check {
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            return Check {
                title,
                command,
                evidence: vec![],
                pass: false,
                summary: e,
            };
        }
    };
    match curl_codes(
        client.netns.as_deref(),
        std::slice::from_ref(&client.url),
        &client.extra,
    ) {
        Ok(codes) => {
            let got = codes.first().cloned().unwrap_or_default();
            Check {
                title,
                command,
                evidence: vec![got.clone()],
                pass: got == want,
                summary: format!("HTTP {got} (expected {want})"),
            }
        }
        Err(e) => Check {
            title,
            command,
            evidence: vec![],
            pass: false,
            summary: e,
        },
    }
}

async fn metrics(mesh: &Mesh) -> Result<String, String> {
    let mut all = String::new();
    for w in mesh.waypoints() {
        let t = admin::get(&Mesh::waypoint(&w, 15020), "/stats/prometheus")
            .await
            .map_err(|e| e.to_string())?;
        all.push_str(&t);
    }
    Ok(all)
}

fn version_count(text: &str, ns: &str, v: &str) -> f64 {
    prom::sum(
        text,
        "istio_requests_total",
        &[
            ("reporter", "waypoint"),
            ("destination_service_name", "orders"),
            ("destination_service_namespace", ns),
            ("destination_version", v),
        ],
    )
}

async fn check_split(mesh: &Mesh, ns: &str, n: u32, client: Result<Client, String>) -> Check {
    let command = format!(
        "meshctl exec -n {ns} deploy/waypoint -c istio-proxy -- pilot-agent request GET stats/prometheus | grep 'destination_version=\"v2\"'"
    );
    let title = format!(
        "Routing split is live: ~{:.0}% of requests reach v2 (waypoint metrics by subset)",
        V2_WEIGHT * 100.0
    );
    let fail = |s: String| Check {
        title: title.clone(),
        command: command.clone(),
        evidence: vec![],
        pass: false,
        summary: s,
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let before = match metrics(mesh).await {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot scrape the waypoint: {e}")),
    };
    let urls: Vec<String> = (0..n).map(|_| client.url.clone()).collect();
    let codes = match curl_codes(client.netns.as_deref(), &urls, &client.extra) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let ok = codes.iter().filter(|c| *c == "200").count();
    let after = match metrics(mesh).await {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot scrape the waypoint: {e}")),
    };
    let v1 = version_count(&after, ns, "v1") - version_count(&before, ns, "v1");
    let v2 = version_count(&after, ns, "v2") - version_count(&before, ns, "v2");
    let total = v1 + v2;
    let sd = (total * V2_WEIGHT * (1.0 - V2_WEIGHT)).sqrt();
    let (lo, hi) = (
        (V2_WEIGHT * total - SIGMAS * sd).max(0.0),
        V2_WEIGHT * total + SIGMAS * sd,
    );
    let share = if total > 0.0 { v2 / total } else { 0.0 };
    let sample: Vec<String> = after
        .lines()
        .filter(|l| {
            l.starts_with("istio_requests_total") && l.contains("destination_version=\"v2\"")
        })
        .take(2)
        .map(str::to_string)
        .collect();
    let mut evidence = vec![
        format!("sent {n} requests to {}: {ok} answered 200", client.url),
        format!(
            "istio_requests_total (reporter=waypoint, orders) during the run: v1 {v1}, v2 {v2}"
        ),
        format!(
            "accepted v2 count for {total} requests: {lo:.0}–{hi:.0} ({SIGMAS}σ of the binomial around {:.0}%)",
            V2_WEIGHT * 100.0
        ),
    ];
    evidence.extend(sample);
    let pass = total >= f64::from(n) * 0.95 && ok as u32 == n && v2 >= lo && v2 <= hi;
    Check {
        title,
        command,
        evidence,
        pass,
        summary: format!("v2 share {:.1}% ({v2}/{total})", share * 100.0),
    }
}

async fn check_analyze(rd: &RunDir, ns: &str) -> Check {
    let command = format!("meshctl analyze -n {ns}   (istioctl analyze -n {ns})");
    let title = "Static config sanity check".to_string();
    match crate::analyze::live(rd, Some(ns)).await {
        Err(e) => Check {
            title,
            command,
            evidence: vec![],
            pass: false,
            summary: format!("cannot analyze: {e}"),
        },
        Ok(msgs) => {
            let errors = msgs.iter().filter(|m| m.level == "Error").count();
            let evidence = if msgs.is_empty() {
                vec![format!(
                    "\u{2714} No validation issues found when analyzing namespace: {ns}."
                )]
            } else {
                msgs.iter().map(|m| m.to_string()).collect()
            };
            Check {
                title,
                command,
                evidence,
                pass: errors == 0,
                summary: format!("{errors} errors, {} warnings/infos", msgs.len() - errors),
            }
        }
    }
}

/// `verify`.
pub async fn verify(rd: &RunDir, a: &VerifyArgs) -> anyhow::Result<i32> {
    let mesh = Mesh::open(rd)?;
    let ns = a.namespace.as_str();
    println!("Verify (seed guide): prove each layer independently\n");
    if let Err(e) = crate::mesh::sync::wait_synced(&mesh, std::time::Duration::from_secs(30)).await
    {
        println!("warning: {e}\n");
    }
    let mut checks = vec![
        check_hbone(&mesh, ns).await,
        check_programmed(&mesh, ns).await,
    ];
    let web_cmd = format!(
        "meshctl exec -n {ns} deploy/web -- curl -s -o /dev/null -w '%{{http_code}}' http://orders/api/health"
    );
    let probe_cmd = format!(
        "meshctl exec -n {ns} probe -- curl -s -o /dev/null -w '%{{http_code}}' http://orders.{ns}/api/health   # expect 403"
    );
    if mesh.state.plan.loopback {
        // No capture: prove the L7 path through the waypoint's plain-HTTP
        // listener instead (waypoint → HBONE → ztunnel → app).
        let tok = "curl -H 'Host: orders.shop.svc.cluster.local' -H \"Authorization: Bearer $(meshctl jwt mint)\" http://<waypoint>:15080/api/health";
        let anon = "curl -H 'Host: orders.shop.svc.cluster.local' http://<waypoint>:15080/api/health   # no identity, no token";
        checks.push(check_call(
            "Authz (loopback): a valid JWT through the waypoint answers 200".into(),
            tok.into(),
            Client::waypoint_http(&mesh, ns, true),
            "200",
        ));
        checks.push(check_call(
            "Authz (loopback): an anonymous request through the waypoint answers 403".into(),
            anon.into(),
            Client::waypoint_http(&mesh, ns, false),
            "403",
        ));
        checks.push(
            check_split(
                &mesh,
                ns,
                a.requests,
                Client::waypoint_http(&mesh, ns, true),
            )
            .await,
        );
    } else {
        checks.push(check_call(
            "Authz: web → http://orders/api/health answers 200".into(),
            web_cmd,
            Client::pod(&mesh, ns, "web", "http://orders/api/health"),
            "200",
        ));
        checks.push(check_call(
            format!("Authz: probe → http://orders.{ns}/api/health answers 403"),
            probe_cmd,
            Client::pod(
                &mesh,
                ns,
                "probe",
                &format!("http://orders.{ns}/api/health"),
            ),
            "403",
        ));
        checks.push(
            check_split(
                &mesh,
                ns,
                a.requests,
                Client::pod(&mesh, ns, "web", &format!("http://orders.{ns}/api/health")),
            )
            .await,
        );
    }
    checks.push(check_analyze(rd, ns).await);
    let n = checks.len();
    for (i, c) in checks.iter().enumerate() {
        print_check(i + 1, n, c);
    }
    let failed = checks.iter().filter(|c| !c.pass).count();
    if failed == 0 && mesh.state.plan.loopback {
        println!(
            "\u{2714} all {n} checks passed (loopback mode: traffic through the waypoint's plain-HTTP listener)"
        );
        Ok(0)
    } else if failed == 0 {
        println!(
            "\u{2714} all {n} checks passed: workloads show HBONE, the Gateway is Programmed, the allowed call returns 200 and the unauthorized one 403, v2 gets ~10% of requests, analyze reports no errors"
        );
        Ok(0)
    } else {
        println!(
            "\u{2718} {failed} of {n} checks failed (logs: {})",
            rd.logs_dir().display()
        );
        Ok(1)
    }
}
