//! Istio's standard HTTP metrics with Istio's label set, as a waypoint
//! reports them (`reporter="waypoint"`), written in the Prometheus text
//! format (0.0.4) Envoy serves.
//!
//! Series are keyed by their rendered label string, so one request costs one
//! render and one lookup per metric. Telemetry `metrics` overrides can
//! disable a metric or remove/upsert tags per metric.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mesh_common::model::MetricOverride;
use parking_lot::{Mutex, RwLock};

use super::expr::{Expr, ExprError};
use super::record::RequestRecord;

/// Envoy's default histogram buckets, which Istio's standard metrics use
/// (milliseconds for durations, bytes for sizes).
pub const BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Series kept per metric before new label combinations are dropped.
pub const MAX_SERIES_PER_METRIC: usize = 10_000;

/// The standard HTTP metrics (the two message counters only for gRPC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// `istio_requests_total` (REQUEST_COUNT).
    Requests,
    /// `istio_request_duration_milliseconds` (REQUEST_DURATION).
    Duration,
    /// `istio_request_bytes` (REQUEST_SIZE).
    RequestBytes,
    /// `istio_response_bytes` (RESPONSE_SIZE).
    ResponseBytes,
    /// `istio_request_messages_total` (GRPC_REQUEST_MESSAGES).
    RequestMessages,
    /// `istio_response_messages_total` (GRPC_RESPONSE_MESSAGES).
    ResponseMessages,
}

/// Number of standard metrics.
const METRICS: usize = 6;

/// The first four, recorded for every request; the others only for gRPC.
const HTTP_METRICS: usize = 4;

/// Counters (the rest are histograms).
fn is_counter(i: usize) -> bool {
    matches!(i, 0 | 4 | 5)
}

impl Metric {
    const ALL: [Metric; METRICS] = [
        Metric::Requests,
        Metric::Duration,
        Metric::RequestBytes,
        Metric::ResponseBytes,
        Metric::RequestMessages,
        Metric::ResponseMessages,
    ];

    fn name(self) -> &'static str {
        match self {
            Metric::Requests => "istio_requests_total",
            Metric::Duration => "istio_request_duration_milliseconds",
            Metric::RequestBytes => "istio_request_bytes",
            Metric::ResponseBytes => "istio_response_bytes",
            Metric::RequestMessages => "istio_request_messages_total",
            Metric::ResponseMessages => "istio_response_messages_total",
        }
    }

    fn api_name(self) -> &'static str {
        match self {
            Metric::Requests => "REQUEST_COUNT",
            Metric::Duration => "REQUEST_DURATION",
            Metric::RequestBytes => "REQUEST_SIZE",
            Metric::ResponseBytes => "RESPONSE_SIZE",
            Metric::RequestMessages => "GRPC_REQUEST_MESSAGES",
            Metric::ResponseMessages => "GRPC_RESPONSE_MESSAGES",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Metric::Requests => "Requests handled by the waypoint.",
            Metric::Duration => {
                "Time from the request headers to the last response byte, in milliseconds."
            }
            Metric::RequestBytes => "Request size (headers and body), in bytes.",
            Metric::ResponseBytes => "Response size (headers and body), in bytes.",
            Metric::RequestMessages => "gRPC messages received from the client.",
            Metric::ResponseMessages => "gRPC messages sent to the client.",
        }
    }
}

/// Per-metric label edits from Telemetry overrides.
#[derive(Debug, Clone, Default)]
struct Plan {
    disabled: bool,
    remove: Vec<String>,
    upsert: Vec<(String, Expr)>,
}

/// The Telemetry API names of the TCP metrics, in `TcpMetrics` order.
pub const TCP_METRICS: [&str; 4] = [
    "TCP_OPENED_CONNECTIONS",
    "TCP_CLOSED_CONNECTIONS",
    "TCP_SENT_BYTES",
    "TCP_RECEIVED_BYTES",
];

