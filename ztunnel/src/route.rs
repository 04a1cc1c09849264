//! Outbound routing: where a captured connection goes.
//!
//! * To a **service VIP**: if the service is bound to a waypoint that
//!   handles service traffic, HBONE to the waypoint with the original
//!   `VIP:port` as authority; otherwise a healthy endpoint is picked and the
//!   service port mapped to its target port.
//! * To a **workload IP**: if the workload is bound to a waypoint that
//!   handles workload traffic, HBONE to the waypoint; otherwise to the
//!   workload. (A service-addressed connection never uses the endpoint's
//!   workload waypoint: only the destination as addressed counts.)
//! * A workload enrolled in the mesh (protocol HBONE) is reached over HBONE
//!   at `ip:15008`, authority `ip:target_port`, and must present its own
//!   identity; a TCP workload or an unknown address gets a plain connection.

use std::net::SocketAddr;
use std::sync::Arc;

use mesh_common::identity::SpiffeId;
use mesh_common::model::{HealthStatus, Service, TunnelProtocol, WaypointBinding, Workload};

use crate::registry::State;

/// Where to send a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// HBONE tunnel.
    Hbone {
        /// HBONE endpoint (`ip:15008`).
        hbone: SocketAddr,
        /// CONNECT authority.
        authority: SocketAddr,
        /// Identity the peer must prove.
        identity: SpiffeId,
        /// Final destination workload, when known (not via a waypoint).
        dst: Option<Arc<Workload>>,
        /// The service addressed, if any.
        service: Option<Arc<Service>>,
        /// `namespace/name` of the waypoint used, if any.
        waypoint: Option<String>,
    },
    /// Plain TCP (destination outside the mesh).
    Direct {
        /// Address to dial.
        addr: SocketAddr,
        /// Destination workload, when known.
        dst: Option<Arc<Workload>>,
        /// The service addressed, if any.
        service: Option<Arc<Service>>,
    },
    /// Nowhere to go: close the connection.
    Refuse(String),
}

/// Computes the route for a connection to `orig_dst`. `pick(n)` chooses an
/// index in `0..n` among healthy endpoints.
pub fn route(
    state: &State,
    orig_dst: SocketAddr,
    hbone_port: u16,
    pick: impl FnOnce(usize) -> usize,
) -> Route {
    if let Some(svc) = state.service_by_vip(orig_dst.ip()) {
        if let Some(wp) = svc
            .waypoint
            .as_ref()
            .filter(|w| w.traffic_type.handles_service())
        {
            return via_waypoint(wp, orig_dst, Some(svc.clone()));
        }
        let port = orig_dst.port();
        let candidates: Vec<(Arc<Workload>, u16)> = svc
            .endpoints
            .iter()
            .filter_map(|ep| {
                let w = state.workload(&ep.workload_uid)?;
                let target = svc.target_port(ep, port)?;
                (w.status == HealthStatus::Healthy && !w.addresses.is_empty())
                    .then(|| (w.clone(), target))
            })
            .collect();
        if candidates.is_empty() {
            return Route::Refuse(format!(
                "service {}/{} has no healthy endpoint for port {port}",
                svc.namespace, svc.name
            ));
        }
        let (w, target) = &candidates[pick(candidates.len()).min(candidates.len() - 1)];
        let addr = SocketAddr::new(w.addresses[0], *target);
        return to_workload(w.clone(), addr, Some(svc.clone()), hbone_port);
    }
    if let Some(w) = state.workload_by_ip(orig_dst.ip()) {
        if let Some(wp) = w
            .waypoint
            .as_ref()
            .filter(|w| w.traffic_type.handles_workload())
        {
            return via_waypoint(wp, orig_dst, None);
        }
        return to_workload(w.clone(), orig_dst, None, hbone_port);
    }
    Route::Direct {
        addr: orig_dst,
        dst: None,
        service: None,
    }
}

fn via_waypoint(
    wp: &WaypointBinding,
    orig_dst: SocketAddr,
    service: Option<Arc<Service>>,
) -> Route {
    let Some(ip) = wp.addresses.first() else {
        return Route::Refuse(format!(
            "waypoint {}/{} has no address",
            wp.namespace, wp.name
        ));
    };
    let identity = match SpiffeId::parse(&wp.identity) {
        Ok(id) => id,
        Err(e) => return Route::Refuse(format!("waypoint {}/{}: {e}", wp.namespace, wp.name)),
    };
    Route::Hbone {
        hbone: SocketAddr::new(*ip, wp.hbone_port),
        authority: orig_dst,
        identity,
        dst: None,
        service,
        waypoint: Some(format!("{}/{}", wp.namespace, wp.name)),
    }
}

