//! Envoy's `%VAR%` header-value formatting, for the header values of
//! VirtualService routes (`headers.request/response.set/add`), which Istio
//! passes to Envoy as format strings: `%%` is a literal `%`, `%NAME%` and
//! `%NAME(arg)%` are replaced by the value of the variable. Supported:
//! `DOWNSTREAM_REMOTE_ADDRESS`, `DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT`,
//! `DOWNSTREAM_REMOTE_PORT`, `DOWNSTREAM_LOCAL_ADDRESS`,
//! `DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT`, `DOWNSTREAM_LOCAL_PORT`,
//! `DOWNSTREAM_PEER_URI_SAN`, `PROTOCOL` and `REQ(name)` /
//! `REQ(name?fallback)`. Anything else is kept as written.

use std::borrow::Cow;

/// The values variables are read from.
pub struct Vars<'a> {
    /// Client address and port.
    pub remote: (&'a str, u16),
    /// Address and port the client addressed.
    pub local: (&'a str, u16),
    /// The mTLS peer's SPIFFE identity without the scheme, if any.
    pub peer: Option<&'a str>,
    /// `HTTP/1.1`, `HTTP/2`.
    pub protocol: &'a str,
    /// Request headers (lower-case names).
    pub headers: &'a [(String, String)],
}

fn addr(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

impl Vars<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn get(&self, var: &str) -> Option<String> {
        if let Some(arg) = var.strip_prefix("REQ(").and_then(|r| r.strip_suffix(')')) {
            let mut names = arg.split('?');
            return Some(
                names
                    .find_map(|n| self.header(n.trim()))
                    .unwrap_or("")
                    .to_string(),
            );
        }
        Some(match var {
            "DOWNSTREAM_REMOTE_ADDRESS" => addr(self.remote.0, self.remote.1),
            "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => self.remote.0.to_string(),
            "DOWNSTREAM_REMOTE_PORT" => self.remote.1.to_string(),
            "DOWNSTREAM_LOCAL_ADDRESS" => addr(self.local.0, self.local.1),
            "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => self.local.0.to_string(),
            "DOWNSTREAM_LOCAL_PORT" => self.local.1.to_string(),
            "DOWNSTREAM_PEER_URI_SAN" => self
                .peer
                .map(|p| format!("spiffe://{p}"))
                .unwrap_or_default(),
            "PROTOCOL" => self.protocol.to_string(),
            _ => return None,
        })
    }
}

/// `value` with its variables expanded.
pub fn expand<'v>(value: &'v str, vars: &Vars<'_>) -> Cow<'v, str> {
    if !value.contains('%') {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('%') {
            out.push('%');
            rest = tail;
            continue;
        }
        match after.find('%') {
            Some(j) => {
                let var = &after[..j];
                match vars.get(var) {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push('%');
                        out.push_str(var);
                        out.push('%');
                    }
                }
                rest = &after[j + 1..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Request headers read by `%REQ(...)%` in `value` (lower-case).
pub fn referenced_headers(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(i) = rest.find("%REQ(") {
        let after = &rest[i + 5..];
        let Some(j) = after.find(")%") else { break };
        out.extend(after[..j].split('?').map(|n| n.trim().to_ascii_lowercase()));
        rest = &after[j + 2..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_escapes_and_unknowns() {
        let headers = vec![("x-user".to_string(), "alice".to_string())];
        let v = Vars {
            remote: ("10.0.0.7", 41000),
            local: ("10.96.0.10", 80),
            peer: Some("cluster.local/ns/shop/sa/web"),
            protocol: "HTTP/2",
            headers: &headers,
        };
        for (input, want) in [
            ("plain", "plain"),
            ("%DOWNSTREAM_REMOTE_ADDRESS%", "10.0.0.7:41000"),
            (
                "ip=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%;",
                "ip=10.0.0.7;",
            ),
            ("%DOWNSTREAM_LOCAL_ADDRESS%", "10.96.0.10:80"),
            (
                "%DOWNSTREAM_PEER_URI_SAN%",
                "spiffe://cluster.local/ns/shop/sa/web",
            ),
            ("%PROTOCOL%", "HTTP/2"),
            ("%REQ(x-user)%", "alice"),
            ("%REQ(x-missing?x-user)%", "alice"),
            ("%REQ(x-missing)%", ""),
            ("100%%", "100%"),
            ("%UNKNOWN% stays", "%UNKNOWN% stays"),
            ("50% off", "50% off"),
        ] {
            assert_eq!(expand(input, &v), want, "{input}");
        }
        assert_eq!(
            referenced_headers("a %REQ(X-A)% b %REQ(x-b?x-c)%"),
            vec!["x-a", "x-b", "x-c"]
        );
    }
}
