//! Telemetry driven by the Telemetry settings of the pushed config:
//! Istio's standard metrics ([`istio`]), JSON access logs ([`accesslog`])
//! and traces ([`trace`]).
//!
//! 1. `Telemetry::new(sink, cluster_id)` once per process (starts the span
//!    exporter task).
//! 2. `configure(&waypoint_config)` on every config change; an invalid
//!    setting (bad CEL filter, non-HTTP OTLP endpoint, sampling outside
//!    0–100) refuses the config.
//! 3. Per request: `start_span(headers, service)` when headers arrive; fill a
//!    [`RequestRecord`]; `finish(&record)` when the response ends (last
//!    byte, error or downstream disconnect).
//! 4. `encode(&mut text)` serves `/stats/prometheus`.

pub mod accesslog;
pub mod expr;
pub mod grpc_frames;
pub mod istio;
pub mod otlp_grpc;
pub mod prom;
pub mod record;
pub mod tcp;
pub mod trace;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use http::HeaderMap;
use mesh_common::model::{TelemetryConfig, WaypointConfig, WaypointEndpoint, WaypointService};

pub use accesslog::AccessLogSink;
pub use record::{BodyBytes, PeerInfo, RequestRecord};
pub use tcp::{TcpConnection, TcpMetrics};

/// Istio's standard labels of one request or connection: 25 pairs, held on
/// the stack (as a `Vec` they were a 1-2 KB allocation per request, a size
/// that makes glibc consolidate its small-chunk bins every time).
pub type LabelSet<'a> = smallvec::SmallVec<[(&'static str, Cow<'a, str>); 25]>;
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
    /// Literal and environment tags, resolved when the config is applied.
    custom_tags: BTreeMap<String, String>,
    /// Tags read from request headers: tag, header, default.
    header_tags: Vec<(String, http::HeaderName, Option<String>)>,
    overrides: Overrides,
    waypoint: String,
    /// Where sampled spans go (none: not exported).
    export: Option<Arc<ExportTarget>>,
    /// Settings for traffic addressed to these services (Telemetry
    /// `targetRefs` to a Service).
    by_service: HashMap<String, Settings>,
}

impl Settings {
    fn for_service(&self, service: Option<&str>) -> &Settings {
        if self.by_service.is_empty() {
            return self;
        }
        service.and_then(|s| self.by_service.get(s)).unwrap_or(self)
    }

    fn from_config(t: &TelemetryConfig, waypoint: &str) -> Result<Self, TelemetryError> {
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
        let export = match (&t.tracing.otlp_endpoint, t.tracing.disable_span_reporting) {
            (Some(e), false) => Some(Arc::new(
                ExportTarget::for_endpoint(e, waypoint.to_string())
                    .map_err(TelemetryError::Endpoint)?,
            )),
            _ => None,
        };
        Ok(Settings {
            access_log: t.access_log.enabled,
            access_filter,
            sampling,
            custom_tags: {
                let mut tags = t.tracing.custom_tags.clone();
                for (tag, src) in &t.tracing.environment_tags {
                    if let Some(v) = std::env::var(&src.name)
                        .ok()
                        .or_else(|| src.default_value.clone())
                    {
                        tags.insert(tag.clone(), v);
                    }
                }
                tags
            },
            header_tags: t
                .tracing
                .header_tags
                .iter()
                .filter_map(|(tag, src)| {
                    let name = http::HeaderName::from_bytes(src.name.as_bytes()).ok()?;
                    Some((tag.clone(), name, src.default_value.clone()))
                })
                .collect(),
            overrides,
            waypoint: waypoint.to_string(),
            export,
            by_service: HashMap::new(),
        })
    }
}

/// Checked telemetry settings, ready to commit.
#[derive(Debug)]
pub struct Prepared {
    settings: Settings,
}

/// `connection_security_policy`: `mutual_tls` for an authenticated HBONE
/// peer, `none` for plaintext.
pub fn security_policy(mtls: bool, src: &PeerInfo) -> &'static str {
    match (mtls, src.principal.is_some()) {
        (true, true) => "mutual_tls",
        (true, false) => "unknown",
        (false, _) => "none",
    }
}

