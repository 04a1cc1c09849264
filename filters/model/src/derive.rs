//! Route ids and the retry/fault configurations derived from a routing
//! configuration.
//!
//! The routing filter sets metadata [`crate::keys::ROUTE`] to the id of the
//! route it selected; the retry and fault filters look their per-route
//! policy up by that id. Ids are stable across pushes as long as the
//! resource and the position of the route in it do not change.

use crate::fault::FaultConfig;
use crate::gateway::{HttpRouteRetry, HttpRouteRule};
use crate::retry::{HttpRetry, RetryConfig, RoutePolicy};
use crate::routing::RoutingConfig;

/// Id of `http[index]` of VirtualService `namespace/name`:
/// `vs:<namespace>/<name>#<index>`.
pub fn vs_route_id(namespace: &str, name: &str, index: usize) -> String {
    format!("vs:{namespace}/{name}#{index}")
}

/// Id of `rules[index]` of HTTPRoute `namespace/name`:
/// `httproute:<namespace>/<name>#<index>` (every match of the rule shares it).
pub fn httproute_rule_id(namespace: &str, name: &str, index: usize) -> String {
    format!("httproute:{namespace}/{name}#{index}")
}

/// Gateway API retry defaults as Istio converts them: `attempts` default 2,
/// `retryOn` = connection errors plus the listed codes.
pub fn httproute_retry(retry: &HttpRouteRetry) -> HttpRetry {
    let attempts = i32::try_from(retry.attempts.unwrap_or(2)).unwrap_or(i32::MAX);
    let mut on = vec![
        "connect-failure".to_owned(),
        "refused-stream".to_owned(),
        "unavailable".to_owned(),
        "cancelled".to_owned(),
    ];
    on.extend(retry.codes.iter().map(u16::to_string));
    HttpRetry {
        attempts,
        // Istio clears retryOn when attempts is 0 (retries disabled anyway).
        retry_on: (attempts != 0).then(|| on.join(",")),
        backoff: retry.backoff,
        ..Default::default()
    }
}

/// The retry/timeout policy of one HTTPRoute rule, as Istio converts
/// `timeouts` and `retry`; `None` when the rule sets neither.
pub fn httproute_policy(rule: &HttpRouteRule) -> Option<RoutePolicy> {
    let mut policy = RoutePolicy {
        timeout: None,
        retries: rule.retry.as_ref().map(httproute_retry),
    };
    if let Some(t) = &rule.timeouts {
        if let Some(request) = t.request.filter(|d| !d.is_zero()) {
            policy.timeout = Some(request);
        }
        if let Some(backend) = t.backend_request.filter(|d| !d.is_zero()) {
            match policy.retries.as_mut() {
                Some(r) => r.per_try_timeout = Some(backend),
                None => policy.timeout = Some(backend),
            }
        }
    }
    (policy.timeout.is_some() || policy.retries.is_some()).then_some(policy)
}

/// The retry filter's configuration for `routing`: one entry per route that
/// sets a timeout or retries (other routes get the default policy).
pub fn retry_config(routing: &RoutingConfig) -> RetryConfig {
    let mut out = RetryConfig::default();
    for svc in &routing.services {
        for vs in &svc.virtual_services {
            for (i, route) in vs.http.iter().enumerate() {
                if route.timeout.is_some() || route.retries.is_some() {
                    out.routes.insert(
                        vs_route_id(&vs.namespace, &vs.name, i),
                        RoutePolicy {
                            timeout: route.timeout,
                            retries: route.retries.clone(),
                        },
                    );
                }
            }
        }
        for hr in &svc.http_routes {
            for (i, rule) in hr.rules.iter().enumerate() {
                if let Some(policy) = httproute_policy(rule) {
                    out.routes
                        .insert(httproute_rule_id(&hr.namespace, &hr.name, i), policy);
                }
            }
        }
    }
    out
}

/// The fault filter's configuration for `routing`: one entry per
/// VirtualService route with a `fault`.
pub fn fault_config(routing: &RoutingConfig) -> FaultConfig {
    let mut out = FaultConfig::default();
    for svc in &routing.services {
        for vs in &svc.virtual_services {
            for (i, route) in vs.http.iter().enumerate() {
                if let Some(fault) = &route.fault {
                    out.routes
                        .insert(vs_route_id(&vs.namespace, &vs.name, i), fault.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Duration;
    use crate::gateway::{GatewayHttpRoute, HttpRouteTimeouts};
    use crate::routing::{HttpRoute, ServiceRouting, VirtualServiceRoutes};

    #[test]
    fn derives_vs_and_httproute_policies() {
        let routing = RoutingConfig {
            services: vec![ServiceRouting {
                host: "r.ns.svc.cluster.local".into(),
                virtual_services: vec![VirtualServiceRoutes {
                    namespace: "ns".into(),
                    name: "r".into(),
                    http: vec![
                        HttpRoute::default(),
                        HttpRoute {
                            timeout: Some(Duration::from_millis(2000)),
                            ..Default::default()
                        },
                    ],
                    tcp: vec![],
                }],
                http_routes: vec![GatewayHttpRoute {
                    namespace: "ns".into(),
                    name: "h".into(),
                    rules: vec![
                        HttpRouteRule {
                            retry: Some(HttpRouteRetry {
                                codes: vec![503],
                                ..Default::default()
                            }),
                            timeouts: Some(HttpRouteTimeouts {
                                request: Some(Duration::from_millis(5000)),
                                backend_request: Some(Duration::from_millis(1000)),
                            }),
                            ..Default::default()
                        },
                        HttpRouteRule {
                            timeouts: Some(HttpRouteTimeouts {
                                request: Some(Duration::from_millis(5000)),
                                backend_request: Some(Duration::from_millis(1000)),
                            }),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let cfg = retry_config(&routing);
        assert_eq!(cfg.routes.len(), 3);
        assert!(!cfg.routes.contains_key("vs:ns/r#0"));
        assert_eq!(
            cfg.routes["vs:ns/r#1"].timeout,
            Some(Duration::from_millis(2000))
        );
        let r0 = &cfg.routes["httproute:ns/h#0"];
        assert_eq!(r0.timeout, Some(Duration::from_millis(5000)));
        let retries = r0.retries.as_ref().unwrap();
        assert_eq!(retries.attempts, 2);
        assert_eq!(
            retries.retry_on.as_deref(),
            Some("connect-failure,refused-stream,unavailable,cancelled,503")
        );
        assert_eq!(retries.per_try_timeout, Some(Duration::from_millis(1000)));
        // Without retry, backendRequest replaces the route timeout (Istio).
        let r1 = &cfg.routes["httproute:ns/h#1"];
        assert_eq!(r1.timeout, Some(Duration::from_millis(1000)));
        assert!(r1.retries.is_none());
    }
}
