//! Istio's Telemetry analyzers: an access-logging entry with no provider
//! (IST0157), a Lightstep tracing provider (IST0002), several Telemetries selecting one pod (IST0159), several
//! Telemetries without a selector in one namespace (IST0160).

use super::{Level, Message, go_list};
use crate::config::ConfigSet;
use std::collections::BTreeMap;

fn name(t: &crate::crd::Telemetry) -> (String, String) {
    (
        t.metadata.namespace.clone().unwrap_or_default(),
        t.metadata.name.clone().unwrap_or_default(),
    )
}

pub(super) fn analyze(cs: &ConfigSet) -> Vec<Message> {
    let mut out = Vec::new();
    let telemetries = &cs.resources.telemetries;

    // IST0157 (`telemetry.ProviderAnalyzer`): only when the mesh has no
    // default access-logging provider.
    if cs.mesh.default_providers.access_logging.is_empty() {
        for t in telemetries {
            let (ns, n) = name(t);
            for a in t.spec.access_logging.iter().flatten() {
                if a.disabled == Some(true) {
                    continue;
                }
                if a.providers.as_ref().is_none_or(Vec::is_empty) {
                    out.push(Message::new(
                        "IST0157",
                        "InvalidTelemetryProvider",
                        Level::Warning,
                        "Telemetry",
                        &ns,
                        &n,
                        format!(
                            "The Telemetry {n} in namespace {ns:?} with empty providers will be ignored."
                        ),
                    ));
                }
            }
        }
    }

    // IST0002 (`telemetry.LightstepAnalyzer`).
    for t in telemetries {
        let (ns, n) = name(t);
        for p in t
            .spec
            .tracing
            .iter()
            .flatten()
            .flat_map(|tr| tr.providers.iter().flatten())
        {
            if cs
                .mesh
                .extension_providers
                .get(&p.name)
                .is_some_and(|ep| ep.lightstep.is_some())
            {
                out.push(Message::new(
                    "IST0002",
                    "Deprecated",
                    Level::Warning,
                    "Telemetry",
                    &ns,
                    &n,
                    format!(
                        "Deprecated: The Lightstep provider {} is deprecated, please migrate to OpenTelemetry provider.",
                        p.name
                    ),
                ));
            }
        }
    }

    // IST0160 (`telemetry.DefaultSelectorAnalyzer`): Istio counts every
    // Telemetry whose `selector` is absent, `targetRefs` ones included.
    let mut without: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in telemetries.iter().filter(|t| t.spec.selector.is_none()) {
        let (ns, n) = name(t);
        without.entry(ns).or_default().push(n);
    }
    for (ns, names) in &without {
        if names.len() < 2 {
            continue;
        }
        let mut sorted = names.clone();
        sorted.sort();
        let list = go_list(&sorted);
        for n in names {
            out.push(Message::new(
                "IST0160",
                "MultipleTelemetriesWithoutWorkloadSelectors",
                Level::Error,
                "Telemetry",
                ns,
                n,
                format!(
                    "The Telemetries {list} in namespace {ns:?} have no workload selector, which can lead to undefined behavior."
                ),
            ));
        }
    }

    // IST0159 (`telemetry.SelectorAnalyzer`): pods of the Telemetry's own
    // namespace selected by more than one Telemetry with labels.
    let mut by_pod: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for t in telemetries {
        let labels = t
            .spec
            .selector
            .as_ref()
            .map(|s| s.labels())
            .unwrap_or_default();
        if labels.is_empty() {
            continue;
        }
        let (ns, n) = name(t);
        for p in cs
            .pods
            .iter()
            .filter(|p| p.namespace == ns && labels.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
        {
            by_pod
                .entry((p.namespace.clone(), p.name.clone()))
                .or_default()
                .push(n.clone());
        }
    }
    for ((ns, pod), names) in &by_pod {
        if names.len() < 2 {
            continue;
        }
        let mut sorted = names.clone();
        sorted.sort();
        let list = go_list(&sorted);
        for n in names {
            out.push(Message::new(
                "IST0159",
                "ConflictingTelemetryWorkloadSelectors",
                Level::Error,
                "Telemetry",
                ns,
                n,
                format!(
                    "The Telemetries {list} in namespace {ns:?} select the same workload pod {pod:?}, which can lead to undefined behavior."
                ),
            ));
        }
    }
    out
}
