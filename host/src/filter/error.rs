//! Errors of the filter runtime: why a filter was refused at load time, and
//! why a hook call failed at request time.

use std::fmt;

/// A filter version could not be loaded. The previous version (if any) keeps
/// serving.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("filter `{name}`: invalid spec: {reason}")]
    InvalidSpec { name: String, reason: String },
    #[error("filter `{name}`: module is not a valid WebAssembly component: {reason}")]
    Compile { name: String, reason: String },
    #[error(
        "filter `{name}` imports `{import}` but its configuration does not grant the `{capability}` capability; add `{capability}` to the filter's capabilities or rebuild the filter without it"
    )]
    CapabilityNotGranted {
        name: String,
        import: String,
        capability: String,
    },
    #[error(
        "filter `{name}` imports `{import}`, which this host does not provide (it provides mesh:filter@0.1.0 capabilities and WASI 0.2)"
    )]
    UnknownImport { name: String, import: String },
    #[error("filter `{name}` cannot be linked: {reason}")]
    Link { name: String, reason: String },
    #[error("filter `{name}` failed to instantiate: {reason}")]
    Instantiate { name: String, reason: String },
    #[error("filter `{name}` rejected its configuration: {reason}")]
    Config { name: String, reason: String },
    #[error("filter `{name}`: module digest is sha256:{actual}, expected sha256:{expected}")]
    Digest {
        name: String,
        expected: String,
        actual: String,
    },
}

/// Why one hook call of one filter failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// The guest trapped (panic, unreachable, out-of-bounds access, ...).
    Trap,
    /// The hook ran past its CPU deadline.
    Timeout,
    /// The guest tried to grow its memory past its cap.
    OutOfMemory,
    /// No instance could be obtained within the wait limit.
    InstanceLimit,
    /// The hook returned something the contract forbids.
    InvalidResult,
}

impl FailureKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::OutOfMemory => "oom",
            FailureKind::InstanceLimit => "instance_limit",
            FailureKind::InvalidResult => "invalid_result",
        }
    }
}

/// A failed hook call.
#[derive(Debug, Clone)]
pub struct FilterFailure {
    pub filter: String,
    pub hook: &'static str,
    pub kind: FailureKind,
    pub detail: String,
}

impl fmt::Display for FilterFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "filter `{}` failed in {} ({}): {}",
            self.filter,
            self.hook,
            self.kind.as_str(),
            self.detail
        )
    }
}

impl std::error::Error for FilterFailure {}

/// Marker error of a call that exceeded its CPU deadline.
#[derive(Debug)]
pub(crate) struct DeadlineExceeded;

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CPU deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}
