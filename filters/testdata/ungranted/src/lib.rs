//! Test guest: calls the `crypto` capability, so the component imports
//! `mesh:filter/crypto@0.1.0` (and nothing else of the contract). Loading it
//! without granting `crypto` must fail with a clear error; granted, it
//! answers every request by verifying a signature and setting
//! `x-test-verified: true|false|error`.

use mesh_filter_sdk::{Action, Context, Filter, FilterInfo, Hooks, Request, crypto};

#[derive(Default)]
struct NeedsCrypto;

impl Filter for NeedsCrypto {
    fn configure(&mut self, _config: &[u8]) -> Result<FilterInfo, String> {
        Ok(FilterInfo::new(Hooks::REQUEST_HEADERS))
    }

    fn on_request_headers(&self, _ctx: &Context, req: &Request) -> Vec<Action> {
        let jwk = r#"{"kty":"oct","k":"c2VjcmV0"}"#;
        let verdict = match crypto::verify("HS256", jwk, req.path.as_bytes(), b"not-a-signature") {
            Ok(true) => "true",
            Ok(false) => "false",
            Err(_) => "error",
        };
        vec![Action::set_request_header("x-test-verified", verdict)]
    }
}

mesh_filter_sdk::export_filter!(NeedsCrypto);
