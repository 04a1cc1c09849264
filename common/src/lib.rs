//! Shared pieces.
pub mod ca;
pub mod hbone;
pub mod identity;
pub mod mem;
pub mod model;
pub mod tls;
pub mod xds;
