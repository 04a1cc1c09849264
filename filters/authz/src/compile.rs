//! AuthorizationPolicy → compiled match trees, as Istio's RBAC generator
//! builds them (`pilot/pkg/security/authz/model`).

use crate::ConfigError;
use crate::pattern::{Cidr, Glob, PathTemplate, Pattern};
use filter_model::authz::{Action, AuthorizationPolicy, Condition, Operation, Rule, Source};

/// A header-style value matcher: `*` is a presence match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HeaderPattern {
    Present,
    Value(Pattern),
}

impl HeaderPattern {
    fn parse(v: &str, lowercase: bool) -> Self {
        if v == "*" {
            return HeaderPattern::Present;
        }
        let p = Pattern::parse(v);
        HeaderPattern::Value(if lowercase { p.lowercase() } else { p })
    }
}

/// A trust-domain matcher over `spiffe://...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TrustDomainMatch {
    /// `spiffe://` prefix (any peer identity).
    Any,
    /// Exactly this trust domain.
    Exact(String),
    /// `<a>[^/]*<b>`.
    Wildcard(String, String),
}

/// `iss`/`sub` matchers of one `requestPrincipals` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RequestPrincipal {
    pub iss: Pattern,
    pub sub: Pattern,
}

/// A path matcher: Istio string form or URI template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PathMatch {
    Str(Pattern),
    Template(PathTemplate),
}

/// One attribute condition; matches when any of its values matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Attr {
    /// Over `spiffe://<peer>`.
    Principal(Vec<Pattern>),
    /// Over `spiffe://<peer>`: `*/ns/<glob>/*`.
    Namespace(Vec<Glob>),
    /// (namespace, service account).
    ServiceAccount(Vec<(String, String)>),
    TrustDomain(Vec<TrustDomainMatch>),
    SourceIp(Vec<Cidr>),
    RemoteIp(Vec<Cidr>),
    RequestPrincipal(Vec<RequestPrincipal>),
    Audiences(Vec<Pattern>),
    Presenter(Vec<Pattern>),
    Claim(Vec<String>, Vec<Pattern>),
    Header(String, Vec<HeaderPattern>),
    /// `:authority`, case-insensitive.
    Host(Vec<HeaderPattern>),
    Method(Vec<HeaderPattern>),
    Path(Vec<PathMatch>),
    Port(Vec<u16>),
    DestinationIp(Vec<Cidr>),
    /// An attribute this proxy never has (`connection.sni`,
    /// `experimental.envoy.filters.*`).
    Never,
}

impl Attr {
    /// Attributes only an HTTP request has. On a TCP filter chain Istio
    /// drops them: a rule of an ALLOW policy that uses one is skipped, a
    /// DENY or AUDIT rule is kept without it.
    pub(crate) fn is_http(&self) -> bool {
        matches!(
            self,
            Attr::RequestPrincipal(_)
                | Attr::Audiences(_)
                | Attr::Presenter(_)
                | Attr::Claim(..)
                | Attr::Header(..)
                | Attr::Host(_)
                | Attr::Method(_)
                | Attr::Path(_)
        )
    }
}

/// A condition, possibly negated (`notX`, `notValues`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Check {
    pub attr: Attr,
    pub negate: bool,
}

/// (any `from`) AND (any `to`) AND (all `when`); an empty list = any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CompiledRule {
    pub from: Vec<Vec<Check>>,
    pub to: Vec<Vec<Check>>,
    pub when: Vec<Check>,
}

impl CompiledRule {
    /// Does any condition of the rule need an HTTP request?
    pub(crate) fn uses_http(&self) -> bool {
        self.from
            .iter()
            .chain(&self.to)
            .flatten()
            .chain(&self.when)
            .any(|c| c.attr.is_http())
    }
}

/// A compiled policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CompiledPolicy {
    /// `<namespace>/<name>`.
    pub id: String,
    pub action: Action,
    pub provider: Option<String>,
    pub dry_run: bool,
    /// Empty = never matches.
    pub rules: Vec<CompiledRule>,
    pub targets: Vec<String>,
}

/// The mesh trust domain and its aliases.
pub(crate) struct TrustDomains {
    pub all: Vec<String>,
}

fn prefix_match(a: &str, pattern: &str) -> bool {
    pattern.strip_suffix('*').is_some_and(|p| a.starts_with(p))
}

fn suffix_match(a: &str, pattern: &str) -> bool {
    pattern.strip_prefix('*').is_some_and(|p| a.ends_with(p))
}

impl TrustDomains {
    fn known(&self, td: &str) -> bool {
        self.all.iter().any(|s| {
            td == s
                || s == "*"
                || prefix_match(td, s)
                || prefix_match(s, td)
                || suffix_match(td, s)
                || suffix_match(s, td)
        })
    }

