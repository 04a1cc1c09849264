//! Small conveniences on the generated contract types.

use crate::{
    Action, Context, FilterInfo, HeaderSelection, Hooks, LocalResponse, Request, Response, Route,
};

/// The first value of header `name` (ASCII case-insensitive), if any.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    header_all(headers, name).next()
}

/// Every value of header `name` (ASCII case-insensitive), in arrival order.
pub fn header_all<'a>(
    headers: &'a [(String, String)],
    name: &str,
) -> impl Iterator<Item = &'a str> {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Request {
    /// The first value of request header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Every value of request header `name` (case-insensitive).
    pub fn header_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> {
        header_all(&self.headers, name)
    }
}

impl Response {
    /// The first value of response header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Every value of response header `name` (case-insensitive).
    pub fn header_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> {
        header_all(&self.headers, name)
    }
}

impl Context {
    /// The per-request metadata entry `key` set by an earlier filter or hook
    /// (the latest one when it was set more than once).
    pub fn get_metadata(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The mTLS peer's SPIFFE principal (`cluster.local/ns/x/sa/y`), if any.
    pub fn source_principal(&self) -> Option<&str> {
        self.connection.source_principal.as_deref()
    }
}

impl FilterInfo {
    /// Calls `hooks`, buffering no body.
    pub fn new(hooks: Hooks) -> Self {
        FilterInfo {
            hooks,
            request_body_limit: 0,
            response_body_limit: 0,
            request_headers: HeaderSelection::All,
            response_headers: HeaderSelection::All,
        }
    }

    /// Shows only these request headers (lower-case names) to
    /// `on_request_headers`: copying headers into the guest is most of a
    /// hook call's cost. An empty list shows none (method, authority, path
    /// and query are always there).
    pub fn with_request_headers<S: AsRef<str>>(mut self, names: &[S]) -> Self {
        self.request_headers = HeaderSelection::Only(
            names
                .iter()
                .map(|n| n.as_ref().to_ascii_lowercase())
                .collect(),
        );
        self
    }

    /// Shows only these response headers to `on_response_headers`.
    pub fn with_response_headers<S: AsRef<str>>(mut self, names: &[S]) -> Self {
        self.response_headers = HeaderSelection::Only(
            names
                .iter()
                .map(|n| n.as_ref().to_ascii_lowercase())
                .collect(),
        );
        self
    }

    /// Also buffers up to `limit` bytes of request body for `on_request_body`.
    pub fn with_request_body_limit(mut self, limit: u32) -> Self {
        self.request_body_limit = limit;
        self
    }

    /// Also buffers up to `limit` bytes of response body for `on_response_body`.
    pub fn with_response_body_limit(mut self, limit: u32) -> Self {
        self.response_body_limit = limit;
        self
    }
}

impl Action {
    /// Answer locally with `status`, `headers` and `body`; stops the chain.
    pub fn respond(status: u16, headers: Vec<(String, String)>, body: impl Into<Vec<u8>>) -> Self {
        Action::Respond(LocalResponse {
            status,
            headers,
            body: body.into(),
        })
    }

    /// Answer locally with a `text/plain` body.
    pub fn respond_text(status: u16, body: impl Into<String>) -> Self {
        Self::respond(
            status,
            vec![("content-type".into(), "text/plain".into())],
            body.into().into_bytes(),
        )
    }

    /// Replace request header `name` (sent upstream).
    pub fn set_request_header(name: impl Into<String>, value: impl Into<String>) -> Self {
        Action::SetRequestHeader((name.into(), value.into()))
    }

    /// Append a value of request header `name`.
    pub fn add_request_header(name: impl Into<String>, value: impl Into<String>) -> Self {
        Action::AddRequestHeader((name.into(), value.into()))
    }

    /// Delete request header `name`.
    pub fn remove_request_header(name: impl Into<String>) -> Self {
        Action::RemoveRequestHeader(name.into())
    }

    /// Replace response header `name` (returned downstream).
    pub fn set_response_header(name: impl Into<String>, value: impl Into<String>) -> Self {
        Action::SetResponseHeader((name.into(), value.into()))
    }

    /// Append a value of response header `name`.
    pub fn add_response_header(name: impl Into<String>, value: impl Into<String>) -> Self {
        Action::AddResponseHeader((name.into(), value.into()))
    }

    /// Delete response header `name`.
    pub fn remove_response_header(name: impl Into<String>) -> Self {
        Action::RemoveResponseHeader(name.into())
    }

    /// Route to a whole service (load-balanced over its endpoints).
    pub fn route_to(service: impl Into<String>) -> Self {
        Action::Route(Route {
            service: service.into(),
            subset: None,
            port: None,
            endpoint: None,
        })
    }

    /// Set per-request metadata `key` for later filters and hooks.
    pub fn set_metadata(key: impl Into<String>, value: impl Into<String>) -> Self {
        Action::SetMetadata((key.into(), value.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers() -> Vec<(String, String)> {
        vec![
            ("x-a".into(), "1".into()),
            ("X-B".into(), "2".into()),
            ("x-a".into(), "3".into()),
        ]
    }

    #[test]
    fn header_lookup_is_case_insensitive_and_ordered() {
        let h = headers();
        assert_eq!(header(&h, "X-A"), Some("1"));
        assert_eq!(header(&h, "x-b"), Some("2"));
        assert_eq!(header(&h, "x-c"), None);
        assert_eq!(header_all(&h, "x-a").collect::<Vec<_>>(), ["1", "3"]);
    }

    #[test]
    fn latest_metadata_wins() {
        let ctx = Context {
            connection: crate::Connection {
                source_principal: None,
                source_address: "10.0.0.1".into(),
                source_port: 1234,
                destination_address: "10.0.0.2".into(),
                destination_port: 80,
                destination_service: None,
                mtls: false,
            },
            request_auth: None,
            metadata: vec![("k".into(), "old".into()), ("k".into(), "new".into())],
        };
        assert_eq!(ctx.get_metadata("k"), Some("new"));
        assert_eq!(ctx.get_metadata("missing"), None);
    }

    #[test]
    fn respond_text_sets_content_type() {
        let Action::Respond(r) = Action::respond_text(403, "no") else {
            panic!("not a respond action");
        };
        assert_eq!(r.status, 403);
        assert_eq!(r.body, b"no");
        assert_eq!(header(&r.headers, "Content-Type"), Some("text/plain"));
    }
}
