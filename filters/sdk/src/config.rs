//! Filter configuration parsing (feature `json`).

use serde::de::DeserializeOwned;

/// Parses the configuration bytes, a JSON object, into `T`.
///
/// Empty (or all-whitespace) configuration yields `T::default()`: the control
/// plane sends no bytes when a plugin has no `pluginConfig`. Anything but an
/// object is refused (serde would otherwise accept a struct written as an
/// array). Errors read `invalid config: <what is wrong>`, ready to return
/// from `configure`. Combine with `#[serde(deny_unknown_fields)]` to catch
/// misspelt keys.
pub fn from_json<T: DeserializeOwned + Default>(config: &[u8]) -> Result<T, String> {
    match config.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Ok(T::default()),
        Some(b'{') => {}
        Some(_) => {
            // Report syntax errors first, as for an object.
            serde_json::from_slice::<serde::de::IgnoredAny>(config)
                .map_err(|e| format!("invalid config: {e}"))?;
            return Err("invalid config: expected a JSON object".into());
        }
    }
    serde_json::from_slice(config).map_err(|e| format!("invalid config: {e}"))
}

#[cfg(test)]
mod tests {
    use super::from_json;
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Conf {
        #[serde(default)]
        n: u32,
    }

    #[test]
    fn empty_is_default() {
        assert_eq!(from_json::<Conf>(b"").unwrap(), Conf::default());
        assert_eq!(from_json::<Conf>(b"  \n").unwrap(), Conf::default());
    }

    #[test]
    fn parses_and_reports_errors() {
        assert_eq!(from_json::<Conf>(br#"{"n": 3}"#).unwrap(), Conf { n: 3 });
        let err = from_json::<Conf>(b"{nope").unwrap_err();
        assert!(err.starts_with("invalid config: "), "{err}");
        let err = from_json::<Conf>(br#"{"m": 1}"#).unwrap_err();
        assert!(err.contains("unknown field `m`"), "{err}");
        let err = from_json::<Conf>(b"[3]").unwrap_err();
        assert_eq!(err, "invalid config: expected a JSON object");
        let err = from_json::<Conf>(b"[3").unwrap_err();
        assert!(
            err.starts_with("invalid config: ") && err != "invalid config: expected a JSON object",
            "{err}"
        );
    }
}