fn to_workload(
    w: Arc<Workload>,
    addr: SocketAddr,
    service: Option<Arc<Service>>,
    hbone_port: u16,
) -> Route {
    if w.protocol != TunnelProtocol::Hbone {
        return Route::Direct {
            addr,
            dst: Some(w),
            service,
        };
    }
    let identity = match SpiffeId::parse(&w.identity()) {
        Ok(id) => id,
        Err(e) => return Route::Refuse(format!("workload {}: {e}", w.uid)),
    };
    Route::Hbone {
        hbone: SocketAddr::new(addr.ip(), hbone_port),
        authority: addr,
        identity,
        dst: Some(w),
        service,
        waypoint: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Change, Registry, Snapshot};
    use mesh_common::model::{Endpoint, ServicePort, TrafficType};

    fn wl(name: &str, ip: &str, proto: TunnelProtocol) -> Workload {
        Workload {
            uid: name.into(),
            name: name.into(),
            namespace: "ns".into(),
            service_account: name.into(),
            node: "n".into(),
            addresses: vec![ip.parse().unwrap()],
            protocol: proto,
            trust_domain: "cluster.local".into(),
            ..Default::default()
        }
    }

    fn wp(tt: TrafficType) -> WaypointBinding {
        WaypointBinding {
            name: "wp".into(),
            namespace: "ns".into(),
            addresses: vec!["10.0.9.9".parse().unwrap()],
            hbone_port: 15008,
            identity: "spiffe://cluster.local/ns/ns/sa/wp".into(),
            traffic_type: tt,
        }
    }

    fn registry(svc_wp: Option<WaypointBinding>, wl_wp: Option<WaypointBinding>) -> Arc<Registry> {
        let mut b = wl("b", "10.0.0.2", TunnelProtocol::Hbone);
        b.waypoint = wl_wp;
        let mut down = wl("down", "10.0.0.3", TunnelProtocol::Hbone);
        down.status = HealthStatus::Unhealthy;
        let svc = Service {
            name: "svc".into(),
            namespace: "ns".into(),
            hostname: "svc.ns.svc.cluster.local".into(),
            vips: vec!["10.96.0.1".parse().unwrap()],
            ports: vec![ServicePort {
                port: 80,
                target_port: 8080,
                ..Default::default()
            }],
            endpoints: vec![
                Endpoint {
                    workload_uid: "down".into(),
                    ..Default::default()
                },
                Endpoint {
                    workload_uid: "b".into(),
                    ..Default::default()
                },
            ],
            waypoint: svc_wp,
            ..Default::default()
        };
        let r = Registry::new();
        r.apply(Change::Snapshot(Snapshot {
            workloads: vec![b, down, wl("plain", "10.0.0.4", TunnelProtocol::Tcp)],
            services: vec![svc],
            authorizations: vec![],
        }));
        r
    }

    fn first(_: usize) -> usize {
        0
    }

    #[test]
    fn vip_picks_healthy_endpoint_and_maps_port() {
        let r = registry(None, None);
        match route(&r.read(), "10.96.0.1:80".parse().unwrap(), 15008, first) {
            Route::Hbone {
                hbone,
                authority,
                identity,
                waypoint,
                ..
            } => {
                assert_eq!(hbone, "10.0.0.2:15008".parse().unwrap());
                assert_eq!(authority, "10.0.0.2:8080".parse().unwrap());
                assert_eq!(identity.service_account, "b");
                assert_eq!(waypoint, None);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            route(&r.read(), "10.96.0.1:81".parse().unwrap(), 15008, first),
            Route::Refuse(_)
        ));
    }

    #[test]
    fn waypoint_binding_follows_traffic_type() {
        // Service waypoint: VIP traffic goes to it, pod-IP traffic does not.
        let r = registry(Some(wp(TrafficType::Service)), None);
        match route(&r.read(), "10.96.0.1:80".parse().unwrap(), 15008, first) {
            Route::Hbone {
                hbone,
                authority,
                identity,
                waypoint,
                ..
            } => {
                assert_eq!(hbone, "10.0.9.9:15008".parse().unwrap());
                assert_eq!(authority, "10.96.0.1:80".parse().unwrap());
                assert_eq!(identity.service_account, "wp");
                assert_eq!(waypoint.as_deref(), Some("ns/wp"));
            }
            other => panic!("{other:?}"),
        }
        let direct = route(&r.read(), "10.0.0.2:8080".parse().unwrap(), 15008, first);
        assert!(
            matches!(direct, Route::Hbone { waypoint: None, .. }),
            "{direct:?}"
        );

        // Workload waypoint: pod-IP traffic goes to it, VIP traffic does not.
        let r = registry(None, Some(wp(TrafficType::Workload)));
        let to_pod = route(&r.read(), "10.0.0.2:8080".parse().unwrap(), 15008, first);
        assert!(
            matches!(
                to_pod,
                Route::Hbone {
                    waypoint: Some(_),
                    ..
                }
            ),
            "{to_pod:?}"
        );
        let to_vip = route(&r.read(), "10.96.0.1:80".parse().unwrap(), 15008, first);
        assert!(
            matches!(to_vip, Route::Hbone { waypoint: None, .. }),
            "{to_vip:?}"
        );

        // A binding whose type does not fit is ignored.
        let r = registry(
            Some(wp(TrafficType::Workload)),
            Some(wp(TrafficType::Service)),
        );
        assert!(matches!(
            route(&r.read(), "10.96.0.1:80".parse().unwrap(), 15008, first),
            Route::Hbone { waypoint: None, .. }
        ));
        assert!(matches!(
            route(&r.read(), "10.0.0.2:8080".parse().unwrap(), 15008, first),
            Route::Hbone { waypoint: None, .. }
        ));
    }

    #[test]
    fn plaintext_and_unknown_destinations_are_direct() {
        let r = registry(None, None);
        assert!(matches!(
            route(&r.read(), "10.0.0.4:80".parse().unwrap(), 15008, first),
            Route::Direct { dst: Some(_), .. }
        ));
        assert!(matches!(
            route(&r.read(), "192.0.2.1:443".parse().unwrap(), 15008, first),
            Route::Direct { dst: None, .. }
        ));
    }
}
