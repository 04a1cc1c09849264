//! Telemetry resources: the tracing provider's protocol.

use crate::support::*;

/// Tracing providers: an `opentelemetry` provider without `http` is
/// OTLP/gRPC (Istio's default), with `http` it is OTLP/HTTP on its path.
#[test]
fn tracing_provider_protocol_follows_the_extension_provider() {
    for (provider, want) in [
        (
            "{service: otel.istio-system.svc.cluster.local, port: 4317}",
            "grpc://otel.istio-system.svc.cluster.local:4317",
        ),
        (
            "{service: otel.istio-system.svc.cluster.local, port: 4318, http: {path: /v1/traces}}",
            "http://otel.istio-system.svc.cluster.local:4318/v1/traces",
        ),
    ] {
        let t = seed_translation_with(
            &[(
                "07-telemetry.yaml",
                "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh-default, namespace: istio-system}\n\
                 spec:\n  tracing:\n  - providers: [{name: otel}]\n    randomSamplingPercentage: 5.0\n",
            )],
            &format!(
                "meshConfig:\n  extensionProviders:\n  - name: otel\n    opentelemetry: {provider}\n"
            ),
        );
        assert_eq!(
            t.waypoints[0].telemetry.tracing.otlp_endpoint.as_deref(),
            Some(want),
            "{provider}"
        );
    }
}

/// A Telemetry with `targetRefs` to a Service bound to the waypoint: the
/// waypoint gets that service's effective settings (its Telemetry on top
/// of the mesh/namespace ones) under `services`; the waypoint-wide
/// settings are unchanged.
#[test]
fn telemetry_targeting_a_service_gives_per_service_settings() {
    let t = seed_translation_with(
        &[(
            "08-telemetry-svc.yaml",
            "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: orders-trace, namespace: shop}\n\
         spec:\n  targetRefs: [{kind: Service, group: \"\", name: orders}]\n  tracing:\n  - randomSamplingPercentage: 100\n  metrics:\n  - overrides: [{match: {metric: REQUEST_SIZE}, disabled: true}]\n",
        )],
        "",
    );
    let tel = &t.waypoints[0].telemetry;
    assert_ne!(
        tel.tracing.sampling_percentage, 100.0,
        "waypoint-wide unchanged"
    );
    let svc = tel
        .services
        .get("orders.shop.svc.cluster.local")
        .expect("per-service settings");
    assert_eq!(svc.tracing.sampling_percentage, 100.0);
    assert!(
        svc.metrics
            .iter()
            .any(|m| m.metric == "REQUEST_SIZE" && m.disabled == Some(true))
    );
    assert_eq!(
        svc.access_log, tel.access_log,
        "what the service's Telemetry does not set is inherited"
    );
}

/// Tracing `customTags` of the three kinds reach the waypoint (set on
/// the mesh-wide Telemetry: a second namespace-wide one in the root
/// namespace would be ignored, as istiod takes only the oldest).
#[test]
fn custom_tags_of_every_kind_are_translated() {
    let t = seed_translation_with(
        &[(
            "07-telemetry.yaml",
            "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh-default, namespace: istio-system}\n\
         spec:\n  tracing:\n  - customTags:\n      team: {literal: {value: shop}}\n      user: {header: {name: x-user, defaultValue: anon}}\n      zone: {environment: {name: ZONE}}\n",
        )],
        "",
    );
    let tr = &t.waypoints[0].telemetry.tracing;
    assert_eq!(tr.custom_tags.get("team").map(String::as_str), Some("shop"));
    let user = tr.header_tags.get("user").unwrap();
    assert_eq!(
        (user.name.as_str(), user.default_value.as_deref()),
        ("x-user", Some("anon"))
    );
    assert_eq!(tr.environment_tags.get("zone").unwrap().name, "ZONE");
}

