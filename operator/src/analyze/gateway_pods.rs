//! `k8sgateway.SelectorAnalyzer` (IST0166): a `selector` that matches the
//! pods of a Kubernetes Gateway (a waypoint's included) has no effect
//! there; such policies attach with `targetRefs`.

use super::{Level, Message};
use crate::config::{ConfigSet, IstioObject};

/// The label Gateway API deployments put on their pods.
const GATEWAY_NAME: &str = "gateway.networking.k8s.io/gateway-name";

pub(super) fn analyze(cs: &ConfigSet) -> Vec<Message> {
    let mut out = Vec::new();
    for o in cs.resources.objects() {
        // As Istio: only the deprecated singular `targetRef` exempts a
        // policy; a selector, even an empty one, is checked.
        let (selector, target_ref) = match &o {
            IstioObject::AuthorizationPolicy(x) => (&x.spec.selector, x.spec.target_ref.is_some()),
            IstioObject::RequestAuthentication(x) => {
                (&x.spec.selector, x.spec.target_ref.is_some())
            }
            IstioObject::Telemetry(x) => (&x.spec.selector, x.spec.target_ref.is_some()),
            IstioObject::WasmPlugin(x) => (&x.spec.selector, x.spec.target_ref.is_some()),
            _ => continue,
        };
        let Some(selector) = selector.as_ref().filter(|_| !target_ref) else {
            continue;
        };
        let k = o.key();
        let labels = selector.labels();
        for pod in cs.pods.iter().filter(|p| p.namespace == k.namespace) {
            let Some(gateway) = pod.labels.get(GATEWAY_NAME) else {
                continue;
            };
            if labels.iter().all(|(l, v)| pod.labels.get(l) == Some(v)) {
                out.push(Message::new(
                    "IST0166",
                    "IneffectiveSelector",
                    Level::Warning,
                    k.kind.as_str(),
                    &k.namespace,
                    &k.name,
                    format!(
                        "Ineffective selector on Kubernetes Gateway {gateway}. Use the TargetRef field instead."
                    ),
                ));
            }
        }
    }
    out
}
