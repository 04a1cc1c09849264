//! How a filter is configured: what the control plane (or a local file)
//! supplies for each filter of the chain.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::limits;

/// A host capability a filter may be granted. Each is one WIT interface of
/// `mesh:filter@0.1.0`; a filter that imports an interface it was not
/// granted is refused at load time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    Log,
    Metrics,
    Clock,
    Random,
    Crypto,
    Authn,
    OutboundHttp,
}

impl Capability {
    pub const ALL: [Capability; 7] = [
        Capability::Log,
        Capability::Metrics,
        Capability::Clock,
        Capability::Random,
        Capability::Crypto,
        Capability::Authn,
        Capability::OutboundHttp,
    ];

    /// The WIT interface name, e.g. `outbound-http`.
    pub fn interface(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Metrics => "metrics",
            Capability::Clock => "clock",
            Capability::Random => "random",
            Capability::Crypto => "crypto",
            Capability::Authn => "authn",
            Capability::OutboundHttp => "outbound-http",
        }
    }

    /// The capability an import such as `mesh:filter/metrics@0.1.0` needs.
    pub fn from_interface(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.interface() == name)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.interface())
    }
}

impl FromStr for Capability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Capability::from_interface(s).ok_or_else(|| {
            let all: Vec<_> = Capability::ALL.iter().map(|c| c.interface()).collect();
            format!("unknown capability `{s}`; known: {}", all.join(", "))
        })
    }
}

/// What happens to a request when its filter fails (trap, CPU deadline,
/// out of memory, instance limit, invalid action).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailPolicy {
    /// Answer the request locally with 503 (response flag `WF`). The default,
    /// as Istio's `FAIL_CLOSE`.
    #[default]
    FailClosed,
    /// Skip the filter for this request, as if it had returned no action.
    FailOpen,
}

/// How instances are used across requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "mode")]
pub enum Isolation {
    /// An instance serves one hook call at a time and up to `max_uses` calls
    /// in its life; it is discarded at once after any trap, timeout or
    /// out-of-memory. Guest state can outlive a request only inside the same
    /// filter version; different filters never share an instance.
    Reuse { max_uses: u32 },
    /// A new instance for every hook call: no state survives a call. Costs an
    /// instantiation plus `configure` per call.
    Fresh,
}

impl Default for Isolation {
    fn default() -> Self {
        Isolation::Reuse {
            max_uses: limits::DEFAULT_MAX_REUSE,
        }
    }
}

/// Resource limits of one filter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Limits {
    /// Linear memory cap of one instance, in bytes.
    pub memory_bytes: u64,
    /// CPU budget of one hook call.
    #[serde(with = "humantime_serde_compat")]
    pub cpu_deadline: Duration,
    /// Instances of this filter version alive at once.
    pub max_instances: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: limits::DEFAULT_MEMORY_LIMIT,
            cpu_deadline: limits::DEFAULT_CPU_DEADLINE,
            max_instances: limits::DEFAULT_MAX_INSTANCES,
        }
    }
}

/// Everything the host needs to run one filter besides its module bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterSpec {
    /// Unique in the chain; `[a-z0-9][a-z0-9-]*`. Names metrics and logs.
    pub name: String,
    /// Configuration handed to the guest's `configure` (JSON in practice).
    #[serde(default)]
    pub config: Vec<u8>,
    /// Granted capabilities.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// For `outbound-http`: upstream name -> base URL (`http://10.0.0.5:9000`).
    #[serde(default)]
    pub upstreams: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub fail_policy: FailPolicy,
    #[serde(default)]
    pub isolation: Isolation,
    /// Seed of the `random` capability (and of WASI randomness); tests set it
    /// to make percentages reproducible. None seeds from the OS.
    #[serde(default)]
    pub random_seed: Option<u64>,
}

