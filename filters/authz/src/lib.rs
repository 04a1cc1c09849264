//! The first-party authorization filter: AuthorizationPolicies attached to
//! the waypoint, with the semantics of Envoy RBAC as Istio generates it.
//!
//! 1. [`Authorizer::from_json`] compiles a
//!    [`filter_model::authz::AuthzConfig`]: trust-domain aliases expanded,
//!    templates and CIDRs parsed, policies indexed by target service.
//! 2. [`Authorizer::evaluate`] normalizes the request (`%00`, non-upper-case
//!    method, bad header names ⇒ 400; dot segments etc. per the mesh setting)
//!    and returns a [`Plan`]: the CUSTOM providers to ask (in order) and the
//!    local decision that applies when they allow — DENY first, then ALLOW
//!    (no ALLOW policy ⇒ allow; ALLOW policies none matching ⇒ deny).
//! 3. The guest asks the providers through `outbound-http`
//!    ([`extauthz::Provider`]) and answers `403 RBAC: access denied` on a
//!    local deny.
//!
//! ```
//! use filter_authz::{Authorizer, Decision, Input};
//! let a = Authorizer::from_json(br#"{"policies":[{"namespace":"foo","name":"p",
//!   "rules":[{"to":[{"operation":{"paths":["/api/*"]}}]}]}]}"#).unwrap();
//! let input = Input { path: "/x/../api/v1", ..Input::default() };
//! let plan = a.evaluate(&input).unwrap();
//! assert_eq!(plan.path, "/api/v1");
//! assert_eq!(plan.decision, Decision::Allow { policy: Some("foo/p") });
//! ```

mod compile;
mod eval;
pub mod extauthz;
#[cfg(target_arch = "wasm32")]
mod guest;
mod normalize;
mod pattern;

use compile::{CompiledPolicy, TrustDomains, compile_policy};
use eval::{EvalCtx, policy_matches};
use filter_model::authz::{Action, AuthzConfig, PathNormalization};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

pub use normalize::{Rejection, normalize_path};

/// Body of a local RBAC denial (Envoy's text).
pub const DENIED_BODY: &str = "RBAC: access denied";

/// Why an authorization configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not the authz configuration's shape.
    #[error("invalid authz config JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A value Istio's validation rejects (message as Istio words it).
    #[error("{0}")]
    Invalid(String),
}

/// The end-user identity a JWT filter established.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestAuth<'a> {
    /// JWT `iss`.
    pub issuer: &'a str,
    /// JWT `sub`.
    pub subject: &'a str,
    /// JWT `aud`.
    pub audiences: &'a [String],
    /// JWT `azp`.
    pub presenter: Option<&'a str>,
    /// The payload as a JSON object.
    pub claims: &'a str,
}

/// Everything the policies can look at.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:authority`.
    pub authority: &'a str,
    /// Path without query, as received.
    pub path: &'a str,
    /// Headers.
    pub headers: &'a [(String, String)],
    /// Peer SPIFFE id without `spiffe://` (none for plaintext).
    pub source_principal: Option<&'a str>,
    /// Peer IP.
    pub source_address: &'a str,
    /// Address the client addressed.
    pub destination_address: &'a str,
    /// Port the client addressed.
    pub destination_port: u16,
    /// FQDN of the addressed service.
    pub destination_service: Option<&'a str>,
    /// JWT identity.
    pub request_auth: Option<RequestAuth<'a>>,
}

impl Default for Input<'_> {
    fn default() -> Self {
        Input {
            method: "GET",
            authority: "",
            path: "/",
            headers: &[],
            source_principal: None,
            source_address: "",
            destination_address: "",
            destination_port: 0,
            destination_service: None,
            request_auth: None,
        }
    }
}

/// What a policy can see of a TCP connection: a waypoint serving a service
/// port whose protocol is not HTTP (Istio's TCP filter chain).
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectionInput<'a> {
    /// Peer SPIFFE id without `spiffe://` (none for plaintext).
    pub source_principal: Option<&'a str>,
    /// Peer IP.
    pub source_address: &'a str,
    /// Address the client addressed.
    pub destination_address: &'a str,
    /// Port the client addressed.
    pub destination_port: u16,
    /// FQDN of the addressed service.
    pub destination_service: Option<&'a str>,
}

