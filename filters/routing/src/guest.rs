//! The WebAssembly component: [`Router`] behind the SDK's `Filter` trait.
//!
//! Hooks: `request-headers`. Capabilities: `random` (weighted destinations).
//! Emits, in order: `set-metadata(mesh.route, <id>)`, `set-metadata(mesh.mirror,
//! ...)` when the route mirrors the request, and either
//! `set-metadata(mesh.response-flag, NR|NC)` + `respond`, or `route`,
//! `rewrite-path`, `rewrite-authority`, request and response header actions.

use crate::{Decision, HeaderOp, Request as RouteRequest, Router, Target};
use filter_model::keys;
use mesh_filter_sdk::{
    Action, Context, Filter, FilterInfo, Hooks, LocalResponse, Request, Route, random,
};

#[derive(Default)]
struct Routing {
    router: Router,
}

fn request_op(op: HeaderOp) -> Action {
    match op {
        HeaderOp::Set(n, v) => Action::SetRequestHeader((n, v)),
        HeaderOp::Add(n, v) => Action::AddRequestHeader((n, v)),
        HeaderOp::Remove(n) => Action::RemoveRequestHeader(n),
    }
}

fn response_op(op: HeaderOp) -> Action {
    match op {
        HeaderOp::Set(n, v) => Action::SetResponseHeader((n, v)),
        HeaderOp::Add(n, v) => Action::AddResponseHeader((n, v)),
        HeaderOp::Remove(n) => Action::RemoveResponseHeader(n),
    }
}

impl Filter for Routing {
    fn configure(&mut self, config: &[u8]) -> Result<FilterInfo, String> {
        self.router = Router::from_json(config).map_err(|e| e.to_string())?;
        // Only the headers some match reads are copied into the filter.
        Ok(FilterInfo::new(Hooks::REQUEST_HEADERS)
            .with_request_headers(&self.router.header_names()))
    }

    fn on_request_headers(&self, ctx: &Context, req: &Request) -> Vec<Action> {
        let request = RouteRequest {
            method: &req.method,
            scheme: &req.scheme,
            authority: &req.authority,
            path: &req.path,
            query: req.query.as_deref(),
            headers: &req.headers,
        };
        let target = Target {
            destination_service: ctx.connection.destination_service.as_deref(),
            destination_port: ctx.connection.destination_port,
        };
        match self.router.route(&request, &target, &mut random::next_u64) {
            Decision::Default => Vec::new(),
            Decision::Forward(f) => {
                let mut actions =
                    Vec::with_capacity(4 + f.request_headers.len() + f.response_headers.len());
                actions.push(Action::SetMetadata((keys::ROUTE.into(), f.route_id.into())));
                if !f.mirrors.is_empty() {
                    let list: Vec<String> = f.mirrors.iter().map(|m| m.encode()).collect();
                    actions.push(Action::SetMetadata((keys::MIRROR.into(), list.join(","))));
                }
                actions.push(Action::Route(Route {
                    service: f.service.into(),
                    subset: f.subset.map(Into::into),
                    port: f.port,
                    endpoint: None,
                }));
                if let Some(p) = f.path {
                    actions.push(Action::RewritePath(p));
                }
                if let Some(a) = f.authority {
                    actions.push(Action::RewriteAuthority(a));
                }
                let c = &ctx.connection;
                let vars = crate::format::Vars {
                    remote: (&c.source_address, c.source_port),
                    local: (&c.destination_address, c.destination_port),
                    peer: c.source_principal.as_deref(),
                    protocol: &req.protocol,
                    headers: &req.headers,
                };
                // Values without a `%` (nearly all) are moved, not copied.
                let format = |v: String| match crate::format::expand(&v, &vars) {
                    std::borrow::Cow::Borrowed(_) => v,
                    std::borrow::Cow::Owned(o) => o,
                };
                let expand = |op: HeaderOp| match op {
                    HeaderOp::Set(n, v) => HeaderOp::Set(n, format(v)),
                    HeaderOp::Add(n, v) => HeaderOp::Add(n, format(v)),
                    other => other,
                };
                actions.extend(f.request_headers.into_iter().map(expand).map(request_op));
                actions.extend(f.response_headers.into_iter().map(expand).map(response_op));
                actions
            }
            Decision::Respond(reply) => {
                let mut actions = Vec::with_capacity(3);
                if let Some(id) = reply.route_id {
                    actions.push(Action::SetMetadata((keys::ROUTE.into(), id)));
                }
                if let Some(flag) = reply.response_flag {
                    actions.push(Action::SetMetadata((
                        keys::RESPONSE_FLAG.into(),
                        flag.into(),
                    )));
                }
                actions.push(Action::Respond(LocalResponse {
                    status: reply.status,
                    headers: reply.headers,
                    body: reply.body,
                }));
                actions
            }
        }
    }
}

mesh_filter_sdk::export_filter!(Routing);
