//! Conformance of the example user filter built from Rust, JavaScript,
//! Python and C sources (`filters/examples/`): the same table of cases runs
//! against each language's component, through the real runtime.
//!
//! The components come from `scripts/build-guests.sh` (run it first; the
//! tests refuse components older than their sources).

mod support;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use waypoint::filter::{
    Capability, Chain, ChainEntry, FilterRuntime, FilterSpec, Isolation, LoadError, LoadedFilter,
    RequestFilters, RuntimeConfig, Verdict,
};

const EXAMPLES: [&str; 4] = ["example-rust", "example-js", "example-python", "example-c"];

/// Fails unless `scripts/build-guests.sh` built the examples from the
/// current sources (`--list` compares input hashes; it builds nothing).
fn check_examples_are_current() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let script = std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("../scripts/build-guests.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg("--list")
            .output()
            .expect("cannot run scripts/build-guests.sh --list");
        let list = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "scripts/build-guests.sh --list failed:\n{list}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for name in EXAMPLES {
            let line = list
                .lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("{name} is not a guest of scripts/build-guests.sh"));
            assert!(
                line.ends_with(" cached"),
                "{name} was not built from the current sources; run scripts/build-guests.sh ({line})"
            );
        }
    });
}

/// One runtime for the whole test process (the pooling allocator reserves
/// address space per engine), with a compilation cache so that the many
/// loads of one component compile it once.
fn runtime() -> Arc<FilterRuntime> {
    static RT: OnceLock<(Arc<FilterRuntime>, tempfile::TempDir)> = OnceLock::new();
    RT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = std::env::var_os("MESH_WASM_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.path().to_path_buf());
        let rt = FilterRuntime::new(RuntimeConfig {
            pooling: true,
            cache_dir: Some(cache_dir),
            compiler: None,
        })
        .unwrap();
        (rt, dir)
    })
    .0
    .clone()
}

fn module(lang: &str) -> Arc<[u8]> {
    check_examples_are_current();
    support::guest(&format!("example-{lang}"))
}

fn spec(name: &str, config: &str, capabilities: &[Capability]) -> FilterSpec {
    let mut s = FilterSpec::new(name);
    s.config = config.as_bytes().to_vec();
    s.capabilities = capabilities.to_vec();
    s
}

async fn load(lang: &str, spec: FilterSpec) -> Result<Arc<LoadedFilter>, LoadError> {
    runtime().load(spec, module(lang), None).await
}

/// What one request through the filter produced.
enum Outcome {
    /// Forwarded upstream with these request headers.
    Forwarded(http::HeaderMap),
    /// Answered locally.
    Responded(http::Response<bytes::Bytes>),
}

async fn request(filter: &Arc<LoadedFilter>, path_and_query: &str) -> Outcome {
    let chain = Chain::new(vec![ChainEntry {
        stable: filter.clone(),
        canary: None,
    }]);
    let mut rf = RequestFilters::new(&chain, support::conn());
    let (mut parts, ()) = http::Request::get(format!(
        "http://web.default.svc.cluster.local{path_and_query}"
    ))
    .header("user-agent", "conformance")
    .body(())
    .unwrap()
    .into_parts();
    let verdict = rf.on_request_headers(&mut parts).await;
    assert!(
        rf.failures().is_empty(),
        "filter failed: {:?}",
        rf.failures()
    );
    match verdict {
        Verdict::Continue => Outcome::Forwarded(parts.headers),
        Verdict::Respond(resp) => Outcome::Responded(resp),
    }
}

async fn expect_forwarded(filter: &Arc<LoadedFilter>, lang: &str, path: &str) {
    match request(filter, path).await {
        Outcome::Forwarded(h) => {
            let tags: Vec<_> = h.get_all("x-filter-lang").iter().collect();
            assert_eq!(tags, [lang], "{lang}: x-filter-lang on {path}");
            assert_eq!(
                h["user-agent"], "conformance",
                "{lang}: other headers kept on {path}"
            );
        }
        Outcome::Responded(r) => panic!(
            "{lang}: {path} answered {} instead of forwarded",
            r.status()
        ),
    }
}

async fn expect_blocked(filter: &Arc<LoadedFilter>, lang: &str, path: &str) {
    match request(filter, path).await {
        Outcome::Responded(r) => {
            assert_eq!(r.status(), 403, "{lang}: status on {path}");
            assert_eq!(
                std::str::from_utf8(r.body()).unwrap(),
                format!("blocked by {lang} filter"),
                "{lang}: body on {path}"
            );
            assert_eq!(
                r.headers()["content-type"],
                "text/plain",
                "{lang}: content-type"
            );
        }
        Outcome::Forwarded(_) => panic!("{lang}: {path} was forwarded instead of blocked"),
    }
}

