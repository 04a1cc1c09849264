//! Outlier detection, as Envoy runs it for Istio's `outlierDetection`
//! (success-rate ejection is disabled by Istio, so only the consecutive
//! error detectors exist):
//!
//! 1. Every attempt reports a result for its host. With
//!    `splitExternalLocalOriginErrors: false`, local failures are mapped to
//!    HTTP codes (connect failure and reset ⇒ 503, timeout ⇒ 504). A 5xx
//!    bumps the consecutive-5xx counter, a 502/503/504 also the
//!    gateway-error counter; any other status resets both.
//! 2. A counter that *reaches* its threshold asks to eject the host, which
//!    happens when `100 × (ejected + 1) / hosts ≤ maxEjectionPercent`, or
//!    when no host is ejected yet (one host may always be ejected). The
//!    counter is reset either way.
//! 3. An ejection lasts `min(baseEjectionTime × k, maxEjectionTime)`, where
//!    k grows by one per ejection (while `k × base < max + base`); the host
//!    returns at the first `interval` sweep after that, and every sweep at
//!    which it has been back for at least one interval decrements k.
//! 4. Ejected hosts are not chosen by the load balancer (see `lb`) unless
//!    the healthy share falls below `minHealthPercent` (panic).

use std::time::Duration;

use mesh_common::model::OutlierDetection;
use tokio::time::Instant;

/// Envoy's default `consecutive_local_origin_failure`, used when local
/// origin errors are split and no threshold is given.
pub const DEFAULT_CONSECUTIVE_LOCAL_ORIGIN_FAILURES: u32 = 5;

/// What one upstream attempt did, as the router reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// The upstream answered with this status.
    Http(u16),
    /// The connection could not be established.
    ConnectFailed,
    /// The stream was reset or the connection dropped before a response.
    Reset,
    /// The per-try timeout elapsed.
    Timeout,
}

/// Why a host was ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EjectionType {
    /// `consecutive5xxErrors`.
    Consecutive5xx,
    /// `consecutiveGatewayErrors`.
    ConsecutiveGatewayFailure,
    /// `consecutiveLocalOriginFailures` (split mode).
    ConsecutiveLocalOriginFailure,
}

/// Per-host detector state.
#[derive(Debug, Default, Clone)]
pub struct Monitor {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    consecutive_local: u32,
    /// Set while ejected.
    ejected_at: Option<Instant>,
    /// Envoy's `ejectTimeBackoff` (k).
    backoff: u32,
    last_unejection: Option<Instant>,
    /// Ejections so far (admin output).
    pub num_ejections: u64,
}

impl Monitor {
    /// Is the host ejected now?
    pub fn is_ejected(&self) -> bool {
        self.ejected_at.is_some()
    }

    /// The current ejection multiplier.
    pub fn backoff(&self) -> u32 {
        self.backoff
    }

    /// (consecutive 5xx, consecutive gateway errors, consecutive local failures)
    pub fn counters(&self) -> (u32, u32, u32) {
        (
            self.consecutive_5xx,
            self.consecutive_gateway,
            self.consecutive_local,
        )
    }
}

/// The detector settings of one cluster.
#[derive(Debug, Clone)]
pub struct Detector {
    cfg: OutlierDetection,
}

impl Detector {
    /// A detector with the resolved settings (operator filled Envoy's
    /// defaults).
    pub fn new(cfg: OutlierDetection) -> Self {
        Detector { cfg }
    }

    /// The settings.
    pub fn config(&self) -> &OutlierDetection {
        &self.cfg
    }

    /// Sweep interval.
    pub fn interval(&self) -> Duration {
        self.cfg.interval.max(Duration::from_millis(1))
    }

    fn local_threshold(&self) -> u32 {
        match self.cfg.consecutive_local_origin_failures {
            0 => DEFAULT_CONSECUTIVE_LOCAL_ORIGIN_FAILURES,
            n => n,
        }
    }

    /// Records one result; returns the detector that fired, if any. The
    /// caller then calls [`Detector::try_eject`].
    pub fn record(&self, m: &mut Monitor, r: AttemptResult) -> Option<EjectionType> {
        if self.cfg.split_external_local_origin_errors {
            match r {
                AttemptResult::ConnectFailed | AttemptResult::Reset | AttemptResult::Timeout => {
                    m.consecutive_local += 1;
                    if m.consecutive_local == self.local_threshold() {
                        return Some(EjectionType::ConsecutiveLocalOriginFailure);
                    }
                    None
                }
                AttemptResult::Http(code) => {
                    m.consecutive_local = 0;
                    self.http_code(m, code)
                }
            }
        } else {
            let code = match r {
                AttemptResult::Http(c) => c,
                AttemptResult::ConnectFailed | AttemptResult::Reset => 503,
                AttemptResult::Timeout => 504,
            };
            self.http_code(m, code)
        }
    }

