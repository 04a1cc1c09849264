//! Metrics of the filter runtime: per-filter execution metrics emitted by the
//! host (invocations, errors by cause, latency, active version, instances)
//! and the metrics guests record through the `metrics` capability.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::limits::MAX_METRIC_SERIES;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HookLabels {
    pub filter: String,
    pub version: String,
    pub hook: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ErrorLabels {
    pub filter: String,
    pub version: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct VersionLabels {
    pub filter: String,
    pub version: String,
}

fn latency_histogram() -> Histogram {
    // 1 µs .. ~0.5 s
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1e-6, 2.5, 15,
    ))
}

/// Host-emitted metrics for all filters of the process.
#[derive(Clone)]
pub struct RuntimeMetrics {
    pub(crate) invocations: Family<HookLabels, Counter>,
    pub(crate) errors: Family<ErrorLabels, Counter>,
    pub(crate) latency: Family<HookLabels, Histogram, fn() -> Histogram>,
    pub(crate) active: Family<VersionLabels, Gauge>,
    pub(crate) instances: Family<VersionLabels, Gauge>,
    pub(crate) instantiations: Family<VersionLabels, Counter>,
    pub(crate) guest: Arc<GuestMetrics>,
}

impl Default for RuntimeMetrics {
    fn default() -> Self {
        RuntimeMetrics {
            invocations: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            active: Family::default(),
            instances: Family::default(),
            instantiations: Family::default(),
            guest: Arc::new(GuestMetrics::default()),
        }
    }
}

impl RuntimeMetrics {
    /// Registers everything under `registry` (metric names start with
    /// `wasm_filter_`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "wasm_filter_invocations",
            "Hook calls per filter, version (module digest prefix) and hook",
            self.invocations.clone(),
        );
        registry.register(
            "wasm_filter_errors",
            "Failed hook calls by cause: trap, timeout, oom, instance_limit, invalid_result",
            self.errors.clone(),
        );
        registry.register(
            "wasm_filter_hook_duration_seconds",
            "Latency of hook calls, including obtaining an instance",
            self.latency.clone(),
        );
        registry.register(
            "wasm_filter_active_version",
            "1 for the filter version new requests use, per module digest prefix",
            self.active.clone(),
        );
        registry.register(
            "wasm_filter_instances",
            "Live instances (idle or busy) per filter version",
            self.instances.clone(),
        );
        registry.register(
            "wasm_filter_instantiations",
            "Instances created per filter version",
            self.instantiations.clone(),
        );
        registry.register_collector(Box::new(self.guest.clone()));
    }

    /// Sum of `wasm_filter_invocations` for one filter version (tests).
    pub fn invocations_of(&self, filter: &str, version: &str, hook: &'static str) -> u64 {
        self.invocations
            .get_or_create(&HookLabels {
                filter: filter.into(),
                version: version.into(),
                hook,
            })
            .get()
    }

    /// `wasm_filter_errors` for one filter version and cause (tests).
    pub fn errors_of(&self, filter: &str, version: &str, kind: &'static str) -> u64 {
        self.errors
            .get_or_create(&ErrorLabels {
                filter: filter.into(),
                version: version.into(),
                kind,
            })
            .get()
    }

    /// The guest-recorded metrics.
    pub fn guest(&self) -> &GuestMetrics {
        &self.guest
    }
}

type SeriesKey = (String, Vec<(String, String)>);

#[derive(Debug)]
enum Series {
    Counter(AtomicU64),
    Histogram(Mutex<GuestHistogram>),
}

#[derive(Debug)]
struct GuestHistogram {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

const GUEST_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 50.0, 100.0, 1000.0,
];

/// Metrics guests record, namespaced `wasm_filter_<filter>_<name>`.
#[derive(Debug, Default)]
pub struct GuestMetrics {
    inner: Mutex<GuestInner>,
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct GuestInner {
    series: HashMap<SeriesKey, Arc<Series>>,
    /// Full metric name -> is a histogram. A name keeps its first kind.
    kinds: HashMap<String, bool>,
}

/// Why a guest metric was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricRejected {
    BadName,
    KindMismatch,
    TooManySeries,
}

fn valid_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && s.len() <= 128
}

