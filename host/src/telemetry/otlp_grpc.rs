//! OTLP over gRPC: what Istio's `opentelemetry` extension provider speaks
//! when it has no `http` section (the default, collector port 4317). The
//! spans become an `ExportTraceServiceRequest` (the protocol's own message
//! types from `opentelemetry-proto`), framed as one gRPC message and
//! `POST`ed over HTTP/2 (prior knowledge) to
//! `/opentelemetry.proto.collector.trace.v1.TraceService/Export`.

use bytes::{BufMut, Bytes, BytesMut};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;

use super::trace::FinishedSpan;

/// The gRPC method path.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

fn nanos(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
    }
}

/// The export request for `spans`.
pub fn request(service_name: &str, spans: &[FinishedSpan]) -> ExportTraceServiceRequest {
    let spans = spans
        .iter()
        .map(|s| Span {
            trace_id: s.ctx.trace_id.to_vec(),
            span_id: s.ctx.span_id.to_vec(),
            parent_span_id: s.ctx.parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: s.name.clone(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: nanos(s.start),
            end_time_unix_nano: nanos(s.end),
            attributes: s.attributes.iter().map(|(k, v)| string_kv(k, v)).collect(),
            status: Some(Status {
                code: if s.error {
                    status::StatusCode::Error as i32
                } else {
                    status::StatusCode::Unset as i32
                },
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string_kv("service.name", service_name)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "waypoint".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// One length-prefixed, uncompressed gRPC message.
pub fn frame(msg: &impl Message) -> Bytes {
    let len = msg.encoded_len();
    let mut b = BytesMut::with_capacity(5 + len);
    b.put_u8(0);
    b.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    // Encoding into a buffer of the exact encoded length cannot fail.
    let _ = msg.encode(&mut b);
    b.freeze()
}

/// The call's outcome from `grpc-status` (trailers, or the headers of a
/// trailers-only answer).
pub fn outcome(
    headers: &http::HeaderMap,
    trailers: Option<&http::HeaderMap>,
) -> Result<(), String> {
    let status = trailers
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok());
    match status {
        Some("0") => Ok(()),
        Some(code) => {
            let msg = trailers
                .and_then(|t| t.get("grpc-message"))
                .or_else(|| headers.get("grpc-message"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            Err(format!("grpc-status {code} {msg}"))
        }
        None => Err("no grpc-status in the answer".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framed_request_decodes_back() {
        let s = FinishedSpan::sample("503", true);
        let ctx = s.ctx;
        let b = frame(&request("waypoint.shop", &[s]));
        assert_eq!(b[0], 0);
        let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        assert_eq!(len, b.len() - 5);
        let r = ExportTraceServiceRequest::decode(&b[5..]).unwrap();
        let span = &r.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id, ctx.trace_id.to_vec());
        assert!(span.parent_span_id.is_empty());
        assert_eq!(
            span.status.as_ref().unwrap().code,
            status::StatusCode::Error as i32
        );
        assert_eq!(span.attributes[0].key, "http.status_code");
    }

    #[test]
    fn grpc_status_decides() {
        let mut h = http::HeaderMap::new();
        assert!(outcome(&h, None).is_err());
        h.insert("grpc-status", "14".parse().unwrap());
        assert!(outcome(&h, None).unwrap_err().contains("14"));
        let mut t = http::HeaderMap::new();
        t.insert("grpc-status", "0".parse().unwrap());
        assert!(outcome(&http::HeaderMap::new(), Some(&t)).is_ok());
    }
}
