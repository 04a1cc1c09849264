//! Test guest: `on-request-headers` spins forever, so the host's CPU deadline
//! (fuel-metered, see `host/src/filter/budget.rs`) must stop it. Path `/fast` continues normally with
//! `x-test: fast`, for checking that other requests are not stalled.

use mesh_filter_sdk::{Action, Context, Filter, FilterInfo, Hooks, Request};
use std::hint::black_box;

#[derive(Default)]
struct Spin;

impl Filter for Spin {
    fn configure(&mut self, _config: &[u8]) -> Result<FilterInfo, String> {
        Ok(FilterInfo::new(Hooks::REQUEST_HEADERS))
    }

    fn on_request_headers(&self, _ctx: &Context, req: &Request) -> Vec<Action> {
        if req.path == "/fast" {
            return vec![Action::set_request_header("x-test", "fast")];
        }
        let mut n: u64 = 0;
        loop {
            n = black_box(n.wrapping_add(1));
        }
    }
}

mesh_filter_sdk::export_filter!(Spin);
