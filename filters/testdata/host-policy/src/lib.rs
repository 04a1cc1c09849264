//! Host test guest (waypoint proxy tests): a deliberately small policy so
//! the host's mechanics — re-sending, per-try and route timeouts, subset
//! routing — can be tested with a real filter in the chain.
//!
//! Config (JSON, all optional):
//! `{"route": {"service": "...", "subset": "v1", "port": 80},
//!   "subsetHeader": "x-subset", "timeoutMs": 0, "perTryTimeoutMs": 0,
//!   "retry": {"attempts": 2, "retryOn": ["5xx", "reset", "503"], "backoffMs": 0,
//!             "perTryTimeoutMs": 0}}`
//!
//! Request headers override per request: `x-test-timeout-ms`,
//! `x-test-per-try-timeout-ms`, `x-test-attempts`, `x-test-retry-on`
//! (comma-separated). The effective retry policy travels to `on-attempt`
//! in metadata.

use mesh_filter_sdk::{
    Action, Attempt, AttemptOutcome, Context, Filter, FilterInfo, Hooks, Request, RetryDecision,
    RetryParams, Route, config,
};
use serde::Deserialize;

#[derive(Default, Deserialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RouteCfg {
    service: String,
    #[serde(default)]
    subset: Option<String>,
    #[serde(default)]
    port: Option<u16>,
}

#[derive(Default, Deserialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RetryCfg {
    #[serde(default)]
    attempts: u32,
    #[serde(default)]
    retry_on: Vec<String>,
    #[serde(default)]
    backoff_ms: u32,
    #[serde(default)]
    per_try_timeout_ms: Option<u32>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Policy {
    #[serde(default)]
    route: Option<RouteCfg>,
    #[serde(default)]
    subset_header: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u32>,
    #[serde(default)]
    per_try_timeout_ms: Option<u32>,
    #[serde(default)]
    retry: RetryCfg,
}

const META_ATTEMPTS: &str = "test.attempts";
const META_RETRY_ON: &str = "test.retry-on";

fn matches(on: &str, outcome: &AttemptOutcome) -> bool {
    on.split(',').map(str::trim).any(|t| match (t, outcome) {
        ("5xx", AttemptOutcome::Response(s)) => *s >= 500,
        ("5xx", _) => true,
        ("gateway-error", AttemptOutcome::Response(s)) => matches!(s, 502..=504),
        ("gateway-error", o) => !matches!(o, AttemptOutcome::Response(_)),
        ("reset", o) => matches!(o, AttemptOutcome::Reset | AttemptOutcome::Timeout),
        ("connect-failure", o) => matches!(o, AttemptOutcome::ConnectFailure),
        ("refused-stream", o) => matches!(o, AttemptOutcome::RefusedStream),
        ("per-try-timeout", o) => matches!(o, AttemptOutcome::Timeout),
        (code, AttemptOutcome::Response(s)) => code.parse::<u16>().ok() == Some(*s),
        _ => false,
    })
}

impl Filter for Policy {
    fn configure(&mut self, config: &[u8]) -> Result<FilterInfo, String> {
        *self = config::from_json(config)?;
        Ok(FilterInfo::new(Hooks::REQUEST_HEADERS | Hooks::ATTEMPT))
    }

    fn on_request_headers(&self, _ctx: &Context, req: &Request) -> Vec<Action> {
        let num = |h: &str| req.header(h).and_then(|v| v.parse::<u32>().ok());
        let mut out = Vec::new();
        if let Some(r) = &self.route {
            let subset = self
                .subset_header
                .as_deref()
                .and_then(|h| req.header(h))
                .map(str::to_string)
                .or_else(|| r.subset.clone());
            out.push(Action::Route(Route {
                service: r.service.clone(),
                subset,
                port: r.port,
                endpoint: None,
            }));
        }
        if let Some(t) = num("x-test-timeout-ms").or(self.timeout_ms) {
            out.push(Action::Timeout(t));
        }
        if let Some(t) = num("x-test-per-try-timeout-ms").or(self.per_try_timeout_ms) {
            out.push(Action::PerTryTimeout(t));
        }
        let attempts = num("x-test-attempts").unwrap_or(self.retry.attempts);
        let on = req
            .header("x-test-retry-on")
            .map(str::to_string)
            .unwrap_or_else(|| self.retry.retry_on.join(","));
        out.push(Action::SetMetadata((
            META_ATTEMPTS.into(),
            attempts.to_string(),
        )));
        out.push(Action::SetMetadata((META_RETRY_ON.into(), on)));
        out
    }

    fn on_attempt(&self, ctx: &Context, attempt: &Attempt) -> RetryDecision {
        let attempts: u32 = ctx
            .get_metadata(META_ATTEMPTS)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let on = ctx.get_metadata(META_RETRY_ON).unwrap_or("");
        if attempt.number <= attempts && matches(on, &attempt.outcome) {
            RetryDecision::Retry(RetryParams {
                per_try_timeout: self.retry.per_try_timeout_ms,
                backoff: self.retry.backoff_ms,
            })
        } else {
            RetryDecision::GiveUp
        }
    }
}

mesh_filter_sdk::export_filter!(Policy);