/// The local (RBAC) decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision<'a> {
    /// No policy applies to this target: allowed, nothing to report.
    NoPolicies,
    /// Allowed; the matching ALLOW policy, if any.
    Allow {
        /// `<ns>/<name>`.
        policy: Option<&'a str>,
    },
    /// Denied (`403 RBAC: access denied`); the matching DENY policy, if any.
    Deny {
        /// `<ns>/<name>`.
        policy: Option<&'a str>,
    },
}

/// A CUSTOM policy matched: ask its provider.
#[derive(Clone, Copy, Debug)]
pub struct CustomCheck<'a> {
    /// The provider.
    pub provider: &'a extauthz::Provider,
    /// The first matching CUSTOM policy for it.
    pub policy: &'a str,
}

/// What to do with a request.
#[derive(Debug)]
pub struct Plan<'a, 'i> {
    /// The normalized path (matched and sent upstream).
    pub path: Cow<'i, str>,
    /// Providers to ask first, in order; any denial decides.
    pub custom: Vec<CustomCheck<'a>>,
    /// The decision once every provider allowed.
    pub decision: Decision<'a>,
    /// First matching AUDIT policy.
    pub audit: Option<&'a str>,
    /// Dry-run result (`true` = would allow) and deciding dry-run policy.
    pub shadow: Option<(bool, Option<&'a str>)>,
}

impl Plan<'_, '_> {
    /// True when the path was changed by normalization.
    pub fn path_changed(&self) -> bool {
        matches!(self.path, Cow::Owned(_))
    }
}

/// The parts of a [`Plan`] computed by policy evaluation.
struct Outcome<'a> {
    custom: Vec<CustomCheck<'a>>,
    decision: Decision<'a>,
    audit: Option<&'a str>,
    shadow: Option<(bool, Option<&'a str>)>,
}

/// Per target service: the applicable policies.
#[derive(Debug, Default)]
struct Target {
    policies: Vec<usize>,
    /// CUSTOM policies name more than one provider (without the flag
    /// enabled they all act as DENY).
    multiple_providers: bool,
}

/// A compiled authorization configuration.
#[derive(Debug)]
pub struct Authorizer {
    normalization: PathNormalization,
    num_trusted_proxies: u32,
    multiple_custom_providers: bool,
    policies: Vec<CompiledPolicy>,
    global: Target,
    by_service: HashMap<String, Target>,
    providers: HashMap<String, extauthz::Provider>,
}

impl Default for Authorizer {
    fn default() -> Self {
        Authorizer::compile(&AuthzConfig::default())
            .unwrap_or_else(|_| unreachable!("empty config compiles"))
    }
}

impl Authorizer {
    /// Parses and compiles the filter's JSON configuration (empty = no policies).
    pub fn from_json(config: &[u8]) -> Result<Self, ConfigError> {
        if config.iter().all(u8::is_ascii_whitespace) {
            return Ok(Authorizer::default());
        }
        Self::compile(&serde_json::from_slice(config)?)
    }

    /// Compiles a configuration.
    pub fn compile(cfg: &AuthzConfig) -> Result<Self, ConfigError> {
        let mut all = vec![cfg.trust_domain.clone()];
        all.extend(cfg.trust_domain_aliases.iter().cloned());
        let tds = TrustDomains { all };
        let mut policies = cfg
            .policies
            .iter()
            .map(|p| compile_policy(p, &tds))
            .collect::<Result<Vec<_>, _>>()?;
        // Envoy evaluates RBAC policies in name order; report the same one.
        policies.sort_by(|a, b| a.id.cmp(&b.id));
        let mut providers = HashMap::new();
        for p in &cfg.providers {
            providers.insert(p.name.clone(), extauthz::Provider::compile(p)?);
        }
        let services: BTreeSet<&String> = policies.iter().flat_map(|p| p.targets.iter()).collect();
        let target_for = |svc: Option<&str>| {
            let idx: Vec<usize> = (0..policies.len())
                .filter(|&i| {
                    policies[i].targets.is_empty()
                        || svc.is_some_and(|s| policies[i].targets.iter().any(|t| t == s))
                })
                .collect();
            let names: BTreeSet<&str> = idx
                .iter()
                .filter(|&&i| policies[i].action == Action::Custom)
                .filter_map(|&i| policies[i].provider.as_deref())
                .collect();
            Target {
                multiple_providers: names.len() > 1,
                policies: idx,
            }
        };
        let global = target_for(None);
        let by_service = services
            .iter()
            .map(|s| ((*s).clone(), target_for(Some(s))))
            .collect();
        Ok(Authorizer {
            normalization: cfg.path_normalization,
            num_trusted_proxies: cfg.num_trusted_proxies,
            multiple_custom_providers: cfg.multiple_custom_providers,
            policies,
            global,
            by_service,
            providers,
        })
    }

