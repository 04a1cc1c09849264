//! Tracing: W3C `traceparent` propagation, sampling, and span export over
//! OTLP/HTTP (JSON encoding, `POST <endpoint>/v1/traces`) or OTLP/gRPC
//! (`grpc://host:port` endpoints, [`super::otlp_grpc`]).
//!
//! 1. An incoming valid `traceparent` keeps its trace id and its sampling
//!    decision (the `sampled` flag); otherwise a new trace starts, sampled
//!    with the Telemetry `randomSamplingPercentage`.
//! 2. The waypoint's span gets a new span id, child of the incoming one;
//!    the upstream request carries `traceparent` naming the waypoint's span
//!    (`tracestate` passes through untouched).
//! 3. Sampled spans are exported in batches unless span reporting is
//!    disabled or no endpoint is configured.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;

/// Spans buffered before new ones are dropped.
pub const SPAN_QUEUE: usize = 4096;
/// Spans per export request.
pub const MAX_BATCH: usize = 512;
/// Longest a span waits before export.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// One span's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// This span.
    pub span_id: [u8; 8],
    /// The caller's span, if the trace came in.
    pub parent: Option<[u8; 8]>,
    /// Sampled (exported).
    pub sampled: bool,
}

fn hex_to<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of `b` appended to `out` (per request: no formatter).
fn push_hex(b: &[u8], out: &mut String) {
    out.reserve(b.len() * 2);
    for x in b {
        out.push(char::from(HEX[usize::from(x >> 4)]));
        out.push(char::from(HEX[usize::from(x & 0xf)]));
    }
}

fn hex<const N: usize>(b: &[u8; N]) -> String {
    let mut s = String::with_capacity(N * 2);
    push_hex(b, &mut s);
    s
}

/// Parses `traceparent` (version 00 layout; unknown versions are read the
/// same way as the spec asks). Returns (trace id, parent span id, sampled).
pub fn parse_traceparent(v: &str) -> Option<([u8; 16], [u8; 8], bool)> {
    let mut parts = v.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    if trace.bytes().any(|b| b.is_ascii_uppercase()) || span.bytes().any(|b| b.is_ascii_uppercase())
    {
        return None;
    }
    let trace_id = hex_to::<16>(trace)?;
    let span_id = hex_to::<8>(span)?;
    let flags = hex_to::<1>(flags.get(..2)?)?[0];
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some((trace_id, span_id, flags & 1 == 1))
}

impl SpanContext {
    /// Starts the waypoint's span for a request.
    pub fn start(incoming: Option<&HeaderValue>, sampling_percent: f64) -> Self {
        let mut rng = rand::rng();
        let span_id = loop {
            let id: [u8; 8] = rng.random();
            if id != [0; 8] {
                break id;
            }
        };
        if let Some((trace_id, parent, sampled)) = incoming
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent)
        {
            return SpanContext {
                trace_id,
                span_id,
                parent: Some(parent),
                sampled,
            };
        }
        let trace_id = loop {
            let id: [u8; 16] = rng.random();
            if id != [0; 16] {
                break id;
            }
        };
        let sampled = sampling_percent > 0.0 && rng.random::<f64>() * 100.0 < sampling_percent;
        SpanContext {
            trace_id,
            span_id,
            parent: None,
            sampled,
        }
    }

    /// The `traceparent` to send upstream (this span as parent).
    pub fn traceparent(&self) -> String {
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        push_hex(&self.trace_id, &mut s);
        s.push('-');
        push_hex(&self.span_id, &mut s);
        s.push_str(if self.sampled { "-01" } else { "-00" });
        s
    }

    /// Trace id as hex.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

/// A finished span.
#[derive(Debug, Clone)]
pub struct FinishedSpan {
    /// Identity.
    pub ctx: SpanContext,
    /// Operation name.
    pub name: String,
    /// Start.
    pub start: SystemTime,
    /// End.
    pub end: SystemTime,
    /// Attributes.
    pub attributes: Vec<(String, String)>,
    /// Error status.
    pub error: bool,
}

