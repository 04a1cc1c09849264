//! The example user filter: tags requests with `x-filter-lang: rust`, answers
//! the blocked path with 403, and counts every request in `requests_total`.

use mesh_filter_sdk::{Action, Context, Filter, FilterInfo, Hooks, Request, caps, config};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Example {
    #[serde(default = "default_blocked_path")]
    blocked_path: String,
}

fn default_blocked_path() -> String {
    "/blocked".into()
}

impl Default for Example {
    fn default() -> Self {
        Example {
            blocked_path: default_blocked_path(),
        }
    }
}

impl Filter for Example {
    fn configure(&mut self, config: &[u8]) -> Result<FilterInfo, String> {
        let parsed: Example = config::from_json(config)?;
        if !parsed.blocked_path.starts_with('/') {
            return Err("invalid config: blocked_path must be a string starting with '/'".into());
        }
        *self = parsed;
        // Only the path is read: no header is copied into the filter.
        Ok(FilterInfo::new(Hooks::REQUEST_HEADERS).with_request_headers::<&str>(&[]))
    }

    fn on_request_headers(&self, _ctx: &Context, req: &Request) -> Vec<Action> {
        caps::counter_add("requests_total", &[("lang", "rust")], 1);
        if req.path == self.blocked_path {
            return vec![Action::respond_text(403, "blocked by rust filter")];
        }
        vec![Action::add_request_header("x-filter-lang", "rust")]
    }
}

mesh_filter_sdk::export_filter!(Example);