/// Resolved overrides of all metrics.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    plans: [Plan; METRICS],
    /// `ALL_METRICS` with `disabled: true`: the whole stats filter is off
    /// until a later override (any metric) turns it back on, as istiod's
    /// `mergeMetrics` does.
    all_disabled: bool,
    /// `disabled` of the four TCP metrics (their `tagOverrides` are not
    /// applied).
    tcp_disabled: [bool; 4],
}

impl Overrides {
    /// Resolves Telemetry `metrics[].overrides[]` in order. Overrides for
    /// `CLIENT` mode only do not apply to a waypoint.
    pub fn new(list: &[MetricOverride]) -> Result<Self, ExprError> {
        let mut o = Overrides::default();
        for ov in list {
            if ov.mode.eq_ignore_ascii_case("CLIENT") {
                continue;
            }
            if ov.metric == "ALL_METRICS" && ov.disabled == Some(true) {
                o.all_disabled = true;
                continue;
            }
            o.all_disabled = false;
            for (i, name) in TCP_METRICS.iter().enumerate() {
                if (ov.metric == "ALL_METRICS" || ov.metric == *name)
                    && let Some(d) = ov.disabled
                {
                    o.tcp_disabled[i] = d;
                }
            }
            for (i, m) in Metric::ALL.iter().enumerate() {
                if ov.metric != "ALL_METRICS" && ov.metric != m.api_name() {
                    continue;
                }
                let p = &mut o.plans[i];
                if let Some(d) = ov.disabled {
                    p.disabled = d;
                }
                for (tag, value) in &ov.tag_overrides {
                    p.remove.retain(|t| t != tag);
                    p.upsert.retain(|(t, _)| t != tag);
                    match value {
                        None => p.remove.push(tag.clone()),
                        Some(expr) => p.upsert.push((tag.clone(), Expr::parse(expr)?)),
                    }
                }
            }
        }
        Ok(o)
    }

    /// Is metric `i` (of [`Metric::ALL`]) turned off?
    fn disabled(&self, i: usize) -> bool {
        self.all_disabled || self.plans[i].disabled
    }

    /// Which of the TCP metrics (in [`TCP_METRICS`] order) are on.
    pub fn tcp_enabled(&self) -> [bool; 4] {
        self.tcp_disabled.map(|d| !d && !self.all_disabled)
    }

    fn is_plain(&self, i: usize) -> bool {
        let p = &self.plans[i];
        p.remove.is_empty() && p.upsert.is_empty()
    }

    /// Does any enabled metric compute a tag from the request (and so may
    /// read its headers)?
    pub fn evaluates_expressions(&self) -> bool {
        self.plans
            .iter()
            .any(|p| !self.all_disabled && !p.disabled && !p.upsert.is_empty())
    }
}

#[derive(Debug)]
struct Histogram {
    inner: Mutex<([u64; BUCKETS.len()], f64, u64)>,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            inner: Mutex::new(([0; BUCKETS.len()], 0.0, 0)),
        }
    }

    fn observe(&self, v: f64) {
        let mut g = self.inner.lock();
        if let Some(i) = BUCKETS.iter().position(|b| v <= *b) {
            g.0[i] += 1;
        }
        g.1 += v;
        g.2 += 1;
    }
}

#[derive(Debug)]
enum Series {
    Counter(AtomicU64),
    Histogram(Histogram),
}

impl Series {
    /// Adds `v` (a count, for counters) or observes it (histogram).
    fn add(&self, v: f64) {
        match self {
            Series::Counter(c) => {
                // Counts are whole numbers well inside u64.
                c.fetch_add(v as u64, Ordering::Relaxed);
            }
            Series::Histogram(h) => h.observe(v),
        }
    }
}

/// A word-at-a-time multiplicative hash (FxHash's mixing): series keys are
/// long (~1 KB), trusted strings hashed on every request, where SipHash's
/// DoS resistance is not needed and costs several times more.
#[derive(Debug, Clone, Copy, Default)]
pub struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ (rest.len() as u64) << 56);
        }
    }
}

type SeriesMap = HashMap<Arc<str>, Arc<Series>, std::hash::BuildHasherDefault<FxHasher>>;