    /// Istio `ReplaceTrustDomainAliases`.
    fn expand_principals(&self, values: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for p in values {
            let parts: Vec<&str> = p.split('/').collect();
            if parts.len() != 5 || parts[0] == "*" {
                out.push(p.clone());
                continue;
            }
            let td = parts[0];
            if !(self.known(td) || td == "cluster.local") {
                out.push(p.clone());
                continue;
            }
            let mut expanded: Vec<String> = Vec::new();
            for alias in &self.all {
                let candidate = if suffix_match(alias, td) {
                    p.clone()
                } else {
                    format!("{alias}/{}", parts[1..].join("/"))
                };
                if !expanded.contains(&candidate) {
                    expanded.push(candidate);
                }
            }
            out.extend(expanded);
        }
        out
    }

    /// Istio `ExpandTrustDomainAliases`.
    fn expand_trust_domains(&self, values: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for v in values {
            let items: Vec<String> = if self.all.contains(v) {
                self.all.clone()
            } else {
                vec![v.clone()]
            };
            for i in items {
                if !out.contains(&i) {
                    out.push(i);
                }
            }
        }
        out
    }
}

/// Builds an attribute from a `when` condition's values.
type AttrMaker<'a> = Box<dyn Fn(&[String]) -> Result<Attr, ConfigError> + 'a>;

struct Ctx<'a> {
    policy_ns: &'a str,
    tds: &'a TrustDomains,
    err_prefix: String,
}

