//! Test guest: `on-request-headers` panics (a trap: guests are built with
//! `panic = "abort"`). Path `/fast` continues normally with `x-test: fast`.

use mesh_filter_sdk::{Action, Context, Filter, FilterInfo, Hooks, Request};

#[derive(Default)]
struct Panics;

impl Filter for Panics {
    fn configure(&mut self, _config: &[u8]) -> Result<FilterInfo, String> {
        Ok(FilterInfo::new(Hooks::REQUEST_HEADERS))
    }

    fn on_request_headers(&self, _ctx: &Context, req: &Request) -> Vec<Action> {
        if req.path == "/fast" {
            return vec![Action::set_request_header("x-test", "fast")];
        }
        panic!(
            "test-panic: panicking in on-request-headers for {}",
            req.path
        );
    }
}

mesh_filter_sdk::export_filter!(Panics);
