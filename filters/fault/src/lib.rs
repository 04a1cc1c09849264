//! The first-party fault injection filter: VirtualService `fault` (Envoy's
//! HTTP fault filter as Istio configures it), per route id.
//!
//! Percentages are Envoy fractional percents (`percentage.value × 10000` per
//! million, the deprecated integer `percent` per hundred); a request is
//! delayed when `random % denominator < numerator`. An unset percentage
//! injects nothing. The delay is drawn first, then the abort; an aborted
//! request never reaches the router, so it is never retried.
//!
//! ```
//! use filter_fault::{Faults, Injection};
//! let f = Faults::from_json(br#"{"routes":{"r":{"abort":{"httpStatus":503,"percentage":{"value":100}}}}}"#).unwrap();
//! let i = f.evaluate(Some("r"), false, &mut || 0);
//! assert_eq!(i.abort.as_ref().map(|a| a.status), Some(503));
//! assert_eq!(i.response_flag(), Some("FI"));
//! ```

#[cfg(target_arch = "wasm32")]
mod guest;

use filter_model::fault::{FaultConfig, HttpFaultInjection, Percent};
use std::collections::HashMap;

/// Body of an injected abort (Envoy's text).
pub const ABORT_BODY: &str = "fault filter abort";

/// Why a fault configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not the fault configuration's shape.
    #[error("invalid fault config JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A value Istio's validation rejects.
    #[error("route {route}: {message}")]
    Invalid {
        /// Route id.
        route: String,
        /// What is wrong.
        message: String,
    },
}

/// An Envoy fractional percent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fraction {
    /// Numerator.
    pub numerator: u32,
    /// 100 or 1 000 000.
    pub denominator: u32,
}

impl Fraction {
    fn from_percent(p: &Percent, route: &str) -> Result<Self, ConfigError> {
        if !(p.value == 0.0 || (0.0001..=100.0).contains(&p.value)) {
            return Err(ConfigError::Invalid {
                route: route.into(),
                message: format!(
                    "percentage {} is neither 0.0, nor in range [0.0001, 100.0]",
                    p.value
                ),
            });
        }
        // Istio: uint32(value * 10000) per million (truncating).
        Ok(Fraction {
            numerator: (p.value * 10_000.0) as u32,
            denominator: 1_000_000,
        })
    }

    /// Envoy `evaluateFractionalPercent`.
    pub fn enabled(self, random: u64) -> bool {
        random % u64::from(self.denominator) < u64::from(self.numerator)
    }
}

/// How to abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortKind {
    /// HTTP status.
    Http(u16),
    /// gRPC status code.
    Grpc(u32),
}

#[derive(Debug)]
struct CompiledFault {
    delay: Option<(u32, Fraction)>,
    abort: Option<(AbortKind, Fraction)>,
}

/// gRPC status names Istio accepts (shared with the operator's validation).
pub use filter_model::fault::grpc_status_code as grpc_code;

/// Envoy `Grpc::Utility::httpToGrpcStatus`: the grpc-status of a local
/// reply with this HTTP status sent to a gRPC client.
pub fn http_to_grpc_status(status: u16) -> u32 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

impl CompiledFault {
    fn compile(f: &HttpFaultInjection, route: &str) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            route: route.into(),
            message,
        };
        if f.delay.is_none() && f.abort.is_none() {
            return Err(invalid(
                "HTTP fault injection must have an abort and/or a delay".into(),
            ));
        }
        let delay = match &f.delay {
            None => None,
            // A delay without `fixedDelay` is valid in Istio and injects
            // nothing (the operator reports `exponentialDelay` itself).
            Some(d) if d.fixed_delay.is_none() => None,
            Some(d) => {
                let fixed = d.fixed_delay.unwrap_or_default();
                let fraction = match (&d.percentage, d.percent) {
                    (Some(p), _) => Fraction::from_percent(p, route)?,
                    (None, Some(p)) => Fraction {
                        numerator: u32::try_from(p).unwrap_or(0),
                        denominator: 100,
                    },
                    (None, None) => Fraction {
                        numerator: 0,
                        denominator: 100,
                    },
                };
                Some((fixed.as_millis_u32(), fraction))
            }
        };
        let abort = match &f.abort {
            None => None,
            Some(a) => {
                let kind = match (a.http_status, &a.grpc_status) {
                    (Some(s), _) => {
                        if !(200..=599).contains(&s) {
                            return Err(invalid(format!("HTTP status {s} is not in range 200-599")));
                        }
                        Some(AbortKind::Http(s))
                    }
                    (None, Some(name)) => Some(AbortKind::Grpc(grpc_code(name).ok_or_else(|| {
                        invalid(format!("gRPC status {name:?} is not supported. See https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for example 'NOT_FOUND'"))
                    })?)),
                    // Istio only warns ("abort configured, but error type
                    // not set") and injects no abort.
                    (None, None) => None,
                };
                let fraction = match &a.percentage {
                    Some(p) => Fraction::from_percent(p, route)?,
                    None => Fraction {
                        numerator: 0,
                        denominator: 1_000_000,
                    },
                };
                kind.map(|k| (k, fraction))
            }
        };
        Ok(CompiledFault { delay, abort })
    }
}

