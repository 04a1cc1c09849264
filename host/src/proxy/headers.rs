//! Header handling between downstream and upstream: hop-by-hop headers,
//! the upstream request line for HTTP/1.1 vs HTTP/2, `x-request-id`,
//! gRPC detection and `grpc-timeout`.

use std::time::Duration;

use http::header::{CONNECTION, HOST, HeaderName, HeaderValue, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, Request, Uri, Version};
use rand::Rng;

use crate::upstream::{Protocol, ProxyBody};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");
/// `x-request-id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `traceparent`.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those the
/// `Connection` header names. `te: trailers` survives (gRPC needs it).
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Runs twice per request; most messages carry none of these, and one
    // pass over the names is cheaper than the eight hashed removals below.
    let hop = |k: &HeaderName| {
        *k == CONNECTION
            || *k == TE
            || *k == TRANSFER_ENCODING
            || *k == UPGRADE
            || *k == KEEP_ALIVE
            || *k == PROXY_CONNECTION
            || *k == HTTP2_SETTINGS
    };
    if !h.keys().any(hop) {
        return;
    }
    let named: Vec<HeaderName> = h
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        if n != TE {
            h.remove(n);
        }
    }
    for n in [
        CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        TRANSFER_ENCODING,
        UPGRADE,
        HTTP2_SETTINGS,
    ] {
        h.remove(n);
    }
    let te_trailers = h.get_all(TE).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
    });
    h.remove(TE);
    if te_trailers {
        h.insert(TE, HeaderValue::from_static("trailers"));
    }
}

