//! The consistent-hash key of a request (DestinationRule
//! `loadBalancer.consistentHash`): a header, the source IP, a query
//! parameter, or a cookie, generated when absent and a `ttl` is set, as
//! Envoy does.

use mesh_common::model::{HashKey, LoadBalancer};

use super::Exchange;
use crate::cluster::Cluster;
use crate::cluster::lb::hash64;

impl Exchange {
    pub(super) fn hash_key(
        &mut self,
        cluster: &Cluster,
        parts: &http::request::Parts,
    ) -> Option<u64> {
        let LoadBalancer::ConsistentHash(ch) = &cluster.policy.load_balancer else {
            return None;
        };
        match &ch.key {
            HashKey::HttpHeaderName(h) => {
                parts.headers.get(h.as_str()).map(|v| hash64(v.as_bytes()))
            }
            HashKey::UseSourceIp => Some(hash64(self.down.remote.ip())),
            HashKey::HttpQueryParameterName(q) => parts.uri.query().and_then(|qs| {
                qs.split('&')
                    .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
                    .find(|(k, _)| k == q)
                    .map(|(_, v)| hash64(v))
            }),
            HashKey::HttpCookie { name, path, ttl } => {
                let present = parts
                    .headers
                    .get_all(http::header::COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(';'))
                    .filter_map(|c| c.trim().split_once('='))
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.trim_matches('"').to_string());
                if let Some(v) = present {
                    return Some(hash64(v.as_str()));
                }
                // Absent: with a ttl, generate it (Envoy: a hash of the
                // downstream connection's addresses, so requests racing on
                // one connection get the same cookie) and hash this request
                // by it, so the next one carrying it lands on the same host.
                let ttl = (*ttl)?;
                let value = format!("{:016x}", hash64((self.down.remote, self.down.local)));
                let mut sc = format!("{name}=\"{value}\"");
                if ttl.as_secs() > 0 {
                    sc.push_str(&format!("; Max-Age={}", ttl.as_secs()));
                }
                if let Some(p) = path.as_deref().filter(|p| !p.is_empty()) {
                    sc.push_str(&format!("; Path={p}"));
                }
                sc.push_str("; HttpOnly");
                self.set_cookie = http::HeaderValue::from_str(&sc).ok();
                Some(hash64(value.as_str()))
            }
        }
    }
}
