//! Per-request cost of the filter runtime (issue 2): one filter and a
//! five-filter chain, instance reuse vs a fresh instance per call, the
//! example filter in each guest language, and the same work as native Rust
//! in the same run.
//!
//!     scripts/build-guests.sh && cargo bench -p waypoint --bench filter_chain
//!
//! "per request" = `RequestFilters::new` + `on_request_headers` +
//! `on_response_headers` on a realistic GET (12 headers), i.e. everything
//! the proxy asks of the runtime for a request whose filters only look at
//! headers.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use waypoint::filter::{
    Capability, DesiredFilter, FilterManager, FilterSpec, Isolation, RequestFilters, Verdict,
};

fn request() -> http::request::Parts {
    let mut parts = support::get("/api/orders/123");
    for (k, v) in [
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br"),
        ("accept-language", "en-US,en;q=0.9"),
        ("authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln"),
        ("cache-control", "no-cache"),
        ("cookie", "session=abc123; theme=dark"),
        ("x-request-id", "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-proto", "http"),
        ("content-length", "0"),
    ] {
        parts.headers.insert(k, v.parse().unwrap());
    }
    parts
}

fn chain(
    rt: &tokio::runtime::Runtime,
    module: &str,
    n: usize,
    isolation: Isolation,
) -> FilterManager {
    rt.block_on(async {
        let m = FilterManager::new(support::runtime());
        let desired = (0..n)
            .map(|i| {
                let mut spec = FilterSpec::new(format!("{}-{i}", module.replace('_', "-")));
                spec.capabilities = vec![Capability::Metrics, Capability::Log];
                spec.isolation = isolation;
                DesiredFilter {
                    spec,
                    module: support::guest(module),
                    sha256: None,
                    canary: None,
                }
            })
            .collect();
        let report = m.apply(desired).await;
        assert!(report.is_ok(), "{:?}", report.refused);
        m
    })
}

async fn one_request(m: &FilterManager) {
    one_request_with(m, request()).await
}

async fn one_request_with(m: &FilterManager, mut req: http::request::Parts) {
    let mut rf = RequestFilters::new(&m.current(), support::conn());
    match rf.on_request_headers(&mut req).await {
        Verdict::Continue => {}
        Verdict::Respond(_) => panic!("unexpected local response"),
    }
    let mut resp = support::response(200);
    black_box(rf.on_response_headers(&mut resp).await);
    black_box(req);
}

fn bench_chain(c: &mut Criterion, rt: &tokio::runtime::Runtime, id: &str, m: &FilterManager) {
    c.bench_function(id, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    one_request(m).await;
                }
                start.elapsed()
            })
        })
    });
}

/// The example filter's work as a native function: count, check the path,
/// add a header.
fn native_filter(parts: &mut http::request::Parts, counter: &AtomicU64) -> bool {
    counter.fetch_add(1, Ordering::Relaxed);
    if parts.uri.path() == "/blocked" {
        return false;
    }
    parts
        .headers
        .append("x-filter-lang", http::HeaderValue::from_static("rust"));
    true
}

/// Whether a criterion filter given on the command line selects `id` (so
/// unselected chains, e.g. the 18 MB Python guest, are not even compiled).
fn selected(id: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|f| regex::Regex::new(f).map_or(id.contains(f.as_str()), |r| r.is_match(id)))
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reuse = Isolation::default();

    // Native baseline, same request construction.
    let counter = AtomicU64::new(0);
    for n in [1usize, 5] {
        c.bench_function(&format!("native/{n}-filter"), |b| {
            b.iter(|| {
                let mut req = request();
                for _ in 0..n {
                    black_box(native_filter(&mut req, &counter));
                }
                black_box(req)
            })
        });
    }

    for (n, iso, tag) in [
        (1, reuse, "reuse"),
        (5, reuse, "reuse"),
        (1, Isolation::Fresh, "fresh"),
        (5, Isolation::Fresh, "fresh"),
    ] {
        let id = format!("wasm-rust/{n}-filter/{tag}");
        if selected(&id) {
            let m = chain(&rt, "example-rust", n, iso);
            bench_chain(c, &rt, &id, &m);
        }
    }
    // The same chain on a request with only a user-agent header: how much of
    // the cost is copying headers into the guests.
    let id = "wasm-rust/5-filter/reuse-1-header";
    if selected(id) {
        let m = chain(&rt, "example-rust", 5, reuse);
        c.bench_function(id, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        one_request_with(&m, support::get("/api/orders/123")).await;
                    }
                    start.elapsed()
                })
            })
        });
    }

    for lang in ["c", "js", "python"] {
        for (iso, tag) in [(reuse, "reuse"), (Isolation::Fresh, "fresh")] {
            let id = format!("wasm-{lang}/1-filter/{tag}");
            if selected(&id) {
                let m = chain(&rt, &format!("example-{lang}"), 1, iso);
                bench_chain(c, &rt, &id, &m);
            }
        }
    }
}

criterion_group! {
    name = filter_chain;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(filter_chain);

#[allow(dead_code)]
fn _assert_send(m: Arc<FilterManager>) {
    fn is_send<T: Send>(_: T) {}
    is_send(async move { one_request(&m).await });
}
