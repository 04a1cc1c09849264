//! The filter runtime's guarantees, tested with real guest components
//! (built from `filters/testdata` by scripts/build-guests.sh): CPU deadline,
//! memory cap, trap containment, capability grants, configuration
//! validation, atomic hot swap.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::{conn, get, guest, response, runtime};
use waypoint::filter::{
    Capability, DesiredFilter, FailPolicy, FailureKind, FilterManager, FilterSpec, LoadError,
    RequestFilters, Verdict,
};

fn spec(name: &str) -> FilterSpec {
    FilterSpec::new(name)
}

async fn manager_with(spec: FilterSpec, module: &str) -> FilterManager {
    let m = FilterManager::new(runtime());
    let report = m
        .apply(vec![DesiredFilter {
            spec,
            module: guest(module),
            sha256: None,
            canary: None,
        }])
        .await;
    assert!(report.is_ok(), "load failed: {:?}", report.refused);
    m
}

#[tokio::test]
async fn a_filter_mutates_request_and_response() {
    let m = manager_with(spec("version"), "test-version-v1").await;
    let mut rf = RequestFilters::new(&m.current(), conn());
    let mut req = get("/");
    assert!(matches!(
        rf.on_request_headers(&mut req).await,
        Verdict::Continue
    ));
    assert_eq!(req.headers["x-filter-version"], "1");
    let mut resp = response(200);
    assert!(matches!(
        rf.on_response_headers(&mut resp).await,
        Verdict::Continue
    ));
    assert_eq!(resp.headers["x-filter-version"], "1");
}

#[tokio::test(flavor = "current_thread")]
async fn an_infinite_loop_is_stopped_at_its_deadline_without_stalling_others() {
    let mut s = spec("spin");
    s.limits.cpu_deadline = Duration::from_millis(20);
    let m = Arc::new(manager_with(s, "test-loop").await);
    let name_version = {
        let c = m.current();
        let f = c.get("spin").unwrap();
        (f.name().to_string(), f.version().to_string())
    };

    // A counter on the same single-threaded runtime: if the spinning guest
    // did not yield, it could not count until the guest was stopped.
    let ticks = Arc::new(AtomicU64::new(0));
    let t = ticks.clone();
    let counter = tokio::spawn(async move {
        loop {
            t.fetch_add(1, Ordering::Relaxed);
            tokio::task::yield_now().await;
        }
    });

    let start = Instant::now();
    let mut rf = RequestFilters::new(&m.current(), conn());
    let verdict = rf.on_request_headers(&mut get("/spin")).await;
    let took = start.elapsed();
    counter.abort();

    let Verdict::Respond(resp) = verdict else {
        panic!("a timed-out fail-closed filter must answer locally")
    };
    assert_eq!(resp.status(), 503);
    assert_eq!(rf.failures()[0].kind, FailureKind::Timeout);
    assert_eq!(rf.response_flags(), vec!["WF"]);
    assert!(
        took >= Duration::from_millis(15),
        "stopped too early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(500),
        "not stopped in time: {took:?}"
    );
    // The guest yields at least once per millisecond of its spinning.
    let ticks = ticks.load(Ordering::Relaxed);
    assert!(
        u128::from(ticks) >= took.as_millis(),
        "other tasks ran only {ticks} times while the guest spun for {took:?}"
    );
    let rt = runtime();
    assert_eq!(
        rt.metrics()
            .errors_of(&name_version.0, &name_version.1, "timeout"),
        1
    );

    // The same filter keeps serving other requests.
    let mut rf = RequestFilters::new(&m.current(), conn());
    let mut req = get("/fast");
    assert!(matches!(
        rf.on_request_headers(&mut req).await,
        Verdict::Continue
    ));
    assert_eq!(req.headers["x-test"], "fast");
}

