//! Rust guest SDK for `mesh:filter@0.1.0` filters.
//!
//! A thin layer over the bindings `wit_bindgen::generate!` produces for the
//! world `full-filter`:
//!
//! - the contract's types (`Request`, `Context`, `Action`, `FilterInfo`, ...)
//!   re-exported at the crate root, with small helpers ([`Request::header`],
//!   [`Action::respond_text`], [`Context::get_metadata`], ...);
//! - the host capabilities as modules ([`log`], [`metrics`], [`clock`],
//!   [`random`], [`crypto`], [`authn`], [`outbound_http`]) plus convenience
//!   wrappers in [`caps`];
//! - the [`Filter`] trait (every hook has a "continue" default) and the
//!   [`export_filter!`] macro that turns an implementation into the component's
//!   `handler` export.
//!
//! A filter imports only the capabilities it calls: the imports of unused
//! capabilities are dropped when the core module is linked and componentized,
//! so a filter that only counts requests imports only
//! `mesh:filter/metrics@0.1.0` (the host refuses a filter that imports a
//! capability its configuration does not grant).
//!
//! ```ignore
//! use mesh_filter_sdk::{Action, Context, Filter, FilterInfo, Hooks, Request};
//!
//! #[derive(Default)]
//! struct Hello;
//!
//! impl Filter for Hello {
//!     fn configure(&mut self, _config: &[u8]) -> Result<FilterInfo, String> {
//!         Ok(FilterInfo::new(Hooks::REQUEST_HEADERS))
//!     }
//!     fn on_request_headers(&self, _ctx: &Context, _req: &Request) -> Vec<Action> {
//!         vec![Action::add_request_header("x-hello", "world")]
//!     }
//! }
//!
//! mesh_filter_sdk::export_filter!(Hello);
//! ```

pub mod caps;
#[cfg(feature = "json")]
pub mod config;
mod helpers;

#[doc(hidden)]
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/mesh-filter@0.1.0",
        world: "full-filter",
        pub_export_macro: true,
        export_macro_name: "__export_full_filter",
        default_bindings_module: "mesh_filter_sdk::bindings",
        additional_derives: [PartialEq, Eq],
    });
}

pub use bindings::mesh::filter::types::{
    Action, Attempt, AttemptOutcome, Connection, Context, FilterInfo, HeaderSelection, Headers,
    Hooks, LocalResponse, Request, RequestAuth, Response, RetryDecision, RetryParams, Route,
};
pub use bindings::mesh::filter::{authn, clock, crypto, log, metrics, outbound_http, random};
pub use helpers::{header, header_all};

/// A filter: the hooks of `mesh:filter/handler@0.1.0` as methods.
///
/// One value lives per instance: [`Filter::configure`] is called on a fresh
/// `Default` value when the instance is created, and the hooks then run on
/// it. An instance keeps no per-request state (the host may serve two hooks
/// of one request from two instances): pass state to later hooks with
/// [`Action::set_metadata`] and read it back with [`Context::get_metadata`].
///
/// Every hook defaults to "continue unchanged" (an empty action list, or
/// [`RetryDecision::GiveUp`] for [`Filter::on_attempt`]); the host calls only
/// the hooks listed in the [`FilterInfo`] that `configure` returns.
pub trait Filter: Default + 'static {
    /// Validates and applies the configuration (`pluginConfig`, JSON bytes,
    /// empty when none was given) and says which hooks to call. An `Err`
    /// refuses the filter at load time with that message.
    fn configure(&mut self, config: &[u8]) -> Result<FilterInfo, String>;

    /// Request headers arrived.
    fn on_request_headers(&self, ctx: &Context, req: &Request) -> Vec<Action> {
        let _ = (ctx, req);
        Vec::new()
    }

    /// The whole request body (up to `request_body_limit` bytes).
    fn on_request_body(&self, ctx: &Context, body: &[u8]) -> Vec<Action> {
        let _ = (ctx, body);
        Vec::new()
    }

    /// Response headers arrived (from upstream or a local response).
    fn on_response_headers(&self, ctx: &Context, resp: &Response) -> Vec<Action> {
        let _ = (ctx, resp);
        Vec::new()
    }

    /// The whole response body (up to `response_body_limit` bytes).
    fn on_response_body(&self, ctx: &Context, body: &[u8]) -> Vec<Action> {
        let _ = (ctx, body);
        Vec::new()
    }

    /// An upstream attempt failed (status >= 400 or no response): retry it?
    fn on_attempt(&self, ctx: &Context, attempt: &Attempt) -> RetryDecision {
        let _ = (ctx, attempt);
        RetryDecision::GiveUp
    }
}