impl FilterSpec {
    /// A spec with defaults and no capability.
    pub fn new(name: impl Into<String>) -> Self {
        FilterSpec {
            name: name.into(),
            config: Vec::new(),
            capabilities: Vec::new(),
            upstreams: BTreeMap::new(),
            limits: Limits::default(),
            fail_policy: FailPolicy::default(),
            isolation: Isolation::default(),
            random_seed: None,
        }
    }

    pub fn grants(&self, c: Capability) -> bool {
        self.capabilities.contains(&c)
    }

    /// Checks what can be checked without the module.
    pub fn validate(&self) -> Result<(), String> {
        let valid_name = !self.name.is_empty()
            && self.name.len() <= 253
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !self.name.starts_with(['-', '.'])
            && !self.name.ends_with(['-', '.']);
        if !valid_name {
            return Err(format!(
                "invalid filter name `{}`: use 1-253 characters of [a-z0-9.-], starting and ending with a letter or digit (e.g. `routing`, `shop.my-plugin`)",
                self.name
            ));
        }
        if self.limits.memory_bytes == 0 || self.limits.memory_bytes > limits::MAX_MEMORY_LIMIT {
            return Err(format!(
                "filter `{}`: memory limit {} bytes is outside 1..={} bytes",
                self.name,
                self.limits.memory_bytes,
                limits::MAX_MEMORY_LIMIT
            ));
        }
        if self.limits.cpu_deadline < limits::MIN_CPU_DEADLINE {
            return Err(format!(
                "filter `{}`: CPU deadline {:?} is below the {:?} minimum",
                self.name,
                self.limits.cpu_deadline,
                limits::MIN_CPU_DEADLINE
            ));
        }
        if self.limits.max_instances == 0 {
            return Err(format!(
                "filter `{}`: maxInstances must be at least 1",
                self.name
            ));
        }
        if let Isolation::Reuse { max_uses: 0 } = self.isolation {
            return Err(format!(
                "filter `{}`: isolation.maxUses must be at least 1",
                self.name
            ));
        }
        if !self.upstreams.is_empty() && !self.grants(Capability::OutboundHttp) {
            return Err(format!(
                "filter `{}` lists upstreams but is not granted `outbound-http`",
                self.name
            ));
        }
        for (name, url) in &self.upstreams {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "filter `{}`: upstream `{name}` must be an http:// or https:// URL, got `{url}`",
                    self.name
                ));
            }
        }
        Ok(())
    }
}

/// Durations as `"5ms"`, `"2s"` (humantime) in config files.
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_names_and_limits() {
        assert!(FilterSpec::new("ok-name-1").validate().is_ok());
        assert!(FilterSpec::new("shop.my-plugin").validate().is_ok());
        for bad in ["", "Upper", "-x", "a_b", "x.", "shop/x", &"x".repeat(254)] {
            assert!(FilterSpec::new(bad).validate().is_err(), "{bad:?} accepted");
        }
        let mut s = FilterSpec::new("f");
        s.limits.memory_bytes = 0;
        assert!(s.validate().unwrap_err().contains("memory limit"));
        let mut s = FilterSpec::new("f");
        s.upstreams
            .insert("authz".into(), "http://127.0.0.1:1".into());
        assert!(s.validate().unwrap_err().contains("outbound-http"));
    }

    #[test]
    fn parses_from_yaml_with_defaults() {
        let s: FilterSpec = serde_yaml::from_str(
            "name: f\ncapabilities: [log, outbound-http]\nlimits: {cpuDeadline: 2ms}\nfailPolicy: fail-open\n",
        )
        .unwrap();
        assert_eq!(s.limits.cpu_deadline, Duration::from_millis(2));
        assert_eq!(s.limits.memory_bytes, limits::DEFAULT_MEMORY_LIMIT);
        assert_eq!(s.fail_policy, FailPolicy::FailOpen);
        assert!(s.grants(Capability::OutboundHttp));
        assert!("nope".parse::<Capability>().unwrap_err().contains("known:"));
    }
}
