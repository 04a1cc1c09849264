//! VirtualService rules and matches that can never be used (IST0130,
//! IST0131), as Istio's `analyzeUnreachableHTTPRules` finds them.

use super::Validation;
use crate::crd::networking::VirtualServiceSpec;
use std::collections::BTreeMap;

/// Istio's `analyzeUnreachableHTTPRules`: IST0130 (rule never used) and
/// IST0131 (match never used: duplicate, or covered by an earlier prefix
/// match), with Istio's rule and match names (`"name"` or `#N`).
pub(super) fn unreachable_rules(v: &mut Validation, spec: &VirtualServiceSpec) {
    let route_name = |i: usize| match spec.http[i].name.as_deref().filter(|n| !n.is_empty()) {
        Some(n) => format!("{n:?}"),
        None => format!("#{i}"),
    };
    let unused = |v: &mut Validation, rule: &str, reason: &str| {
        v.warn(format!("virtualService rule {rule} not used ({reason})"));
    };
    let ineffective = |v: &mut Validation, rule: &str, m: &str, dup: &str| {
        v.warn(format!(
            "virtualService rule {rule} match {m} is not used (duplicate/overlapping match in rule {dup})"
        ));
    };
    let mut seen: Vec<(String, usize)> = Vec::new();
    let mut empty_seen = false;
    let mut prefixed: Vec<PrefixMatch> = Vec::new();
    for (i, r) in spec.http.iter().enumerate() {
        let matches = r.r#match.as_deref().unwrap_or_default();
        if matches.is_empty() {
            if empty_seen {
                unused(v, &route_name(i), "only the last rule can have no matches");
            }
            empty_seen = true;
            continue;
        }
        let mut dup = 0;
        for (mi, m) in matches.iter().enumerate() {
            if empty_seen {
                unused(v, &route_name(i), "route without matches defined before");
                continue;
            }
            let key = serde_json::to_string(&{
                let mut m = m.clone();
                m.name = None;
                m
            })
            .unwrap_or_default();
            let mname = match m.name.as_deref().filter(|n| !n.is_empty()) {
                Some(n) => format!("{n:?}"),
                None => format!("#{mi}"),
            };
            if let Some((_, d)) = seen.iter().find(|(k, _)| *k == key) {
                ineffective(v, &route_name(i), &mname, &route_name(*d));
                dup += 1;
                continue;
            }
            seen.push((key, i));
            if let Some(p) = PrefixMatch::of(m, route_name(i), mname) {
                prefixed.push(p);
            }
        }
        if dup == matches.len() {
            unused(v, &route_name(i), "all matches used by prior rules");
        }
    }
    for (a_i, a) in prefixed.iter().enumerate() {
        for b in &prefixed[a_i + 1..] {
            if b.prefix != a.prefix && a.covers(b) {
                ineffective(
                    v,
                    &b.route,
                    &format!("{} of prefix {}", b.name, b.prefix),
                    &format!("{} of prefix {} on {}", a.name, a.prefix, a.route),
                );
            }
        }
    }
}

/// A URI-prefix match reduced to what Istio compares for overlaps
/// (`genMatchHTTPRoutes`): exact values as `exact:<v>`, prefixes as
/// `prefix:<v>`; no method means GET.
struct PrefixMatch {
    route: String,
    name: String,
    prefix: String,
    port: Option<u32>,
    method: String,
    authority: String,
    headers: BTreeMap<String, String>,
    query: BTreeMap<String, String>,
    without: BTreeMap<String, String>,
}

impl PrefixMatch {
    fn of(
        m: &crate::crd::networking::HttpMatchRequest,
        route: String,
        name: String,
    ) -> Option<Self> {
        let prefix = m.uri.as_ref()?.prefix.clone().filter(|p| !p.is_empty())?;
        let key = |sm: Option<&crate::crd::networking::StringMatch>| -> String {
            match sm {
                Some(sm) => match (sm.exact.as_deref(), sm.prefix.as_deref()) {
                    (Some(e), _) if !e.is_empty() => format!("exact:{e}"),
                    (_, Some(p)) if !p.is_empty() => format!("prefix:{p}"),
                    _ => String::new(),
                },
                None => String::new(),
            }
        };
        let map = |m: &Option<BTreeMap<String, crate::crd::networking::StringMatch>>| {
            m.iter()
                .flatten()
                .map(|(k, sm)| (k.clone(), key(Some(sm))))
                .collect::<BTreeMap<_, _>>()
        };
        let mut method = key(m.method.as_ref());
        if method.is_empty() {
            method = "exact:GET".into();
        }
        Some(PrefixMatch {
            route,
            name,
            prefix,
            port: m.port,
            method,
            authority: key(m.authority.as_ref()),
            headers: map(&m.headers),
            query: map(&m.query_params),
            without: map(&m.without_headers),
        })
    }

    /// Istio's `coveredValidation`: does `self` (earlier) cover `later`?
    fn covers(&self, later: &PrefixMatch) -> bool {
        let field = |a: &str, b: &str| a == b || a.starts_with(b);
        let maps = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, va)| b.get(k).is_some_and(|vb| field(va, vb)))
        };
        later.prefix.starts_with(&self.prefix)
            && later.port == self.port
            && field(&self.method, &later.method)
            && field(&self.authority, &later.authority)
            && maps(&self.headers, &later.headers)
            && maps(&self.query, &later.query)
            && maps(&self.without, &later.without)
    }
}