/// An injected local reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbortReply {
    /// HTTP status (200 for gRPC replies).
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// What to inject into one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Injection {
    /// Hold the request this long first.
    pub delay_ms: Option<u32>,
    /// Then answer with this instead of forwarding.
    pub abort: Option<AbortReply>,
}

impl Injection {
    /// Envoy response flags: `DI` (delay), `FI` (abort), `DI,FI`.
    pub fn response_flag(&self) -> Option<&'static str> {
        match (self.delay_ms.is_some(), self.abort.is_some()) {
            (true, true) => Some("DI,FI"),
            (true, false) => Some("DI"),
            (false, true) => Some("FI"),
            (false, false) => None,
        }
    }
}

/// Compiled fault configuration: route id → fault.
#[derive(Debug, Default)]
pub struct Faults {
    routes: HashMap<String, CompiledFault>,
}

impl Faults {
    /// Parses and compiles the filter's JSON configuration (empty = no faults).
    pub fn from_json(config: &[u8]) -> Result<Self, ConfigError> {
        if config.iter().all(u8::is_ascii_whitespace) {
            return Ok(Faults::default());
        }
        Self::compile(&serde_json::from_slice(config)?)
    }

    /// Compiles a configuration.
    pub fn compile(cfg: &FaultConfig) -> Result<Self, ConfigError> {
        let mut routes = HashMap::with_capacity(cfg.routes.len());
        for (id, f) in &cfg.routes {
            routes.insert(id.clone(), CompiledFault::compile(f, id)?);
        }
        Ok(Faults { routes })
    }

    /// True when no route has a fault (the filter can skip everything).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Decides the faults of one request on `route`. `grpc_request`: the
    /// request's content-type is `application/grpc*` (aborts then answer in
    /// gRPC form, as Envoy's local replies do).
    pub fn evaluate(
        &self,
        route: Option<&str>,
        grpc_request: bool,
        random: &mut dyn FnMut() -> u64,
    ) -> Injection {
        let Some(f) = route.and_then(|r| self.routes.get(r)) else {
            return Injection::default();
        };
        let mut out = Injection::default();
        if let Some((ms, fraction)) = f.delay
            && fraction.enabled(random())
        {
            out.delay_ms = Some(ms);
        }
        if let Some((kind, fraction)) = f.abort
            && fraction.enabled(random())
        {
            out.abort = Some(abort_reply(kind, grpc_request));
        }
        out
    }
}

fn abort_reply(kind: AbortKind, grpc_request: bool) -> AbortReply {
    let grpc = match kind {
        AbortKind::Grpc(code) => Some(code),
        AbortKind::Http(s) if grpc_request => Some(http_to_grpc_status(s)),
        AbortKind::Http(_) => None,
    };
    match (grpc, grpc_request) {
        (Some(code), true) => AbortReply {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/grpc".into()),
                ("grpc-status".into(), code.to_string()),
                ("grpc-message".into(), ABORT_BODY.into()),
            ],
            body: Vec::new(),
        },
        _ => AbortReply {
            status: match kind {
                AbortKind::Http(s) => s,
                AbortKind::Grpc(_) => 200,
            },
            headers: vec![("content-type".into(), "text/plain".into())],
            body: ABORT_BODY.as_bytes().to_vec(),
        },
    }
}
