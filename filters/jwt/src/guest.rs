//! The WebAssembly component: [`JwtAuthenticator`] behind the SDK's `Filter`.
//!
//! Hooks: `request-headers`. Capabilities: `clock` (token times), `crypto`
//! (signature verification by the host), `authn` (`set-request-auth` with
//! principal `iss/sub` and the claims). Emits request header actions, or on
//! failure `set-metadata(mesh.jwt.status, <reason>)` + `respond` (401 with
//! `www-authenticate`, 403 for audiences).

use crate::{HeaderOp, JwtAuthenticator, Request as JwtRequest, SignatureVerifier, Verdict};
use filter_model::keys;
use mesh_filter_sdk::{
    Action, Context, Filter, FilterInfo, Hooks, LocalResponse, Request, RequestAuth, authn, clock,
    crypto,
};

#[derive(Default)]
struct JwtFilter {
    authn: JwtAuthenticator,
}

/// Signature checks done natively by the host.
struct HostCrypto;

impl SignatureVerifier for HostCrypto {
    fn verify(
        &self,
        alg: &str,
        jwk: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, String> {
        crypto::verify(alg, jwk, message, signature)
    }
}

impl Filter for JwtFilter {
    fn configure(&mut self, config: &[u8]) -> Result<FilterInfo, String> {
        self.authn = JwtAuthenticator::from_json(config).map_err(|e| e.to_string())?;
        // Only the token locations (and the CORS preflight markers) are read.
        Ok(
            FilterInfo::new(Hooks::REQUEST_HEADERS)
                .with_request_headers(&self.authn.header_names()),
        )
    }

    fn on_request_headers(&self, ctx: &Context, req: &Request) -> Vec<Action> {
        let request = JwtRequest {
            method: &req.method,
            scheme: &req.scheme,
            authority: &req.authority,
            path: &req.path,
            query: req.query.as_deref(),
            headers: &req.headers,
            destination_service: ctx.connection.destination_service.as_deref(),
        };
        match self
            .authn
            .authenticate(&request, clock::now_unix_ms() / 1000, &HostCrypto)
        {
            Verdict::Skip => Vec::new(),
            Verdict::Continue { identity, headers } => {
                if let Some(id) = identity {
                    authn::set_request_auth(&RequestAuth {
                        principal: id.principal,
                        issuer: id.issuer,
                        subject: id.subject,
                        audiences: id.audiences,
                        presenter: id.presenter,
                        claims: id.claims,
                    });
                }
                headers
                    .into_iter()
                    .map(|op| match op {
                        HeaderOp::Remove(n) => Action::RemoveRequestHeader(n),
                        HeaderOp::Set(n, v) => Action::SetRequestHeader((n, v)),
                    })
                    .collect()
            }
            Verdict::Reject {
                status,
                www_authenticate,
                reason,
            } => vec![
                Action::SetMetadata((keys::JWT_STATUS.into(), reason.message().into())),
                Action::Respond(LocalResponse {
                    status,
                    headers: vec![
                        ("www-authenticate".into(), www_authenticate),
                        ("content-type".into(), "text/plain".into()),
                    ],
                    body: reason.message().as_bytes().to_vec(),
                }),
            ],
        }
    }
}

mesh_filter_sdk::export_filter!(JwtFilter);