    /// True when some policy uses the CUSTOM action (the guest then needs
    /// the `outbound-http` capability).
    pub fn has_custom(&self) -> bool {
        self.policies.iter().any(|p| p.action == Action::Custom)
    }

    /// The request headers evaluation reads (lower-case, sorted), or None
    /// when it needs them all (CUSTOM policies forward the request's headers
    /// to the ext-authz provider).
    pub fn header_names(&self) -> Option<Vec<String>> {
        if self.has_custom() {
            return None;
        }
        let mut names = vec!["x-forwarded-for".to_string()];
        for check in self
            .policies
            .iter()
            .flat_map(|p| &p.rules)
            .flat_map(|r| r.from.iter().chain(&r.to).flatten().chain(&r.when))
        {
            if let compile::Attr::Header(name, _) = &check.attr {
                names.push(name.to_ascii_lowercase());
            }
        }
        names.sort();
        names.dedup();
        Some(names)
    }

    /// Number of compiled policies.
    pub fn policy_count(&self) -> usize {
        self.policies.len()
    }

    fn target(&self, input: &Input<'_>) -> &Target {
        if self.by_service.is_empty() {
            return &self.global;
        }
        let svc = input
            .destination_service
            .unwrap_or_else(|| authority_host(input.authority))
            .to_ascii_lowercase();
        self.by_service.get(&svc).unwrap_or(&self.global)
    }

    /// Normalizes and evaluates one request.
    pub fn evaluate<'a, 'i>(&'a self, input: &'i Input<'i>) -> Result<Plan<'a, 'i>, Rejection> {
        normalize::validate(input.method, input.headers)?;
        let path = normalize_path(input.path, self.normalization)?;
        let target = self.target(input);
        let mut out = Outcome {
            custom: Vec::new(),
            decision: Decision::NoPolicies,
            audit: None,
            shadow: None,
        };
        if !target.policies.is_empty() {
            let cx = EvalCtx::new(input, &path, self.num_trusted_proxies);
            out.decision = self.decide(target, &cx, &mut out);
        }
        Ok(Plan {
            path,
            custom: out.custom,
            decision: out.decision,
            audit: out.audit,
            shadow: out.shadow,
        })
    }

    /// Evaluates one TCP connection the way Istio's policies apply to a TCP
    /// filter chain (reference §1.8): HTTP-only attributes (methods, paths,
    /// hosts, headers, request principals, JWT claims) cannot be known, so
    /// an ALLOW rule that uses one is skipped (the allow gets smaller) and a
    /// DENY or AUDIT rule is evaluated without them (the deny gets wider).
    /// CUSTOM policies are HTTP ext-authz checks and do not apply, except
    /// that one naming an unknown or ambiguous provider denies what it
    /// matches (istiod fails closed); dry-run results are not reported.
    pub fn evaluate_connection<'a>(&'a self, conn: &ConnectionInput<'_>) -> Decision<'a> {
        let input = Input {
            method: "",
            authority: "",
            path: "",
            headers: &[],
            source_principal: conn.source_principal,
            source_address: conn.source_address,
            destination_address: conn.destination_address,
            destination_port: conn.destination_port,
            destination_service: conn.destination_service,
            request_auth: None,
        };
        let target = self.target(&input);
        if target.policies.is_empty() {
            return Decision::NoPolicies;
        }
        let mut cx = EvalCtx::new(&input, "", self.num_trusted_proxies);
        cx.tcp = true;
        let mut out = Outcome {
            custom: Vec::new(),
            decision: Decision::NoPolicies,
            audit: None,
            shadow: None,
        };
        self.decide(target, &cx, &mut out)
    }

