//! Telemetry driven by the Telemetry settings of the pushed config:
//! Istio's standard metrics ([`istio`]), JSON access logs ([`accesslog`])
//! and traces ([`trace`]).
//!
//! 1. `Telemetry::new(sink, cluster_id)` once per process (starts the span
//!    exporter task).
//! 2. `configure(&waypoint_config)` on every config change; an invalid
//!    setting (bad CEL filter, non-HTTP OTLP endpoint, sampling outside
//!    0–100) refuses the config.
//! 3. Per request: `start_span(headers)` when headers arrive; fill a
//!    [`RequestRecord`]; `finish(&record)` when the response ends (last
//!    byte, error or downstream disconnect).
//! 4. `encode(&mut text)` serves `/stats/prometheus`.

pub mod accesslog;
pub mod expr;
pub mod istio;
pub mod prom;
pub mod record;
pub mod trace;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use http::HeaderMap;
use mesh_common::model::WaypointConfig;

pub use accesslog::AccessLogSink;
pub use record::{BodyBytes, PeerInfo, RequestRecord};
pub use trace::SpanContext;

use expr::{Expr, ExprError};
use istio::{IstioMetrics, Overrides};
use trace::{ExportTarget, FinishedSpan, SpanExporter};

/// Istio's default cluster id.
pub const DEFAULT_CLUSTER_ID: &str = "Kubernetes";

/// Telemetry settings the waypoint cannot use.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The access-log filter does not parse.
    #[error("telemetry accessLog filter: {0}")]
    AccessLogFilter(ExprError),
    /// A metric tag override does not parse.
    #[error("telemetry metrics tagOverrides: {0}")]
    TagOverride(ExprError),
    /// Sampling outside 0–100.
    #[error("telemetry tracing randomSamplingPercentage {0} must be in range [0.0, 100.0]")]
    Sampling(f64),
    /// The OTLP endpoint is unusable.
    #[error("telemetry tracing: {0}")]
    Endpoint(String),
}

/// Settings resolved from the config.
#[derive(Debug, Default)]
struct Settings {
    access_log: bool,
    access_filter: Option<Expr>,
    sampling: f64,
    custom_tags: BTreeMap<String, String>,
    overrides: Overrides,
    waypoint: String,
}

/// Checked telemetry settings, ready to commit.
#[derive(Debug)]
pub struct Prepared {
    settings: Settings,
    target: Option<ExportTarget>,
}

/// Metrics, logs and traces of the waypoint.
#[derive(Debug)]
pub struct Telemetry {
    settings: ArcSwap<Settings>,
    istio: IstioMetrics,
    sink: AccessLogSink,
    exporter: SpanExporter,
    cluster_id: String,
}

fn or_unknown(v: Option<&str>) -> String {
    match v {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "unknown".to_string(),
    }
}

impl Telemetry {
    /// Telemetry writing access logs to `sink`. Needs a Tokio runtime.
    pub fn new(sink: AccessLogSink, cluster_id: impl Into<String>) -> Arc<Self> {
        Arc::new(Telemetry {
            settings: ArcSwap::from_pointee(Settings {
                sampling: 1.0,
                ..Settings::default()
            }),
            istio: IstioMetrics::default(),
            sink,
            exporter: SpanExporter::start(),
            cluster_id: cluster_id.into(),
        })
    }

    /// Resolves and checks the config's telemetry settings without
    /// applying them.
    pub fn prepare(&self, cfg: &WaypointConfig) -> Result<Prepared, TelemetryError> {
        let t = &cfg.telemetry;
        let access_filter = t
            .access_log
            .filter
            .as_deref()
            .filter(|f| !f.trim().is_empty())
            .map(Expr::parse)
            .transpose()
            .map_err(TelemetryError::AccessLogFilter)?;
        let sampling = t.tracing.sampling_percentage;
        if !(0.0..=100.0).contains(&sampling) || sampling.is_nan() {
            return Err(TelemetryError::Sampling(sampling));
        }
        let overrides = Overrides::new(&t.metrics).map_err(TelemetryError::TagOverride)?;
        let waypoint = format!("{}.{}", cfg.name, cfg.namespace);
        let target = match (&t.tracing.otlp_endpoint, t.tracing.disable_span_reporting) {
            (Some(e), false) => Some(ExportTarget {
                url: trace::traces_url(e).map_err(TelemetryError::Endpoint)?,
                service_name: waypoint.clone(),
            }),
            _ => None,
        };
        Ok(Prepared {
            settings: Settings {
                access_log: t.access_log.enabled,
                access_filter,
                sampling,
                custom_tags: t.tracing.custom_tags.clone(),
                overrides,
                waypoint,
            },
            target,
        })
    }

    /// Applies prepared settings.
    pub fn commit(&self, p: Prepared) {
        self.exporter.set_target(p.target);
        self.settings.store(Arc::new(p.settings));
    }

    /// `prepare` then `commit`.
    pub fn configure(&self, cfg: &WaypointConfig) -> Result<(), TelemetryError> {
        let p = self.prepare(cfg)?;
        self.commit(p);
        Ok(())
    }

    /// Starts the waypoint's span for a request.
    pub fn start_span(&self, headers: &HeaderMap) -> SpanContext {
        SpanContext::start(headers.get("traceparent"), self.settings.load().sampling)
    }