impl GuestMetrics {
    fn series(
        &self,
        filter: &str,
        name: &str,
        mut labels: Vec<(String, String)>,
        histogram: bool,
    ) -> Result<Arc<Series>, MetricRejected> {
        if !valid_name(name) || !labels.iter().all(|(k, _)| valid_name(k)) {
            return Err(MetricRejected::BadName);
        }
        // Counters get `_total` appended by the exposition format.
        let base = if histogram {
            name
        } else {
            name.strip_suffix("_total").unwrap_or(name)
        };
        let full = format!("wasm_filter_{}_{}", filter.replace('-', "_"), base);
        labels.sort();
        let mut inner = self.inner.lock();
        match inner.kinds.get(&full) {
            Some(&h) if h != histogram => return Err(MetricRejected::KindMismatch),
            _ => {}
        }
        let key = (full, labels);
        if let Some(s) = inner.series.get(&key) {
            return Ok(s.clone());
        }
        if inner.series.len() >= MAX_METRIC_SERIES {
            return Err(MetricRejected::TooManySeries);
        }
        let s = Arc::new(if histogram {
            Series::Histogram(Mutex::new(GuestHistogram {
                sum: 0.0,
                count: 0,
                buckets: GUEST_BUCKETS.iter().map(|b| (*b, 0)).collect(),
            }))
        } else {
            Series::Counter(AtomicU64::new(0))
        });
        inner.kinds.insert(key.0.clone(), histogram);
        inner.series.insert(key, s.clone());
        Ok(s)
    }

    fn rejected(&self, e: MetricRejected) -> Result<(), MetricRejected> {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        Err(e)
    }

    pub(crate) fn counter_add(
        &self,
        filter: &str,
        name: &str,
        labels: Vec<(String, String)>,
        value: u64,
    ) -> Result<(), MetricRejected> {
        match self.series(filter, name, labels, false).as_deref() {
            Ok(Series::Counter(c)) => {
                c.fetch_add(value, Ordering::Relaxed);
                Ok(())
            }
            Ok(Series::Histogram(_)) => self.rejected(MetricRejected::KindMismatch),
            Err(e) => self.rejected(*e),
        }
    }

    pub(crate) fn histogram_record(
        &self,
        filter: &str,
        name: &str,
        labels: Vec<(String, String)>,
        value: f64,
    ) -> Result<(), MetricRejected> {
        let s = match self.series(filter, name, labels, true) {
            Ok(s) => s,
            Err(e) => return self.rejected(e),
        };
        let Series::Histogram(h) = &*s else {
            return self.rejected(MetricRejected::KindMismatch);
        };
        let mut h = h.lock();
        h.sum += value;
        h.count += 1;
        for (le, n) in h.buckets.iter_mut() {
            if value <= *le {
                *n += 1;
            }
        }
        Ok(())
    }

    /// Current value of a guest counter, by full name without `_total`
    /// (tests, CLI).
    pub fn counter_value(&self, full_name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.sort();
        let inner = self.inner.lock();
        match inner
            .series
            .get(&(full_name.to_string(), labels))
            .map(|s| &**s)
        {
            Some(Series::Counter(c)) => Some(c.load(Ordering::Relaxed)),
            _ => None,
        }
    }
}

impl Collector for GuestMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let inner = self.inner.lock();
        let map = &inner.series;
        let mut names: Vec<&String> = map.keys().map(|(n, _)| n).collect();
        names.sort();
        names.dedup();
        for name in names {
            let mut series: Vec<_> = map.iter().filter(|((n, _), _)| n == name).collect();
            series.sort_by(|a, b| a.0.1.cmp(&b.0.1));
            let is_hist = matches!(&**series[0].1, Series::Histogram(_));
            let kind = if is_hist {
                MetricType::Histogram
            } else {
                MetricType::Counter
            };
            let mut metric =
                encoder.encode_descriptor(name, "Recorded by a WebAssembly filter", None, kind)?;
            for ((_, labels), s) in series {
                let mut fam = metric.encode_family(labels)?;
                match &**s {
                    Series::Counter(c) => fam.encode_counter::<NoLabelSet, _, f64>(
                        &c.load(Ordering::Relaxed),
                        None,
                    )?,
                    Series::Histogram(h) => {
                        let h = h.lock();
                        fam.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?
                    }
                }
            }
        }
        let dropped = self.dropped.load(Ordering::Relaxed);
        let mut metric = encoder.encode_descriptor(
            "wasm_filter_metric_series_dropped",
            "Guest metric records dropped: bad name, kind mismatch or series cap",
            None,
            MetricType::Counter,
        )?;
        metric.encode_counter::<NoLabelSet, _, f64>(&dropped, None)
    }
}
