//! Incremental translation of AuthorizationPolicy changes.
//!
//! A change limited to AuthorizationPolicies that ztunnel enforces (no
//! `targetRefs`, before or after) whose workload selection did not change
//! touches exactly three things of a [`Translation`]: the policy's own
//! ztunnel [`Authorization`] (upserted, added or removed), its status, and
//! nothing else — workloads reference selector policies by key, waypoints
//! only receive `targetRefs` policies. [`apply_policy_changes`] patches a
//! previous translation in place so that it equals what [`super::translate`]
//! returns for the new configuration, in `O(changed · log policies)`.

use super::Translation;
use super::authz;
use super::status::StatusTarget;
use crate::config::ConfigSet;
use crate::crd::AuthorizationPolicy;
use mesh_common::model::{Authorization, Resource};

/// `namespace/name` of an AuthorizationPolicy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl PolicyKey {
    /// Key of a policy.
    pub fn of(ap: &AuthorizationPolicy) -> Self {
        PolicyKey {
            namespace: ap.metadata.namespace.clone().unwrap_or_default(),
            name: ap.metadata.name.clone().unwrap_or_default(),
        }
    }
}

/// Can the change of one policy from `old` to `new` (`None`: absent, so an
/// addition or a removal) be applied by [`apply_policy_changes`]?
///
/// Not when either version has `targetRefs` (waypoint configs change), nor
/// when the set of workloads referencing the policy may change: a selector
/// edited, or a selector policy added or removed (workloads list the
/// selector policies that select them).
pub fn is_incremental(
    old: Option<&AuthorizationPolicy>,
    new: Option<&AuthorizationPolicy>,
) -> bool {
    let refs = |p: &AuthorizationPolicy| !p.spec.all_target_refs().is_empty();
    if old.is_some_and(refs) || new.is_some_and(refs) {
        return false;
    }
    match (old, new) {
        (Some(o), Some(n)) => o.spec.selector == n.spec.selector,
        (Some(p), None) | (None, Some(p)) => p.spec.selector.is_none(),
        (None, None) => true,
    }
}

/// `(namespace, name)` of a policy: the order of
/// `ConfigSet::resources.authorization_policies` as the controller builds it.
pub fn sort_key(p: &AuthorizationPolicy) -> (&str, &str) {
    (
        p.metadata.namespace.as_deref().unwrap_or(""),
        p.metadata.name.as_deref().unwrap_or(""),
    )
}

/// The policy with `key` in `cs`.
fn find<'a>(cs: &'a ConfigSet, key: &PolicyKey) -> Option<&'a AuthorizationPolicy> {
    let aps = &cs.resources.authorization_policies;
    let ord = sort_key;
    let want = (key.namespace.as_str(), key.name.as_str());
    aps.binary_search_by(|p| ord(p).cmp(&want))
        .ok()
        .map(|i| &aps[i])
}

/// What [`apply_policy_changes`] changed in the ztunnel policies.
#[derive(Debug, Default)]
pub struct PolicyChanges {
    /// Policies added or changed.
    pub upserts: Vec<Authorization>,
    /// Keys of policies no longer sent.
    pub removals: Vec<String>,
}