/// Metrics, logs and traces of the waypoint.
#[derive(Debug)]
pub struct Telemetry {
    settings: ArcSwap<Settings>,
    istio: IstioMetrics,
    tcp: TcpMetrics,
    sink: AccessLogSink,
    exporter: SpanExporter,
    cluster_id: String,
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
            tcp: TcpMetrics::default(),
            sink,
            exporter: SpanExporter::start(),
            cluster_id: cluster_id.into(),
        })
    }

    /// Resolves and checks the config's telemetry settings without
    /// applying them.
    pub fn prepare(&self, cfg: &WaypointConfig) -> Result<Prepared, TelemetryError> {
        let t = &cfg.telemetry;
        let waypoint = format!("{}.{}", cfg.name, cfg.namespace);
        let mut settings = Settings::from_config(t, &waypoint)?;
        for (svc, st) in &t.services {
            settings
                .by_service
                .insert(svc.clone(), Settings::from_config(st, &waypoint)?);
        }
        Ok(Prepared { settings })
    }

    /// Applies prepared settings.
    pub fn commit(&self, p: Prepared) {
        self.settings.store(Arc::new(p.settings));
    }

    /// `prepare` then `commit`.
    pub fn configure(&self, cfg: &WaypointConfig) -> Result<(), TelemetryError> {
        let p = self.prepare(cfg)?;
        self.commit(p);
        Ok(())
    }

    /// Starts the waypoint's span for a request.
    pub fn start_span(&self, headers: &HeaderMap, service: Option<&str>) -> SpanContext {
        let s = self.settings.load();
        SpanContext::start(headers.get("traceparent"), s.for_service(service).sampling)
    }

    /// Must a request's record keep a copy of its request headers? Only the
    /// access log (and its filter), metric tag expressions and exported
    /// spans read them; otherwise the per-request copy is skipped.
    pub fn needs_request_headers(&self, span: &SpanContext, service: Option<&str>) -> bool {
        let s = self.settings.load();
        let s = s.for_service(service);
        s.access_log || s.overrides.evaluates_expressions() || (span.sampled && s.export.is_some())
    }

    /// Istio's label set for a finished request (values borrowed from the
    /// record where possible: this runs for every request).
    pub fn labels<'a>(&'a self, r: &'a RequestRecord) -> LabelSet<'a> {
        let grpc = if r.grpc {
            r.grpc_status.as_deref().unwrap_or("")
        } else {
            ""
        };
        let mut l = self.peer_labels(&r.source, r.upstream.as_deref(), r.service.as_deref());
        l.extend([
            (
                "request_protocol",
                Cow::Borrowed(if r.grpc { "grpc" } else { "http" }),
            ),
            ("response_code", Cow::Owned(r.response_code.to_string())),
            ("grpc_response_status", Cow::Borrowed(grpc)),
            ("response_flags", Cow::Owned(r.flags_label())),
            (
                "connection_security_policy",
                Cow::Borrowed(security_policy(r.mtls, &r.source)),
            ),
        ]);
        l
    }

    /// The source and destination labels every standard metric carries,
    /// from `reporter` to `destination_cluster`.
    pub fn peer_labels<'a>(
        &'a self,
        src: &'a PeerInfo,
        dst: Option<&'a WaypointEndpoint>,
        svc: Option<&'a WaypointService>,
    ) -> LabelSet<'a> {
        fn val<'a>(v: Option<&'a str>, default: &'a str) -> Cow<'a, str> {
            match v {
                Some(s) if !s.is_empty() => Cow::Borrowed(s),
                _ => Cow::Borrowed(default),
            }
        }
        let ne = |s: &'a str| (!s.is_empty()).then_some(s);
        let dl = |k: &str| dst.and_then(|d| d.labels.get(k)).map(String::as_str);
        let dst_canonical = dst
            .and_then(|d| ne(&d.canonical_name))
            .or_else(|| dl("app"));
        let dst_revision = dst
            .and_then(|d| ne(&d.canonical_revision))
            .or_else(|| dl("version"));
        let u = "unknown";
        smallvec::smallvec![
            ("reporter", Cow::Borrowed("waypoint")),
            ("source_workload", val(src.workload.as_deref(), u)),
            (
                "source_canonical_service",
                val(src.canonical_service.as_deref(), u),
            ),
            (
                "source_canonical_revision",
                val(src.canonical_revision.as_deref(), "latest"),
            ),
            (
                "source_workload_namespace",
                val(src.namespace.as_deref(), u),
            ),
            ("source_principal", val(src.principal.as_deref(), u)),
            ("source_app", val(src.app.as_deref(), u)),
            ("source_version", val(src.version.as_deref(), u)),
            (
                "source_cluster",
                val(src.cluster.as_deref(), &self.cluster_id),
            ),
            (
                "destination_workload",
                val(
                    dst.and_then(|d| ne(&d.workload_name).or_else(|| ne(&d.name))),
                    u,
                ),
            ),
            (
                "destination_workload_namespace",
                val(
                    dst.map(|d| d.namespace.as_str())
                        .or(svc.map(|s| s.namespace.as_str())),
                    u,
                ),
            ),
            (
                "destination_principal",
                val(dst.map(|d| d.identity.as_str()), u),
            ),
            ("destination_app", val(dl("app").or(dst_canonical), u)),
            (
                "destination_version",
                val(dl("version").or(dst_revision), u),
            ),
            (
                "destination_service",
                val(svc.map(|s| s.hostname.as_str()), u),
            ),
            (
                "destination_service_name",
                val(svc.map(|s| s.name.as_str()), u),
            ),
            (
                "destination_service_namespace",
                val(svc.map(|s| s.namespace.as_str()), u),
            ),
            ("destination_canonical_service", val(dst_canonical, u)),
            (
                "destination_canonical_revision",
                val(dst_revision, "latest"),
            ),
            (
                "destination_cluster",
                Cow::Borrowed(self.cluster_id.as_str()),
            ),
        ]
    }

    /// Counts a TCP connection to `service` opened (its close when the
    /// handle drops), on the `istio_tcp_*` metrics the service's Telemetry
    /// leaves on.
    pub fn tcp_opened(
        &self,
        service: &str,
        labels: &[(&'static str, Cow<'_, str>)],
    ) -> TcpConnection {
        let s = self.settings.load();
        let enabled = s.for_service(Some(service)).overrides.tcp_enabled();
        self.tcp.opened(labels, enabled)
    }

    /// Counts a TCP connection to `service` refused before it opened.
    pub fn tcp_refused(&self, service: &str, labels: &[(&'static str, Cow<'_, str>)]) {
        drop(self.tcp_opened(service, labels));
    }

    /// Records a finished request: metrics, access log, span.
    pub fn finish(&self, r: &RequestRecord) {
        let s = self.settings.load();
        let s = s.for_service(r.addressed.as_ref().map(|a| a.hostname.as_str()));
        let labels = self.labels(r);
        self.istio.record(&labels, r, &s.overrides);
        if s.access_log && s.access_filter.as_ref().is_none_or(|f| f.test(r)) {
            self.sink.write(&accesslog::entry(r));
        }
        if let Some(span) = r.span
            && span.sampled
            && let Some(target) = &s.export
        {
            self.exporter.export(target.clone(), self.span(r, span, s));
        }
    }

    fn span(&self, r: &RequestRecord, ctx: SpanContext, s: &Settings) -> FinishedSpan {
        let name = match &r.service {
            Some(svc) => format!("{}:{}/*", svc.hostname, r.service_port),
            None => format!("{}/*", r.authority),
        };
        let h = |n: &str| {
            r.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string()
        };
        let mut attributes = vec![
            ("component".to_string(), "proxy".to_string()),
            ("node_id".to_string(), s.waypoint.clone()),
            ("http.method".to_string(), r.method.clone()),
            (
                "http.url".to_string(),
                format!("http://{}{}", r.authority, r.path),
            ),
            ("http.protocol".to_string(), r.protocol.to_string()),
            ("http.status_code".to_string(), r.response_code.to_string()),
            ("response_flags".to_string(), r.flags_label()),
            ("request_size".to_string(), r.request_body.get().to_string()),
            (
                "response_size".to_string(),
                r.response_body_bytes.to_string(),
            ),
            ("downstream_cluster".to_string(), "-".to_string()),
            ("user_agent".to_string(), h("user-agent")),
            ("guid:x-request-id".to_string(), h("x-request-id")),
            (
                "peer.address".to_string(),
                r.source_address.ip().to_string(),
            ),
            (
                "upstream_cluster".to_string(),
                r.upstream_cluster.clone().unwrap_or_else(|| "-".into()),
            ),
            (
                "upstream_address".to_string(),
                r.upstream_address
                    .map_or_else(|| "-".into(), |a| a.to_string()),
            ),
        ];
        for (k, v) in &s.custom_tags {
            attributes.push((k.clone(), v.clone()));
        }
        for (tag, header, default) in &s.header_tags {
            let value = r
                .headers
                .get(header)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .or_else(|| default.clone());
            if let Some(v) = value {
                attributes.push((tag.clone(), v));
            }
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
        self.tcp.encode(out);
    }
}
