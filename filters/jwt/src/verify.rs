//! Istio's requirement tree over Envoy's verifiers, evaluated for one
//! request, with a bounded cache of parsed tokens and signature results.

use crate::config::{Location, Provider};
use crate::extract;
use crate::token::{JwtStatus, ParsedJwt};
use crate::{CLOCK_SKEW_SECS, SignatureVerifier};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// Istio's requirement over Envoy's verifiers: `ANY(P0, allow_missing)`
/// for one provider, `ANY(P0..Pn, ALL(ANY(P0, allow_missing), ...))` for
/// several.
pub(crate) enum Requirement {
    Provider(usize),
    Any {
        children: Vec<Requirement>,
        allow_missing: bool,
    },
    All(Vec<Requirement>),
}

impl Requirement {
    pub(crate) fn istio(providers: &[usize]) -> Requirement {
        let or_missing = |p: usize| Requirement::Any {
            children: vec![Requirement::Provider(p)],
            allow_missing: true,
        };
        match providers {
            [p] => or_missing(*p),
            _ => {
                let mut children: Vec<Requirement> = providers
                    .iter()
                    .map(|&p| Requirement::Provider(p))
                    .collect();
                children.push(Requirement::All(
                    providers.iter().map(|&p| or_missing(p)).collect(),
                ));
                Requirement::Any {
                    children,
                    allow_missing: false,
                }
            }
        }
    }
}

/// Tokens parsed and signatures checked in earlier requests.
#[derive(Debug)]
pub(crate) struct TokenCache {
    capacity: usize,
    entries: HashMap<String, CacheEntry>,
    order: VecDeque<String>,
}

#[derive(Debug)]
struct CacheEntry {
    parsed: Rc<ParsedJwt>,
    /// (provider, signature valid)
    signatures: Vec<(usize, Result<(), JwtStatus>)>,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub(crate) fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        while self.order.len() > capacity {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }

    fn parsed(&self, token: &str) -> Option<Rc<ParsedJwt>> {
        self.entries.get(token).map(|e| e.parsed.clone())
    }

    fn signature(&self, token: &str, provider: usize) -> Option<Result<(), JwtStatus>> {
        self.entries
            .get(token)?
            .signatures
            .iter()
            .find(|(p, _)| *p == provider)
            .map(|(_, r)| *r)
    }

    fn remember(
        &mut self,
        token: &str,
        parsed: &Rc<ParsedJwt>,
        provider: usize,
        result: Result<(), JwtStatus>,
    ) {
        if self.capacity == 0 {
            return;
        }
        if let Some(e) = self.entries.get_mut(token) {
            e.signatures.push((provider, result));
            return;
        }
        if self.order.len() >= self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.entries.remove(&old);
        }
        self.order.push_back(token.to_owned());
        self.entries.insert(
            token.to_owned(),
            CacheEntry {
                parsed: parsed.clone(),
                signatures: vec![(provider, result)],
            },
        );
    }
}

/// One request's evaluation.
pub(crate) struct Run<'a> {
    providers: &'a [Provider],
    now: u64,
    max_token_bytes: usize,
    verifier: &'a dyn SignatureVerifier,
    cache: &'a RefCell<TokenCache>,
    /// Location → token found there (extracted once).
    found: Vec<(Location, Option<String>)>,
    parsed: HashMap<String, Result<Rc<ParsedJwt>, JwtStatus>>,
    /// (token, location, provider used), in verification order.
    pub successes: Vec<(Rc<ParsedJwt>, Location, usize)>,
}

