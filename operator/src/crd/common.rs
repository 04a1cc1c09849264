//! Types shared by several resources: selectors, target references, status.

use schemars::JsonSchema;
use schemars::r#gen::SchemaGenerator;
use schemars::schema::{InstanceType, Schema, SchemaObject};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Schema of a subtree kept as raw JSON: any object, preserved as written.
pub fn preserve_object(_: &mut SchemaGenerator) -> Schema {
    let mut s = SchemaObject {
        instance_type: Some(InstanceType::Object.into()),
        ..Default::default()
    };
    s.extensions.insert(
        "x-kubernetes-preserve-unknown-fields".into(),
        serde_json::Value::Bool(true),
    );
    Schema::Object(s)
}

/// Schema of an int-or-string field.
pub fn int_or_string(_: &mut SchemaGenerator) -> Schema {
    let mut s = SchemaObject::default();
    s.extensions.insert(
        "x-kubernetes-int-or-string".into(),
        serde_json::Value::Bool(true),
    );
    Schema::Object(s)
}

/// Istio `WorkloadSelector`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    /// Labels a workload must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
}

impl WorkloadSelector {
    /// The labels (empty when unset).
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.match_labels.clone().unwrap_or_default()
    }

    /// Does the selector select `labels`? (Empty selects everything.)
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// Istio `PolicyTargetReference`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetReference {
    /// API group (`""` ≡ core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Must be empty (cross-namespace references are not supported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl PolicyTargetReference {
    /// Group with `core` normalised to `""`.
    pub fn group(&self) -> &str {
        match self.group.as_deref() {
            None | Some("core") => "",
            Some(g) => g,
        }
    }
}

/// One Istio status condition.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioCondition {
    /// Condition type (`ZtunnelAccepted`, `WaypointAccepted`, `Accepted`, …).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One-word reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339 time of the last status change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// RFC 3339 time of the last probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<String>,
    /// Generation observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub observed_generation: Option<serde_json::Value>,
}

/// An analyzer message in an Istio status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationMessage {
    /// Documentation link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documentation_url: Option<String>,
    /// `ERROR`, `WARNING`, `INFO`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Code and name.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub type_: Option<MessageType>,
}

/// Analyzer message type.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct MessageType {
    /// `ISTnnnn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Status of Istio resources (`IstioStatus`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioStatus {
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<IstioCondition>,
    /// Generation observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub observed_generation: Option<serde_json::Value>,
    /// Analyzer messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_messages: Vec<ValidationMessage>,
}

/// Schema of an array of raw JSON objects.
pub fn preserve_object_array(g: &mut SchemaGenerator) -> Schema {
    let mut s = SchemaObject {
        instance_type: Some(InstanceType::Array.into()),
        ..Default::default()
    };
    s.array = Some(Box::new(schemars::schema::ArrayValidation {
        items: Some(preserve_object(g).into()),
        ..Default::default()
    }));
    Schema::Object(s)
}
