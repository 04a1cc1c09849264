//! The node agent: keeps one [`WorkloadProxy`] per local enrolled workload,
//! reconciling whenever the registry changes.
//!
//! A workload is served when it runs on this node, is enrolled
//! (`protocol: HBONE`, which the operator sets from
//! `istio.io/dataplane-mode=ambient` on the pod or its namespace) and is not
//! labelled `istio.io/dataplane-mode=none`. In in-pod mode enrolment means:
//! open the pod's network namespace, create the listeners inside it, then
//! install the redirect rules; unenrolment removes the rules first, then
//! closes the listeners. The pod's processes are never restarted.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mesh_common::identity::SpiffeId;
use mesh_common::model::{TunnelProtocol, Workload};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::capture::{self, CapturePorts};
use crate::config::CaptureMode;
use crate::netns::Netns;
use crate::proxy::{HostSockets, NetnsSockets, ProxyError, ProxyInputs, WorkloadProxy};

/// Label opting a pod out of ambient.
pub const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";

/// Should this ztunnel serve `w`?
pub fn should_serve(w: &Workload, node: &str) -> bool {
    w.node == node
        && w.protocol == TunnelProtocol::Hbone
        && w.labels.get(DATAPLANE_MODE_LABEL).map(String::as_str) != Some("none")
}

/// Errors enrolling a workload.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// Proxy start failed.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// Capture rules failed.
    #[error(transparent)]
    Capture(#[from] capture::CaptureError),
    /// The pod's network namespace is not there (yet).
    #[error("network namespace {0} not found")]
    NoNetns(PathBuf),
}

/// Result of one reconcile pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Workloads that could not be enrolled (retried soon; not ready).
    pub failed: usize,
    /// Workloads whose pod network namespace does not exist yet (polled).
    pub waiting: usize,
}

struct Enrolled {
    proxy: Arc<WorkloadProxy>,
    /// What forces a restart when it changes.
    fingerprint: (Vec<IpAddr>, String),
    netns: Option<Arc<Netns>>,
}

/// Enrolment state of this node.
pub struct Manager {
    inputs: Arc<ProxyInputs>,
    enrolled: Mutex<HashMap<String, Enrolled>>,
    ready: AtomicBool,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("enrolled", &self.enrolled_uids())
            .finish()
    }
}

impl Manager {
    /// A manager with nothing enrolled.
    pub fn new(inputs: Arc<ProxyInputs>) -> Arc<Self> {
        Arc::new(Self {
            inputs,
            enrolled: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
        })
    }

    /// The proxy of an enrolled workload.
    pub fn proxy(&self, uid: &str) -> Option<Arc<WorkloadProxy>> {
        self.enrolled.lock().get(uid).map(|e| e.proxy.clone())
    }

    /// Enrolled workload uids, sorted.
    pub fn enrolled_uids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.enrolled.lock().keys().cloned().collect();
        v.sort();
        v
    }

    /// Did the last reconcile enrol every workload whose pod is present?
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Reconciles until `shutdown`, then unenrols everything.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut changes = self.inputs.registry.subscribe();
        self.inputs.registry.synced().await;
        loop {
            let outcome = self.reconcile().await;
            self.ready.store(outcome.failed == 0, Ordering::Release);
            let retry = tokio::time::sleep(if outcome.failed > 0 {
                Duration::from_millis(500)
            } else if outcome.waiting > 0 {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(3600)
            });
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = changes.changed() => if r.is_err() { break },
                _ = retry => {}
            }
        }
        let all: Vec<String> = self.enrolled.lock().keys().cloned().collect();
        for uid in all {
            self.unenroll(&uid);
        }
    }

    /// One reconcile pass.
    pub async fn reconcile(&self) -> Reconciled {
        let node = &self.inputs.cfg.node;
        let desired: HashMap<String, Arc<Workload>> = self
            .inputs
            .registry
            .read()
            .workloads()
            .filter(|w| should_serve(w, node))
            .map(|w| (w.uid.clone(), w.clone()))
            .collect();
        let stale: Vec<String> = self
            .enrolled
            .lock()
            .iter()
            .filter(|(uid, e)| {
                desired
                    .get(*uid)
                    .is_none_or(|w| fingerprint(w) != e.fingerprint)
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in stale {
            self.unenroll(&uid);
        }
        let mut outcome = Reconciled::default();
        for (uid, w) in desired {
            if self.enrolled.lock().contains_key(&uid) {
                continue;
            }
            match self.enroll(&w).await {
                Ok(e) => {
                    info!(%uid, "workload enrolled");
                    self.enrolled.lock().insert(uid, e);
                }
                Err(EnrollError::NoNetns(path)) => {
                    // The pod is not running on this node (yet): not an error.
                    debug!(%uid, netns = %path.display(), "pod network namespace not present; waiting");
                    outcome.waiting += 1;
                }
                Err(e) => {
                    warn!(%uid, error = %e, "cannot enrol workload yet; will retry");
                    outcome.failed += 1;
                }
            }
        }
        outcome
    }

    async fn enroll(&self, w: &Workload) -> Result<Enrolled, EnrollError> {
        let cfg = &self.inputs.cfg;
        let (proxy, netns) = match &cfg.capture {
            CaptureMode::Shared => {
                let ip = w
                    .addresses
                    .first()
                    .copied()
                    .ok_or_else(|| ProxyError::NoAddress(w.uid.clone()))?;
                let p = WorkloadProxy::start(
                    self.inputs.clone(),
                    w,
                    Arc::new(HostSockets {
                        source_ip: Some(ip),
                    }),
                    ip,
                )
                .await?;
                (p, None)
            }
            CaptureMode::InPod { netns_template } => {
                let path = netns_path(netns_template, w);
                if !path.exists() {
                    return Err(EnrollError::NoNetns(path));
                }
                let ns = Arc::new(Netns::open(&path).map_err(ProxyError::from)?);
                let sockets = Arc::new(NetnsSockets(ns.clone()));
                let p = WorkloadProxy::start(
                    self.inputs.clone(),
                    w,
                    sockets,
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                )
                .await?;
                let ports = CapturePorts {
                    outbound: cfg.outbound_port,
                    inbound_plaintext: cfg.inbound_plaintext_port,
                    hbone: cfg.hbone_port,
                };
                if let Err(e) = capture::install(&ns, ports) {
                    p.stop();
                    return Err(e.into());
                }
                (p, Some(ns))
            }
        };
        Ok(Enrolled {
            proxy,
            fingerprint: fingerprint(w),
            netns,
        })
    }

    fn unenroll(&self, uid: &str) {
        let Some(e) = self.enrolled.lock().remove(uid) else {
            return;
        };
        if let Some(ns) = &e.netns
            && let Err(err) = capture::uninstall(ns)
        {
            warn!(%uid, error = %err, "could not remove capture rules");
        }
        e.proxy.stop();
        let id: SpiffeId = e.proxy.identity().clone();
        let still_used = self
            .enrolled
            .lock()
            .values()
            .any(|o| o.proxy.identity() == &id);
        if !still_used {
            self.inputs.certs.forget(&id);
        }
        info!(%uid, "workload unenrolled");
    }
}

fn fingerprint(w: &Workload) -> (Vec<IpAddr>, String) {
    (w.addresses.clone(), w.identity())
}

/// Expands the netns template for `w`.
pub fn netns_path(template: &str, w: &Workload) -> PathBuf {
    PathBuf::from(
        template
            .replace("{name}", &w.name)
            .replace("{namespace}", &w.namespace)
            .replace("{uid}", &w.uid.replace('/', "_")),
    )
}
