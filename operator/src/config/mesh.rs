//! Mesh-wide settings (the part of Istio's `meshConfig` the operator uses).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Default root namespace.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";
/// Default DNS domain suffix.
pub const DEFAULT_DOMAIN_SUFFIX: &str = "cluster.local";
/// Istio's default trace sampling (`PILOT_TRACE_SAMPLING`), percent.
pub const DEFAULT_TRACE_SAMPLING: f64 = 1.0;

/// Mesh settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MeshSettings {
    /// Root (mesh-wide config) namespace.
    pub root_namespace: String,
    /// SPIFFE trust domain.
    pub trust_domain: String,
    /// Trust domain aliases.
    pub trust_domain_aliases: Vec<String>,
    /// Service DNS suffix.
    pub domain_suffix: String,
    /// `defaultConfig.tracing.sampling`; `None` ⇒ 1 %.
    pub default_trace_sampling: Option<f64>,
    /// Extension providers by name.
    pub extension_providers: BTreeMap<String, ExtensionProvider>,
    /// `meshConfig.defaultProviders`: the providers a Telemetry entry
    /// without `providers` uses.
    pub default_providers: DefaultProviders,
    /// Reject a VirtualService route that combines `fault` with `retries`
    /// or `timeout`. Off by default: Istio accepts the combination (the
    /// fault filter runs before the router, so an aborted request is never
    /// retried); the seed guide describes a rejection, which a mesh can opt
    /// into with `rejectFaultWithRetries: true`.
    pub reject_fault_with_retries: bool,
    /// `PILOT_ENABLE_MULTIPLE_CUSTOM_AUTHZ_PROVIDERS`.
    pub multiple_custom_authz_providers: bool,
    /// `EnableWdsDryRunAuthzPol`: send dry-run policies to ztunnel.
    pub ztunnel_dry_run: bool,
    /// `PILOT_AUTO_ALLOW_WAYPOINT_POLICY`: push an ALLOW policy
    /// `istio_allow_waypoint_<ns>_<name>` letting each waypoint's identity
    /// reach the workloads behind it (default false, as in Istio).
    pub auto_allow_waypoint_policy: bool,
}

impl Default for MeshSettings {
    fn default() -> Self {
        MeshSettings {
            root_namespace: DEFAULT_ROOT_NAMESPACE.into(),
            trust_domain: mesh_common::model::DEFAULT_TRUST_DOMAIN.into(),
            trust_domain_aliases: Vec::new(),
            domain_suffix: DEFAULT_DOMAIN_SUFFIX.into(),
            default_trace_sampling: None,
            extension_providers: BTreeMap::new(),
            default_providers: DefaultProviders::default(),
            reject_fault_with_retries: false,
            multiple_custom_authz_providers: false,
            ztunnel_dry_run: false,
            auto_allow_waypoint_policy: false,
        }
    }
}

/// `meshConfig.defaultProviders`: provider names per telemetry kind.
/// Istio's default installation sets only `metrics: [prometheus]`, so an
/// `accessLogging` entry that names no provider configures nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DefaultProviders {
    /// Access logging providers.
    pub access_logging: Vec<String>,
    /// Tracing providers.
    pub tracing: Vec<String>,
    /// Metrics providers.
    pub metrics: Vec<String>,
}

impl Default for DefaultProviders {
    fn default() -> Self {
        DefaultProviders {
            access_logging: Vec::new(),
            tracing: Vec::new(),
            metrics: vec!["prometheus".into()],
        }
    }
}

/// `meshConfig.extensionProviders[]` (the kinds the mesh uses).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExtensionProvider {
    /// External authorization over HTTP (CUSTOM policies).
    pub envoy_ext_authz_http: Option<ExtAuthzHttp>,
    /// OpenTelemetry tracing.
    pub opentelemetry: Option<OtelProvider>,
    /// Access log to a file (`envoy` provider = stdout).
    pub envoy_file_access_log: Option<serde_json::Value>,
    /// Lightstep tracing (deprecated in Istio; recognised so that
    /// `analyze` can say so, not exported to).
    pub lightstep: Option<serde_json::Value>,
}

/// ext-authz HTTP provider.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)]
pub struct ExtAuthzHttp {
    pub service: String,
    pub port: u16,
    pub timeout: Option<String>,
    pub path_prefix: Option<String>,
    pub fail_open: bool,
    pub status_on_error: Option<String>,
    pub include_request_headers_in_check: Vec<String>,
    pub include_additional_headers_in_check: BTreeMap<String, String>,
    pub headers_to_upstream_on_allow: Vec<String>,
    pub headers_to_downstream_on_allow: Vec<String>,
    pub headers_to_downstream_on_deny: Vec<String>,
}

/// OpenTelemetry provider.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OtelProvider {
    /// Collector service host.
    pub service: String,
    /// Collector port.
    pub port: u16,
    /// OTLP/HTTP when set (path, e.g. `/v1/traces`).
    pub http: Option<serde_json::Value>,
}

/// The YAML form of `meshConfig` (the `mesh` key of the `istio` ConfigMap).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawMeshConfig {
    root_namespace: Option<String>,
    trust_domain: Option<String>,
    trust_domain_aliases: Vec<String>,
    default_config: Option<serde_json::Value>,
    extension_providers: Vec<RawProvider>,
    default_providers: Option<DefaultProviders>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawProvider {
    name: String,
    #[serde(flatten)]
    provider: ExtensionProvider,
}

impl MeshSettings {
    /// Apply Istio `meshConfig` YAML on top of these settings.
    pub fn apply_mesh_config(&mut self, yaml: &str) -> Result<(), serde_yaml::Error> {
        let raw: RawMeshConfig = serde_yaml::from_str(yaml)?;
        if let Some(r) = raw.root_namespace {
            self.root_namespace = r;
        }
        if let Some(t) = raw.trust_domain {
            self.trust_domain = t;
        }
        self.trust_domain_aliases = raw.trust_domain_aliases;
        if let Some(s) = raw
            .default_config
            .as_ref()
            .and_then(|d| d.pointer("/tracing/sampling"))
            .and_then(|v| v.as_f64())
        {
            self.default_trace_sampling = Some(s);
        }
        for p in raw.extension_providers {
            self.extension_providers.insert(p.name, p.provider);
        }
        if let Some(d) = raw.default_providers {
            self.default_providers = d;
        }
        Ok(())
    }

    /// Effective default trace sampling, as istiod's
    /// `proxyConfigSamplingValue`: 0 means unset (the 1 % default), a
    /// value above 100 falls back to 1 %. A negative value, which Envoy
    /// would refuse, is treated as unset as well.
    pub fn trace_sampling(&self) -> f64 {
        match self.default_trace_sampling {
            Some(s) if s > 100.0 => 1.0,
            Some(s) if s > 0.0 => s,
            _ => DEFAULT_TRACE_SAMPLING,
        }
    }
}