#[cfg(test)]
impl FinishedSpan {
    /// A new root span with one `http.status_code` attribute (tests).
    pub(crate) fn sample(status: &str, error: bool) -> Self {
        FinishedSpan {
            ctx: SpanContext::start(None, 100.0),
            name: "orders:80/*".into(),
            start: SystemTime::now(),
            end: SystemTime::now(),
            attributes: vec![("http.status_code".into(), status.into())],
            error,
        }
    }
}

fn nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        .to_string()
}

/// Encodes spans as an OTLP/JSON `ExportTraceServiceRequest`.
pub fn encode_otlp(service_name: &str, spans: &[FinishedSpan]) -> Json {
    let spans: Vec<Json> = spans
        .iter()
        .map(|s| {
            let mut j = json!({
                "traceId": hex(&s.ctx.trace_id),
                "spanId": hex(&s.ctx.span_id),
                "name": s.name,
                "kind": 2,
                "startTimeUnixNano": nanos(s.start),
                "endTimeUnixNano": nanos(s.end),
                "attributes": s.attributes.iter().map(|(k, v)| json!({"key": k, "value": {"stringValue": v}})).collect::<Vec<_>>(),
                "status": {"code": if s.error { 2 } else { 0 }},
            });
            if let Some(p) = &s.ctx.parent {
                j["parentSpanId"] = json!(hex(p));
            }
            j
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service_name}}]},
            "scopeSpans": [{"scope": {"name": "waypoint"}, "spans": spans}]
        }]
    })
}

/// Where and as whom spans are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportTarget {
    /// `http://host:port/v1/traces`, or the gRPC method URL.
    pub url: http::Uri,
    /// `service.name` resource attribute.
    pub service_name: String,
    /// OTLP/gRPC (HTTP/2, protobuf) rather than OTLP/HTTP (JSON).
    pub grpc: bool,
}

impl ExportTarget {
    /// The target for a configured endpoint: `grpc://host:port` for
    /// OTLP/gRPC, else an OTLP/HTTP endpoint ([`traces_url`]).
    pub fn for_endpoint(endpoint: &str, service_name: String) -> Result<Self, String> {
        if let Some(hp) = endpoint.strip_prefix("grpc://") {
            let url = format!(
                "http://{}{}",
                hp.trim_end_matches('/'),
                super::otlp_grpc::EXPORT_PATH
            )
            .parse()
            .map_err(|e| format!("OTLP endpoint {endpoint:?} is not host:port: {e}"))?;
            return Ok(ExportTarget {
                url,
                service_name,
                grpc: true,
            });
        }
        Ok(ExportTarget {
            url: traces_url(endpoint)?,
            service_name,
            grpc: false,
        })
    }
}

/// The URL spans go to for a configured OTLP endpoint.
pub fn traces_url(endpoint: &str) -> Result<http::Uri, String> {
    let e = endpoint.trim_end_matches('/');
    let with_scheme = if e.contains("://") {
        e.to_string()
    } else {
        format!("http://{e}")
    };
    let full = if with_scheme.ends_with("/v1/traces") {
        with_scheme
    } else {
        format!("{with_scheme}/v1/traces")
    };
    let uri: http::Uri = full
        .parse()
        .map_err(|e| format!("OTLP endpoint {endpoint:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "OTLP endpoint {endpoint:?}: only http:// (OTLP/HTTP without TLS) is supported"
        ));
    }
    Ok(uri)
}

/// Queues spans and exports them in the background, each to the target
/// in force when it was queued (the waypoint's, or the one of the service
/// the request addressed).
#[derive(Debug)]
pub struct SpanExporter {
    tx: mpsc::Sender<(Arc<ExportTarget>, FinishedSpan)>,
}

impl SpanExporter {
    /// Starts the export task (needs a Tokio runtime).
    pub fn start() -> Self {
        let (tx, rx) = mpsc::channel(SPAN_QUEUE);
        tokio::spawn(run(rx));
        SpanExporter { tx }
    }

    /// Queues a span for `target`; dropped when the queue is full.
    pub fn export(&self, target: Arc<ExportTarget>, s: FinishedSpan) {
        if self.tx.try_send((target, s)).is_err() {
            tracing::debug!("span queue full; span dropped");
        }
    }
}

/// The export clients: HTTP/1.1 for OTLP/HTTP, HTTP/2 for OTLP/gRPC.
struct Clients {
    http: Client<HttpConnector, Full<Bytes>>,
    grpc: Client<HttpConnector, Full<Bytes>>,
}