/// Exports a [`Filter`] implementation as the component's
/// `mesh:filter/handler@0.1.0`. Use it once per filter crate (a `cdylib`):
///
/// ```ignore
/// mesh_filter_sdk::export_filter!(MyFilter);
/// ```
#[macro_export]
macro_rules! export_filter {
    ($ty:ty) => {
        #[allow(unsafe_code)]
        const _: () = {
            ::std::thread_local! {
                static __MESH_FILTER: ::std::cell::RefCell<::std::option::Option<$ty>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }

            struct __MeshFilterExport;

            impl $crate::bindings::exports::mesh::filter::handler::Guest for __MeshFilterExport {
                fn configure(
                    config: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<$crate::FilterInfo, ::std::string::String> {
                    $crate::__private::configure(&__MESH_FILTER, &config)
                }
                fn on_request_headers(
                    ctx: $crate::Context,
                    req: $crate::Request,
                ) -> ::std::vec::Vec<$crate::Action> {
                    $crate::__private::with(&__MESH_FILTER, |f| {
                        $crate::Filter::on_request_headers(f, &ctx, &req)
                    })
                }
                fn on_request_body(
                    ctx: $crate::Context,
                    body: ::std::vec::Vec<u8>,
                ) -> ::std::vec::Vec<$crate::Action> {
                    $crate::__private::with(&__MESH_FILTER, |f| {
                        $crate::Filter::on_request_body(f, &ctx, &body)
                    })
                }
                fn on_response_headers(
                    ctx: $crate::Context,
                    resp: $crate::Response,
                ) -> ::std::vec::Vec<$crate::Action> {
                    $crate::__private::with(&__MESH_FILTER, |f| {
                        $crate::Filter::on_response_headers(f, &ctx, &resp)
                    })
                }
                fn on_response_body(
                    ctx: $crate::Context,
                    body: ::std::vec::Vec<u8>,
                ) -> ::std::vec::Vec<$crate::Action> {
                    $crate::__private::with(&__MESH_FILTER, |f| {
                        $crate::Filter::on_response_body(f, &ctx, &body)
                    })
                }
                fn on_attempt(
                    ctx: $crate::Context,
                    attempt: $crate::Attempt,
                ) -> $crate::RetryDecision {
                    $crate::__private::with(&__MESH_FILTER, |f| {
                        $crate::Filter::on_attempt(f, &ctx, &attempt)
                    })
                }
            }

            $crate::bindings::__export_full_filter!(
                __MeshFilterExport with_types_in $crate::bindings
            );
        };
    };
}

/// Implementation details of [`export_filter!`]; not a public API.
#[doc(hidden)]
pub mod __private {
    use crate::{Filter, FilterInfo};
    use std::cell::RefCell;
    use std::thread::LocalKey;

    /// Configures a fresh filter value and installs it only on success.
    pub fn configure<F: Filter>(
        slot: &'static LocalKey<RefCell<Option<F>>>,
        config: &[u8],
    ) -> Result<FilterInfo, String> {
        let mut filter = F::default();
        let info = filter.configure(config)?;
        slot.with(|s| *s.borrow_mut() = Some(filter));
        Ok(info)
    }

    /// Runs a hook on the configured filter. The host calls `configure` in
    /// every instance before any hook; a hook without it is a host bug and
    /// traps.
    pub fn with<F: Filter, R>(
        slot: &'static LocalKey<RefCell<Option<F>>>,
        hook: impl FnOnce(&F) -> R,
    ) -> R {
        slot.with(|s| match s.borrow().as_ref() {
            Some(filter) => hook(filter),
            None => panic!("mesh filter hook called before a successful configure"),
        })
    }
}