/// A guest whose time is spent in a host function burns almost no fuel:
/// the host charges that time to the call, so the deadline still holds.
#[tokio::test]
async fn a_loop_over_an_expensive_host_call_is_stopped_at_its_deadline() {
    let mut s = spec("verify-loop");
    s.capabilities.push(Capability::Crypto);
    s.limits.cpu_deadline = Duration::from_millis(20);
    let m = manager_with(s, "test-ungranted").await;
    let start = Instant::now();
    let mut rf = RequestFilters::new(&m.current(), conn());
    let verdict = rf.on_request_headers(&mut get("/verify-loop")).await;
    let took = start.elapsed();
    assert!(matches!(verdict, Verdict::Respond(_)));
    assert_eq!(rf.failures()[0].kind, FailureKind::Timeout);
    assert!(
        took >= Duration::from_millis(15),
        "stopped too early: {took:?}"
    );
    // One yield interval of this loop is thousands of P-521 verifications
    // (seconds): only the host's charge stops it this early.
    assert!(
        took < Duration::from_millis(300),
        "not stopped in time: {took:?}"
    );
}

#[tokio::test]
async fn fail_open_skips_a_failing_filter() {
    let mut s = spec("spin-open");
    s.limits.cpu_deadline = Duration::from_millis(5);
    s.fail_policy = FailPolicy::FailOpen;
    let m = manager_with(s, "test-loop").await;
    let mut rf = RequestFilters::new(&m.current(), conn());
    assert!(matches!(
        rf.on_request_headers(&mut get("/spin")).await,
        Verdict::Continue
    ));
    assert_eq!(rf.failures().len(), 1);
    assert!(rf.response_flags().is_empty());
}

#[tokio::test]
async fn allocating_past_the_memory_cap_is_contained() {
    let mut s = spec("hog");
    s.limits.memory_bytes = 8 << 20;
    // Filling 8 MiB of fresh pages takes a few ms of CPU on a loaded VM
    // (page faults, fuel for `memory.fill`): this test is about the memory
    // cap, so the CPU deadline must not be what stops the guest.
    s.limits.cpu_deadline = Duration::from_millis(500);
    let m = manager_with(s, "test-oom").await;
    let mut rf = RequestFilters::new(&m.current(), conn());
    let Verdict::Respond(resp) = rf.on_request_headers(&mut get("/hog")).await else {
        panic!("an out-of-memory fail-closed filter must answer locally")
    };
    assert_eq!(resp.status(), 503);
    assert_eq!(rf.failures()[0].kind, FailureKind::OutOfMemory);
    // A fresh instance serves the next request.
    let mut rf = RequestFilters::new(&m.current(), conn());
    assert!(matches!(
        rf.on_request_headers(&mut get("/fast")).await,
        Verdict::Continue
    ));
}

#[tokio::test]
async fn a_panicking_filter_traps_only_its_request() {
    let m = manager_with(spec("panics"), "test-panic").await;
    let mut rf = RequestFilters::new(&m.current(), conn());
    let Verdict::Respond(resp) = rf.on_request_headers(&mut get("/panic")).await else {
        panic!("a trapping fail-closed filter must answer locally")
    };
    assert_eq!(resp.status(), 503);
    assert_eq!(rf.failures()[0].kind, FailureKind::Trap);
    let mut rf = RequestFilters::new(&m.current(), conn());
    assert!(matches!(
        rf.on_request_headers(&mut get("/fast")).await,
        Verdict::Continue
    ));
}

#[tokio::test]
async fn an_ungranted_capability_is_refused_at_load() {
    let err = runtime()
        .load(spec("needs-crypto"), guest("test-ungranted"), None)
        .await
        .err()
        .expect("loading without the grant must fail");
    match &err {
        LoadError::CapabilityNotGranted {
            import, capability, ..
        } => {
            assert!(import.starts_with("mesh:filter/crypto@0.1"), "{import}");
            assert_eq!(capability, "crypto");
        }
        other => panic!("wrong error: {other}"),
    }
    assert!(
        err.to_string()
            .contains("does not grant the `crypto` capability")
    );

    let mut s = spec("needs-crypto");
    s.capabilities.push(Capability::Crypto);
    let f = runtime().load(s, guest("test-ungranted"), None).await;
    assert!(f.is_ok(), "granted load failed: {:?}", f.err());
}

