//! The `outbound-http` capability's client: HTTP/1.1 calls to the upstreams
//! a filter's grant names, never to an address the guest chooses.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Largest response body returned to a guest.
const MAX_RESPONSE_BODY: usize = 1 << 20;
/// Ceiling of the guest-chosen timeout.
const MAX_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct OutboundClient {
    client: Client<HttpConnector, Full<Bytes>>,
    upstreams: BTreeMap<String, String>,
}

pub(crate) struct OutboundResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl OutboundClient {
    pub fn new(upstreams: &BTreeMap<String, String>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        OutboundClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
            upstreams: upstreams.clone(),
        }
    }

    pub async fn send(
        &self,
        upstream: &str,
        method: &str,
        path: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<OutboundResponse, String> {
        let base = self.upstreams.get(upstream).ok_or_else(|| {
            format!("upstream `{upstream}` is not in this filter's outbound-http grant")
        })?;
        if !path.starts_with('/') {
            return Err(format!("path `{path}` must start with '/'"));
        }
        let uri = format!("{}{}", base.trim_end_matches('/'), path);
        let mut req = http::Request::builder()
            .method(method)
            .uri(&uri)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("invalid request to {uri}: {e}"))?;
        for (k, v) in headers {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| format!("invalid header name `{k}`: {e}"))?;
            let value = http::HeaderValue::from_str(&v)
                .map_err(|e| format!("invalid value for header `{k}`: {e}"))?;
            req.headers_mut().append(name, value);
        }
        let timeout = if timeout.is_zero() {
            MAX_TIMEOUT
        } else {
            timeout.min(MAX_TIMEOUT)
        };
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("request to upstream `{upstream}` failed: {e}"))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BODY)
                .collect()
                .await
                .map_err(|e| format!("reading the response of `{upstream}`: {e}"))?
                .to_bytes();
            Ok(OutboundResponse {
                status: parts.status.as_u16(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
                body: body.to_vec(),
            })
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| format!("upstream `{upstream}` did not answer within {timeout:?}"))?
    }
}
