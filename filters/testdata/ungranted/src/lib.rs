//! Test guest: calls the `crypto` capability, so the component imports
//! `mesh:filter/crypto@0.1.0` (and nothing else of the contract). Loading it
//! without granting `crypto` must fail with a clear error; granted, it
//! answers every request by verifying a signature and setting
//! `x-test-verified: true|false|error`. Path `/verify-loop` verifies P-521
//! signatures forever: almost all of its time is in the host, and the CPU
//! deadline must still stop it.

use mesh_filter_sdk::{Action, Context, Filter, FilterInfo, Hooks, Request, crypto};

/// A P-521 public key (its private half was thrown away).
const P521_JWK: &str = r#"{"kty":"EC","crv":"P-521","x":"AEWWjzOnQqnk2gLqG1BvlICnzBKd8yjUmWNE5I-6ajL2xS7Yw8kfA6w_jxCSzSACudK2Rfm9ST5uXHdncWxfFcWD","y":"ALB6sKCmGWwif1x_pkkIJ6_o30rdqGgAFqLHI-C4vdOmrmucAQjtwdqPkjKXC4m78ANcZWrJgDelhAS4Wea6aAXj"}"#;

#[derive(Default)]
struct NeedsCrypto;

impl Filter for NeedsCrypto {
    fn configure(&mut self, _config: &[u8]) -> Result<FilterInfo, String> {
        Ok(FilterInfo::new(Hooks::REQUEST_HEADERS))
    }

    fn on_request_headers(&self, _ctx: &Context, req: &Request) -> Vec<Action> {
        if req.path == "/verify-loop" {
            let signature = [1u8; 132];
            loop {
                let _ = crypto::verify("ES512", P521_JWK, req.path.as_bytes(), &signature);
            }
        }
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
