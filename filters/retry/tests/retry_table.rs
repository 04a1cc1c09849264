//! Envoy retry semantics as Istio configures them (istio-semantics.md §4.4, §4.7).

use Outcome::*;
use filter_retry::{Outcome, Retry, RetryPolicies, Timeouts, grpc_timeout_ms};
use serde_json::{Value, json};

const ROUTE: &str = "vs:ns/r#0";

fn policies(retries: Value) -> RetryPolicies {
    let cfg = if retries.is_null() {
        json!({"routes": {ROUTE: {}}})
    } else {
        json!({"routes": {ROUTE: {"retries": retries}}})
    };
    RetryPolicies::from_json(cfg.to_string().as_bytes()).expect("config compiles")
}

fn retried(p: &RetryPolicies, number: u32, outcome: Outcome, grpc: Option<u32>) -> bool {
    matches!(
        p.on_attempt(Some(ROUTE), number, outcome, grpc, &mut || 3),
        Retry::After { .. }
    )
}

#[test]
fn retry_on_table() {
    // (retries, attempt number, outcome, grpc-status, retried?)
    let table: Vec<(Value, u32, Outcome, Option<u32>, bool)> = vec![
        // Istio default (retries unset): connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes
        (Value::Null, 1, Response(503), None, false), // a plain 503 is NOT retried by default
        (Value::Null, 1, Response(500), None, false),
        (Value::Null, 1, ConnectFailure, None, true),
        (Value::Null, 2, ConnectFailure, None, true),
        (Value::Null, 3, ConnectFailure, None, false), // 2 retries = 3 attempts
        (Value::Null, 1, RefusedStream, None, true),
        (Value::Null, 1, Reset, None, false),
        (Value::Null, 1, Timeout, None, false),
        (Value::Null, 1, Response(200), Some(14), true), // grpc unavailable
        (Value::Null, 1, Response(200), Some(1), true),  // grpc cancelled
        (Value::Null, 1, Response(200), Some(4), false), // deadline-exceeded not in default
        // attempts: 0 disables retries entirely.
        (json!({"attempts": 0}), 1, ConnectFailure, None, false),
        // attempts > 0 without retryOn: the default conditions.
        (json!({"attempts": 4}), 4, ConnectFailure, None, true),
        (json!({"attempts": 4}), 5, ConnectFailure, None, false),
        (json!({"attempts": 4}), 1, Response(503), None, false),
        // 5xx: any 5xx or no response.
        (
            json!({"attempts": 3, "retryOn": "5xx"}),
            1,
            Response(503),
            None,
            true,
        ),
        (
            json!({"attempts": 3, "retryOn": "5xx"}),
            3,
            Response(500),
            None,
            true,
        ),
        (
            json!({"attempts": 3, "retryOn": "5xx"}),
            4,
            Response(500),
            None,
            false,
        ),
        (
            json!({"attempts": 3, "retryOn": "5xx"}),
            1,
            Response(404),
            None,
            false,
        ),
        (
            json!({"attempts": 3, "retryOn": "5xx"}),
            1,
            Reset,
            None,
            true,
        ),
        (
            json!({"attempts": 3, "retryOn": "5xx"}),
            1,
            ConnectFailure,
            None,
            true,
        ),
        (
            json!({"attempts": 3, "retryOn": "5xx"}),
            1,
            RefusedStream,
            None,
            true,
        ),
        (
            json!({"attempts": 3, "retryOn": "5xx"}),
            1,
            Timeout,
            None,
            true,
        ),
        (
            json!({"attempts": 3, "retryOn": "5xx"}),
            1,
            Response(200),
            Some(14),
            false,
        ),
        // gateway-error: 502/503/504 or no response.
        (
            json!({"attempts": 1, "retryOn": "gateway-error"}),
            1,
            Response(502),
            None,
            true,
        ),
        (
            json!({"attempts": 1, "retryOn": "gateway-error"}),
            1,
            Response(504),
            None,
            true,
        ),
        (
            json!({"attempts": 1, "retryOn": "gateway-error"}),
            1,
            Response(500),
            None,
            false,
        ),
        (
            json!({"attempts": 1, "retryOn": "gateway-error"}),
            1,
            Reset,
            None,
            true,
        ),
        // reset: no response only.
        (
            json!({"attempts": 1, "retryOn": "reset"}),
            1,
            Reset,
            None,
            true,
        ),
        (
            json!({"attempts": 1, "retryOn": "reset"}),
            1,
            Timeout,
            None,
            true,
        ),
        (
            json!({"attempts": 1, "retryOn": "reset"}),
            1,
            Response(503),
            None,
            false,
        ),
        // connect-failure / refused-stream only.
        (
            json!({"attempts": 1, "retryOn": "connect-failure"}),
            1,
            ConnectFailure,
            None,
            true,
        ),
        (
            json!({"attempts": 1, "retryOn": "connect-failure"}),
            1,
            Reset,
            None,
            false,
        ),
        (
            json!({"attempts": 1, "retryOn": "connect-failure"}),
            1,
            Timeout,
            None,
            false,
        ),
        (
            json!({"attempts": 1, "retryOn": "refused-stream"}),
            1,
            RefusedStream,
            None,
            true,
        ),
        (
            json!({"attempts": 1, "retryOn": "refused-stream"}),
            1,
            ConnectFailure,
            None,
            false,
        ),
        (
            json!({"attempts": 1, "retryOn": "reset-before-request"}),
            1,
            ConnectFailure,
            None,
            true,
        ),
        (
            json!({"attempts": 1, "retryOn": "reset-before-request"}),
            1,
            Reset,
            None,
            false,
        ),
        // retriable-4xx is 409 only.
        (
            json!({"attempts": 1, "retryOn": "retriable-4xx"}),
            1,
            Response(409),
            None,
            true,
        ),
        (
            json!({"attempts": 1, "retryOn": "retriable-4xx"}),
            1,
            Response(404),
            None,
            false,
        ),
        // Numeric codes become retriable_status_codes.
        (
            json!({"attempts": 2, "retryOn": "503,reset"}),
            1,
            Response(503),
            None,
            true,
        ),
        (
            json!({"attempts": 2, "retryOn": "503,reset"}),
            1,
            Response(502),
            None,
            false,
        ),
        (
            json!({"attempts": 2, "retryOn": "503,reset"}),
            1,
            Reset,
            None,
            true,
        ),
        (
            json!({"attempts": 2, "retryOn": " 429 , 503 "}),
            1,
            Response(429),
            None,
            true,
        ),
        (
            json!({"attempts": 2, "retryOn": "retriable-status-codes"}),
            1,
            Response(503),
            None,
            false,
        ),
        // gRPC conditions read grpc-status.
        (
            json!({"attempts": 1, "retryOn": "deadline-exceeded,internal,resource-exhausted"}),
            1,
            Response(200),
            Some(4),
            true,
        ),
        (
            json!({"attempts": 1, "retryOn": "deadline-exceeded,internal,resource-exhausted"}),
            1,
            Response(200),
            Some(13),
            true,
        ),
        (
            json!({"attempts": 1, "retryOn": "deadline-exceeded,internal,resource-exhausted"}),
            1,
            Response(200),
            Some(8),
            true,
        ),
        (
            json!({"attempts": 1, "retryOn": "deadline-exceeded,internal,resource-exhausted"}),
            1,
            Response(200),
            Some(14),
            false,
        ),
        (
            json!({"attempts": 1, "retryOn": "unavailable"}),
            1,
            Response(503),
            None,
            false,
        ),
        // Gateway API retry as Istio converts it (codes appended).
        (
            json!({"attempts": 2, "retryOn": "connect-failure,refused-stream,unavailable,cancelled,503"}),
            1,
            Response(503),
            None,
            true,
        ),
    ];
    for (retries, number, outcome, grpc, want) in table {
        let p = policies(retries.clone());
        assert_eq!(
            retried(&p, number, outcome, grpc),
            want,
            "{retries} attempt {number} {outcome:?} grpc={grpc:?}"
        );
    }
}

