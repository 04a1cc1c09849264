//! Test guest: `configure` rejects every configuration, so loading (or hot
//! swapping to) this filter must fail and the previous version keep serving.

use mesh_filter_sdk::{Filter, FilterInfo};

#[derive(Default)]
struct Refuses;

impl Filter for Refuses {
    fn configure(&mut self, config: &[u8]) -> Result<FilterInfo, String> {
        Err(format!(
            "test-bad-config: configuration rejected ({} bytes); this test filter accepts none",
            config.len()
        ))
    }
}

mesh_filter_sdk::export_filter!(Refuses);
