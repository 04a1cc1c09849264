//! Prometheus text exposition (format 0.0.4) of a `prometheus-client`
//! registry, which natively writes OpenMetrics: counters are announced
//! under their `_total` name, `# UNIT` and `# EOF` lines are dropped, so
//! `promtool check metrics` and any Prometheus accept the output.

use prometheus_client::registry::Registry;

/// Encodes `registry` in the Prometheus text format, appending to `out`.
pub fn encode_registry(registry: &Registry, out: &mut String) {
    let mut om = String::new();
    if prometheus_client::encoding::text::encode(&mut om, registry).is_err() {
        return;
    }
    openmetrics_to_prometheus(&om, out);
}

/// Rewrites OpenMetrics text as Prometheus text.
pub fn openmetrics_to_prometheus(om: &str, out: &mut String) {
    let mut counters: Vec<String> = Vec::new();
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let kind = match kind {
                "counter" => {
                    counters.push(name.to_string());
                    "counter"
                }
                "gauge" | "histogram" | "summary" => kind,
                _ => "untyped",
            };
            let name = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            // The TYPE line follows HELP; look ahead is not possible here, so
            // counters are renamed when their TYPE is seen (below).
            out.push_str(&format!("# HELP {name} {help}\n"));
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        // Samples: drop OpenMetrics-only `_created` series of counters.
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let sample = &line[..name_end];
        if let Some(base) = sample.strip_suffix("_created")
            && counters.iter().any(|c| c == base)
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    fix_counter_help(out, &counters);
}

/// Renames `# HELP x` to `# HELP x_total` for counters.
fn fix_counter_help(out: &mut String, counters: &[String]) {
    if counters.is_empty() {
        return;
    }
    let mut fixed = String::with_capacity(out.len() + counters.len() * 6);
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.iter().any(|c| c == name) {
                fixed.push_str(&format!("# HELP {name}_total {help}\n"));
                continue;
            }
        }
        fixed.push_str(line);
        fixed.push('\n');
    }
    *out = fixed;
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;

    #[test]
    fn counters_get_total_names_and_openmetrics_markers_go() {
        let mut r = Registry::default();
        let c: Counter = Counter::default();
        c.inc();
        r.register("waypoint_config_reloads", "Config reloads", c);
        let g: Gauge = Gauge::default();
        g.set(3);
        r.register("waypoint_ready", "Ready", g);
        let mut out = String::new();
        encode_registry(&r, &mut out);
        assert!(
            out.contains("# HELP waypoint_config_reloads_total Config reloads.\n"),
            "{out}"
        );
        assert!(
            out.contains("# TYPE waypoint_config_reloads_total counter\n"),
            "{out}"
        );
        assert!(out.contains("waypoint_config_reloads_total 1\n"), "{out}");
        assert!(
            out.contains("# TYPE waypoint_ready gauge\nwaypoint_ready 3\n"),
            "{out}"
        );
        assert!(!out.contains("# EOF"));
    }
}