    fn http_code(&self, m: &mut Monitor, code: u16) -> Option<EjectionType> {
        // What the consecutive-5xx detector counts: every 5xx, or the
        // DestinationRule's `outlierDetectionHttpErrorCodes`.
        let error = if self.cfg.http_error_codes.is_empty() {
            (500..600).contains(&code)
        } else {
            self.cfg.http_error_codes.contains(&code)
        };
        let gateway = matches!(code, 502..=504);
        if !error && !gateway {
            m.consecutive_5xx = 0;
            m.consecutive_gateway = 0;
            return None;
        }
        let mut fired = None;
        if gateway {
            m.consecutive_gateway += 1;
            if self.cfg.consecutive_gateway_errors > 0
                && m.consecutive_gateway == self.cfg.consecutive_gateway_errors
            {
                fired = Some(EjectionType::ConsecutiveGatewayFailure);
            }
        } else {
            m.consecutive_gateway = 0;
        }
        if error {
            m.consecutive_5xx += 1;
            if self.cfg.consecutive_5xx_errors > 0
                && m.consecutive_5xx == self.cfg.consecutive_5xx_errors
            {
                fired = Some(EjectionType::Consecutive5xx);
            }
        } else {
            m.consecutive_5xx = 0;
        }
        fired
    }

    /// Ejects the host if the cluster's ejection budget allows;
    /// `ejected_now` hosts of `total` are ejected at the moment. Resets the
    /// counter of the detector that fired. Returns whether it ejected.
    pub fn try_eject(
        &self,
        m: &mut Monitor,
        kind: EjectionType,
        ejected_now: usize,
        total: usize,
        now: Instant,
    ) -> bool {
        match kind {
            EjectionType::Consecutive5xx => m.consecutive_5xx = 0,
            EjectionType::ConsecutiveGatewayFailure => m.consecutive_gateway = 0,
            EjectionType::ConsecutiveLocalOriginFailure => m.consecutive_local = 0,
        }
        if m.is_ejected() || total == 0 {
            return false;
        }
        let percent = 100.0 * (ejected_now as f64 + 1.0) / total as f64;
        let allowed =
            percent <= f64::from(self.cfg.max_ejection_percent.min(100)) || ejected_now == 0;
        if !allowed {
            return false;
        }
        m.ejected_at = Some(now);
        m.num_ejections += 1;
        let base = self.cfg.base_ejection_time;
        let max = self.max_ejection_time();
        if base * m.backoff < max + base {
            m.backoff += 1;
        }
        true
    }

    fn max_ejection_time(&self) -> Duration {
        self.cfg.max_ejection_time.max(self.cfg.base_ejection_time)
    }

    /// How long the current ejection lasts.
    pub fn ejection_duration(&self, m: &Monitor) -> Duration {
        (self.cfg.base_ejection_time * m.backoff).min(self.max_ejection_time())
    }

