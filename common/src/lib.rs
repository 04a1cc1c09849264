//! Shared pieces.
pub mod model;
pub mod xds;
pub mod ca;
pub mod hbone;
pub mod identity;
pub mod tls;