/// An `accessLogging` entry that names no provider uses
/// `meshConfig.defaultProviders.accessLogging`; with none (Istio's
/// default installation) the entry configures nothing, so the parent's
/// setting stays. `disabled: true` without providers still turns logging
/// off.
#[test]
fn access_logging_without_providers_uses_the_default_providers() {
    let ns_telemetry = |body: &str| {
        format!(
            "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: shop-logs, namespace: shop}}\nspec:\n  accessLogging:\n  - {body}\n"
        )
    };
    let mesh_off = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh-default, namespace: istio-system}\nspec:\n  accessLogging:\n  - {disabled: true}\n";
    // No default provider: ignored, the mesh-wide "off" stays.
    let t = seed_translation_with(
        &[
            ("07-telemetry.yaml", mesh_off),
            (
                "08-shop.yaml",
                &ns_telemetry("filter: {expression: \"response.code >= 400\"}"),
            ),
        ],
        "",
    );
    let log = &t.waypoints[0].telemetry.access_log;
    assert!(!log.enabled, "{log:?}");
    assert_eq!(log.filter, None);
    // A default provider: the same entry turns logging on through it.
    let t = seed_translation_with(
        &[
            ("07-telemetry.yaml", mesh_off),
            (
                "08-shop.yaml",
                &ns_telemetry("filter: {expression: \"response.code >= 400\"}"),
            ),
        ],
        "meshConfig:\n  defaultProviders:\n    accessLogging: [envoy]\n",
    );
    let log = &t.waypoints[0].telemetry.access_log;
    assert!(log.enabled, "{log:?}");
    assert_eq!(log.providers, vec!["envoy".to_string()]);
    assert_eq!(log.filter.as_deref(), Some("response.code >= 400"));
}

/// `meshConfig.defaultProviders.tracing` traces through that provider when
/// no Telemetry names one (the seed's mesh Telemetry sets only the
/// sampling); a Telemetry naming another provider wins.
#[test]
fn default_tracing_provider_applies_without_a_named_one() {
    let providers = "meshConfig:\n  extensionProviders:\n  - name: otel\n    opentelemetry: {service: otel.istio-system.svc.cluster.local, port: 4317}\n  - name: otel-http\n    opentelemetry: {service: collector.istio-system.svc.cluster.local, port: 4318, http: {}}\n";
    let t = seed_translation_with(&[], providers);
    assert_eq!(t.waypoints[0].telemetry.tracing.otlp_endpoint, None);
    let t = seed_translation_with(
        &[],
        &format!("{providers}  defaultProviders:\n    tracing: [otel]\n"),
    );
    let tracing = &t.waypoints[0].telemetry.tracing;
    assert_eq!(
        tracing.otlp_endpoint.as_deref(),
        Some("grpc://otel.istio-system.svc.cluster.local:4317")
    );
    assert_eq!(tracing.sampling_percentage, 5.0, "the seed's sampling");
    let t = seed_translation_with(
        &[(
            "08-shop-tracing.yaml",
            "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: shop, namespace: shop}\nspec:\n  tracing:\n  - providers: [{name: otel-http}]\n",
        )],
        &format!("{providers}  defaultProviders:\n    tracing: [otel]\n"),
    );
    assert_eq!(
        t.waypoints[0].telemetry.tracing.otlp_endpoint.as_deref(),
        Some("http://collector.istio-system.svc.cluster.local:4318/v1/traces")
    );
}

fn mesh_telemetry(spec: &str) -> String {
    format!(
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: mesh-default, namespace: istio-system}}\nspec:\n{spec}"
    )
}

/// A waypoint is a server-side proxy (istiod builds its chains as inbound
/// listeners): entries with `match: {mode: CLIENT}` do not apply to it,
/// and every entry of a Telemetry is read, not only the first.
#[test]
fn client_only_entries_do_not_apply_to_waypoints() {
    let t = seed_translation_with(
        &[(
            "07-telemetry.yaml",
            &mesh_telemetry(
                "  accessLogging:\n  - providers: [{name: envoy}]\n    match: {mode: CLIENT}\n  tracing:\n  - randomSamplingPercentage: 100\n    match: {mode: CLIENT}\n",
            ),
        )],
        "",
    );
    let tel = &t.waypoints[0].telemetry;
    assert!(!tel.access_log.enabled, "{:?}", tel.access_log);
    assert_eq!(tel.tracing.sampling_percentage, 1.0, "the mesh default");
    let t = seed_translation_with(
        &[(
            "07-telemetry.yaml",
            &mesh_telemetry(
                "  accessLogging:\n  - match: {mode: CLIENT}\n    disabled: true\n  - providers: [{name: envoy}]\n    match: {mode: SERVER}\n  tracing:\n  - randomSamplingPercentage: 100\n    match: {mode: CLIENT}\n  - randomSamplingPercentage: 20\n",
            ),
        )],
        "",
    );
    let tel = &t.waypoints[0].telemetry;
    assert!(tel.access_log.enabled, "{:?}", tel.access_log);
    assert_eq!(tel.access_log.providers, vec!["envoy".to_string()]);
    assert_eq!(tel.tracing.sampling_percentage, 20.0);
}