impl Ctx<'_> {
    fn invalid(&self, msg: impl std::fmt::Display) -> ConfigError {
        ConfigError::Invalid(format!("{}{msg}", self.err_prefix))
    }

    fn principals(&self, v: &[String]) -> Attr {
        let expanded = self.tds.expand_principals(v);
        Attr::Principal(
            expanded
                .iter()
                .map(|p| Pattern::with_prefix(p, "spiffe://"))
                .collect(),
        )
    }

    fn namespaces(&self, v: &[String]) -> Attr {
        Attr::Namespace(
            v.iter()
                .map(|ns| Glob::new(&format!("*/ns/{ns}/*")))
                .collect(),
        )
    }

    fn service_accounts(&self, v: &[String]) -> Attr {
        Attr::ServiceAccount(
            v.iter()
                .map(|s| match s.split_once('/') {
                    Some((ns, sa)) => (ns.to_owned(), sa.to_owned()),
                    None => (self.policy_ns.to_owned(), s.clone()),
                })
                .collect(),
        )
    }

    fn trust_domains(&self, v: &[String]) -> Attr {
        let expanded = self.tds.expand_trust_domains(v);
        Attr::TrustDomain(
            expanded
                .iter()
                .map(|td| {
                    if td == "*" {
                        TrustDomainMatch::Any
                    } else if let Some((a, b)) = td.split_once('*') {
                        TrustDomainMatch::Wildcard(a.to_owned(), b.to_owned())
                    } else {
                        TrustDomainMatch::Exact(td.clone())
                    }
                })
                .collect(),
        )
    }

    fn cidrs(&self, v: &[String]) -> Result<Vec<Cidr>, ConfigError> {
        v.iter()
            .map(|c| Cidr::parse(c).map_err(|e| self.invalid(e)))
            .collect()
    }

    fn ports(&self, v: &[String]) -> Result<Attr, ConfigError> {
        let ports = v
            .iter()
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|e| self.invalid(format!("bad port ({p}): {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Attr::Port(ports))
    }

    fn paths(&self, v: &[String]) -> Result<Attr, ConfigError> {
        let paths = v
            .iter()
            .map(|p| {
                if PathTemplate::is_template(p) {
                    PathTemplate::parse(p)
                        .map(PathMatch::Template)
                        .map_err(|e| self.invalid(e))
                } else {
                    Ok(PathMatch::Str(Pattern::parse(p)))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Attr::Path(paths))
    }

    /// One attribute from `(values, notValues)`: up to two checks.
    fn push(
        &self,
        out: &mut Vec<Check>,
        values: &[String],
        not: &[String],
        make: &dyn Fn(&[String]) -> Result<Attr, ConfigError>,
    ) -> Result<(), ConfigError> {
        if !values.is_empty() {
            out.push(Check {
                attr: make(values)?,
                negate: false,
            });
        }
        if !not.is_empty() {
            out.push(Check {
                attr: make(not)?,
                negate: true,
            });
        }
        Ok(())
    }

    fn source(&self, s: &Source) -> Result<Vec<Check>, ConfigError> {
        let mut out = Vec::new();
        self.push(&mut out, &s.principals, &s.not_principals, &|v| {
            Ok(self.principals(v))
        })?;
        self.push(
            &mut out,
            &s.request_principals,
            &s.not_request_principals,
            &|v| Ok(request_principals(v)),
        )?;
        self.push(
            &mut out,
            &s.service_accounts,
            &s.not_service_accounts,
            &|v| Ok(self.service_accounts(v)),
        )?;
        self.push(&mut out, &s.trust_domains, &s.not_trust_domains, &|v| {
            Ok(self.trust_domains(v))
        })?;
        self.push(&mut out, &s.namespaces, &s.not_namespaces, &|v| {
            Ok(self.namespaces(v))
        })?;
        self.push(
            &mut out,
            &s.remote_ip_blocks,
            &s.not_remote_ip_blocks,
            &|v| Ok(Attr::RemoteIp(self.cidrs(v)?)),
        )?;
        self.push(&mut out, &s.ip_blocks, &s.not_ip_blocks, &|v| {
            Ok(Attr::SourceIp(self.cidrs(v)?))
        })?;
        Ok(out)
    }

    fn operation(&self, o: &Operation) -> Result<Vec<Check>, ConfigError> {
        let mut out = Vec::new();
        self.push(&mut out, &o.hosts, &o.not_hosts, &|v| {
            Ok(Attr::Host(
                v.iter().map(|h| HeaderPattern::parse(h, true)).collect(),
            ))
        })?;
        self.push(&mut out, &o.methods, &o.not_methods, &|v| {
            Ok(Attr::Method(
                v.iter().map(|m| HeaderPattern::parse(m, false)).collect(),
            ))
        })?;
        self.push(&mut out, &o.paths, &o.not_paths, &|v| self.paths(v))?;
        self.push(&mut out, &o.ports, &o.not_ports, &|v| self.ports(v))?;
        Ok(out)
    }

    fn condition(&self, c: &Condition) -> Result<Vec<Check>, ConfigError> {
        let key = c.key.as_str();
        if key.is_empty() {
            return Err(self.invalid("`key` must not be empty"));
        }
        if c.values.is_empty() && c.not_values.is_empty() {
            return Err(self.invalid(format!(
                "at least one of `values` or `notValues` must be set for key {key}"
            )));
        }
        let make: AttrMaker<'_> = match key {
            "source.ip" => Box::new(|v| Ok(Attr::SourceIp(self.cidrs(v)?))),
            "remote.ip" => Box::new(|v| Ok(Attr::RemoteIp(self.cidrs(v)?))),
            "source.namespace" => Box::new(|v| Ok(self.namespaces(v))),
            "source.principal" => Box::new(|v| Ok(self.principals(v))),
            "source.serviceAccount" => Box::new(|v| Ok(self.service_accounts(v))),
            "source.trustDomain" => Box::new(|v| Ok(self.trust_domains(v))),
            "request.auth.principal" => Box::new(|v| Ok(request_principals(v))),
            "request.auth.audiences" => Box::new(|v| {
                Ok(Attr::Audiences(
                    v.iter().map(|a| Pattern::parse(a)).collect(),
                ))
            }),
            "request.auth.presenter" => Box::new(|v| {
                Ok(Attr::Presenter(
                    v.iter().map(|a| Pattern::parse(a)).collect(),
                ))
            }),
            "destination.ip" => Box::new(|v| Ok(Attr::DestinationIp(self.cidrs(v)?))),
            "destination.port" => Box::new(|v| self.ports(v)),
            "connection.sni" => Box::new(|_| Ok(Attr::Never)),
            "destination.namespace" => {
                return Err(self.invalid(
                    "attribute destination.namespace is replaced by the metadata.namespace",
                ));
            }
            "destination.name" | "destination.user" => {
                return Err(self.invalid(format!(
                    "deprecated attribute {key}: only supported in v1alpha1"
                )));
            }
            k if k.starts_with("destination.labels[") => {
                return Err(self.invalid(format!(
                    "attribute {k} is replaced by the workload selector"
                )));
            }
            k if k.starts_with("experimental.envoy.filters.") => Box::new(|_| Ok(Attr::Never)),
            k if k.starts_with("request.headers") => {
                let name = bracketed(&k["request.headers".len()..])
                    .ok_or_else(|| self.invalid(format!("bad key ({k}): should have format a[b]")))?
                    .to_ascii_lowercase();
                Box::new(move |v| {
                    Ok(Attr::Header(
                        name.clone(),
                        v.iter().map(|h| HeaderPattern::parse(h, false)).collect(),
                    ))
                })
            }
            k if k.starts_with("request.auth.claims") => {
                let path = nested_brackets(&k["request.auth.claims".len()..]).ok_or_else(|| {
                    self.invalid(format!("bad key ({k}): should have format a[b]"))
                })?;
                Box::new(move |v| {
                    Ok(Attr::Claim(
                        path.clone(),
                        v.iter().map(|c| Pattern::parse(c)).collect(),
                    ))
                })
            }
            k => return Err(self.invalid(format!("unknown attribute {k}"))),
        };
        let mut out = Vec::new();
        self.push(&mut out, &c.values, &c.not_values, &*make)?;
        Ok(out)
    }

    fn rule(&self, r: &Rule) -> Result<CompiledRule, ConfigError> {
        let mut out = CompiledRule::default();
        for f in r.from.iter().flatten() {
            out.from.push(self.source(&f.source)?);
        }
        for t in r.to.iter().flatten() {
            out.to.push(self.operation(&t.operation)?);
        }
        for c in r.when.iter().flatten() {
            out.when.extend(self.condition(c)?);
        }
        Ok(out)
    }
}

/// Istio's `requestPrincipals` split at the last `/` (§1.9).
fn request_principals(values: &[String]) -> Attr {
    Attr::RequestPrincipal(
        values
            .iter()
            .map(|v| {
                let split = v.rfind('/').map(|i| (&v[..i], &v[i + 1..]));
                let (iss, sub) = if v == "*" {
                    (Pattern::NonEmpty, Pattern::NonEmpty)
                } else if let Some(rest) = v.strip_prefix('*') {
                    match split {
                        Some((iss, sub)) => {
                            let iss = if iss == "*" {
                                Pattern::NonEmpty
                            } else {
                                Pattern::Suffix(iss[1..].to_owned())
                            };
                            (iss, Pattern::Exact(sub.to_owned()))
                        }
                        None => (Pattern::NonEmpty, Pattern::Suffix(rest.to_owned())),
                    }
                } else if let Some(head) = v.strip_suffix('*') {
                    match split {
                        Some((iss, sub)) => {
                            let sub = if sub == "*" {
                                Pattern::NonEmpty
                            } else {
                                Pattern::Prefix(sub[..sub.len() - 1].to_owned())
                            };
                            (Pattern::Exact(iss.to_owned()), sub)
                        }
                        None => (Pattern::Prefix(head.to_owned()), Pattern::NonEmpty),
                    }
                } else {
                    match split {
                        Some((iss, sub)) => (
                            Pattern::Exact(iss.to_owned()),
                            Pattern::Exact(sub.to_owned()),
                        ),
                        None => (Pattern::Exact(v.clone()), Pattern::Exact(String::new())),
                    }
                };
                RequestPrincipal { iss, sub }
            })
            .collect(),
    )
}

/// `[name]` → `name`.
fn bracketed(s: &str) -> Option<&str> {
    s.strip_prefix('[')?.strip_suffix(']')
}

/// Istio `extractNameInNestedBrackets`: `[a][b]` → `[a, b]`; a single
/// bracket pair may contain `]`-free text only.
fn nested_brackets(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let end = inner.find(']')?;
        if inner[..end].contains('[') {
            return bracketed(s).map(|n| vec![n.to_owned()]);
        }
        out.push(inner[..end].to_owned());
        rest = &inner[end + 1..];
    }
    (!out.is_empty()).then_some(out)
}

/// Compiles one policy.
pub(crate) fn compile_policy(
    p: &AuthorizationPolicy,
    tds: &TrustDomains,
) -> Result<CompiledPolicy, ConfigError> {
    let ctx = Ctx {
        policy_ns: &p.namespace,
        tds,
        err_prefix: format!("invalid policy {}.{}: ", p.name, p.namespace),
    };
    let rules = p
        .rules
        .iter()
        .flatten()
        .map(|r| ctx.rule(r))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CompiledPolicy {
        id: format!("{}/{}", p.namespace, p.name),
        action: p.action,
        provider: p
            .provider
            .as_ref()
            .map(|pr| pr.name.clone())
            .filter(|n| !n.is_empty()),
        dry_run: p.dry_run && matches!(p.action, Action::Allow | Action::Deny),
        rules,
        targets: p
            .target_services
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_domain_aliases() {
        let tds = TrustDomains {
            all: vec!["td1".into(), "td2".into()],
        };
        assert_eq!(
            tds.expand_principals(&[
                "cluster.local/ns/a/sa/x".into(),
                "other/ns/a/sa/x".into(),
                "*/ns/a/sa/x".into()
            ]),
            vec![
                "td1/ns/a/sa/x",
                "td2/ns/a/sa/x",
                "other/ns/a/sa/x",
                "*/ns/a/sa/x"
            ]
        );
        assert_eq!(
            tds.expand_trust_domains(&["td2".into(), "x".into()]),
            vec!["td1", "td2", "x"]
        );
    }

    #[test]
    fn claim_keys() {
        assert_eq!(
            nested_brackets("[a][b]"),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(nested_brackets("[groups]"), Some(vec!["groups".to_owned()]));
        assert_eq!(nested_brackets("groups"), None);
    }
}
