//! Request builder and expectations for the authorization tables.
#![allow(dead_code)]

use filter_authz::{Authorizer, ConnectionInput, Decision, Input, Rejection, RequestAuth};
use serde_json::{Value, json};

pub const SVC: &str = "httpbin.foo.svc.cluster.local";

/// A validated JWT: (issuer, subject, audiences, presenter, claims JSON).
pub type Jwt = (String, String, Vec<String>, Option<String>, String);

/// A request description with sensible defaults (mTLS peer `sleep` in `foo`).
#[derive(Clone)]
pub struct R {
    pub method: String,
    pub authority: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub peer: Option<String>,
    pub source: String,
    pub dest_ip: String,
    pub port: u16,
    pub service: Option<String>,
    pub jwt: Option<Jwt>,
}

pub fn req() -> R {
    R {
        method: "GET".into(),
        authority: "httpbin.foo".into(),
        path: "/".into(),
        headers: Vec::new(),
        peer: Some("cluster.local/ns/foo/sa/sleep".into()),
        source: "10.0.0.5".into(),
        dest_ip: "10.96.0.10".into(),
        port: 8000,
        service: Some(SVC.into()),
        jwt: None,
    }
}

impl R {
    pub fn method(mut self, m: &str) -> Self {
        self.method = m.into();
        self
    }
    pub fn path(mut self, p: &str) -> Self {
        self.path = p.into();
        self
    }
    pub fn host(mut self, h: &str) -> Self {
        self.authority = h.into();
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn peer(mut self, p: &str) -> Self {
        self.peer = Some(p.into());
        self
    }
    pub fn plaintext(mut self) -> Self {
        self.peer = None;
        self
    }
    pub fn source(mut self, ip: &str) -> Self {
        self.source = ip.into();
        self
    }
    pub fn port(mut self, p: u16) -> Self {
        self.port = p;
        self
    }
    pub fn service(mut self, s: &str) -> Self {
        self.service = Some(s.into());
        self
    }
    pub fn dest_ip(mut self, ip: &str) -> Self {
        self.dest_ip = ip.into();
        self
    }
    /// A validated JWT: issuer, subject, claims (JSON object).
    pub fn jwt(mut self, iss: &str, sub: &str, claims: Value) -> Self {
        let aud = match claims.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let azp = claims.get("azp").and_then(Value::as_str).map(str::to_owned);
        let mut claims = claims;
        claims["iss"] = json!(iss);
        claims["sub"] = json!(sub);
        self.jwt = Some((iss.into(), sub.into(), aud, azp, claims.to_string()));
        self
    }

    /// The validated JWT without claim `k` (a token lacking `sub`, say).
    pub fn without_claim(mut self, k: &str) -> Self {
        if let Some(j) = &mut self.jwt {
            let mut c: Value = serde_json::from_str(&j.4).unwrap();
            c.as_object_mut().unwrap().remove(k);
            j.4 = c.to_string();
        }
        self
    }

    pub fn eval(&self, a: &Authorizer) -> Outcome {
        let auth = self
            .jwt
            .as_ref()
            .map(|(iss, sub, aud, azp, claims)| RequestAuth {
                issuer: iss,
                subject: sub,
                audiences: aud,
                presenter: azp.as_deref(),
                claims,
            });
        let input = Input {
            method: &self.method,
            authority: &self.authority,
            path: &self.path,
            headers: &self.headers,
            source_principal: self.peer.as_deref(),
            source_address: &self.source,
            destination_address: &self.dest_ip,
            destination_port: self.port,
            destination_service: self.service.as_deref(),
            request_auth: auth,
        };
        match a.evaluate(&input) {
            Err(r) => Outcome::Rejected(r),
            Ok(plan) => {
                let custom = plan
                    .custom
                    .iter()
                    .map(|c| c.provider.name.clone())
                    .collect();
                match plan.decision {
                    Decision::NoPolicies => Outcome::Allow(None, custom),
                    Decision::Allow { policy } => Outcome::Allow(policy.map(str::to_owned), custom),
                    Decision::Deny { policy } => Outcome::Deny(policy.map(str::to_owned)),
                }
            }
        }
    }
}

impl R {
    /// Evaluates the connection this request arrived on, as a waypoint
    /// serving a TCP port does (only the L4 fields are used).
    pub fn eval_tcp(&self, a: &Authorizer) -> Outcome {
        let conn = ConnectionInput {
            source_principal: self.peer.as_deref(),
            source_address: &self.source,
            destination_address: &self.dest_ip,
            destination_port: self.port,
            destination_service: self.service.as_deref(),
        };
        match a.evaluate_connection(&conn) {
            Decision::NoPolicies => Outcome::Allow(None, Vec::new()),
            Decision::Allow { policy } => Outcome::Allow(policy.map(str::to_owned), Vec::new()),
            Decision::Deny { policy } => Outcome::Deny(policy.map(str::to_owned)),
        }
    }
}

/// What the table expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed (deciding policy, CUSTOM providers to ask).
    Allow(Option<String>, Vec<String>),
    /// Denied (deciding policy).
    Deny(Option<String>),
    /// 400 before evaluation.
    Rejected(Rejection),
}

pub fn allow() -> Outcome {
    Outcome::Allow(None, Vec::new())
}
pub fn allow_by(p: &str) -> Outcome {
    Outcome::Allow(Some(p.into()), Vec::new())
}
pub fn deny() -> Outcome {
    Outcome::Deny(None)
}
pub fn deny_by(p: &str) -> Outcome {
    Outcome::Deny(Some(p.into()))
}

/// A policy `foo/<name>` attached to the waypoint.
pub fn policy(name: &str, action: &str, rules: Value) -> Value {
    let mut p = json!({"namespace": "foo", "name": name, "action": action});
    if !rules.is_null() {
        p["rules"] = rules;
    }
    p
}

/// A compiled configuration from policies (and extra top-level fields).
pub fn authz(policies: Vec<Value>, extra: Value) -> Authorizer {
    let mut cfg = json!({"policies": policies});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            cfg[k] = v;
        }
    }
    Authorizer::from_json(cfg.to_string().as_bytes()).expect("config compiles")
}
