//! Authorization at the destination: evaluate the L4 policies that apply to
//! the destination workload (istio-semantics §1.3/§1.7/§3), and re-check
//! live connections when policies change.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mesh_common::model::policy::{Decision, evaluate};
use mesh_common::model::{Connection, Workload};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::registry::State;

/// Decides whether `conn` may reach `dst`. Dry-run policies are evaluated
/// and logged only.
pub fn check(state: &State, dst: &Workload, conn: &Connection) -> Decision {
    let policies = state.policies_for(dst);
    for p in policies.clone().filter(|p| p.dry_run && p.matches(conn)) {
        info!(
            policy = %format!("{}/{}", p.namespace, p.name),
            action = ?p.action,
            src = %conn.src,
            dst = %conn.dst,
            "dry-run: {} policy match",
            if p.action == mesh_common::model::RbacAction::Deny { "deny" } else { "allow" }
        );
    }
    evaluate(policies, conn)
}

struct Tracked {
    dst_uid: String,
    conn: Connection,
    cancel: CancellationToken,
}

/// Live inbound connections, re-checked on policy changes.
#[derive(Default)]
pub struct ConnTracker {
    next: AtomicU64,
    live: Mutex<HashMap<u64, Tracked>>,
}

impl std::fmt::Debug for ConnTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnTracker")
            .field("live", &self.len())
            .finish()
    }
}

/// Removes its connection from the tracker when dropped.
pub struct TrackGuard {
    tracker: Arc<ConnTracker>,
    id: u64,
    /// Cancelled when the connection is no longer allowed.
    pub revoked: CancellationToken,
}

impl Drop for TrackGuard {
    fn drop(&mut self) {
        self.tracker.live.lock().remove(&self.id);
    }
}

impl ConnTracker {
    /// A new tracker.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Tracks a connection allowed to `dst_uid`.
    pub fn track(self: &Arc<Self>, dst_uid: &str, conn: Connection) -> TrackGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let cancel = CancellationToken::new();
        self.live.lock().insert(
            id,
            Tracked {
                dst_uid: dst_uid.to_string(),
                conn,
                cancel: cancel.clone(),
            },
        );
        TrackGuard {
            tracker: self.clone(),
            id,
            revoked: cancel,
        }
    }

    /// Number of live connections.
    pub fn len(&self) -> usize {
        self.live.lock().len()
    }

    /// `true` when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Re-evaluates every live connection against `state`; closes (cancels)
    /// the ones now denied, including those whose destination vanished.
    /// Returns how many were closed.
    pub fn recheck(&self, state: &State) -> usize {
        let mut closed = 0;
        for t in self.live.lock().values() {
            if t.cancel.is_cancelled() {
                continue;
            }
            let allowed = state
                .workload(&t.dst_uid)
                .is_some_and(|w| check(state, w, &t.conn).is_allowed());
            if !allowed {
                info!(src = %t.conn.src, dst = %t.conn.dst, "closing connection no longer allowed by policy");
                t.cancel.cancel();
                closed += 1;
            }
        }
        closed
    }
}
