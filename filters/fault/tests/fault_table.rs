//! VirtualService fault injection (istio-semantics.md §4.5, §4.7).

use filter_fault::{ABORT_BODY, Faults};
use serde_json::{Value, json};

fn faults(fault: Value) -> Faults {
    Faults::from_json(json!({"routes": {"r": fault}}).to_string().as_bytes())
        .expect("config compiles")
}

/// SplitMix64: a seeded generator standing in for the host's `random`.
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// (fault, draws, expected delay, expected abort status, flag)
type Row = (
    Value,
    Vec<u64>,
    Option<u32>,
    Option<u16>,
    Option<&'static str>,
);

#[test]
fn abort_and_delay_table() {
    // (fault, draws, expected delay, expected abort status, flag)
    let table: Vec<Row> = vec![
        (
            json!({"abort": {"httpStatus": 503, "percentage": {"value": 100}}}),
            vec![999_999],
            None,
            Some(503),
            Some("FI"),
        ),
        // §4.7: abort without percentage ⇒ no abort.
        (
            json!({"abort": {"httpStatus": 503}}),
            vec![0],
            None,
            None,
            None,
        ),
        (
            json!({"delay": {"fixedDelay": "5s"}}),
            vec![0],
            None,
            None,
            None,
        ), // unset percentage ⇒ 0%
        (
            json!({"delay": {"fixedDelay": "5s", "percentage": {"value": 100}}}),
            vec![999_999],
            Some(5000),
            None,
            Some("DI"),
        ),
        (
            json!({"delay": {"fixedDelay": "7s", "percent": 50}}),
            vec![49],
            Some(7000),
            None,
            Some("DI"),
        ), // deprecated per-hundred
        (
            json!({"delay": {"fixedDelay": "7s", "percent": 50}}),
            vec![50],
            None,
            None,
            None,
        ),
        // 10% = 100000 per million.
        (
            json!({"abort": {"httpStatus": 400, "percentage": {"value": 10}}}),
            vec![99_999],
            None,
            Some(400),
            Some("FI"),
        ),
        (
            json!({"abort": {"httpStatus": 400, "percentage": {"value": 10}}}),
            vec![100_000],
            None,
            None,
            None,
        ),
        (
            json!({"abort": {"httpStatus": 400, "percentage": {"value": 0.0001}}}),
            vec![0],
            None,
            Some(400),
            Some("FI"),
        ),
        (
            json!({"abort": {"httpStatus": 400, "percentage": {"value": 0.0001}}}),
            vec![1],
            None,
            None,
            None,
        ),
        // Delay drawn first, then abort.
        (
            json!({"delay": {"fixedDelay": "100ms", "percentage": {"value": 100}},
                "abort": {"httpStatus": 500, "percentage": {"value": 50}}}),
            vec![0, 0],
            Some(100),
            Some(500),
            Some("DI,FI"),
        ),
        (
            json!({"delay": {"fixedDelay": "100ms", "percentage": {"value": 50}},
                "abort": {"httpStatus": 500, "percentage": {"value": 50}}}),
            vec![600_000, 0],
            None,
            Some(500),
            Some("FI"),
        ),
    ];
    for (fault, draws, delay, abort, flag) in table {
        let f = faults(fault.clone());
        let mut it = draws.iter().copied();
        let got = f.evaluate(Some("r"), false, &mut || it.next().expect("too many draws"));
        assert_eq!(got.delay_ms, delay, "{fault}");
        assert_eq!(got.abort.as_ref().map(|a| a.status), abort, "{fault}");
        assert_eq!(got.response_flag(), flag, "{fault}");
        if let Some(a) = got.abort {
            assert_eq!(a.body, ABORT_BODY.as_bytes());
        }
    }
}

#[test]
fn percentages_hold_statistically() {
    let f = faults(
        json!({"abort": {"httpStatus": 503, "percentage": {"value": 25}},
                          "delay": {"fixedDelay": "1ms", "percentage": {"value": 50}}}),
    );
    let mut rng = SplitMix(1);
    let n = 20_000;
    let (mut aborted, mut delayed) = (0, 0);
    for _ in 0..n {
        let i = f.evaluate(Some("r"), false, &mut || rng.next());
        aborted += usize::from(i.abort.is_some());
        delayed += usize::from(i.delay_ms.is_some());
    }
    assert!((4700..=5300).contains(&aborted), "aborted {aborted}/{n}");
    assert!((9700..=10300).contains(&delayed), "delayed {delayed}/{n}");
}

#[test]
fn other_routes_and_grpc() {
    let f = faults(json!({"abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 100}}}));
    assert_eq!(
        f.evaluate(Some("other"), false, &mut || 0),
        Default::default()
    );
    assert_eq!(f.evaluate(None, false, &mut || 0), Default::default());
    let a = f.evaluate(Some("r"), true, &mut || 0).abort.unwrap();
    assert_eq!(a.status, 200);
    assert!(a.headers.contains(&("grpc-status".into(), "14".into())));
    assert!(
        a.headers
            .contains(&("content-type".into(), "application/grpc".into()))
    );
    // An HTTP abort sent to a gRPC client is a gRPC reply (Envoy local reply mapping).
    let f = faults(json!({"abort": {"httpStatus": 403, "percentage": {"value": 100}}}));
    let a = f.evaluate(Some("r"), true, &mut || 0).abort.unwrap();
    assert_eq!((a.status, a.headers[1].1.as_str()), (200, "7"));
    let a = f.evaluate(Some("r"), false, &mut || 0).abort.unwrap();
    assert_eq!(a.status, 403);
}

#[test]
fn validation() {
    let err = |fault: Value| {
        Faults::from_json(json!({"routes": {"r": fault}}).to_string().as_bytes())
            .expect_err("refused")
            .to_string()
    };
    assert!(err(json!({})).contains("must have an abort and/or a delay"));
    assert!(err(json!({"abort": {"httpStatus": 700}})).contains("not in range 200-599"));
    assert!(err(json!({"abort": {"grpcStatus": "14"}})).contains("is not supported"));
    assert!(
        err(json!({"abort": {"httpStatus": 503, "percentage": {"value": 101}}}))
            .contains("neither 0.0, nor in range")
    );
}

/// Valid in Istio and injecting nothing: an abort without an error type
/// (Istio warns) and a delay without `fixedDelay`. They must not refuse the
/// whole fault configuration of the waypoint.
#[test]
fn an_abort_without_error_type_and_a_delay_without_duration_inject_nothing() {
    for fault in [
        json!({"abort": {"percentage": {"value": 100}}}),
        json!({"delay": {"percentage": {"value": 100}}}),
    ] {
        let f = faults(fault.clone());
        let out = f.evaluate(Some("r"), false, &mut || 0);
        assert!(out.abort.is_none() && out.delay_ms.is_none(), "{fault}");
    }
}