impl<'a> Run<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        providers: &'a [Provider],
        applicable: &'a [usize],
        headers: &'a [(String, String)],
        query: Option<&'a str>,
        now: u64,
        max_token_bytes: usize,
        verifier: &'a dyn SignatureVerifier,
        cache: &'a RefCell<TokenCache>,
    ) -> Self {
        let mut found: Vec<(Location, Option<String>)> = Vec::new();
        for &p in applicable {
            for loc in &providers[p].locations {
                if !found.iter().any(|(l, _)| l == loc) {
                    let token = extract::at(loc, headers, query);
                    found.push((loc.clone(), token));
                }
            }
        }
        Run {
            providers,
            now,
            max_token_bytes,
            verifier,
            cache,
            found,
            parsed: HashMap::new(),
            successes: Vec::new(),
        }
    }

    /// True when no location of any applicable provider holds a token.
    pub(crate) fn no_tokens(&self) -> bool {
        self.found.iter().all(|(_, t)| t.is_none())
    }

    /// Tokens at the locations of provider `p` (headers, then parameters,
    /// then cookies).
    fn tokens_for(&self, p: usize) -> Vec<(String, Location)> {
        let locations = &self.providers[p].locations;
        let mut out: Vec<(String, Location)> = self
            .found
            .iter()
            .filter(|(loc, _)| locations.contains(loc))
            .filter_map(|(loc, t)| t.as_ref().map(|t| (t.clone(), loc.clone())))
            .collect();
        out.sort_by_key(|(_, loc)| loc.order());
        out
    }

    fn parse(&mut self, token: &str) -> Result<Rc<ParsedJwt>, JwtStatus> {
        if let Some(r) = self.parsed.get(token) {
            return r.clone();
        }
        let r = if token.len() > self.max_token_bytes {
            Err(JwtStatus::TooLong)
        } else if let Some(p) = self.cache.borrow().parsed(token) {
            Ok(p)
        } else {
            ParsedJwt::parse(token).map(Rc::new)
        };
        self.parsed.insert(token.to_owned(), r.clone());
        r
    }

    fn check_signature(&self, token: &str, jwt: &Rc<ParsedJwt>, p: usize) -> Result<(), JwtStatus> {
        if let Some(r) = self.cache.borrow().signature(token, p) {
            return r;
        }
        let mut matched = false;
        let mut result = Err(JwtStatus::KidAlgMismatch);
        for key in &self.providers[p].keys {
            if jwt.kid.is_some() && key.kid.is_some() && key.kid != jwt.kid {
                continue;
            }
            if key.alg.as_deref().is_some_and(|a| a != jwt.alg) || !key.fits(&jwt.alg) {
                continue;
            }
            matched = true;
            if let Ok(true) =
                self.verifier
                    .verify(&jwt.alg, &key.json, jwt.signed.as_bytes(), &jwt.signature)
            {
                result = Ok(());
                break;
            }
        }
        if matched && result.is_err() {
            result = Err(JwtStatus::VerificationFail);
        }
        self.cache.borrow_mut().remember(token, jwt, p, result);
        result
    }

    /// Envoy `AuthenticatorImpl::startVerify` for one token of provider `p`:
    /// parse, issuer, time (60 s skew), audiences, signature.
    fn verify(&mut self, token: &str, location: &Location, p: usize) -> Result<(), JwtStatus> {
        let jwt = self.parse(token)?;
        let issuer = self.providers[p].issuer.as_str();
        if !issuer.is_empty() && issuer != jwt.iss {
            return Err(JwtStatus::UnknownIssuer);
        }
        jwt.check_time(self.now, CLOCK_SKEW_SECS)?;
        if !self.providers[p].audience_allowed(&jwt.aud) {
            return Err(JwtStatus::AudienceNotAllowed);
        }
        self.check_signature(token, &jwt, p)?;
        self.successes.push((jwt, location.clone(), p));
        Ok(())
    }

    pub(crate) fn eval(&mut self, req: &Requirement) -> Result<(), JwtStatus> {
        match req {
            Requirement::Provider(p) => {
                let tokens = self.tokens_for(*p);
                if tokens.is_empty() {
                    return Err(JwtStatus::Missed);
                }
                // Envoy verifies from the last extracted token; every one must pass.
                for (token, loc) in tokens.iter().rev() {
                    self.verify(token, loc, *p)?;
                }
                Ok(())
            }
            Requirement::Any {
                children,
                allow_missing,
            } => {
                let mut fin = JwtStatus::Missed;
                for c in children {
                    match self.eval(c) {
                        Ok(()) => return Ok(()),
                        // Prefer real errors, then UnknownIssuer over Missed.
                        Err(s)
                            if !matches!(s, JwtStatus::Missed | JwtStatus::UnknownIssuer)
                                || fin == JwtStatus::Missed =>
                        {
                            fin = s
                        }
                        Err(_) => {}
                    }
                }
                if *allow_missing && fin == JwtStatus::Missed {
                    Ok(())
                } else {
                    Err(fin)
                }
            }
            Requirement::All(children) => children.iter().try_for_each(|c| self.eval(c)),
        }
    }
}
