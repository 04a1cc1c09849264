//! The WebAssembly component: [`RetryPolicies`] behind the SDK's `Filter`.
//!
//! Hooks: `request-headers` (emits `timeout` and `per-try-timeout` for the
//! route in metadata `mesh.route`, and `mesh.retry.hosts: reuse` when its
//! policy has `retryIgnorePreviousHosts: false`) and `attempt` (retry decision with
//! backoff). Capabilities: `random` (backoff jitter).

use crate::{Outcome, Retry, RetryPolicies, grpc_timeout_ms};
use filter_model::keys;
use mesh_filter_sdk::{
    Action, Attempt, AttemptOutcome, Context, Filter, FilterInfo, Hooks, Request, RetryDecision,
    RetryParams, random,
};

#[derive(Default)]
struct RetryFilter {
    policies: RetryPolicies,
}

impl Filter for RetryFilter {
    fn configure(&mut self, config: &[u8]) -> Result<FilterInfo, String> {
        self.policies = RetryPolicies::from_json(config).map_err(|e| e.to_string())?;
        // Without a configured route or per-try timeout the request hook
        // has nothing to add (the host itself enforces a gRPC request's
        // `grpc-timeout`): skip the call on every request.
        let hooks = if self.policies.sets_timeouts() || self.policies.reuses_hosts() {
            Hooks::REQUEST_HEADERS | Hooks::ATTEMPT
        } else {
            Hooks::ATTEMPT
        };
        // Only these are read: gRPC detection and its deadline.
        Ok(FilterInfo::new(hooks).with_request_headers(&["content-type", "grpc-timeout"]))
    }

    fn on_request_headers(&self, ctx: &Context, req: &Request) -> Vec<Action> {
        let grpc = req
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/grpc"));
        let header = if grpc {
            req.header("grpc-timeout").and_then(grpc_timeout_ms)
        } else {
            None
        };
        let route = ctx.get_metadata(keys::ROUTE);
        let t = self.policies.timeouts(route, grpc, header);
        let mut actions = Vec::with_capacity(2);
        if self.policies.policy(route).is_some_and(|p| p.reuse_hosts) {
            actions.push(Action::SetMetadata((
                keys::RETRY_HOSTS.into(),
                "reuse".into(),
            )));
        }
        if let Some(ms) = t.route_ms {
            actions.push(Action::Timeout(ms));
        }
        if let Some(ms) = t.per_try_ms {
            actions.push(Action::PerTryTimeout(ms));
        }
        actions
    }

    fn on_attempt(&self, ctx: &Context, attempt: &Attempt) -> RetryDecision {
        let outcome = match attempt.outcome {
            AttemptOutcome::Response(code) => Outcome::Response(code),
            AttemptOutcome::Reset => Outcome::Reset,
            AttemptOutcome::ConnectFailure => Outcome::ConnectFailure,
            AttemptOutcome::RefusedStream => Outcome::RefusedStream,
            AttemptOutcome::Timeout => Outcome::Timeout,
        };
        let route = ctx.get_metadata(keys::ROUTE);
        match self.policies.on_attempt(
            route,
            attempt.number,
            outcome,
            attempt.grpc_status,
            &mut random::next_u64,
        ) {
            Retry::GiveUp => RetryDecision::GiveUp,
            Retry::After { backoff_ms } => RetryDecision::Retry(RetryParams {
                per_try_timeout: None,
                backoff: backoff_ms,
            }),
        }
    }
}

mesh_filter_sdk::export_filter!(RetryFilter);
