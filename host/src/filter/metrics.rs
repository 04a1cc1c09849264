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
    filters: Mutex<HashMap<String, Arc<FilterGuestMetrics>>>,
    dropped: Arc<AtomicU64>,
}

/// The guest metrics of one filter (all its versions: a hot swap does not
/// reset its counters).
#[derive(Debug, Default)]
pub(crate) struct FilterGuestMetrics {
    /// `wasm_filter_<filter>_`.
    prefix: String,
    inner: Mutex<FilterInner>,
    dropped: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct FilterInner {
    /// (guest name, sorted labels) -> series.
    series: HashMap<SeriesKey, Arc<Series>>,
    /// Guest name -> is a histogram. A name keeps its first kind.
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

/// `my-filter` / `shop/my.filter` -> `my_filter` / `shop_my_filter`.
fn metric_safe(filter: &str) -> String {
    filter
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

impl GuestMetrics {
    /// The metrics of filter `name`, shared by all its versions.
    pub(crate) fn for_filter(&self, name: &str) -> Arc<FilterGuestMetrics> {
        self.filters
            .lock()
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(FilterGuestMetrics {
                    prefix: format!("wasm_filter_{}_", metric_safe(name)),
                    inner: Mutex::default(),
                    dropped: self.dropped.clone(),
                })
            })
            .clone()
    }

    /// Current value of a guest counter, by full name without `_total`
    /// (tests, CLI).
    pub fn counter_value(&self, full_name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.sort();
        let filters = self.filters.lock();
        filters.values().find_map(|f| {
            let name = full_name.strip_prefix(&f.prefix)?;
            let inner = f.inner.lock();
            match inner
                .series
                .get(&(name.to_string(), labels.clone()))
                .map(|s| &**s)
            {
                Some(Series::Counter(c)) => Some(c.load(Ordering::Relaxed)),
                _ => None,
            }
        })
    }
}

impl FilterGuestMetrics {
    fn series(
        &self,
        name: String,
        mut labels: Vec<(String, String)>,
        histogram: bool,
    ) -> Result<Arc<Series>, MetricRejected> {
        if !valid_name(&name) || !labels.iter().all(|(k, _)| valid_name(k)) {
            return Err(MetricRejected::BadName);
        }
        // Counters get `_total` appended by the exposition format.
        let name = match name.strip_suffix("_total") {
            Some(base) if !histogram => base.to_string(),
            _ => name,
        };
        if !labels.is_sorted() {
            labels.sort();
        }
        let mut inner = self.inner.lock();
        let key = (name, labels);
        if let Some(s) = inner.series.get(&key) {
            return match (&**s, histogram) {
                (Series::Counter(_), false) | (Series::Histogram(_), true) => Ok(s.clone()),
                _ => Err(MetricRejected::KindMismatch),
            };
        }
        if inner.kinds.get(&key.0).is_some_and(|&h| h != histogram) {
            return Err(MetricRejected::KindMismatch);
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
        name: String,
        labels: Vec<(String, String)>,
        value: u64,
    ) -> Result<(), MetricRejected> {
        match self.series(name, labels, false).as_deref() {
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
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    ) -> Result<(), MetricRejected> {
        let s = match self.series(name, labels, true) {
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
}

impl Collector for GuestMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let filters: Vec<Arc<FilterGuestMetrics>> = {
            let mut v: Vec<_> = self.filters.lock().values().cloned().collect();
            v.sort_by(|a, b| a.prefix.cmp(&b.prefix));
            v
        };
        for f in filters {
            let inner = f.inner.lock();
            let mut names: Vec<&String> = inner.kinds.keys().collect();
            names.sort();
            for name in names {
                let mut series: Vec<_> = inner
                    .series
                    .iter()
                    .filter(|((n, _), _)| n == name)
                    .collect();
                if series.is_empty() {
                    continue;
                }
                series.sort_by(|a, b| a.0.1.cmp(&b.0.1));
                let kind = if inner.kinds[name] {
                    MetricType::Histogram
                } else {
                    MetricType::Counter
                };
                let full = format!("{}{}", f.prefix, name);
                let mut metric = encoder.encode_descriptor(
                    &full,
                    "Recorded by a WebAssembly filter",
                    None,
                    kind,
                )?;
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