/// The four series of one label set (the same `Arc`s the per-metric maps
/// hold), looked up with one hash of the label string instead of four.
type SeriesSets = HashMap<Arc<str>, Arc<[Arc<Series>; 4]>, std::hash::BuildHasherDefault<FxHasher>>;

/// The store.
#[derive(Debug)]
pub struct IstioMetrics {
    series: [RwLock<SeriesMap>; METRICS],
    /// Shortcut for requests whose four metrics all use the standard labels
    /// (no override disables a metric or edits its tags): the usual case.
    plain: RwLock<SeriesSets>,
    dropped: AtomicU64,
}

impl Default for IstioMetrics {
    fn default() -> Self {
        IstioMetrics {
            series: Default::default(),
            plain: RwLock::default(),
            dropped: AtomicU64::new(0),
        }
    }
}

/// Escapes a label value for the text format.
pub fn escape(v: &str, out: &mut String) {
    if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn render<V: AsRef<str>>(labels: &[(&str, V)]) -> String {
    let mut s = String::with_capacity(labels.len() * 48);
    render_into(labels, &mut s);
    s
}

fn render_into<V: AsRef<str>>(labels: &[(&str, V)], s: &mut String) {
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push_str("=\"");
        escape(v.as_ref(), s);
        s.push('"');
    }
}

