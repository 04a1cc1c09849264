//! `meshctl install`: render what a Kubernetes cluster needs (the
//! project's CRDs, the operator Deployment with its RBAC and mesh ConfigMap,
//! the ztunnel DaemonSet, the `istio-waypoint` GatewayClass) to stdout, for
//! `kubectl apply -f -`. The local mesh does not use it (`meshctl up`).

use crate::cmd::InstallArgs;
use anyhow::bail;

/// Rendering settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Image registry.
    pub hub: String,
    /// Image tag.
    pub tag: String,
    /// Namespace of the control plane and ztunnel.
    pub namespace: String,
    /// SPIFFE trust domain.
    pub trust_domain: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            hub: "ghcr.io/ambient-mesh".into(),
            tag: env!("CARGO_PKG_VERSION").into(),
            namespace: "istio-system".into(),
            trust_domain: "cluster.local".into(),
        }
    }
}

/// Parse `--set key=value` pairs (istioctl's spelling where it exists).
pub fn settings(sets: &[String]) -> anyhow::Result<Settings> {
    let mut s = Settings::default();
    for kv in sets {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--set {kv:?}: use key=value")
        };
        match k {
            "profile" if v == "ambient" => {}
            "profile" => bail!(
                "profile {v:?} is not supported: this mesh only has the ambient data plane (--set profile=ambient)"
            ),
            "hub" | "values.global.hub" => s.hub = v.into(),
            "tag" | "values.global.tag" => s.tag = v.into(),
            "namespace" | "values.global.istioNamespace" => s.namespace = v.into(),
            "meshConfig.trustDomain" | "values.meshConfig.trustDomain" => s.trust_domain = v.into(),
            other => bail!(
                "unknown setting {other:?}: supported are profile, hub, tag, namespace, meshConfig.trustDomain"
            ),
        }
    }
    Ok(s)
}

/// The non-CRD manifests.
pub fn render(s: &Settings) -> String {
    let (ns, hub, tag, td) = (&s.namespace, &s.hub, &s.tag, &s.trust_domain);
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
  labels: {{istio.io/dataplane-mode: none}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: {ns}}}
data:
  mesh: |
    rootNamespace: {ns}
    trustDomain: {td}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: istio-waypoint}}
spec:
  controllerName: istio.io/mesh-controller
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: mesh-operator, namespace: {ns}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: ztunnel, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: mesh-operator}}
rules:
- apiGroups: [""]
  resources: [namespaces, pods, services, configmaps]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [services, serviceaccounts]
  verbs: [create, update, patch, delete]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [authentication.k8s.io]
  resources: [tokenreviews]
  verbs: [create]
- apiGroups: [security.istio.io, networking.istio.io, telemetry.istio.io, extensions.istio.io, gateway.networking.k8s.io]
  resources: ["*"]
  verbs: [get, list, watch, update, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: mesh-operator}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: mesh-operator}}
subjects: [{{kind: ServiceAccount, name: mesh-operator, namespace: {ns}}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: mesh-operator, namespace: {ns}, labels: {{app: mesh-operator}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: mesh-operator}}}}
  template:
    metadata: {{labels: {{app: mesh-operator, istio.io/dataplane-mode: none}}}}
    spec:
      serviceAccountName: mesh-operator
      containers:
      - name: operator
        image: {hub}/operator:{tag}
        args: [kube, --state-dir, /var/lib/mesh-operator]
        ports: [{{name: push, containerPort: 15012}}, {{name: debug, containerPort: 15014}}]
        readinessProbe: {{httpGet: {{path: /ready, port: 15014}}}}
        volumeMounts: [{{name: state, mountPath: /var/lib/mesh-operator}}]
      volumes: [{{name: state, emptyDir: {{}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: mesh-operator, namespace: {ns}}}
spec:
  selector: {{app: mesh-operator}}
  ports:
  - {{name: push, port: 15012, appProtocol: http2}}
  - {{name: debug, port: 15014}}
---
# One ztunnel per node. In-pod capture enters each pod's network namespace
# (CAP_SYS_ADMIN, CAP_NET_ADMIN, the host's netns directory).
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: ztunnel, namespace: {ns}, labels: {{app: ztunnel}}}}
spec:
  selector: {{matchLabels: {{app: ztunnel}}}}
  template:
    metadata: {{labels: {{app: ztunnel, istio.io/dataplane-mode: none}}}}
    spec:
      serviceAccountName: ztunnel
      hostPID: false
      containers:
      - name: istio-proxy
        image: {hub}/ztunnel:{tag}
        args:
        - --node=$(NODE_NAME)
        - --capture=inpod
        - --netns-template=/var/run/netns/{{uid}}
        - --xds-address=https://mesh-operator.{ns}.svc:15012
        - --xds-root-cert=/var/run/secrets/mesh/root-cert.pem
        - --token-file=/var/run/secrets/tokens/ztunnel-token
        env:
        - name: NODE_NAME
          valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}
        ports: [{{name: metrics, containerPort: 15020}}, {{name: ready, containerPort: 15021}}]
        readinessProbe: {{httpGet: {{path: /healthz/ready, port: 15021}}}}
        securityContext:
          privileged: false
          capabilities: {{add: [NET_ADMIN, SYS_ADMIN, NET_RAW], drop: [ALL]}}
        volumeMounts:
        - {{name: netns, mountPath: /var/run/netns, mountPropagation: HostToContainer}}
        - {{name: token, mountPath: /var/run/secrets/tokens}}
        - {{name: mesh-roots, mountPath: /var/run/secrets/mesh}}
      volumes:
      - {{name: netns, hostPath: {{path: /var/run/netns}}}}
      - name: token
        projected:
          sources: [{{serviceAccountToken: {{path: ztunnel-token, audience: mesh-operator, expirationSeconds: 43200}}}}]
      - {{name: mesh-roots, configMap: {{name: mesh-ca-root-cert}}}}
"#
    )
}

/// `install`.
pub fn install(a: &InstallArgs) -> anyhow::Result<()> {
    let s = settings(&a.set)?;
    print!("{}", operator::crd::crdgen()?);
    if !a.crds_only {
        println!("---");
        print!("{}", render(&s));
    }
    eprintln!(
        "✔ rendered the mesh for namespace {} (apply with: meshctl install | kubectl apply -f -)",
        s.namespace
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_render() {
        let s = settings(&["profile=ambient".into(), "tag=1.2.3".into()]).unwrap();
        assert_eq!(s.tag, "1.2.3");
        assert!(
            settings(&["profile=default".into()])
                .unwrap_err()
                .to_string()
                .contains("only has the ambient")
        );
        let text = render(&s);
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = <serde_yaml::Value as serde::Deserialize>::deserialize(doc).unwrap();
            assert!(v.get("kind").is_some(), "{v:?}");
        }
        assert!(text.contains("image: ghcr.io/ambient-mesh/ztunnel:1.2.3"));
    }
}