    /// The interval sweep for one host: returns it to service when its time
    /// is up, and decrements k for hosts healthy for a whole interval.
    /// Returns true when the host was returned.
    pub fn sweep(&self, m: &mut Monitor, now: Instant) -> bool {
        if let Some(at) = m.ejected_at {
            if self.ejection_duration(m) <= now.saturating_duration_since(at) {
                m.ejected_at = None;
                m.consecutive_5xx = 0;
                m.consecutive_gateway = 0;
                m.consecutive_local = 0;
                m.last_unejection = Some(now);
                return true;
            }
            return false;
        }
        if let Some(back) = m.last_unejection
            && now.saturating_duration_since(back) >= self.interval()
            && m.backoff > 0
        {
            m.backoff -= 1;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn od(c5xx: u32, gw: u32) -> Detector {
        Detector::new(OutlierDetection {
            consecutive_5xx_errors: c5xx,
            consecutive_gateway_errors: gw,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            ..OutlierDetection::default()
        })
    }

    /// `outlierDetectionHttpErrorCodes` redefines what the 5xx detector
    /// counts: the listed codes (4xx included), not the other 5xx.
    #[test]
    fn http_error_codes_replace_5xx_for_the_5xx_detector() {
        let d = Detector::new(OutlierDetection {
            consecutive_5xx_errors: 2,
            http_error_codes: vec![429, 500],
            ..OutlierDetection::default()
        });
        let mut m = Monitor::default();
        assert_eq!(d.record(&mut m, AttemptResult::Http(429)), None);
        assert_eq!(
            d.record(&mut m, AttemptResult::Http(429)),
            Some(EjectionType::Consecutive5xx)
        );
        let mut m = Monitor::default();
        assert_eq!(d.record(&mut m, AttemptResult::Http(500)), None);
        assert_eq!(
            d.record(&mut m, AttemptResult::Http(501)),
            None,
            "not listed: resets"
        );
        assert_eq!(d.record(&mut m, AttemptResult::Http(500)), None);
    }

    #[test]
    fn consecutive_5xx_fires_exactly_at_threshold_and_success_resets() {
        let d = od(3, 0);
        let mut m = Monitor::default();
        assert_eq!(d.record(&mut m, AttemptResult::Http(500)), None);
        assert_eq!(d.record(&mut m, AttemptResult::Http(503)), None);
        assert_eq!(d.record(&mut m, AttemptResult::Http(200)), None);
        assert_eq!(d.record(&mut m, AttemptResult::Http(500)), None);
        assert_eq!(d.record(&mut m, AttemptResult::Reset), None);
        assert_eq!(
            d.record(&mut m, AttemptResult::Timeout),
            Some(EjectionType::Consecutive5xx),
            "local failures count as 5xx when not split"
        );
        assert_eq!(d.record(&mut m, AttemptResult::Http(404)), None);
        assert_eq!(m.counters(), (0, 0, 0));
    }

    #[test]
    fn gateway_errors_count_502_to_504_only() {
        let d = od(0, 2);
        let mut m = Monitor::default();
        assert_eq!(d.record(&mut m, AttemptResult::Http(502)), None);
        assert_eq!(
            d.record(&mut m, AttemptResult::Http(500)),
            None,
            "500 resets the gateway counter"
        );
        assert_eq!(d.record(&mut m, AttemptResult::Http(504)), None);
        assert_eq!(
            d.record(&mut m, AttemptResult::ConnectFailed),
            Some(EjectionType::ConsecutiveGatewayFailure)
        );
    }

    #[test]
    fn split_mode_counts_local_failures_separately() {
        let mut cfg = od(2, 0).cfg;
        cfg.split_external_local_origin_errors = true;
        cfg.consecutive_local_origin_failures = 2;
        let d = Detector::new(cfg);
        let mut m = Monitor::default();
        assert_eq!(d.record(&mut m, AttemptResult::ConnectFailed), None);
        assert_eq!(
            d.record(&mut m, AttemptResult::Http(500)),
            None,
            "5xx counter at 1, local reset"
        );
        assert_eq!(d.record(&mut m, AttemptResult::Timeout), None);
        assert_eq!(
            d.record(&mut m, AttemptResult::Timeout),
            Some(EjectionType::ConsecutiveLocalOriginFailure)
        );
    }

    #[test]
    fn ejection_budget_allows_one_host_then_max_percent() {
        let d = od(1, 0);
        let now = Instant::now();
        let mut a = Monitor::default();
        assert!(
            d.try_eject(&mut a, EjectionType::Consecutive5xx, 0, 3, now),
            "first host always"
        );
        let mut b = Monitor::default();
        assert!(
            !d.try_eject(&mut b, EjectionType::Consecutive5xx, 1, 3, now),
            "2/3 > 10%"
        );
        let mut cfg = d.cfg.clone();
        cfg.max_ejection_percent = 100;
        let d = Detector::new(cfg);
        assert!(d.try_eject(&mut b, EjectionType::Consecutive5xx, 1, 3, now));
    }

    #[test]
    fn ejection_time_grows_caps_and_decays() {
        let d = od(1, 0);
        let t0 = Instant::now();
        let mut m = Monitor::default();
        let sec = Duration::from_secs;
        // 1st ejection: 30s, returns at the first sweep at or after 30s.
        assert!(d.try_eject(&mut m, EjectionType::Consecutive5xx, 0, 1, t0));
        assert_eq!(d.ejection_duration(&m), sec(30));
        assert!(!d.sweep(&mut m, t0 + sec(20)));
        assert!(d.sweep(&mut m, t0 + sec(30)));
        // Fails again right away: 60s, then 90s ...
        let t1 = t0 + sec(30);
        assert!(d.try_eject(&mut m, EjectionType::Consecutive5xx, 0, 1, t1));
        assert_eq!(d.ejection_duration(&m), sec(60));
        assert!(!d.sweep(&mut m, t1 + sec(50)));
        assert!(d.sweep(&mut m, t1 + sec(60)));
        let mut t = t1 + sec(60);
        for expected in [90, 120, 150, 180, 210, 240, 270, 300, 300, 300] {
            assert!(d.try_eject(&mut m, EjectionType::Consecutive5xx, 0, 1, t));
            assert_eq!(
                d.ejection_duration(&m),
                sec(expected),
                "capped at max_ejection_time"
            );
            t += sec(expected);
            assert!(d.sweep(&mut m, t));
        }
        // Healthy: k decays by one per sweep once back for an interval.
        let k = m.backoff();
        assert!(k >= 10);
        d.sweep(&mut m, t + sec(5));
        assert_eq!(m.backoff(), k, "not yet back for a whole interval");
        d.sweep(&mut m, t + sec(10));
        d.sweep(&mut m, t + sec(20));
        assert_eq!(m.backoff(), k - 2);
        assert_eq!(m.num_ejections, 12);
    }
}