/// The request's authority: the URI's, else `Host`.
pub fn authority(parts: &http::request::Parts) -> String {
    parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            parts
                .headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// Is this a gRPC request?
pub fn is_grpc(h: &HeaderMap) -> bool {
    h.get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Parses `grpc-timeout` (`<digits><H|M|S|m|u|n>`, at most 8 digits).
pub fn grpc_timeout(h: &HeaderMap) -> Option<Duration> {
    let v = h.get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (n, unit) = v.split_at(v.len() - 1);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Path normalization before the filter chain and routing, as Envoy's
/// HTTP connection manager does for every request under Istio's default
/// `meshConfig.pathNormalization` (BASE): a path holding `%00` is refused,
/// `\` becomes `/`, percent-encoded unreserved characters are decoded once
/// and dot segments are resolved. Routes, policies and the upstream all see
/// the normalized path; the query is untouched.
pub fn normalize_path(parts: &mut http::request::Parts) -> Result<(), String> {
    let normalized = match filter_authz::normalize_path(
        parts.uri.path(),
        filter_model::authz::PathNormalization::Base,
    ) {
        Err(rejection) => return Err(rejection.message().to_string()),
        Ok(std::borrow::Cow::Borrowed(_)) => return Ok(()),
        Ok(std::borrow::Cow::Owned(p)) => p,
    };
    let pq = match parts.uri.query() {
        Some(q) => format!("{normalized}?{q}"),
        None => normalized,
    };
    let mut up = parts.uri.clone().into_parts();
    up.path_and_query = Some(
        http::uri::PathAndQuery::from_maybe_shared(pq)
            .map_err(|e| format!("normalized path: {e}"))?,
    );
    parts.uri = Uri::from_parts(up).map_err(|e| format!("normalized path: {e}"))?;
    Ok(())
}

/// Adds a UUIDv4 `x-request-id` when the request has none.
pub fn ensure_request_id(h: &mut HeaderMap) {
    if h.contains_key(X_REQUEST_ID) {
        return;
    }
    let b: [u8; 16] = rand::rng().random();
    let x = u128::from_be_bytes(b);
    let x = (x & !(0xf000 << 64) & !(0xc000 << 48)) | (0x4000 << 64) | (0x8000 << 48);
    // 8-4-4-4-12 lower-case hex digits, written directly (this runs for
    // every request without an id; `format!` cost more than the rest of
    // the header handling together).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [b'-'; 36];
    let mut nibble = 32;
    for (i, c) in id.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        nibble -= 1;
        *c = HEX[((x >> (nibble * 4)) & 0xf) as usize];
    }
    if let Ok(v) = HeaderValue::from_bytes(&id) {
        h.insert(X_REQUEST_ID, v);
    }
}

/// The request sent upstream: hop-by-hop headers gone, origin-form target
/// with `Host` for HTTP/1.1, absolute URI without `Host` for HTTP/2.
pub fn upstream_request(
    parts: &http::request::Parts,
    authority: &str,
    proto: Protocol,
    body: ProxyBody,
    traceparent: Option<&str>,
) -> Result<Request<ProxyBody>, String> {
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    // `Expect: 100-continue` was answered downstream (hyper sends the 100
    // when the body is read), as Envoy does by default.
    headers.remove(http::header::EXPECT);
    if let Some(tp) = traceparent
        && let Ok(v) = HeaderValue::from_str(tp)
    {
        headers.insert(TRACEPARENT, v);
    }
    let (uri, version) = match proto {
        Protocol::Http1 => {
            if !authority.is_empty() {
                let v = HeaderValue::from_str(authority)
                    .map_err(|_| format!("invalid authority {authority:?}"))?;
                headers.insert(HOST, v);
            }
            // Origin form: the received path and query as they are (a
            // cheap clone; no re-parse).
            let uri = match parts.uri.path_and_query() {
                Some(p) => Uri::from(p.clone()),
                None => Uri::from(http::uri::PathAndQuery::from_static("/")),
            };
            (uri, Version::HTTP_11)
        }
        Protocol::Http2 => {
            headers.remove(HOST);
            let scheme = parts.uri.scheme_str().unwrap_or("http");
            let a = if authority.is_empty() {
                "localhost"
            } else {
                authority
            };
            (
                format!("{scheme}://{a}{pq}")
                    .parse::<Uri>()
                    .map_err(|e| e.to_string())?,
                Version::HTTP_2,
            )
        }
    };
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    Ok(req)
}

/// The HTTP status a gRPC status stands for (Envoy's
/// `Grpc::Utility::grpcToHttpStatus`).
pub fn grpc_to_http_status(grpc: u32) -> u16 {
    match grpc {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed_but_te_trailers_kept() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(TE, HeaderValue::from_static("trailers, deflate"));
        h.insert("x-app", HeaderValue::from_static("ok"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h.get(TE).unwrap(), "trailers");
        assert_eq!(h.get("x-app").unwrap(), "ok");
    }

    #[test]
    fn grpc_timeout_units() {
        let t = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", HeaderValue::from_static(v));
            grpc_timeout(&h)
        };
        assert_eq!(t("100m"), Some(Duration::from_millis(100)));
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("5x"), None);
        assert_eq!(t("123456789S"), None);
    }

    #[test]
    fn request_ids_are_uuid_v4() {
        let mut h = HeaderMap::new();
        ensure_request_id(&mut h);
        let id = h.get(X_REQUEST_ID).unwrap().to_str().unwrap().to_string();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        for (i, c) in id.chars().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                assert_eq!(c, '-', "{id}");
            } else {
                assert!(c.is_ascii_hexdigit() && !c.is_ascii_uppercase(), "{id}");
            }
        }
        // Random: two ids differ.
        let mut h2 = HeaderMap::new();
        ensure_request_id(&mut h2);
        assert_ne!(h2.get(X_REQUEST_ID).unwrap().to_str().unwrap(), id);
        ensure_request_id(&mut h);
        assert_eq!(h.get(X_REQUEST_ID).unwrap().to_str().unwrap(), id);
    }

    #[test]
    fn upstream_request_line_per_protocol() {
        let (parts, ()) = Request::get("/a?b=1")
            .header(HOST, "svc:80")
            .body(())
            .unwrap()
            .into_parts();
        let r1 =
            upstream_request(&parts, "svc:80", Protocol::Http1, ProxyBody::Empty, None).unwrap();
        assert_eq!(r1.uri().to_string(), "/a?b=1");
        assert_eq!(r1.headers().get(HOST).unwrap(), "svc:80");
        let r2 = upstream_request(
            &parts,
            "svc:80",
            Protocol::Http2,
            ProxyBody::Empty,
            Some("00-aa-bb-01"),
        )
        .unwrap();
        assert_eq!(r2.uri().to_string(), "http://svc:80/a?b=1");
        assert!(r2.headers().get(HOST).is_none());
        assert_eq!(r2.version(), Version::HTTP_2);
    }
}
