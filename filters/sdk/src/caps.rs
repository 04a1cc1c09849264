//! Convenience wrappers over the host capabilities.
//!
//! Calling any function here makes the filter import that capability (and
//! only that one); the filter's configuration must then grant it, or the host
//! refuses to load the filter. Functions never called leave no import behind.

use crate::{log, metrics};

fn owned_labels(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Adds `value` to counter `name` (capability `metrics`). The host prefixes
/// the name with `wasm_filter_<filter name>_`.
pub fn counter_add(name: &str, labels: &[(&str, &str)], value: u64) {
    metrics::counter_add(name, &owned_labels(labels), value);
}

/// Records `value` in histogram `name` (capability `metrics`).
pub fn histogram_record(name: &str, labels: &[(&str, &str)], value: f64) {
    metrics::histogram_record(name, &owned_labels(labels), value);
}

/// Logs `message` at `level` (capability `log`).
pub fn log(level: log::Level, message: &str) {
    log::log(level, message);
}

/// Logs at debug level (capability `log`).
pub fn debug(message: &str) {
    log::log(log::Level::Debug, message);
}

/// Logs at info level (capability `log`).
pub fn info(message: &str) {
    log::log(log::Level::Info, message);
}

/// Logs at warn level (capability `log`).
pub fn warn(message: &str) {
    log::log(log::Level::Warn, message);
}

/// Logs at error level (capability `log`).
pub fn error(message: &str) {
    log::log(log::Level::Error, message);
}