    /// Istio's label set for a finished request.
    pub fn labels(&self, r: &RequestRecord) -> Vec<(&'static str, String)> {
        let src = &r.source;
        let dst = r.upstream.as_deref();
        let svc = r.service.as_deref();
        let dl = |k: &str| dst.and_then(|d| d.labels.get(k)).map(String::as_str);
        let ne = |s: &str| -> Option<String> { (!s.is_empty()).then(|| s.to_string()) };
        let dst_canonical = dst.and_then(|d| ne(&d.canonical_name)).or_else(|| dl("app").map(str::to_string));
        let dst_revision = dst.and_then(|d| ne(&d.canonical_revision)).or_else(|| dl("version").map(str::to_string));
        let grpc = if r.grpc { r.grpc_status.clone().unwrap_or_default() } else { String::new() };
        vec![
            ("reporter", "waypoint".to_string()),
            ("source_workload", or_unknown(src.workload.as_deref())),
            ("source_canonical_service", or_unknown(src.canonical_service.as_deref())),
            ("source_canonical_revision", src.canonical_revision.clone().unwrap_or_else(|| "latest".into())),
            ("source_workload_namespace", or_unknown(src.namespace.as_deref())),
            ("source_principal", or_unknown(src.principal.as_deref())),
            ("source_app", or_unknown(src.app.as_deref())),
            ("source_version", or_unknown(src.version.as_deref())),
            ("source_cluster", src.cluster.clone().unwrap_or_else(|| self.cluster_id.clone())),
            (
                "destination_workload",
                or_unknown(dst.and_then(|d| ne(&d.workload_name).or_else(|| ne(&d.name))).as_deref()),
            ),
            (
                "destination_workload_namespace",
                or_unknown(dst.map(|d| d.namespace.as_str()).or(svc.map(|s| s.namespace.as_str()))),
            ),
            ("destination_principal", or_unknown(dst.map(|d| d.identity.as_str()))),
            ("destination_app", or_unknown(dl("app").or(dst_canonical.as_deref()))),
            ("destination_version", or_unknown(dl("version").or(dst_revision.as_deref()))),
            ("destination_service", or_unknown(svc.map(|s| s.hostname.as_str()))),
            ("destination_service_name", or_unknown(svc.map(|s| s.name.as_str()))),
            ("destination_service_namespace", or_unknown(svc.map(|s| s.namespace.as_str()))),
            ("destination_canonical_service", or_unknown(dst_canonical.as_deref())),
            ("destination_canonical_revision", dst_revision.unwrap_or_else(|| "latest".into())),
            ("destination_cluster", self.cluster_id.clone()),
            ("request_protocol", if r.grpc { "grpc" } else { "http" }.to_string()),
            ("response_code", r.response_code.to_string()),
            ("grpc_response_status", grpc),
            ("response_flags", r.flags_label()),
            (
                "connection_security_policy",
                if r.mtls && src.principal.is_some() { "mutual_tls" } else if r.mtls { "unknown" } else { "none" }
                    .to_string(),
            ),
        ]
    }

    /// Records a finished request: metrics, access log, span.
    pub fn finish(&self, r: &RequestRecord) {
        let s = self.settings.load();
        let labels = self.labels(r);
        self.istio.record(&labels, r, &s.overrides);
        if s.access_log && s.access_filter.as_ref().is_none_or(|f| f.test(r)) {
            self.sink.write(&accesslog::entry(r));
        }
        if let Some(span) = r.span
            && span.sampled
            && self.exporter.enabled()
        {
            self.exporter.export(self.span(r, span, &s));
        }
    }

    fn span(&self, r: &RequestRecord, ctx: SpanContext, s: &Settings) -> FinishedSpan {
        let name = match &r.service {
            Some(svc) => format!("{}:{}/*", svc.hostname, r.service_port),
            None => format!("{}/*", r.authority),
        };
        let h = |n: &str| r.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
        let mut attributes = vec![
            ("component".to_string(), "proxy".to_string()),
            ("node_id".to_string(), s.waypoint.clone()),
            ("http.method".to_string(), r.method.clone()),
            ("http.url".to_string(), format!("http://{}{}", r.authority, r.path)),
            ("http.protocol".to_string(), r.protocol.to_string()),
            ("http.status_code".to_string(), r.response_code.to_string()),
            ("response_flags".to_string(), r.flags_label()),
            ("request_size".to_string(), r.request_body.get().to_string()),
            ("response_size".to_string(), r.response_body_bytes.to_string()),
            ("downstream_cluster".to_string(), "-".to_string()),
            ("user_agent".to_string(), h("user-agent")),
            ("guid:x-request-id".to_string(), h("x-request-id")),
            ("peer.address".to_string(), r.source_address.ip().to_string()),
            ("upstream_cluster".to_string(), r.upstream_cluster.clone().unwrap_or_else(|| "-".into())),
            (
                "upstream_address".to_string(),
                r.upstream_address.map_or_else(|| "-".into(), |a| a.to_string()),
            ),
        ];
        for (k, v) in &s.custom_tags {
            attributes.push((k.clone(), v.clone()));
        }
        FinishedSpan {
            ctx,
            name,
            start: r.start_time,
            end: SystemTime::now(),
            attributes,
            error: r.response_code >= 500 || r.response_code == 0,
        }
    }

    /// Writes the standard metrics (Prometheus text).
    pub fn encode(&self, out: &mut String) {
        self.istio.encode(out);
    }
}