async fn run(mut rx: mpsc::Receiver<(Arc<ExportTarget>, FinishedSpan)>) {
    let client = Clients {
        http: Client::builder(TokioExecutor::new()).build_http(),
        grpc: Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http(),
    };
    let mut batch = Vec::new();
    loop {
        let deadline = tokio::time::sleep(FLUSH_INTERVAL);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                s = rx.recv() => match s {
                    Some(s) => {
                        batch.push(s);
                        if batch.len() >= MAX_BATCH { break; }
                    }
                    None => {
                        flush_all(&client, &mut batch).await;
                        return;
                    }
                },
                _ = &mut deadline => break,
            }
        }
        flush_all(&client, &mut batch).await;
    }
}

/// Sends the batch, one request per target.
async fn flush_all(client: &Clients, batch: &mut Vec<(Arc<ExportTarget>, FinishedSpan)>) {
    while let Some((target, _)) = batch.first() {
        let target = target.clone();
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(batch)
            .into_iter()
            .partition(|(t, _)| Arc::ptr_eq(t, &target) || **t == *target);
        *batch = rest;
        flush(client, &target, mine.into_iter().map(|(_, s)| s).collect()).await;
    }
}

async fn flush(client: &Clients, t: &ExportTarget, spans: Vec<FinishedSpan>) {
    if spans.is_empty() {
        return;
    }
    let req = if t.grpc {
        let body = super::otlp_grpc::frame(&super::otlp_grpc::request(&t.service_name, &spans));
        http::Request::post(t.url.clone())
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(Full::new(body))
    } else {
        let body = encode_otlp(&t.service_name, &spans).to_string();
        http::Request::post(t.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
    };
    let Ok(req) = req else { return };
    let c = if t.grpc { &client.grpc } else { &client.http };
    let call = async {
        let resp = c.request(req).await.map_err(|e| {
            format!("could not export spans ({e}); is the OTLP collector reachable?")
        })?;
        if !resp.status().is_success() {
            return Err(format!("OTLP collector answered {}", resp.status()));
        }
        let (parts, body) = resp.into_parts();
        let collected = body.collect().await.map_err(|e| e.to_string())?;
        if t.grpc {
            super::otlp_grpc::outcome(&parts.headers, collected.trailers())
                .map_err(|e| format!("OTLP collector refused spans: {e}"))?;
        }
        Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(url = %t.url, "{e}"),
        Err(_) => tracing::warn!(url = %t.url, "span export timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trip_and_validation() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (t, p, s) = parse_traceparent(v).unwrap();
        assert!(s);
        let ctx = SpanContext::start(Some(&HeaderValue::from_static(v)), 0.0);
        assert_eq!(ctx.trace_id, t);
        assert_eq!(ctx.parent, Some(p));
        assert!(ctx.sampled, "incoming sampled flag wins over 0%");
        let out = ctx.traceparent();
        assert!(out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(out.ends_with("-01"));
        assert_ne!(&out[36..52], "00f067aa0ba902b7", "new span id");
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn sampling_percentage_is_respected() {
        let n = 20_000;
        let sampled = (0..n)
            .filter(|_| SpanContext::start(None, 10.0).sampled)
            .count();
        assert!((1600..2400).contains(&sampled), "{sampled}");
        assert!((0..1000).all(|_| !SpanContext::start(None, 0.0).sampled));
        assert!((0..1000).all(|_| SpanContext::start(None, 100.0).sampled));
    }

    #[test]
    fn otlp_json_shape() {
        let s = FinishedSpan::sample("200", false);
        let j = encode_otlp("waypoint.shop", &[s]);
        let span = &j["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"].as_str().unwrap().len(), 32);
        assert_eq!(span["name"], "orders:80/*");
        assert!(span.get("parentSpanId").is_none());
        assert_eq!(
            traces_url("127.0.0.1:4318").unwrap().to_string(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert!(traces_url("https://x:4318").is_err());
        let g =
            ExportTarget::for_endpoint("grpc://otel.istio-system.svc:4317", "w".into()).unwrap();
        assert!(g.grpc);
        assert_eq!(
            g.url.to_string(),
            "http://otel.istio-system.svc:4317/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        );
    }
}
