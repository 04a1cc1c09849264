//! e2e support.
