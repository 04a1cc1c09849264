//! Istio's TCP metrics for connections the waypoint forwards on TCP service
//! ports: `istio_tcp_connections_opened_total`,
//! `istio_tcp_connections_closed_total`, `istio_tcp_sent_bytes_total`
//! (bytes sent to the client) and `istio_tcp_received_bytes_total` (bytes
//! received from the client), `reporter="waypoint"`,
//! `request_protocol="tcp"`. Byte counters are updated as data flows, so a
//! long-lived connection shows up before it closes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use super::istio::{MAX_SERIES_PER_METRIC, escape};

const NAMES: [(&str, &str); 4] = [
    (
        "istio_tcp_connections_opened_total",
        "TCP connections opened through the waypoint.",
    ),
    (
        "istio_tcp_connections_closed_total",
        "TCP connections closed through the waypoint.",
    ),
    (
        "istio_tcp_sent_bytes_total",
        "Bytes sent to the client on TCP connections.",
    ),
    (
        "istio_tcp_received_bytes_total",
        "Bytes received from the client on TCP connections.",
    ),
];

/// The four counters of one label set.
#[derive(Debug, Default)]
pub struct TcpSeries {
    /// Which of the four metrics this series reports (Telemetry
    /// overrides); part of its key, so a change of overrides starts new
    /// series instead of hiding old counts.
    enabled: [bool; 4],
    opened: AtomicU64,
    closed: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
}

/// All TCP series, keyed by their rendered labels.
#[derive(Debug, Default)]
pub struct TcpMetrics {
    series: RwLock<HashMap<String, Arc<TcpSeries>>>,
}

/// One open connection's counters; counts the close when dropped.
#[derive(Debug)]
pub struct TcpConnection(Option<Arc<TcpSeries>>);

impl TcpConnection {
    /// Counts bytes received from the client.
    pub fn received(&self, n: u64) {
        if let Some(s) = &self.0 {
            s.received.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts bytes sent to the client.
    pub fn sent(&self, n: u64) {
        if let Some(s) = &self.0 {
            s.sent.fetch_add(n, Ordering::Relaxed);
        }
    }
}

impl Drop for TcpConnection {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn render(labels: &[(&'static str, Cow<'_, str>)]) -> String {
    let mut out = String::with_capacity(1024);
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape(v, &mut out);
        out.push('"');
    }
    out
}

impl TcpMetrics {
    fn series(
        &self,
        labels: &[(&'static str, Cow<'_, str>)],
        enabled: [bool; 4],
    ) -> Option<Arc<TcpSeries>> {
        if enabled == [false; 4] {
            return None;
        }
        let mut key: String = enabled.iter().map(|e| if *e { '1' } else { '0' }).collect();
        key.push('|');
        key.push_str(&render(labels));
        if let Some(s) = self.series.read().get(&key) {
            return Some(s.clone());
        }
        let mut w = self.series.write();
        if !w.contains_key(&key) && w.len() >= MAX_SERIES_PER_METRIC {
            return None;
        }
        Some(
            w.entry(key)
                .or_insert_with(|| {
                    Arc::new(TcpSeries {
                        enabled,
                        ..TcpSeries::default()
                    })
                })
                .clone(),
        )
    }

    /// A connection opened (counted now; its close when the handle drops),
    /// reported on the metrics `enabled` (in [`super::istio::TCP_METRICS`]
    /// order).
    pub fn opened(
        &self,
        labels: &[(&'static str, Cow<'_, str>)],
        enabled: [bool; 4],
    ) -> TcpConnection {
        let s = self.series(labels, enabled);
        if let Some(s) = &s {
            s.opened.fetch_add(1, Ordering::Relaxed);
        }
        TcpConnection(s)
    }

    /// A connection refused before it opened (policy, no endpoint): counted
    /// as opened and closed, as Envoy's TCP stats do.
    pub fn refused(&self, labels: &[(&'static str, Cow<'_, str>)], enabled: [bool; 4]) {
        drop(self.opened(labels, enabled));
    }

    /// Writes the series (Prometheus text).
    pub fn encode(&self, out: &mut String) {
        let map = self.series.read();
        if map.is_empty() {
            return;
        }
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        for (i, (name, help)) in NAMES.iter().enumerate() {
            let mut series = keys.iter().filter(|k| map[**k].enabled[i]).peekable();
            if series.peek().is_none() {
                continue;
            }
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for k in series {
                let s = &map[*k];
                let v = [&s.opened, &s.closed, &s.sent, &s.received][i].load(Ordering::Relaxed);
                let labels = k.split_once('|').map_or(k.as_str(), |(_, l)| l);
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A metric a Telemetry override turns off is not written; the others
    /// of the same connection are.
    #[test]
    fn disabled_tcp_metrics_are_not_written() {
        let m = TcpMetrics::default();
        let labels = [("reporter", Cow::Borrowed("waypoint"))];
        let c = m.opened(&labels, [true, true, false, true]);
        c.sent(10);
        c.received(7);
        drop(c);
        let mut out = String::new();
        m.encode(&mut out);
        assert!(
            out.contains("istio_tcp_connections_opened_total{reporter=\"waypoint\"} 1"),
            "{out}"
        );
        assert!(out.contains("istio_tcp_received_bytes_total{reporter=\"waypoint\"} 7"));
        assert!(!out.contains("istio_tcp_sent_bytes_total"), "{out}");
        // All off: nothing at all.
        let m = TcpMetrics::default();
        drop(m.opened(&labels, [false; 4]));
        let mut out = String::new();
        m.encode(&mut out);
        assert!(out.is_empty(), "{out}");
    }
}
