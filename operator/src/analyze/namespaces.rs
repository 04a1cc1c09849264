//! Namespace analyzers (istiod's `injection.Analyzer`): a namespace with
//! several kinds of data-plane labels (IST0123), and one enrolled neither
//! in ambient nor for sidecar injection (IST0102).

use super::{Level, Message};
use crate::config::ConfigSet;

/// Namespaces istioctl leaves out of the analysis.
const SYSTEM: [&str; 5] = [
    "istio-system",
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "local-path-storage",
];

const INJECTION: &str = "istio-injection";
const REVISION: &str = "istio.io/rev";
const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";

/// A message about the namespace `ns` itself (cluster-scoped: the resource
/// is `Namespace <ns>`, filtered as part of `ns`).
fn on_namespace(
    code: &'static str,
    name: &'static str,
    level: Level,
    ns: &str,
    text: String,
) -> Message {
    let mut m = Message::new(code, name, level, "Namespace", "", ns, text);
    m.namespace = ns.to_string();
    m
}

pub(super) fn analyze(cs: &ConfigSet) -> Vec<Message> {
    let mut out = Vec::new();
    for (ns, info) in &cs.namespaces {
        if SYSTEM.contains(&ns.as_str()) {
            continue;
        }
        let labels = &info.labels;
        let injection = labels.get(INJECTION);
        let mut found: Vec<String> = injection
            .map(|v| format!("{INJECTION}={v}"))
            .into_iter()
            .collect();
        for l in [REVISION, DATAPLANE_MODE] {
            if let Some(v) = labels.get(l)
                && injection.is_none_or(|i| i == "enabled")
            {
                found.push(format!("{l}={v}"));
            }
        }
        if found.len() > 1 {
            out.push(on_namespace(
                "IST0123",
                "NamespaceMultipleInjectionLabels",
                Level::Warning,
                ns,
                format!(
                    "The namespace has more than one type of injection labels {}, which may lead to undefined behavior. Make sure only one injection label exists.",
                    super::go_list(&found)
                ),
            ));
        }
        if labels.get(DATAPLANE_MODE).map(String::as_str) == Some("ambient") {
            continue;
        }
        if injection.is_none() && !labels.contains_key(REVISION) {
            out.push(on_namespace(
                "IST0102",
                "NamespaceNotInjected",
                Level::Info,
                ns,
                format!(
                    "The namespace is not enabled for Istio injection. Run 'kubectl label namespace {ns} istio-injection=enabled' to enable it, or 'kubectl label namespace {ns} istio-injection=disabled' to explicitly mark it as not needing injection."
                ),
            ));
        }
    }
    out
}
