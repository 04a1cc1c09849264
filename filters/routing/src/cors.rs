//! CORS (`corsPolicy` of a VirtualService route), as Envoy's CORS filter
//! applies a route's policy (Istio translates `corsPolicy` to it):
//!
//! - a request without `origin`, or whose origin no `allowOrigins` entry
//!   matches, is not a CORS request for this policy;
//! - a preflight (`OPTIONS` with `origin` and
//!   `access-control-request-method`) from an allowed origin is answered
//!   200 locally with the allow headers; one from another origin goes
//!   upstream (`unmatchedPreflights: FORWARD`, the default) or is answered
//!   200 without CORS headers (`IGNORE`);
//! - an actual request from an allowed origin gets
//!   `access-control-allow-origin: <origin>` (and credentials and expose
//!   headers) on its response.
//!
//! An origin matcher that matches `*` allows every origin; the allowed
//! origin is always echoed, never `*`.

use crate::HeaderOp;
use crate::matcher::{StrMatcher, joined_header};
use crate::{ConfigError, LocalReply, Request};
use filter_model::routing::CorsPolicy;

/// A compiled `corsPolicy`.
#[derive(Debug)]
pub(crate) struct Cors {
    origins: Vec<StrMatcher>,
    allow_methods: Option<String>,
    allow_headers: Option<String>,
    expose_headers: Option<String>,
    max_age: Option<String>,
    credentials: bool,
    forward_unmatched: bool,
}

/// What the policy does with a request.
pub(crate) enum CorsOutcome {
    /// Not a CORS request for this policy (or an unmatched preflight that
    /// is forwarded): route normally.
    None,
    /// Answer locally.
    Reply(LocalReply),
    /// Route normally, adding these response headers.
    Headers(Vec<HeaderOp>),
}

fn join(v: &[String]) -> Option<String> {
    (!v.is_empty()).then(|| v.join(","))
}

impl Cors {
    pub(crate) fn compile(p: &CorsPolicy, field: &str) -> Result<Self, ConfigError> {
        let mut origins = p
            .allow_origins
            .iter()
            .enumerate()
            .map(|(i, m)| StrMatcher::compile(m, &format!("{field}.allowOrigins[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        for o in &p.allow_origin {
            origins.push(StrMatcher::compile(
                &filter_model::StringMatch {
                    exact: Some(o.clone()),
                    ..Default::default()
                },
                &format!("{field}.allowOrigin"),
            )?);
        }
        Ok(Cors {
            origins,
            allow_methods: join(&p.allow_methods),
            allow_headers: join(&p.allow_headers),
            expose_headers: join(&p.expose_headers),
            max_age: p.max_age.map(|d| (d.as_millis() / 1000).to_string()),
            credentials: p.allow_credentials == Some(true),
            forward_unmatched: !p
                .unmatched_preflights
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case("IGNORE")),
        })
    }

    fn allows(&self, origin: &str) -> bool {
        self.origins
            .iter()
            .any(|m| m.matches("*") || m.matches(origin))
    }

    /// The request headers the policy reads.
    pub(crate) const HEADERS: [&'static str; 2] = ["access-control-request-method", "origin"];

    pub(crate) fn apply(&self, req: &Request<'_>, route_id: &str) -> CorsOutcome {
        let Some(origin) = joined_header(req.headers, "origin").filter(|o| !o.is_empty()) else {
            return CorsOutcome::None;
        };
        let preflight = req.method == "OPTIONS"
            && joined_header(req.headers, "access-control-request-method")
                .is_some_and(|m| !m.is_empty());
        let allowed = self.allows(&origin);
        if preflight {
            if !allowed {
                if self.forward_unmatched {
                    return CorsOutcome::None;
                }
                return CorsOutcome::Reply(LocalReply {
                    route_id: Some(route_id.to_string()),
                    status: 200,
                    headers: Vec::new(),
                    body: Vec::new(),
                    response_flag: None,
                });
            }
            let mut headers = vec![(
                "access-control-allow-origin".to_string(),
                origin.into_owned(),
            )];
            if self.credentials {
                headers.push(("access-control-allow-credentials".into(), "true".into()));
            }
            for (name, value) in [
                ("access-control-allow-methods", &self.allow_methods),
                ("access-control-allow-headers", &self.allow_headers),
                ("access-control-max-age", &self.max_age),
            ] {
                if let Some(v) = value {
                    headers.push((name.to_string(), v.clone()));
                }
            }
            return CorsOutcome::Reply(LocalReply {
                route_id: Some(route_id.to_string()),
                status: 200,
                headers,
                body: Vec::new(),
                response_flag: None,
            });
        }
        if !allowed {
            return CorsOutcome::None;
        }
        let mut ops = vec![HeaderOp::Set(
            "access-control-allow-origin".into(),
            origin.into_owned(),
        )];
        if self.credentials {
            ops.push(HeaderOp::Set(
                "access-control-allow-credentials".into(),
                "true".into(),
            ));
        }
        if let Some(e) = &self.expose_headers {
            ops.push(HeaderOp::Set(
                "access-control-expose-headers".into(),
                e.clone(),
            ));
        }
        CorsOutcome::Headers(ops)
    }
}
