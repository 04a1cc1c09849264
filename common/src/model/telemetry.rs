//! Telemetry settings resolved from Telemetry resources for one waypoint.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Telemetry for a waypoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryConfig {
    /// Access logging.
    #[serde(default)]
    pub access_log: AccessLogConfig,
    /// Tracing.
    #[serde(default)]
    pub tracing: TracingConfig,
    /// Metric overrides, in application order (mesh → namespace → workload).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricOverride>,
    /// The effective settings for traffic addressed to one service (FQDN),
    /// where a Telemetry with `targetRefs` to that Service applies on top
    /// of the waypoint's. Their `services` are empty and their trace
    /// export endpoint is the waypoint's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, TelemetryConfig>,
}

/// Access logging.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessLogConfig {
    /// Emit JSON access logs.
    #[serde(default)]
    pub enabled: bool,
    /// CEL filter (e.g. `response.code >= 400`); only matching requests are logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Provider names (informational; `envoy` = stdout JSON).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
}

/// Tracing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TracingConfig {
    /// Sampling percentage 0–100 (Istio default 1 %).
    pub sampling_percentage: f64,
    /// Where spans are exported: an OTLP/HTTP endpoint (`http://host:port`
    /// or a full `.../v1/traces` URL, JSON encoding) or `grpc://host:port`
    /// for OTLP/gRPC; `None` ⇒ spans not exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// Do not report spans (context still propagated).
    #[serde(default)]
    pub disable_span_reporting: bool,
    /// Custom span tags: name → literal value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_tags: BTreeMap<String, String>,
    /// Custom span tags read from a request header: name → source.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub header_tags: BTreeMap<String, TagSource>,
    /// Custom span tags read from the waypoint's environment: name → source.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment_tags: BTreeMap<String, TagSource>,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            sampling_percentage: 1.0,
            otlp_endpoint: None,
            disable_span_reporting: false,
            custom_tags: BTreeMap::new(),
            header_tags: BTreeMap::new(),
            environment_tags: BTreeMap::new(),
        }
    }
}

/// One metrics override (Telemetry `metrics[].overrides[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricOverride {
    /// `ALL_METRICS`, `REQUEST_COUNT`, … or a custom metric name.
    pub metric: String,
    /// `CLIENT`, `SERVER` or `CLIENT_AND_SERVER`.
    #[serde(default = "client_and_server")]
    pub mode: String,
    /// Disable (`true`) or re-enable (`false`) the metric; unset keeps what
    /// a parent Telemetry decided (Istio: a disabled metric is re-enabled
    /// only by an explicit `disabled: false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Tag name → `None` to remove, `Some(expr)` to upsert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tag_overrides: BTreeMap<String, Option<String>>,
}

fn client_and_server() -> String {
    "CLIENT_AND_SERVER".to_string()
}

/// Where a custom span tag takes its value (Telemetry `customTags` of type
/// `header` or `environment`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagSource {
    /// Header or environment variable name.
    pub name: String,
    /// Value when it is absent; absent and no default ⇒ no tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<String>,
}