#[test]
fn unknown_route_gets_the_default_and_mesh_default_overrides() {
    let p = RetryPolicies::from_json(b"").unwrap();
    assert!(matches!(
        p.on_attempt(None, 1, ConnectFailure, None, &mut || 0),
        Retry::After { .. }
    ));
    assert_eq!(
        p.on_attempt(Some("unknown"), 1, Response(503), None, &mut || 0),
        Retry::GiveUp
    );
    let p = RetryPolicies::from_json(br#"{"defaultPolicy": {"attempts": 5, "retryOn": "5xx"}, "routes": {"r": {"timeout": "1s"}}}"#).unwrap();
    assert!(matches!(
        p.on_attempt(None, 5, Response(503), None, &mut || 0),
        Retry::After { .. }
    ));
    assert!(matches!(
        p.on_attempt(Some("r"), 1, Response(503), None, &mut || 0),
        Retry::After { .. }
    ));
    let p = RetryPolicies::from_json(br#"{"defaultPolicy": {"attempts": 0}}"#).unwrap();
    assert_eq!(
        p.on_attempt(None, 1, ConnectFailure, None, &mut || 0),
        Retry::GiveUp
    );
}

#[test]
fn backoff_is_fully_jittered_exponential_capped_at_ten_times_base() {
    let p = policies(json!({"attempts": 10, "retryOn": "5xx"}));
    let backoff =
        |n: u32, r: u64| match p.on_attempt(Some(ROUTE), n, Response(503), None, &mut || r) {
            Retry::After { backoff_ms } => backoff_ms,
            Retry::GiveUp => panic!("must retry"),
        };
    // Bounds (2^n - 1) × 25 ms: 25, 75, 175, then 375 capped to 250.
    assert_eq!((backoff(1, 24), backoff(1, 25)), (24, 0));
    assert_eq!((backoff(2, 74), backoff(2, 75)), (74, 0));
    assert_eq!((backoff(3, 174), backoff(3, 175)), (174, 0));
    assert_eq!(
        (backoff(4, 300), backoff(4, 374), backoff(4, 375)),
        (250, 250, 0)
    );
    assert_eq!(backoff(9, 374), 250);
    let p = policies(json!({"attempts": 2, "retryOn": "5xx", "backoff": "100ms"}));
    assert_eq!(
        p.on_attempt(Some(ROUTE), 1, Response(500), None, &mut || 99),
        Retry::After { backoff_ms: 99 }
    );
    assert_eq!(
        p.on_attempt(Some(ROUTE), 2, Response(500), None, &mut || 299),
        Retry::After { backoff_ms: 299 }
    );
}

#[test]
fn timeouts() {
    let p = RetryPolicies::from_json(
        json!({"routes": {
            "t": {"timeout": "2s", "retries": {"attempts": 3, "retryOn": "5xx", "perTryTimeout": "500ms"}},
            "z": {"timeout": "0s"},
            "n": {}
        }})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let t = |route, grpc, header| p.timeouts(Some(route), grpc, header);
    assert_eq!(
        t("t", false, None),
        Timeouts {
            route_ms: Some(2000),
            per_try_ms: Some(500)
        }
    );
    assert_eq!(t("z", false, None), Timeouts::default()); // 0s = disabled
    assert_eq!(t("n", false, None), Timeouts::default()); // default: no timeout
    assert_eq!(t("t", true, Some(5000)).route_ms, Some(2000)); // grpc-timeout capped
    assert_eq!(t("t", true, Some(1000)).route_ms, Some(1000));
    assert_eq!(t("t", true, None).route_ms, Some(2000));
    assert_eq!(t("n", true, Some(3000)).route_ms, Some(3000)); // honoured without a cap
    assert_eq!(t("n", true, None).route_ms, None);
    assert_eq!(t("t", false, Some(1000)).route_ms, Some(2000)); // only for gRPC requests
    for (h, ms) in [
        ("1S", Some(1000)),
        ("2M", Some(120_000)),
        ("1H", Some(3_600_000)),
        ("250m", Some(250)),
        ("5000u", Some(5)),
        ("x", None),
        ("123456789S", None),
        ("10", None),
        ("S", None),
    ] {
        assert_eq!(grpc_timeout_ms(h), ms, "{h}");
    }
}

#[test]
fn the_request_hook_is_needed_only_with_a_configured_timeout() {
    let sets = |cfg: Value| {
        RetryPolicies::from_json(cfg.to_string().as_bytes())
            .unwrap()
            .sets_timeouts()
    };
    // Defaults, retries without perTryTimeout, an explicit 0s timeout: the
    // hook would never emit anything.
    assert!(!sets(json!({})));
    assert!(!sets(json!({"routes": {"n": {}, "z": {"timeout": "0s"}}})));
    assert!(!sets(
        json!({"routes": {"r": {"retries": {"attempts": 3, "retryOn": "5xx"}}}})
    ));
    // A route timeout, a per-try timeout on a route or in the mesh default.
    assert!(sets(json!({"routes": {"n": {}, "t": {"timeout": "2s"}}})));
    assert!(sets(
        json!({"routes": {"r": {"retries": {"attempts": 2, "perTryTimeout": "100ms"}}}})
    ));
    assert!(sets(
        json!({"defaultPolicy": {"attempts": 2, "perTryTimeout": "1s"}})
    ));
    // Every timeout the hook can emit comes from such a policy: without
    // one, `timeouts` is empty for any route and non-gRPC request.
    let p = RetryPolicies::from_json(br#"{"routes": {"n": {}}}"#).unwrap();
    for route in [None, Some("n"), Some("other")] {
        assert_eq!(p.timeouts(route, false, None), Timeouts::default());
    }
}

#[test]
fn validation() {
    let err = |retries: Value| {
        RetryPolicies::from_json(
            json!({"routes": {ROUTE: {"retries": retries}}})
                .to_string()
                .as_bytes(),
        )
        .expect_err("refused")
        .to_string()
    };
    assert!(err(json!({"attempts": -1})).contains("attempts cannot be negative"));
    assert!(
        err(json!({"attempts": 1, "retryOn": "5xx,bogus"}))
            .contains("\"bogus\" is not a valid retryOn policy")
    );
    assert!(
        err(json!({"attempts": 1, "retryOn": "599"}))
            .contains("\"599\" is not a valid retryOn policy")
    );
}
