//! JSON access logs, one line per request, with the fields of Istio's
//! default JSON access-log format plus a few waypoint extras (attempts,
//! gRPC status, trace id, authorization policy).

use std::fs::OpenOptions;
use std::io::{LineWriter, Write};
use std::path::Path;
use std::time::UNIX_EPOCH;

use parking_lot::Mutex;
use serde_json::{Map, Value as Json, json};

use super::record::RequestRecord;

/// Where log lines go.
pub struct AccessLogSink {
    out: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for AccessLogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLogSink").finish_non_exhaustive()
    }
}

impl AccessLogSink {
    /// Standard output.
    pub fn stdout() -> Self {
        AccessLogSink {
            out: Mutex::new(Box::new(LineWriter::new(std::io::stdout()))),
        }
    }

    /// Appends to a file.
    pub fn file(path: &Path) -> std::io::Result<Self> {
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AccessLogSink {
            out: Mutex::new(Box::new(LineWriter::new(f))),
        })
    }

    /// Any writer (tests).
    pub fn writer(w: Box<dyn Write + Send>) -> Self {
        AccessLogSink { out: Mutex::new(w) }
    }

    /// Writes one entry.
    pub fn write(&self, entry: &Json) {
        let mut line = entry.to_string();
        line.push('\n');
        if let Err(e) = self.out.lock().write_all(line.as_bytes()) {
            tracing::warn!(error = %e, "cannot write access log");
        }
    }
}

fn rfc3339_millis(t: std::time::SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The JSON entry for a request.
pub fn entry(rec: &RequestRecord) -> Json {
    let h = |n: &str| {
        rec.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut m = Map::new();
    let mut put = |k: &str, v: Json| {
        m.insert(k.to_string(), v);
    };
    put("start_time", json!(rfc3339_millis(rec.start_time)));
    put("method", json!(rec.method));
    put("path", json!(rec.path));
    put("protocol", json!(rec.protocol));
    put("response_code", json!(rec.response_code));
    put("response_flags", json!(rec.flags_label()));
    put(
        "response_code_details",
        json!(rec.details.clone().unwrap_or_else(|| "via_upstream".into())),
    );
    put("bytes_received", json!(rec.request_body.get()));
    put("bytes_sent", json!(rec.response_body_bytes));
    put("duration", json!(rec.duration().as_millis() as u64));
    put(
        "upstream_service_time",
        rec.upstream_service_time
            .map_or(Json::Null, |d| json!(d.as_millis() as u64)),
    );
    put("x_forwarded_for", json!(h("x-forwarded-for")));
    put("user_agent", json!(h("user-agent")));
    put("request_id", json!(h("x-request-id")));
    put("authority", json!(rec.authority));
    put(
        "upstream_host",
        json!(rec.upstream_address.map(|a| a.to_string())),
    );
    put("upstream_cluster", json!(rec.upstream_cluster));
    put(
        "downstream_local_address",
        json!(rec.local_address.to_string()),
    );
    put(
        "downstream_remote_address",
        json!(rec.source_address.to_string()),
    );
    put("route_name", json!(rec.route));
    put("upstream_attempts", json!(rec.attempts));
    put("grpc_status", json!(rec.grpc_status));
    put("source_principal", json!(rec.source.principal));
    put("request_principal", json!(rec.request_principal));
    put("authorization_policy", json!(rec.authz_policy));
    put(
        "connection_security_policy",
        json!(if rec.mtls { "mutual_tls" } else { "none" }),
    );
    put("trace_id", json!(rec.span.map(|s| s.trace_id_hex())));
    Json::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339_millis(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&rfc3339_millis(leap)[..10], "2000-02-29");
        let _ = SystemTime::now();
    }
}
