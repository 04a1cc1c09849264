//! extensions.istio.io/v1alpha1 WasmPlugin, with this mesh's additions:
//! `limits` (memory, CPU per hook, instances), `capabilities` (host
//! interfaces granted) and `rollout` (canary percentage and automatic
//! rollback threshold). The official CRD does not know these fields; install
//! the project's CRD (`operator crdgen`) to use them in Kubernetes.

use super::common::{IstioStatus, PolicyTargetReference, WorkloadSelector, preserve_object};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `spec` of a WasmPlugin.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "extensions.istio.io",
    version = "v1alpha1",
    kind = "WasmPlugin",
    namespaced,
    derive = "PartialEq",
    status = "IstioStatus",
    category = "istio-io",
    category = "extensions-istio-io"
)]
#[serde(rename_all = "camelCase")]
pub struct WasmPluginSpec {
    /// Workload selector (ignored by waypoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Deprecated single target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// Targets: Gateway (a waypoint), Service, GatewayClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_refs: Option<Vec<PolicyTargetReference>>,
    /// `file://`, `https://` (with `sha256`) or `oci://`.
    #[serde(default)]
    pub url: String,
    /// Expected SHA-256 of the module (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// `UNSPECIFIED_POLICY`, `IfNotPresent`, `Always`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Pull secret name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<String>,
    /// Signature verification key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_key: Option<String>,
    /// Configuration handed to the filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_object")]
    pub plugin_config: Option<serde_json::Value>,
    /// Plugin name inside the module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_name: Option<String>,
    /// `UNSPECIFIED_PHASE`, `AUTHN`, `AUTHZ`, `STATS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Order inside a phase (higher first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// `FAIL_CLOSE` (default), `FAIL_OPEN`, `FAIL_RELOAD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_strategy: Option<String>,
    /// VM config (environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_object")]
    pub vm_config: Option<serde_json::Value>,
    /// Traffic selectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::common::preserve_object_array")]
    pub r#match: Option<Vec<serde_json::Value>>,
    /// `UNSPECIFIED_PLUGIN_TYPE`, `HTTP`, `NETWORK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// Extension: resource limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<FilterLimitsSpec>,
    /// Extension: granted host capabilities (`log`, `metrics`, `clock`,
    /// `random`, `crypto`, `authn`, `outbound-http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// Extension: canary rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSpec>,
}

impl WasmPluginSpec {
    /// `targetRefs` plus the deprecated `targetRef`.
    pub fn all_target_refs(&self) -> Vec<PolicyTargetReference> {
        let mut v: Vec<PolicyTargetReference> = self.target_ref.iter().cloned().collect();
        v.extend(self.target_refs.iter().flatten().cloned());
        v
    }
}

/// Filter limits (extension).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilterLimitsSpec {
    /// Memory per instance, Kubernetes quantity (`64Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// CPU time per hook call, duration (`5ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Maximum concurrent instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u32>,
}

/// Canary rollout (extension).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Share of requests (0–100) that run the new version while the previous
    /// one keeps the rest. Unset or 100 ⇒ switch at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_percentage: Option<f64>,
    /// Roll back automatically when the new version's trap/error ratio
    /// exceeds this (0–1, default 0.05).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    /// Requests the new version must have served before the ratio is judged
    /// (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
}
