//! The host side of each capability interface, and the linker that exposes a
//! filter to exactly the capabilities it was granted.
//!
//! Each interface has its own `add_to_linker`; `linker_for` adds only the
//! granted ones (plus inert WASI for components that import it), so an
//! ungranted interface does not exist for the guest.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use super::bindings::mesh::filter::{authn, clock, crypto, log, metrics, outbound_http, random};
use super::bindings::types;
use super::config::{Capability, FilterSpec};
use super::jose;
use super::limits::MAX_LOG_LINE;
use super::state::StoreState;

/// A linker with the granted capabilities, and WASI when `wasi` is set.
pub(crate) fn linker_for(
    engine: &Engine,
    spec: &FilterSpec,
    wasi: bool,
) -> wasmtime::Result<Linker<StoreState>> {
    let mut linker = Linker::new(engine);
    types::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |s| s)?;
    for cap in &spec.capabilities {
        match cap {
            Capability::Log => log::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?,
            Capability::Metrics => metrics::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?,
            Capability::Clock => clock::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?,
            Capability::Random => random::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?,
            Capability::Crypto => crypto::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?,
            Capability::Authn => authn::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?,
            Capability::OutboundHttp => {
                outbound_http::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?
            }
        }
    }
    if wasi {
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    }
    Ok(linker)
}

impl types::Host for StoreState {}

// === impl log ===

impl log::Host for StoreState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let mut message = message;
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let filter = self.shared.name();
        match level {
            log::Level::Trace => tracing::trace!(target: "filter", filter, "{message}"),
            log::Level::Debug => tracing::debug!(target: "filter", filter, "{message}"),
            log::Level::Info => tracing::info!(target: "filter", filter, "{message}"),
            log::Level::Warn => tracing::warn!(target: "filter", filter, "{message}"),
            log::Level::Error => tracing::error!(target: "filter", filter, "{message}"),
        }
        Ok(())
    }
}

// === impl metrics ===

impl metrics::Host for StoreState {
    async fn counter_add(
        &mut self,
        name: String,
        labels: Vec<(String, String)>,
        value: u64,
    ) -> wasmtime::Result<()> {
        if let Err(e) = self.shared.guest_metrics.counter_add(name, labels, value) {
            tracing::debug!(filter = self.shared.name(), "guest metric dropped: {e:?}");
        }
        Ok(())
    }

    async fn histogram_record(
        &mut self,
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    ) -> wasmtime::Result<()> {
        if let Err(e) = self
            .shared
            .guest_metrics
            .histogram_record(name, labels, value)
        {
            tracing::debug!(filter = self.shared.name(), "guest metric dropped: {e:?}");
        }
        Ok(())
    }
}

// === impl clock ===

static MONOTONIC_ORIGIN: std::sync::LazyLock<std::time::Instant> =
    std::sync::LazyLock::new(std::time::Instant::now);

impl clock::Host for StoreState {
    async fn now_unix_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0))
    }

    async fn monotonic_ns(&mut self) -> wasmtime::Result<u64> {
        Ok(MONOTONIC_ORIGIN.elapsed().as_nanos() as u64)
    }
}

// === impl random ===

impl random::Host for StoreState {
    async fn next_u64(&mut self) -> wasmtime::Result<u64> {
        Ok(self.shared.next_u64())
    }
}

// === impl crypto ===

/// Parsed keys kept per filter version; the cache is cleared when full.
const KEY_CACHE_ENTRIES: usize = 256;

impl crypto::Host for StoreState {
    async fn verify(
        &mut self,
        alg: String,
        jwk: String,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, String>> {
        // CPU time, not wall time: a verification preempted by the OS must
        // not be charged the time it spent waiting for a CPU.
        let start = super::budget::thread_cpu();
        let cached = self.shared.key_cache.lock().get(&jwk).cloned();
        let key = match cached {
            Some(k) => k,
            None => match jose::parse_jwk(&jwk) {
                Ok(k) => {
                    let k = std::sync::Arc::new(k);
                    let mut cache = self.shared.key_cache.lock();
                    if cache.len() >= KEY_CACHE_ENTRIES {
                        cache.clear();
                    }
                    cache.insert(jwk, k.clone());
                    k
                }
                Err(e) => {
                    self.charge(super::budget::thread_cpu().saturating_sub(start))?;
                    return Ok(Err(e));
                }
            },
        };
        let verdict = jose::verify(&alg, &key, &message, &signature);
        // A P-521 verification takes about a millisecond but burns no guest
        // fuel: charge it, or a guest looping over it would never be stopped.
        self.charge(super::budget::thread_cpu().saturating_sub(start))?;
        Ok(verdict)
    }
}

// === impl authn ===

impl authn::Host for StoreState {
    async fn set_request_auth(&mut self, auth: types::RequestAuth) -> wasmtime::Result<()> {
        self.request_auth = Some(auth);
        Ok(())
    }
}

// === impl outbound-http ===

impl outbound_http::Host for StoreState {
    async fn send(
        &mut self,
        req: outbound_http::OutboundRequest,
    ) -> wasmtime::Result<Result<outbound_http::OutboundResponse, String>> {
        let Some(client) = self.shared.outbound.as_ref() else {
            return Ok(Err("this filter's grant names no upstream".to_string()));
        };
        let r = client
            .send(
                &req.upstream,
                &req.method,
                &req.path,
                req.headers,
                req.body,
                Duration::from_millis(u64::from(req.timeout_ms)),
            )
            .await;
        Ok(r.map(|r| outbound_http::OutboundResponse {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }))
    }
}
