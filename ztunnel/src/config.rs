//! ztunnel configuration: named defaults side by side, built by a pure
//! function so tests construct configs without touching the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mesh_common::hbone::HboneConfig;

/// Outbound capture port.
pub const DEFAULT_OUTBOUND_PORT: u16 = 15001;
/// Plaintext inbound port (PERMISSIVE).
pub const DEFAULT_INBOUND_PLAINTEXT_PORT: u16 = 15006;
/// HBONE port.
pub const DEFAULT_HBONE_PORT: u16 = 15008;
/// Admin (config dump, log level).
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:15000";
/// Prometheus metrics.
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:15020";
/// Readiness.
pub const DEFAULT_READINESS_ADDR: &str = "0.0.0.0:15021";
/// Workload certificate lifetime requested from the CA.
pub const DEFAULT_CERT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Where in-pod mode finds a pod's network namespace.
pub const DEFAULT_NETNS_TEMPLATE: &str = "/var/run/netns/{name}";
/// Timeout for plain TCP connects (upstream apps, passthrough).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How ztunnel gets hold of pod traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureMode {
    /// In-pod (Istio's default): for each enrolled pod, enter its network
    /// namespace, open the 15001/15006/15008 listeners there and install
    /// redirect rules. `netns_template` locates the namespace; `{name}`,
    /// `{namespace}` and `{uid}` are replaced by the workload's fields.
    InPod {
        /// e.g. `/var/run/netns/{name}`.
        netns_template: String,
    },
    /// Shared: listeners on each local workload's IP in ztunnel's own
    /// namespace, no redirect rules. For processes on one host (loopback
    /// aliases) and in-process tests; outbound capture then needs the caller
    /// to supply the original destination.
    Shared,
}

/// Everything ztunnel needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's name (workloads with `node == node` are local).
    pub node: String,
    /// Capture mode.
    pub capture: CaptureMode,
    /// Outbound listener port.
    pub outbound_port: u16,
    /// Plaintext inbound listener port.
    pub inbound_plaintext_port: u16,
    /// HBONE port (ours and the peers').
    pub hbone_port: u16,
    /// Admin address (`None`: disabled).
    pub admin_addr: Option<SocketAddr>,
    /// Metrics address.
    pub metrics_addr: Option<SocketAddr>,
    /// Readiness address.
    pub readiness_addr: Option<SocketAddr>,
    /// HTTP/2 and pool tuning.
    pub hbone: HboneConfig,
    /// Certificate lifetime requested.
    pub cert_ttl: Duration,
    /// Plain TCP connect timeout.
    pub connect_timeout: Duration,
    /// Config file (file source), for the dump.
    pub config_file: Option<PathBuf>,
}

/// Inputs of [`construct_config`] (what flags and environment provide).
#[derive(Debug, Clone, Default)]
pub struct ConfigInputs {
    /// Node name (required).
    pub node: String,
    /// `inpod` or `shared` (default `inpod`).
    pub capture: Option<String>,
    /// Netns template for in-pod mode.
    pub netns_template: Option<String>,
    /// Admin address; `"off"` disables.
    pub admin_addr: Option<String>,
    /// Metrics address; `"off"` disables.
    pub metrics_addr: Option<String>,
    /// Readiness address; `"off"` disables.
    pub readiness_addr: Option<String>,
    /// Certificate lifetime.
    pub cert_ttl: Option<Duration>,
    /// Config file.
    pub config_file: Option<PathBuf>,
    /// Override of the HBONE port (tests).
    pub hbone_port: Option<u16>,
}

/// Errors in configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required value is missing.
    #[error("{0} is required")]
    Missing(&'static str),
    /// A value does not parse.
    #[error("invalid {what} {value:?}: {why}")]
    Invalid {
        /// Which setting.
        what: &'static str,
        /// Given value.
        value: String,
        /// Why.
        why: String,
    },
}

fn addr(
    what: &'static str,
    given: Option<&str>,
    default: &str,
) -> Result<Option<SocketAddr>, ConfigError> {
    let v = given.unwrap_or(default);
    if v == "off" || v.is_empty() {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
            what,
            value: v.to_string(),
            why: e.to_string(),
        })
}

/// Builds and validates a [`Config`].
pub fn construct_config(i: ConfigInputs) -> Result<Config, ConfigError> {
    if i.node.is_empty() {
        return Err(ConfigError::Missing("node name (--node)"));
    }
    let capture = match i.capture.as_deref().unwrap_or("inpod") {
        "inpod" | "in-pod" => {
            let t = i
                .netns_template
                .unwrap_or_else(|| DEFAULT_NETNS_TEMPLATE.to_string());
            if !t.contains('{') {
                return Err(ConfigError::Invalid {
                    what: "netns template",
                    value: t,
                    why: "must contain {name}, {namespace} or {uid}".into(),
                });
            }
            CaptureMode::InPod { netns_template: t }
        }
        "shared" => CaptureMode::Shared,
        other => {
            return Err(ConfigError::Invalid {
                what: "capture mode",
                value: other.to_string(),
                why: "expected inpod or shared".into(),
            });
        }
    };
    let cert_ttl = i.cert_ttl.unwrap_or(DEFAULT_CERT_TTL);
    if cert_ttl < Duration::from_secs(2) {
        return Err(ConfigError::Invalid {
            what: "certificate TTL",
            value: format!("{cert_ttl:?}"),
            why: "must be at least 2s".into(),
        });
    }
    Ok(Config {
        node: i.node,
        capture,
        outbound_port: DEFAULT_OUTBOUND_PORT,
        inbound_plaintext_port: DEFAULT_INBOUND_PLAINTEXT_PORT,
        hbone_port: i.hbone_port.unwrap_or(DEFAULT_HBONE_PORT),
        admin_addr: addr("admin address", i.admin_addr.as_deref(), DEFAULT_ADMIN_ADDR)?,
        metrics_addr: addr(
            "metrics address",
            i.metrics_addr.as_deref(),
            DEFAULT_METRICS_ADDR,
        )?,
        readiness_addr: addr(
            "readiness address",
            i.readiness_addr.as_deref(),
            DEFAULT_READINESS_ADDR,
        )?,
        hbone: HboneConfig::default(),
        cert_ttl,
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        config_file: i.config_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let c = construct_config(ConfigInputs {
            node: "n1".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.hbone_port, 15008);
        assert_eq!(c.admin_addr, Some("127.0.0.1:15000".parse().unwrap()));
        assert!(matches!(c.capture, CaptureMode::InPod { .. }));
        assert!(construct_config(ConfigInputs::default()).is_err());
        let bad = ConfigInputs {
            node: "n".into(),
            capture: Some("sidecar".into()),
            ..Default::default()
        };
        assert!(construct_config(bad).is_err());
        let off = construct_config(ConfigInputs {
            node: "n".into(),
            admin_addr: Some("off".into()),
            capture: Some("shared".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(off.admin_addr, None);
        assert_eq!(off.capture, CaptureMode::Shared);
    }
}
