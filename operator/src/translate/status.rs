//! Status conditions produced by translation, written back to resources
//! (Kubernetes) or printed (file mode).

use serde::Serialize;
use std::collections::BTreeMap;

/// What a condition is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct StatusTarget {
    /// Kind (`AuthorizationPolicy`, `Service`, `Gateway`, …).
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl StatusTarget {
    /// A target.
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        StatusTarget {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for StatusTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// Type.
    #[serde(rename = "type")]
    pub type_: String,
    /// True / False.
    pub status: bool,
    /// Reason.
    pub reason: String,
    /// Message.
    pub message: String,
}

impl Condition {
    /// A condition.
    pub fn new(type_: &str, status: bool, reason: &str, message: impl Into<String>) -> Self {
        Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// `"True"` / `"False"`.
    pub fn status_str(&self) -> &'static str {
        if self.status { "True" } else { "False" }
    }
}

/// Conditions by target (one per type).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Statuses(pub BTreeMap<StatusTarget, Vec<Condition>>);

impl Statuses {
    /// Set (replace) a condition.
    pub fn set(&mut self, target: StatusTarget, c: Condition) {
        let v = self.0.entry(target).or_default();
        v.retain(|x| x.type_ != c.type_);
        v.push(c);
    }

    /// Conditions of a target.
    pub fn get(&self, target: &StatusTarget) -> &[Condition] {
        self.0.get(target).map(Vec::as_slice).unwrap_or_default()
    }

    /// One condition.
    pub fn condition(&self, target: &StatusTarget, type_: &str) -> Option<&Condition> {
        self.get(target).iter().find(|c| c.type_ == type_)
    }
}