thread_local! {
    /// The rendered label set of the request being recorded, reused: once
    /// a label set has its series, recording a request allocates nothing.
    static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl IstioMetrics {
    fn get(&self, i: usize, key: &str) -> Option<Arc<Series>> {
        if let Some(s) = self.series[i].read().get(key) {
            return Some(s.clone());
        }
        let mut w = self.series[i].write();
        if let Some(s) = w.get(key) {
            return Some(s.clone());
        }
        if w.len() >= MAX_SERIES_PER_METRIC {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let s = Arc::new(if is_counter(i) {
            Series::Counter(AtomicU64::new(0))
        } else {
            Series::Histogram(Histogram::new())
        });
        w.insert(Arc::from(key), s.clone());
        Some(s)
    }

    /// Records one finished request.
    pub fn record(
        &self,
        labels: &[(&'static str, Cow<'_, str>)],
        rec: &RequestRecord,
        ov: &Overrides,
    ) {
        let values = [
            1.0,
            rec.duration().as_secs_f64() * 1000.0,
            (rec.request_header_bytes + rec.request_body.get()) as f64,
            (rec.response_header_bytes + rec.response_body_bytes) as f64,
            rec.request_messages() as f64,
            rec.response_grpc.messages() as f64,
        ];
        let count = if rec.grpc { METRICS } else { HTTP_METRICS };
        let all_plain = (0..HTTP_METRICS).all(|i| !ov.disabled(i) && ov.is_plain(i));
        let mut plain_hit = false;
        let base = KEY.with_borrow_mut(|key| {
            key.clear();
            render_into(labels, key);
            if all_plain && let Some(set) = self.plain.read().get(key.as_str()) {
                for (series, v) in set.iter().zip(values) {
                    series.add(v);
                }
                plain_hit = true;
                if count == HTTP_METRICS {
                    return None;
                }
            }
            Some(key.clone())
        });
        let Some(base) = base else {
            return;
        };
        let first = if plain_hit { HTTP_METRICS } else { 0 };
        let mut resolved: [Option<Arc<Series>>; HTTP_METRICS] = Default::default();
        for (i, v) in values.into_iter().enumerate().take(count).skip(first) {
            let plan = &ov.plans[i];
            if ov.disabled(i) {
                continue;
            }
            let key = if ov.is_plain(i) {
                None
            } else {
                let mut l: Vec<(&str, String)> = labels
                    .iter()
                    .filter(|(k, _)| !plan.remove.iter().any(|r| r == k))
                    .map(|(k, v)| (*k, v.to_string()))
                    .collect();
                for (tag, expr) in &plan.upsert {
                    let val = expr.eval(rec).to_string();
                    match l.iter_mut().find(|(k, _)| k == tag) {
                        Some(e) => e.1 = val,
                        None => l.push((tag.as_str(), val)),
                    }
                }
                Some(render(&l))
            };
            let Some(series) = self.get(i, key.as_deref().unwrap_or(&base)) else {
                continue;
            };
            series.add(v);
            if i < HTTP_METRICS {
                resolved[i] = Some(series);
            }
        }
        // Remember the four series of a plain label set for the next
        // request with the same labels.
        if all_plain
            && !plain_hit
            && let [Some(a), Some(b), Some(c), Some(d)] = resolved
        {
            self.plain
                .write()
                .insert(Arc::from(base.as_str()), Arc::new([a, b, c, d]));
        }
    }

    /// Writes all series in the Prometheus text format.
    pub fn encode(&self, out: &mut String) {
        for (i, m) in Metric::ALL.iter().enumerate() {
            let map = self.series[i].read();
            if map.is_empty() {
                continue;
            }
            let name = m.name();
            let kind = if is_counter(i) {
                "counter"
            } else {
                "histogram"
            };
            let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {kind}", m.help());
            let mut keys: Vec<&Arc<str>> = map.keys().collect();
            keys.sort();
            for k in keys {
                match &*map[k] {
                    Series::Counter(c) => {
                        let _ = writeln!(out, "{name}{{{k}}} {}", c.load(Ordering::Relaxed));
                    }
                    Series::Histogram(h) => {
                        let (buckets, sum, count) = *h.inner.lock();
                        let sep = if k.is_empty() { "" } else { "," };
                        let mut cum = 0;
                        for (b, n) in BUCKETS.iter().zip(buckets) {
                            cum += n;
                            let _ = writeln!(out, "{name}_bucket{{{k}{sep}le=\"{b}\"}} {cum}");
                        }
                        let _ = writeln!(out, "{name}_bucket{{{k}{sep}le=\"+Inf\"}} {count}");
                        let _ = writeln!(out, "{name}_sum{{{k}}} {sum}");
                        let _ = writeln!(out, "{name}_count{{{k}}} {count}");
                    }
                }
            }
        }
    }

    /// Requests whose series were dropped by the cardinality cap.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ov(metric: &str, disabled: Option<bool>, tag: Option<(&str, &str)>) -> MetricOverride {
        MetricOverride {
            metric: metric.into(),
            mode: "CLIENT_AND_SERVER".into(),
            disabled,
            tag_overrides: tag
                .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                .into_iter()
                .collect(),
        }
    }

    /// A child Telemetry that only changes tags keeps the parent's
    /// `disabled`; only an explicit `disabled: false` re-enables.
    #[test]
    fn disabled_is_inherited_until_explicitly_re_enabled() {
        let o = Overrides::new(&[
            ov("REQUEST_COUNT", Some(true), None),
            ov("REQUEST_COUNT", None, Some(("x", "'y'"))),
        ])
        .unwrap();
        assert!(o.plans[0].disabled);
    }

    /// `ALL_METRICS` + `disabled: true` turns the whole stats filter off
    /// (TCP metrics included) until any later override turns it back on
    /// (istiod's `mergeMetrics`: a root "disable all" then a namespace's
    /// tag override re-enables every metric).
    #[test]
    fn disabling_all_metrics_is_undone_by_any_later_override() {
        let o = Overrides::new(&[ov("ALL_METRICS", Some(true), None)]).unwrap();
        assert!((0..METRICS).all(|i| o.disabled(i)));
        assert_eq!(o.tcp_enabled(), [false; 4]);
        let o = Overrides::new(&[
            ov("ALL_METRICS", Some(true), None),
            ov("REQUEST_COUNT", None, Some(("x", "'y'"))),
        ])
        .unwrap();
        assert!((0..METRICS).all(|i| !o.disabled(i)));
        assert_eq!(o.tcp_enabled(), [true; 4]);
        // Per-metric `disabled` stays per metric.
        let o = Overrides::new(&[
            ov("REQUEST_SIZE", Some(true), None),
            ov("TCP_SENT_BYTES", Some(true), None),
        ])
        .unwrap();
        assert!(!o.disabled(0) && o.disabled(2));
        assert_eq!(o.tcp_enabled(), [true, true, false, true]);
    }
}
