//! The streaming push protocol between the operator and the proxies.
//!
//! One HTTP/2 request per proxy, `POST /v1/xds`, full duplex: the request
//! body carries [`ClientMessage`]s, the response body [`Delta`]s, each a
//! length-prefixed JSON frame ([`frame`]). TLS when configured (ALPN `h2`),
//! cleartext HTTP/2 (prior knowledge) otherwise.
//!
//! 1. The proxy sends [`ClientMessage::Subscribe`]: node name, proxy kind,
//!    the resource names it wants (a waypoint: its own `ns/name`; ztunnel:
//!    all), and what it already has (per type: last version and each
//!    resource's key and hash), so a reconnect only transfers what changed.
//! 2. The server answers with one [`Delta`] per subscribed type (possibly
//!    empty: that is the "synced" signal), then a new `Delta` whenever one
//!    of the proxy's resources changes — containing only what changed.
//! 3. The proxy applies each delta and answers [`ClientMessage::Ack`], or
//!    [`ClientMessage::Nack`] with an error and keeps its last good state.
//!    The server sends at most one unacknowledged delta per type; changes
//!    that happen meanwhile are coalesced into the next one.
//!
//! Server side: [`store::ConfigStore`] (what the operator publishes),
//! [`server::XdsServer`] (per-connection protocol), [`transport::serve`]
//! (the HTTP/2 listener, shared with the CA and module endpoints). Client
//! side: [`client::XdsClient`] (reconnect with backoff, resync, last-good
//! state) and [`client::fetch_module`].

pub mod client;
pub mod frame;
pub mod server;
pub mod store;
pub mod transport;

use crate::model::{ProxyKind, ResourceType};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The operator's port for push, CA and module downloads.
pub const DEFAULT_PORT: u16 = 15012;
/// Path of the push stream.
pub const XDS_PATH: &str = "/v1/xds";
/// Path of the CA (`POST`, body = PEM CSR).
pub const CSR_PATH: &str = "/v1/csr";
/// Prefix of module downloads: `GET /v1/modules/<sha256>`.
pub const MODULES_PATH_PREFIX: &str = "/v1/modules/";
/// Content type of the push stream.
pub const CONTENT_TYPE: &str = "application/x-mesh-push+json";

/// What a proxy already holds of one resource type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KnownResources {
    /// Version of the last delta applied.
    #[serde(default)]
    pub version: String,
    /// Key → hash of each resource held.
    #[serde(default)]
    pub resources: BTreeMap<String, String>,
}

/// Proxy → operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ClientMessage {
    /// First message of a stream.
    #[serde(rename_all = "camelCase")]
    Subscribe {
        /// Node (ztunnel) or waypoint instance name, for status and logs.
        node: String,
        /// Which proxy.
        proxy: ProxyKind,
        /// Keys wanted; empty ⇒ every resource of the subscribed types.
        #[serde(default)]
        resource_names: Vec<String>,
        /// What the proxy already holds (reconnect).
        #[serde(default)]
        known: BTreeMap<ResourceType, KnownResources>,
    },
    /// Delta applied.
    #[serde(rename_all = "camelCase")]
    Ack {
        /// Resource type of the delta.
        #[serde(rename = "type")]
        type_: ResourceType,
        /// Its version.
        version: String,
        /// Its nonce.
        nonce: String,
    },
    /// Delta refused; the proxy keeps its previous state.
    #[serde(rename_all = "camelCase")]
    Nack {
        /// Resource type of the delta.
        #[serde(rename = "type")]
        type_: ResourceType,
        /// Its version.
        version: String,
        /// Its nonce.
        nonce: String,
        /// Why (shown in the operator's status and logs).
        error: String,
    },
}

/// One upserted resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceEntry {
    /// Key ([`crate::model::Resource::key`]).
    pub key: String,
    /// Content hash (hex), echoed back in [`KnownResources`].
    pub hash: String,
    /// The resource (JSON form of the model type).
    pub resource: serde_json::Value,
}

/// Operator → proxy: what changed in one resource type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delta {
    /// Resource type.
    #[serde(rename = "type")]
    pub type_: ResourceType,
    /// Opaque version of the operator's state this delta brings the proxy to.
    pub version: String,
    /// Echo in the ACK/NACK.
    pub nonce: String,
    /// Added or changed resources.
    #[serde(default)]
    pub upserts: Vec<ResourceEntry>,
    /// Keys removed.
    #[serde(default)]
    pub removals: Vec<String>,
}

/// Body of `POST /v1/csr` (JSON). Authenticate with `authorization: Bearer
/// <token>`: a node bootstrap token in file mode, a Kubernetes
/// ServiceAccount token otherwise. The answer is a
/// [`crate::ca::IssuedCert`] as JSON; 401 when the caller is unknown, 403
/// when it may not have the requested identity, 400 for a bad CSR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CsrRequest {
    /// PEM `CERTIFICATE REQUEST` with exactly one SPIFFE URI SAN.
    pub csr: String,
    /// Requested lifetime (the CA caps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// Node the requesting proxy runs on (ztunnel asking for its workloads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}