#[tokio::test]
async fn a_rejected_config_or_broken_module_leaves_the_old_version_serving() {
    let m = manager_with(spec("svc"), "test-version-v1").await;
    let v1 = m.current().get("svc").unwrap().digest().to_string();

    // Not a component at all.
    let report = m
        .apply(vec![DesiredFilter {
            spec: spec("svc"),
            module: Arc::from(&b"\0asm garbage"[..]),
            sha256: None,
            canary: None,
        }])
        .await;
    assert!(
        matches!(report.refused[..], [LoadError::Compile { .. }]),
        "{:?}",
        report.refused
    );
    assert_eq!(m.current().get("svc").unwrap().digest(), v1);

    // A component whose configure rejects the config.
    let report = m
        .apply(vec![DesiredFilter {
            spec: spec("svc"),
            module: guest("test-bad-config"),
            sha256: None,
            canary: None,
        }])
        .await;
    match &report.refused[..] {
        [LoadError::Config { reason, .. }] => assert!(reason.contains("test-bad-config")),
        other => panic!("{other:?}"),
    }
    assert_eq!(m.current().get("svc").unwrap().digest(), v1);

    // A digest mismatch.
    let report = m
        .apply(vec![DesiredFilter {
            spec: spec("svc"),
            module: guest("test-version-v2"),
            sha256: Some("sha256:".to_string() + &"0".repeat(64)),
            canary: None,
        }])
        .await;
    assert!(matches!(report.refused[..], [LoadError::Digest { .. }]));

    // Still v1 on requests.
    let mut rf = RequestFilters::new(&m.current(), conn());
    let mut req = get("/");
    rf.on_request_headers(&mut req).await;
    assert_eq!(req.headers["x-filter-version"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_under_200_in_flight_requests_drops_nothing() {
    let mut s = spec("versioned");
    // Each request holds ~30 ms inside the chain (a `delay` action), so
    // hundreds are in flight when the swap happens.
    s.config = br#"{"delay_ms": 30}"#.to_vec();
    let m = Arc::new(manager_with(s.clone(), "test-version-v1").await);
    let (v1, v2) = {
        let v1 = m.current().get("versioned").unwrap().version().to_string();
        let f2 = runtime()
            .load(s.clone(), guest("test-version-v2"), None)
            .await
            .unwrap();
        (v1, f2.version().to_string())
    };

    let failures = Arc::new(AtomicU64::new(0));
    let seen = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let mut tasks = Vec::new();
    for _ in 0..400 {
        let (mgr, failures, seen) = (m.clone(), failures.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let mut rf = RequestFilters::new(&mgr.current(), conn());
            let mut req = get("/");
            match rf.on_request_headers(&mut req).await {
                Verdict::Continue => {}
                Verdict::Respond(_) => {
                    failures.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            let mut resp = response(200);
            rf.on_response_headers(&mut resp).await;
            let (rq, rs) = (
                &req.headers["x-filter-version"],
                &resp.headers["x-filter-version"],
            );
            // A request sees one version from start to end.
            if rq != rs {
                failures.fetch_add(1, Ordering::Relaxed);
            }
            seen[if rq == "1" { 0 } else { 1 }].fetch_add(1, Ordering::Relaxed);
        }));
        tokio::time::sleep(Duration::from_micros(250)).await;
        if tasks.len() == 200 {
            // 200 requests started and still inside their 30 ms delay.
            let swapped = m
                .apply(vec![DesiredFilter {
                    spec: s.clone(),
                    module: guest("test-version-v2"),
                    sha256: None,
                    canary: None,
                }])
                .await;
            assert!(swapped.is_ok(), "{:?}", swapped.refused);
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    let (n1, n2) = (
        seen[0].load(Ordering::Relaxed),
        seen[1].load(Ordering::Relaxed),
    );
    assert!(n1 >= 150 && n2 >= 150, "v1 served {n1}, v2 served {n2}");
    let rt = runtime();
    let metrics = rt.metrics();
    assert!(metrics.invocations_of("versioned", &v2, "request_headers") >= n2);
    let mut text = String::new();
    let mut reg = prometheus_client::registry::Registry::default();
    metrics.register(&mut reg);
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    assert!(
        text.contains(&format!(
            "wasm_filter_active_version{{filter=\"versioned\",version=\"{v2}\"}} 1"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "wasm_filter_active_version{{filter=\"versioned\",version=\"{v1}\"}} 0"
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_cap_bounds_concurrent_calls() {
    let mut s = spec("one-at-a-time");
    s.limits.max_instances = 1;
    s.limits.cpu_deadline = Duration::from_millis(400);
    s.fail_policy = FailPolicy::FailClosed;
    let m = Arc::new(manager_with(s, "test-loop").await);
    // The only instance spins for its whole 400 ms deadline...
    let busy = {
        let m = m.clone();
        tokio::spawn(async move {
            let mut rf = RequestFilters::new(&m.current(), conn());
            let v = rf.on_request_headers(&mut get("/spin")).await;
            (
                matches!(v, Verdict::Respond(_)),
                rf.failures()[0].kind.clone(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ...so a second call cannot get one within the 100 ms wait.
    let mut rf = RequestFilters::new(&m.current(), conn());
    let v = rf.on_request_headers(&mut get("/fast")).await;
    assert!(matches!(v, Verdict::Respond(_)));
    assert_eq!(rf.failures()[0].kind, FailureKind::InstanceLimit);
    assert_eq!(busy.await.unwrap(), (true, FailureKind::Timeout));
    // Once the instance is free again (a new one replaces the timed-out
    // one), calls succeed.
    let mut rf = RequestFilters::new(&m.current(), conn());
    let mut req = get("/fast");
    assert!(matches!(
        rf.on_request_headers(&mut req).await,
        Verdict::Continue
    ));
    assert_eq!(req.headers["x-test"], "fast");
}

/// The waypoint binary compiles filters in a child process by default
/// (`--compile-in-process` turns it off): the component it maps must behave
/// exactly like one compiled in-process, and a module the child cannot
/// compile is refused with the compiler's message while the old version
/// keeps serving.
#[tokio::test]
async fn components_compiled_in_a_child_process_load_and_bad_ones_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let rc = waypoint::filter::RuntimeConfig {
        compiler: Some(waypoint::filter::OutOfProcessCompiler {
            program: env!("CARGO_BIN_EXE_waypoint").into(),
            args: vec![waypoint::cli::COMPILE_SUBCOMMAND.to_string()],
            work_dir: work.path().join("compile"),
        }),
        ..Default::default()
    };
    let m = FilterManager::new(waypoint::filter::FilterRuntime::new(rc).unwrap());
    let load = |module: Arc<[u8]>| DesiredFilter {
        spec: spec("svc"),
        module,
        sha256: None,
        canary: None,
    };
    let report = m.apply(vec![load(guest("test-version-v1"))]).await;
    assert!(report.is_ok(), "{:?}", report.refused);
    let mut rf = RequestFilters::new(&m.current(), conn());
    let mut req = get("/");
    assert!(matches!(
        rf.on_request_headers(&mut req).await,
        Verdict::Continue
    ));
    assert_eq!(req.headers["x-filter-version"], "1");

    let report = m.apply(vec![load(Arc::from(&b"\0asm garbage"[..]))]).await;
    match &report.refused[..] {
        [LoadError::Compile { reason, .. }] => assert!(
            reason.contains("failed to parse WebAssembly module") && !reason.contains('\n'),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    let mut rf = RequestFilters::new(&m.current(), conn());
    let mut req = get("/");
    rf.on_request_headers(&mut req).await;
    assert_eq!(req.headers["x-filter-version"], "1");
    // Nothing is left behind in the work directory.
    let left: Vec<_> = std::fs::read_dir(work.path().join("compile"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
