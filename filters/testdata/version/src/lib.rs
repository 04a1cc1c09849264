//! Test guest for hot swap: sets request and response header
//! `x-filter-version: <N>`, N = config `{"version": "<N>"}` or the build-time
//! default (1, or 2 with feature `v2`). Config `{"delay_ms": D}` also holds
//! every request D ms (a `delay` action) to keep requests in flight.

use mesh_filter_sdk::{Action, Context, Filter, FilterInfo, Hooks, Request, config};
use serde::Deserialize;

const BUILD_VERSION: &str = if cfg!(feature = "v2") { "2" } else { "1" };

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Version {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    delay_ms: u32,
}

impl Filter for Version {
    fn configure(&mut self, config: &[u8]) -> Result<FilterInfo, String> {
        *self = config::from_json(config)?;
        Ok(FilterInfo::new(Hooks::REQUEST_HEADERS))
    }

    fn on_request_headers(&self, _ctx: &Context, _req: &Request) -> Vec<Action> {
        let v = self.version.as_deref().unwrap_or(BUILD_VERSION);
        let mut actions = vec![
            Action::set_request_header("x-filter-version", v),
            Action::set_response_header("x-filter-version", v),
        ];
        if self.delay_ms > 0 {
            actions.push(Action::Delay(self.delay_ms));
        }
        actions
    }
}

mesh_filter_sdk::export_filter!(Version);
