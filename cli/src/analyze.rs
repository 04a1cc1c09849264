//! `meshctl analyze`: Istio's analyzer messages (IST codes) from the
//! operator library — live from the running local mesh's operator, or
//! offline over files and directories.

use crate::admin;
use crate::cluster::apply::offline_config;
use crate::cluster::manifest;
use crate::cmd::AnalyzeArgs;
use crate::context::RunDir;
use crate::mesh::Mesh;
use crate::output::{Format, print_structured};
use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Exit code when errors are found (istioctl's).
pub const EXIT_ISSUES: i32 = 79;

/// One analyzer message (the operator's `analyze::Message` as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    /// `ISTnnnn`.
    pub code: String,
    /// Message type name.
    pub name: String,
    /// `Error`, `Warning`, `Info`.
    pub level: String,
    /// `Kind namespace/name`.
    pub resource: String,
    /// Namespace.
    pub namespace: String,
    /// Text.
    pub message: String,
}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} [{}] ({}) {}",
            self.level, self.code, self.resource, self.message
        )
    }
}

/// Messages for the running mesh (its operator's view, waypoint addresses
/// and statuses included).
pub async fn live(rd: &RunDir, namespace: Option<&str>) -> anyhow::Result<Vec<Message>> {
    let mesh = Mesh::open(rd)?;
    let q = namespace
        .map(|n| format!("?namespace={n}"))
        .unwrap_or_default();
    let v = admin::get_json(&mesh.operator_debug(), &format!("/debug/analyze{q}")).await?;
    Ok(serde_json::from_value(v)?)
}

/// Messages for manifests on disk.
pub fn offline(
    files: &[std::path::PathBuf],
    namespace: Option<&str>,
) -> anyhow::Result<Vec<Message>> {
    // A document that does not parse is reported (IST0106, as istioctl
    // reports a schema error) and the others are still analyzed.
    let mut docs = Vec::new();
    let mut broken = Vec::new();
    for f in files {
        for path in manifest::files(f)? {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let (d, errors) =
                manifest::parse_text_lenient(&text, &path.display().to_string(), "default");
            docs.extend(d);
            broken.extend(errors);
        }
    }
    let cs = offline_config(docs).map_err(anyhow::Error::msg)?;
    let msgs = operator::analyze::analyze(&cs, namespace);
    let mut out: Vec<Message> = serde_json::from_value(serde_json::to_value(&msgs)?)?;
    for e in broken {
        let (resource, ns) = match &e {
            manifest::ManifestError::Parse(operator::config::parse::ParseError::Schema {
                kind,
                name,
                ..
            }) => (
                format!("{kind} {name}"),
                name.split_once('/')
                    .map(|(n, _)| n.to_string())
                    .unwrap_or_default(),
            ),
            _ => (String::new(), String::new()),
        };
        if namespace.is_some_and(|n| !ns.is_empty() && n != ns) {
            continue;
        }
        out.push(Message {
            code: "IST0106".into(),
            name: "SchemaValidationError".into(),
            level: "Error".into(),
            resource,
            namespace: ns,
            message: e.to_string(),
        });
    }
    Ok(out)
}

/// `analyze`.
pub async fn run(rd: &RunDir, a: &AnalyzeArgs) -> anyhow::Result<i32> {
    let ns = if a.all_namespaces {
        None
    } else {
        a.namespace.as_deref()
    };
    let msgs = if a.files.is_empty() {
        live(rd, ns).await?
    } else {
        offline(&a.files, ns)?
    };
    if a.out.output != Format::Table {
        print_structured(&msgs, a.out.output)?;
    } else if msgs.is_empty() {
        let scope = match ns {
            Some(n) => format!("namespace: {n}"),
            None => "all namespaces".into(),
        };
        println!("\u{2714} No validation issues found when analyzing {scope}.");
    } else {
        for m in &msgs {
            println!("{m}");
        }
    }
    Ok(if msgs.iter().any(|m| m.level == "Error") {
        EXIT_ISSUES
    } else {
        0
    })
}
