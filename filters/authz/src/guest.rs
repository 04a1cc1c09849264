//! The WebAssembly component: [`Authorizer`] behind the SDK's `Filter`.
//!
//! Hooks: `request-headers`. Capabilities: none, or `outbound-http` in the
//! `authz-ext` build (feature `ext-authz`) for CUSTOM policies. Emits
//! `rewrite-path` (normalized path), metadata `mesh.authz.result`,
//! `mesh.authz.policy`, `mesh.authz.audit`, `mesh.authz.shadow-*`, and on
//! denial `mesh.response-flag` (`RBAC` or `UAEX`) + `respond`.

use crate::{Authorizer, DENIED_BODY, Decision, Input, RequestAuth};
use filter_model::keys;
use mesh_filter_sdk::{Action, Context, Filter, FilterInfo, Hooks, LocalResponse, Request};

#[derive(Default)]
struct AuthzFilter {
    authz: Authorizer,
}

fn meta(key: &str, value: impl Into<String>) -> Action {
    Action::SetMetadata((key.into(), value.into()))
}

fn text_reply(status: u16, body: &str) -> Action {
    Action::Respond(LocalResponse {
        status,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: body.as_bytes().to_vec(),
    })
}

impl Filter for AuthzFilter {
    fn configure(&mut self, config: &[u8]) -> Result<FilterInfo, String> {
        let authz = Authorizer::from_json(config).map_err(|e| e.to_string())?;
        if authz.has_custom() && !cfg!(feature = "ext-authz") {
            return Err(
                "CUSTOM AuthorizationPolicies need the `authz-ext` build of the authz filter \
                        (granted the outbound-http capability with one upstream per provider)"
                    .into(),
            );
        }
        let info = FilterInfo::new(Hooks::REQUEST_HEADERS);
        // Only the headers some condition reads are copied into the filter.
        let info = match authz.header_names() {
            Some(names) => info.with_request_headers(&names),
            None => info,
        };
        self.authz = authz;
        Ok(info)
    }

    fn on_request_headers(&self, ctx: &Context, req: &Request) -> Vec<Action> {
        let auth = ctx.request_auth.as_ref().map(|a| RequestAuth {
            issuer: &a.issuer,
            subject: &a.subject,
            audiences: &a.audiences,
            presenter: a.presenter.as_deref(),
            claims: &a.claims,
        });
        let c = &ctx.connection;
        let input = Input {
            method: &req.method,
            authority: &req.authority,
            path: &req.path,
            headers: &req.headers,
            source_principal: c.source_principal.as_deref(),
            source_address: &c.source_address,
            destination_address: &c.destination_address,
            destination_port: c.destination_port,
            destination_service: c.destination_service.as_deref(),
            request_auth: auth,
        };
        let plan = match self.authz.evaluate(&input) {
            Ok(plan) => plan,
            Err(rejection) => return vec![text_reply(400, rejection.message())],
        };
        let mut actions = Vec::new();
        if plan.path_changed() {
            actions.push(Action::RewritePath(plan.path.to_string()));
        }
        if let Some(p) = plan.audit {
            actions.push(meta(keys::AUTHZ_AUDIT, p));
        }
        if let Some((allowed, policy)) = plan.shadow {
            actions.push(meta(
                keys::AUTHZ_SHADOW_RESULT,
                if allowed { "allowed" } else { "denied" },
            ));
            if let Some(p) = policy {
                actions.push(meta(keys::AUTHZ_SHADOW_POLICY, p));
            }
        }
        #[cfg(feature = "ext-authz")]
        if !plan.custom.is_empty() {
            let path_and_query = match &req.query {
                Some(q) => format!("{}?{q}", plan.path),
                None => plan.path.to_string(),
            };
            for check in &plan.custom {
                if let Some(deny) = ext::ask(check, req, &path_and_query, &mut actions) {
                    actions.push(meta(keys::AUTHZ_RESULT, "denied"));
                    actions.push(meta(keys::AUTHZ_POLICY, check.policy));
                    actions.push(meta(keys::RESPONSE_FLAG, "UAEX"));
                    actions.push(deny);
                    return actions;
                }
            }
        }
        match plan.decision {
            Decision::NoPolicies => {}
            Decision::Allow { policy } => {
                actions.push(meta(keys::AUTHZ_RESULT, "allowed"));
                if let Some(p) = policy {
                    actions.push(meta(keys::AUTHZ_POLICY, p));
                }
            }
            Decision::Deny { policy } => {
                actions.push(meta(keys::AUTHZ_RESULT, "denied"));
                if let Some(p) = policy {
                    actions.push(meta(keys::AUTHZ_POLICY, p));
                }
                actions.push(meta(keys::RESPONSE_FLAG, "RBAC"));
                actions.push(text_reply(403, DENIED_BODY));
            }
        }
        actions
    }
}

#[cfg(feature = "ext-authz")]
mod ext {
    use crate::CustomCheck;
    use crate::extauthz::{CheckResponse, CheckResult};
    use mesh_filter_sdk::outbound_http::{OutboundRequest, send};
    use mesh_filter_sdk::{Action, LocalResponse, Request};

    /// Asks one provider; `Some(respond)` when it denies. Header changes of
    /// an allow are appended to `actions`.
    pub(super) fn ask(
        check: &CustomCheck<'_>,
        req: &Request,
        path_and_query: &str,
        actions: &mut Vec<Action>,
    ) -> Option<Action> {
        let r =
            check
                .provider
                .check_request(&req.method, &req.authority, path_and_query, &req.headers);
        let answer = send(&OutboundRequest {
            upstream: r.upstream,
            method: r.method,
            path: r.path,
            headers: r.headers,
            body: Vec::new(),
            timeout_ms: r.timeout_ms,
        })
        .map(|resp| CheckResponse {
            status: resp.status,
            headers: resp.headers,
            body: resp.body,
        });
        match check.provider.interpret(answer) {
            CheckResult::Allow {
                upstream_set,
                upstream_remove,
                downstream_add,
            } => {
                actions.extend(upstream_remove.into_iter().map(Action::RemoveRequestHeader));
                actions.extend(upstream_set.into_iter().map(Action::SetRequestHeader));
                actions.extend(downstream_add.into_iter().map(Action::AddResponseHeader));
                None
            }
            CheckResult::Deny {
                status,
                headers,
                body,
            } => Some(Action::Respond(LocalResponse {
                status,
                headers,
                body,
            })),
        }
    }
}

mesh_filter_sdk::export_filter!(AuthzFilter);
