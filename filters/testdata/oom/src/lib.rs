//! Test guest: `on-request-headers` allocates and touches memory 1 MiB at a
//! time up to 1 GiB (or `config` = a decimal number of MiB), far past any
//! sensible per-filter memory cap: the cap makes `memory.grow` fail, the
//! allocator aborts, and the instance traps. Path `/fast` allocates nothing.

use mesh_filter_sdk::{Action, Context, Filter, FilterInfo, Hooks, Request};
use std::hint::black_box;

const MIB: usize = 1 << 20;

struct Hog {
    mib: usize,
}

impl Default for Hog {
    fn default() -> Self {
        Hog { mib: 1024 }
    }
}

impl Filter for Hog {
    fn configure(&mut self, config: &[u8]) -> Result<FilterInfo, String> {
        let text = std::str::from_utf8(config).map_err(|e| format!("invalid config: {e}"))?;
        if !text.trim().is_empty() {
            self.mib = text
                .trim()
                .parse()
                .map_err(|e| format!("invalid config: expected a number of MiB: {e}"))?;
        }
        Ok(FilterInfo::new(Hooks::REQUEST_HEADERS))
    }

    fn on_request_headers(&self, _ctx: &Context, req: &Request) -> Vec<Action> {
        if req.path == "/fast" {
            return vec![Action::set_request_header("x-test", "fast")];
        }
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        for i in 0..self.mib {
            chunks.push(black_box(vec![i as u8 | 1; MIB]));
        }
        let total: usize = black_box(&chunks).iter().map(Vec::len).sum();
        vec![Action::set_request_header(
            "x-test-allocated",
            total.to_string(),
        )]
    }
}

mesh_filter_sdk::export_filter!(Hog);
