//! The WebAssembly component: [`Faults`] behind the SDK's `Filter`.
//!
//! Hooks: `request-headers`. Capabilities: `random` (percentages). Emits
//! `set-metadata(mesh.response-flag, DI|FI|DI,FI)`, then `delay(ms)` and/or
//! `respond` (the host holds the request for the delay before answering).

use crate::Faults;
use filter_model::keys;
use mesh_filter_sdk::{Action, Context, Filter, FilterInfo, Hooks, LocalResponse, Request, random};

#[derive(Default)]
struct FaultFilter {
    faults: Faults,
}

impl Filter for FaultFilter {
    fn configure(&mut self, config: &[u8]) -> Result<FilterInfo, String> {
        self.faults = Faults::from_json(config).map_err(|e| e.to_string())?;
        // No fault configured: ask for no hook at all. Otherwise only
        // content-type is read (gRPC aborts answer in gRPC form).
        let hooks = if self.faults.is_empty() {
            Hooks::empty()
        } else {
            Hooks::REQUEST_HEADERS
        };
        Ok(FilterInfo::new(hooks).with_request_headers(&["content-type"]))
    }

    fn on_request_headers(&self, ctx: &Context, req: &Request) -> Vec<Action> {
        if self.faults.is_empty() {
            return Vec::new();
        }
        let grpc = req
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/grpc"));
        let injection =
            self.faults
                .evaluate(ctx.get_metadata(keys::ROUTE), grpc, &mut random::next_u64);
        let mut actions = Vec::new();
        if let Some(flag) = injection.response_flag() {
            actions.push(Action::SetMetadata((
                keys::RESPONSE_FLAG.into(),
                flag.into(),
            )));
        }
        if let Some(ms) = injection.delay_ms {
            actions.push(Action::Delay(ms));
        }
        if let Some(a) = injection.abort {
            actions.push(Action::Respond(LocalResponse {
                status: a.status,
                headers: a.headers,
                body: a.body,
            }));
        }
        actions
    }
}

mesh_filter_sdk::export_filter!(FaultFilter);