/// `requests_total{lang}` of filter `name`, as the host records it
/// (`wasm_filter_<name>_requests`, exposed with `_total`).
fn requests_total(name: &str, lang: &str) -> Option<u64> {
    let full = format!("wasm_filter_{}_requests", name.replace('-', "_"));
    runtime()
        .metrics()
        .guest()
        .counter_value(&full, &[("lang", lang)])
}

/// The whole table for one language.
async fn conformance(lang: &str) {
    // Default configuration: tag, block `/blocked` (exact path), count.
    let name = format!("conf-{lang}-default");
    let f = load(lang, spec(&name, "", &[Capability::Metrics]))
        .await
        .unwrap_or_else(|e| panic!("{lang}: {e}"));
    assert_eq!(
        requests_total(&name, lang),
        None,
        "{lang}: counted before any request"
    );
    expect_forwarded(&f, lang, "/hello").await;
    expect_blocked(&f, lang, "/blocked").await;
    expect_forwarded(&f, lang, "/blocked/child").await;
    expect_blocked(&f, lang, "/blocked?q=1").await;
    expect_forwarded(&f, lang, "/").await;
    assert_eq!(
        requests_total(&name, lang),
        Some(5),
        "{lang}: requests_total"
    );

    // A configured path, kept by every instance (fresh instance per call:
    // each one runs `configure` again).
    for (suffix, isolation) in [("reuse", Isolation::default()), ("fresh", Isolation::Fresh)] {
        let name = format!("conf-{lang}-custom-{suffix}");
        let mut s = spec(
            &name,
            r#"{"blocked_path": "/deny"}"#,
            &[Capability::Metrics],
        );
        s.isolation = isolation;
        let f = load(lang, s)
            .await
            .unwrap_or_else(|e| panic!("{lang}: {e}"));
        for _ in 0..2 {
            expect_blocked(&f, lang, "/deny").await;
            expect_forwarded(&f, lang, "/blocked").await;
        }
        assert_eq!(
            requests_total(&name, lang),
            Some(4),
            "{lang} {suffix}: requests_total"
        );
    }

    // Whitespace-only configuration means "no configuration".
    let f = load(
        lang,
        spec(&format!("conf-{lang}-blank"), " \n", &[Capability::Metrics]),
    )
    .await
    .unwrap_or_else(|e| panic!("{lang}: blank config refused: {e}"));
    expect_blocked(&f, lang, "/blocked").await;

    // Invalid configurations are refused at load time with a clear message.
    for bad in [
        "{not json",
        "[1, 2]",
        "\"/blocked\"",
        r#"{"blocked_path": 5}"#,
        r#"{"blocked_path": "no-slash"}"#,
        r#"{"blocked_path": "/x", "extra": true}"#,
        r#"{"blocked_path": "/x"} trailing"#,
    ] {
        match load(
            lang,
            spec(&format!("conf-{lang}-bad"), bad, &[Capability::Metrics]),
        )
        .await
        {
            Err(LoadError::Config { reason, .. }) => assert!(
                reason.starts_with("invalid config: "),
                "{lang}: unclear message for {bad:?}: {reason}"
            ),
            Err(e) => panic!("{lang}: config {bad:?} refused for the wrong reason: {e}"),
            Ok(_) => panic!("{lang}: config {bad:?} accepted"),
        }
    }

    // The filter imports the metrics capability and no other: refused
    // without the grant, accepted with only that grant (above).
    match load(lang, spec(&format!("conf-{lang}-nogrant"), "", &[])).await {
        Err(LoadError::CapabilityNotGranted {
            capability, import, ..
        }) => {
            assert_eq!(capability, "metrics", "{lang}");
            assert_eq!(import, "mesh:filter/metrics@0.1.0", "{lang}");
        }
        Err(e) => panic!("{lang}: refused for the wrong reason: {e}"),
        Ok(_) => panic!("{lang}: loaded without the metrics grant"),
    }
    let rt = runtime();
    let component = wasmtime::component::Component::new(rt.engine(), &*module(lang)).unwrap();
    let mesh_imports: Vec<String> = component
        .component_type()
        .imports(rt.engine())
        .map(|(name, _)| name.to_string())
        .filter(|n| n.starts_with("mesh:"))
        .collect();
    let mut sorted = mesh_imports.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["mesh:filter/metrics@0.1.0", "mesh:filter/types@0.1.0"],
        "{lang}: mesh:filter imports"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_example_conforms() {
    conformance("rust").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_example_conforms() {
    conformance("js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_example_conforms() {
    conformance("python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_example_conforms() {
    conformance("c").await;
}
