//! Load balancers, as Envoy implements the policies Istio selects:
//!
//! - `ROUND_ROBIN`: each available host in turn.
//! - `LEAST_REQUEST` (Istio's default): power of two choices — two distinct
//!   random hosts, the one with fewer active requests wins.
//! - `RANDOM`: uniform.
//! - `consistentHash`: a ring of at least `minimumRingSize` points (1024);
//!   the request's hash walks clockwise to the first available host (maglev
//!   tables are served by the same ring).
//! - `PASSTHROUGH`: no balancing; the proxy connects to the address the
//!   client asked for.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mesh_common::model::LoadBalancer;
use rand::Rng;

use super::host::Host;

/// Envoy's default ring size.
pub const DEFAULT_MIN_RING_SIZE: u64 = 1024;
/// Largest ring we build.
const MAX_RING_SIZE: u64 = 1 << 20;

/// A load balancer over a fixed host list.
#[derive(Debug)]
pub enum Balancer {
    /// `ROUND_ROBIN`.
    RoundRobin(AtomicUsize),
    /// `LEAST_REQUEST`.
    LeastRequest,
    /// `RANDOM`.
    Random,
    /// `consistentHash`.
    Ring(Ring),
    /// `PASSTHROUGH`.
    Passthrough,
}

/// A hash ring: sorted (point, host index).
#[derive(Debug)]
pub struct Ring {
    points: Vec<(u64, usize)>,
}

