//! Memory per instance and instantiation time for each guest language
//! (issue 2). Prints a table; not a criterion bench because memory is not a
//! time series.
//!
//!     scripts/build-guests.sh && cargo bench -p waypoint --bench instance_memory
//!
//! Memory = growth of the process RSS while 64 idle instances of one filter
//! exist, divided by 64 (copy-on-write heap images: only touched pages
//! count). Instantiation = median time of instantiate + `configure`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use waypoint::filter::{Capability, FilterSpec, Isolation};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "| guest | component size | instantiate + configure (median of 63) | RSS per idle instance (63 instances) |"
    );
    println!("|---|---|---|---|");
    for guest in ["example-rust", "example-c", "example-js", "example-python"] {
        rt.block_on(async {
            let bytes = support::guest(guest);
            let mut spec = FilterSpec::new(guest);
            spec.capabilities = vec![Capability::Metrics, Capability::Log];
            spec.isolation = Isolation::Fresh;
            let f = support::runtime()
                .load(spec, bytes.clone(), None)
                .await
                .expect("load");
            // `load` made one instance; each prewarm step makes one more.
            let before = rss_kib();
            let mut times = Vec::new();
            for n in 2..=64 {
                let t = Instant::now();
                f.prewarm(n).await.expect("prewarm");
                times.push(t.elapsed());
            }
            let after = rss_kib();
            times.sort();
            println!(
                "| {guest} | {} KiB | {:?} | {} KiB |",
                bytes.len() / 1024,
                times[times.len() / 2],
                after.saturating_sub(before) / 63
            );
        });
    }
}