/// `meshConfig.defaultProviders.accessLogging` logs every request when no
/// Telemetry configures access logging (istiod's `mergeLogs`).
#[test]
fn default_access_log_providers_log_without_a_telemetry() {
    let only_tracing = mesh_telemetry("  tracing:\n  - randomSamplingPercentage: 5.0\n");
    let t = seed_translation_with(&[("07-telemetry.yaml", &only_tracing)], "");
    assert!(!t.waypoints[0].telemetry.access_log.enabled);
    let t = seed_translation_with(
        &[("07-telemetry.yaml", &only_tracing)],
        "meshConfig:\n  defaultProviders:\n    accessLogging: [envoy]\n",
    );
    let log = &t.waypoints[0].telemetry.access_log;
    assert!(log.enabled, "{log:?}");
    assert_eq!(log.providers, vec!["envoy".to_string()]);
}

/// `defaultConfig.tracing.sampling` as istiod reads it: 0 is unset (1 %),
/// above 100 falls back to 1 %, anything else is taken as is.
#[test]
fn mesh_trace_sampling_is_normalized_as_istiod_does() {
    let no_tracing = mesh_telemetry("  accessLogging:\n  - providers: [{name: envoy}]\n");
    for (set, want) in [("0", 1.0), ("150", 1.0), ("30", 30.0), ("0.5", 0.5)] {
        let t = seed_translation_with(
            &[("07-telemetry.yaml", &no_tracing)],
            &format!("meshConfig:\n  defaultConfig:\n    tracing:\n      sampling: {set}\n"),
        );
        assert_eq!(
            t.waypoints[0].telemetry.tracing.sampling_percentage, want,
            "sampling: {set}"
        );
    }
}

/// Only one namespace-wide Telemetry per namespace applies (istiod takes
/// the oldest; several are IST0160): a second one in the root namespace
/// changes nothing.
#[test]
fn a_second_namespace_wide_telemetry_is_ignored() {
    let t = seed_translation_with(
        &[(
            "08-second.yaml",
            "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: z-second, namespace: istio-system}\n\
             spec:\n  tracing:\n  - randomSamplingPercentage: 100\n",
        )],
        "",
    );
    assert_eq!(
        t.waypoints[0].telemetry.tracing.sampling_percentage, 5.0,
        "the seed's mesh-default (older by name here) decides"
    );
}

/// A service in another namespace than its waypoint's gets that
/// namespace's namespace-wide Telemetry on top of the waypoint's (istiod's
/// `applicableTelemetries` for waypoints).
#[test]
fn a_cross_namespace_service_gets_its_namespace_telemetry() {
    use operator::config::{NamespaceInfo, ServiceInfo};
    let mut cs = operator::config::ConfigSet::default();
    cs.namespaces.insert(
        "app".into(),
        NamespaceInfo {
            name: "app".into(),
            ..Default::default()
        },
    );
    cs.services.push(ServiceInfo {
        name: "reviews".into(),
        namespace: "app".into(),
        ..Default::default()
    });
    for o in objects(
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: app-logs, namespace: app}\n\
         spec:\n  accessLogging:\n  - providers: [{name: envoy}]\n",
    ) {
        cs.resources.push(o);
    }
    let wp = operator::translate::waypoints::WaypointInfo {
        name: "waypoint".into(),
        namespace: "infra".into(),
        traffic_type: Default::default(),
        addresses: Vec::new(),
        deployment_name: "waypoint".into(),
        service_account: "waypoint".into(),
        managed: true,
        allowed_from: operator::translate::waypoints::AllowedFrom::Same,
        gateway: operator::crd::Gateway::new("waypoint", Default::default()),
    };
    let host = "reviews.app.svc.cluster.local";
    let tel = operator::translate::telemetry::telemetry_for(&cs, &wp, &[(host, "app", "reviews")]);
    assert!(!tel.access_log.enabled, "the waypoint itself does not log");
    let svc = tel.services.get(host).expect("per-service settings");
    assert!(svc.access_log.enabled, "{:?}", svc.access_log);
    // A service in the waypoint's own namespace does not get it.
    let tel = operator::translate::telemetry::telemetry_for(
        &cs,
        &wp,
        &[("reviews.infra.svc.cluster.local", "infra", "reviews")],
    );
    assert!(tel.services.is_empty());
}