    /// Does a CUSTOM policy name a known provider, and is it the only one
    /// for this target (or are several allowed)?
    fn usable_custom(&self, p: &CompiledPolicy, target: &Target) -> bool {
        p.provider
            .as_deref()
            .is_some_and(|n| self.providers.contains_key(n))
            && (self.multiple_custom_providers || !target.multiple_providers)
    }

    fn decide<'a>(
        &'a self,
        target: &Target,
        cx: &EvalCtx<'_>,
        plan: &mut Outcome<'a>,
    ) -> Decision<'a> {
        let mut deny: Option<&str> = None;
        let mut bad_custom: Option<&str> = None;
        let mut allow_present = false;
        let mut allow: Option<&str> = None;
        let (mut shadow_deny, mut shadow_allow_present, mut shadow_allow) = (None, false, None);
        for &i in &target.policies {
            let p = &self.policies[i];
            // On a TCP chain a CUSTOM policy with a usable provider is
            // skipped (the providers are HTTP ones, which istiod ignores on
            // TCP chains); one with an unknown or ambiguous provider still
            // denies what it matches, HTTP fields ignored (istiod's
            // `buildTCP` generates deny rules: fail closed).
            if cx.tcp && p.action == Action::Custom && self.usable_custom(p, target) {
                continue;
            }
            match (p.action, p.dry_run) {
                (Action::Allow, false) => allow_present = true,
                (Action::Allow, true) => shadow_allow_present = true,
                _ => {}
            }
            let needed = match (p.action, p.dry_run) {
                (Action::Deny, false) => deny.is_none(),
                (Action::Allow, false) => allow.is_none(),
                (Action::Audit, _) => plan.audit.is_none(),
                (Action::Custom, _) => true,
                (Action::Deny, true) => shadow_deny.is_none(),
                (Action::Allow, true) => shadow_allow.is_none(),
            };
            if !needed || !policy_matches(p, cx) {
                continue;
            }
            match (p.action, p.dry_run) {
                (Action::Deny, false) => deny = Some(p.id.as_str()),
                (Action::Allow, false) => allow = Some(p.id.as_str()),
                (Action::Audit, _) => plan.audit = Some(p.id.as_str()),
                (Action::Deny, true) => shadow_deny = Some(p.id.as_str()),
                (Action::Allow, true) => shadow_allow = Some(p.id.as_str()),
                (Action::Custom, _) => {
                    let provider = p.provider.as_deref().and_then(|n| self.providers.get(n));
                    match provider {
                        Some(pr) if self.usable_custom(p, target) => {
                            if !plan.custom.iter().any(|c| c.provider.name == pr.name) {
                                plan.custom.push(CustomCheck {
                                    provider: pr,
                                    policy: &p.id,
                                });
                            }
                        }
                        // Unknown provider or ambiguous providers: Istio
                        // generates deny rules (fail closed).
                        _ => bad_custom = bad_custom.or(Some(p.id.as_str())),
                    }
                }
            }
        }
        plan.custom
            .sort_by(|a, b| a.provider.name.cmp(&b.provider.name));
        if shadow_deny.is_some() || shadow_allow_present {
            plan.shadow = Some(match (shadow_deny, shadow_allow_present, shadow_allow) {
                (Some(d), _, _) => (false, Some(d)),
                (None, true, None) => (false, None),
                (None, _, a) => (true, a),
            });
        }
        if let Some(p) = bad_custom {
            plan.custom.clear();
            return Decision::Deny { policy: Some(p) };
        }
        if let Some(p) = deny {
            return Decision::Deny { policy: Some(p) };
        }
        match (allow_present, allow) {
            (false, _) => Decision::Allow { policy: None },
            (true, Some(p)) => Decision::Allow { policy: Some(p) },
            (true, None) => Decision::Deny { policy: None },
        }
    }
}

/// The host part of an authority.
fn authority_host(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |i| &authority[..=i]);
    }
    match authority.rfind(':') {
        Some(i) if authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &authority[..i],
        _ => authority,
    }
}