/// Patch `t`, the translation of the previous configuration, so that it is
/// the translation of `cs`, which differs from the previous configuration
/// only in the policies `changed` (each [`is_incremental`]; present in `cs`
/// when added or changed, absent when removed).
///
/// `None` (and `t` untouched) when the policies of `cs` are not sorted by
/// [`sort_key`]: translate everything instead.
pub fn apply_policy_changes(
    t: &mut Translation,
    cs: &ConfigSet,
    changed: &[PolicyKey],
) -> Option<PolicyChanges> {
    let sorted =
        |aps: &[AuthorizationPolicy]| aps.windows(2).all(|w| sort_key(&w[0]) < sort_key(&w[1]));
    if !sorted(&cs.resources.authorization_policies) || t.policy_count > t.authorizations.len() {
        return None;
    }
    let mut out = PolicyChanges::default();
    for key in changed {
        let target = StatusTarget::new("AuthorizationPolicy", &key.namespace, &key.name);
        // A ztunnel policy's only conditions come from its conversion.
        t.statuses.0.remove(&target);
        let converted = find(cs, key).and_then(|ap| authz::convert_policy(ap, cs, &mut t.statuses));
        let prefix = &t.authorizations[..t.policy_count];
        let pos = prefix.binary_search_by(|a| {
            (a.namespace.as_str(), a.name.as_str())
                .cmp(&(key.namespace.as_str(), key.name.as_str()))
        });
        match (pos, converted) {
            (Ok(i), Some(a)) => {
                t.authorizations[i] = a.clone();
                out.upserts.push(a);
            }
            (Err(i), Some(a)) => {
                t.authorizations.insert(i, a.clone());
                t.policy_count += 1;
                out.upserts.push(a);
            }
            (Ok(i), None) => {
                let a = t.authorizations.remove(i);
                t.policy_count -= 1;
                out.removals.push(a.key());
            }
            (Err(_), None) => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse::{ParsedDoc, parse_documents};
    use crate::config::{NamespaceInfo, PodInfo};
    use crate::translate::{TranslateContext, translate};
    use std::collections::BTreeMap;

    fn policy(yaml: &str) -> AuthorizationPolicy {
        match parse_documents(yaml, "test", "default").remove(0).unwrap() {
            ParsedDoc::Object(crate::config::IstioObject::AuthorizationPolicy(ap)) => ap,
            _ => panic!("not an AuthorizationPolicy"),
        }
    }

    fn base() -> ConfigSet {
        let mut cs = ConfigSet::default();
        for ns in ["foo", "bar", "istio-system"] {
            cs.namespaces.insert(
                ns.into(),
                NamespaceInfo {
                    name: ns.into(),
                    labels: BTreeMap::from([("istio.io/dataplane-mode".into(), "ambient".into())]),
                },
            );
        }
        for (i, ns) in ["foo", "bar"].iter().enumerate() {
            cs.pods.push(PodInfo {
                name: format!("app-{i}"),
                namespace: (*ns).into(),
                labels: BTreeMap::from([("app".into(), "app".into())]),
                service_account: "app".into(),
                node: "n1".into(),
                ips: vec![format!("10.0.0.{}", i + 2).parse().unwrap()],
                ready: true,
                ..Default::default()
            });
        }
        cs
    }

    fn with(mut cs: ConfigSet, aps: &[&str]) -> ConfigSet {
        let mut aps: Vec<AuthorizationPolicy> = aps.iter().map(|y| policy(y)).collect();
        aps.sort_by_key(PolicyKey::of);
        cs.resources.authorization_policies = aps;
        cs
    }

    const ALLOW_SEL: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow, namespace: foo}\nspec:\n  selector: {matchLabels: {app: app}}\n  rules: [{from: [{source: {principals: [cluster.local/ns/bar/sa/app]}}]}]\n";
    const ALLOW_SEL_2: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow, namespace: foo}\nspec:\n  selector: {matchLabels: {app: app}}\n  rules: [{from: [{source: {principals: [cluster.local/ns/bar/sa/other]}}], to: [{operation: {ports: [\"8080\"]}}]}]\n";
    const DENY_NS: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny, namespace: bar}\nspec:\n  action: DENY\n  rules: [{from: [{source: {namespaces: [foo]}}]}]\n";
    const AUDIT_NS: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny, namespace: bar}\nspec:\n  action: AUDIT\n  rules: [{from: [{source: {namespaces: [foo]}}]}]\n";
    const GLOBAL: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a-global, namespace: istio-system}\nspec:\n  action: DENY\n  rules: [{to: [{operation: {ports: [\"9999\"]}}]}]\n";
    const WAYPOINT: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: wp, namespace: foo}\nspec:\n  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]\n  rules: [{}]\n";

    /// Incremental result == full translation of the new configuration,
    /// and the reported changes are exactly the store's difference.
    fn check(old: &[&str], new: &[&str], changed: &[&str]) -> PolicyChanges {
        let ctx = TranslateContext::default();
        let (old_cs, new_cs) = (with(base(), old), with(base(), new));
        let mut t = translate(&old_cs, &ctx);
        let keys: Vec<PolicyKey> = changed
            .iter()
            .map(|k| {
                let (ns, n) = k.split_once('/').unwrap();
                PolicyKey {
                    namespace: ns.into(),
                    name: n.into(),
                }
            })
            .collect();
        let out = apply_policy_changes(&mut t, &new_cs, &keys).unwrap();
        let full = translate(&new_cs, &ctx);
        assert_eq!(t.authorizations, full.authorizations);
        assert_eq!(t.policy_count, full.policy_count);
        assert_eq!(t.statuses, full.statuses);
        assert_eq!(*t.workloads, *full.workloads);
        out
    }

    #[test]
    fn rule_change_upserts_only_that_policy() {
        let out = check(
            &[ALLOW_SEL, DENY_NS],
            &[ALLOW_SEL_2, DENY_NS],
            &["foo/allow"],
        );
        assert_eq!(out.upserts.len(), 1);
        assert_eq!(out.upserts[0].key(), "foo/allow");
        assert!(out.removals.is_empty());
        assert!(format!("{:?}", out.upserts[0].rules).contains("sa/other"));
    }

    #[test]
    fn namespace_and_global_policies_added_and_removed_in_order() {
        let out = check(
            &[ALLOW_SEL],
            &[ALLOW_SEL, DENY_NS, GLOBAL],
            &["bar/deny", "istio-system/a-global"],
        );
        assert_eq!(out.upserts.len(), 2);
        let out = check(
            &[ALLOW_SEL, DENY_NS, GLOBAL],
            &[ALLOW_SEL],
            &["bar/deny", "istio-system/a-global"],
        );
        assert_eq!(
            out.removals,
            vec!["bar/deny".to_string(), "istio-system/a-global".to_string()]
        );
    }

    #[test]
    fn policy_no_longer_sent_is_removed_and_its_status_updated() {
        // AUDIT is not enforced by ztunnel: removed from the store, status False.
        let out = check(&[DENY_NS], &[AUDIT_NS], &["bar/deny"]);
        assert_eq!(out.removals, vec!["bar/deny".to_string()]);
        let out = check(&[AUDIT_NS], &[DENY_NS], &["bar/deny"]);
        assert_eq!(out.upserts.len(), 1);
    }

    #[test]
    fn selector_and_waypoint_changes_are_not_incremental() {
        let (a, b, ns, wp) = (
            policy(ALLOW_SEL),
            policy(ALLOW_SEL_2),
            policy(DENY_NS),
            policy(WAYPOINT),
        );
        assert!(is_incremental(Some(&a), Some(&b)));
        assert!(is_incremental(None, Some(&ns)));
        assert!(is_incremental(Some(&ns), None));
        assert!(
            !is_incremental(None, Some(&a)),
            "a new selector policy changes workloads"
        );
        assert!(!is_incremental(Some(&a), None));
        let mut moved = b.clone();
        moved.spec.selector = None;
        assert!(!is_incremental(Some(&a), Some(&moved)));
        assert!(!is_incremental(None, Some(&wp)));
    }
}