/// 64-bit hash used for ring points and request keys.
pub fn hash64(v: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

impl Ring {
    fn new(hosts: &[Arc<Host>], min_size: u64) -> Self {
        if hosts.is_empty() {
            return Ring { points: Vec::new() };
        }
        let n = hosts.len() as u64;
        let per_host = min_size.clamp(1, MAX_RING_SIZE).div_ceil(n);
        let mut points = Vec::with_capacity((per_host * n) as usize);
        for (i, h) in hosts.iter().enumerate() {
            let key = h.addr.to_string();
            for j in 0..per_host {
                points.push((hash64((&key, j)), i));
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    fn pick(
        &self,
        hosts: &[Arc<Host>],
        hash: u64,
        usable: impl Fn(&Host) -> bool,
    ) -> Option<Arc<Host>> {
        if self.points.is_empty() {
            return None;
        }
        let start = self.points.partition_point(|(p, _)| *p < hash);
        (0..self.points.len())
            .map(|k| self.points[(start + k) % self.points.len()].1)
            .map(|i| &hosts[i])
            .find(|h| usable(h))
            .cloned()
    }
}

impl Balancer {
    /// The balancer for a policy over `hosts`.
    pub fn new(policy: &LoadBalancer, hosts: &[Arc<Host>]) -> Self {
        match policy {
            LoadBalancer::RoundRobin => Balancer::RoundRobin(AtomicUsize::new(
                rand::rng().random_range(0..hosts.len().max(1)),
            )),
            LoadBalancer::LeastRequest => Balancer::LeastRequest,
            LoadBalancer::Random => Balancer::Random,
            LoadBalancer::Passthrough => Balancer::Passthrough,
            LoadBalancer::ConsistentHash(ch) => {
                let size = ch
                    .minimum_ring_size
                    .or(ch.maglev_table_size)
                    .unwrap_or(DEFAULT_MIN_RING_SIZE);
                Balancer::Ring(Ring::new(hosts, size))
            }
        }
    }

    /// Picks one of `candidates` (never empty). `all` and `hash` serve the
    /// ring, which is built over all hosts.
    pub fn pick(
        &self,
        all: &[Arc<Host>],
        candidates: &[Arc<Host>],
        hash: Option<u64>,
        usable: impl Fn(&Host) -> bool,
    ) -> Option<Arc<Host>> {
        let n = candidates.len();
        if n == 0 {
            return None;
        }
        match self {
            Balancer::RoundRobin(next) => {
                let i = next.fetch_add(1, Ordering::Relaxed);
                Some(candidates[i % n].clone())
            }
            Balancer::Random | Balancer::Passthrough => {
                Some(candidates[rand::rng().random_range(0..n)].clone())
            }
            Balancer::LeastRequest => {
                if n == 1 {
                    return Some(candidates[0].clone());
                }
                let mut rng = rand::rng();
                let a = rng.random_range(0..n);
                let mut b = rng.random_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let (ha, hb) = (&candidates[a], &candidates[b]);
                Some(
                    if hb.active_requests() < ha.active_requests() {
                        hb
                    } else {
                        ha
                    }
                    .clone(),
                )
            }
            Balancer::Ring(ring) => match hash {
                Some(h) => ring.pick(all, h, usable),
                None => Some(candidates[rand::rng().random_range(0..n)].clone()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_common::model::{ConsistentHash, HashKey};
    use std::collections::HashMap;

    fn hosts(n: u8) -> Vec<Arc<Host>> {
        (0..n)
            .map(|i| {
                let addr: std::net::SocketAddr = format!("10.0.0.{}:80", i + 1).parse().unwrap();
                Host::new(
                    addr,
                    false,
                    Arc::new(crate::cluster::bare_endpoint(addr.ip())),
                )
            })
            .collect()
    }

    fn counts(b: &Balancer, hs: &[Arc<Host>], n: usize) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for _ in 0..n {
            let h = b.pick(hs, hs, None, |_| true).unwrap();
            *m.entry(h.addr.to_string()).or_default() += 1;
        }
        m
    }

    #[test]
    fn round_robin_is_exactly_even() {
        let hs = hosts(3);
        let b = Balancer::new(&LoadBalancer::RoundRobin, &hs);
        let c = counts(&b, &hs, 300);
        assert!(c.values().all(|v| *v == 100), "{c:?}");
    }

    #[test]
    fn random_covers_all_hosts_roughly_evenly() {
        let hs = hosts(4);
        let b = Balancer::new(&LoadBalancer::Random, &hs);
        let c = counts(&b, &hs, 4000);
        assert_eq!(c.len(), 4);
        assert!(c.values().all(|v| (800..1200).contains(v)), "{c:?}");
    }

    #[test]
    fn least_request_avoids_the_busy_host() {
        let hs = hosts(2);
        let _busy: Vec<_> = (0..5).map(|_| hs[0].start_request()).collect();
        let b = Balancer::new(&LoadBalancer::LeastRequest, &hs);
        let c = counts(&b, &hs, 100);
        assert_eq!(c.get("10.0.0.2:80"), Some(&100), "{c:?}");
        // With three hosts one busy, the busy one loses every comparison.
        let hs = hosts(3);
        let _busy: Vec<_> = (0..5).map(|_| hs[0].start_request()).collect();
        let c = counts(&b, &hs, 3000);
        assert_eq!(c.get("10.0.0.1:80"), None, "{c:?}");
    }

    #[test]
    fn ring_hash_is_sticky_and_skips_unusable_hosts() {
        let hs = hosts(5);
        let b = Balancer::new(
            &LoadBalancer::ConsistentHash(ConsistentHash {
                key: HashKey::UseSourceIp,
                minimum_ring_size: None,
                maglev_table_size: None,
            }),
            &hs,
        );
        let mut seen = HashMap::new();
        for k in 0..200u64 {
            let h = hash64(k);
            let first = b.pick(&hs, &hs, Some(h), |_| true).unwrap();
            let again = b.pick(&hs, &hs, Some(h), |_| true).unwrap();
            assert_eq!(first.addr, again.addr);
            *seen.entry(first.addr).or_insert(0) += 1;
            let skip = first.addr;
            let other = b.pick(&hs, &hs, Some(h), |x| x.addr != skip).unwrap();
            assert_ne!(other.addr, skip);
        }
        assert_eq!(seen.len(), 5, "keys spread over all hosts: {seen:?}");
    }
}
