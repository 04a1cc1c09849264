//! Request normalization before matching, as Envoy's HTTP connection manager
//! does it for Istio (`meshConfig.pathNormalization`).

use filter_model::authz::PathNormalization;
use std::borrow::Cow;

/// Why a request is refused with 400 before any policy is evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// `%00` in the path.
    NulInPath,
    /// A method that is not all upper-case letters.
    BadMethod,
    /// A header name containing whitespace.
    BadHeaderName,
}

impl Rejection {
    /// Text of the 400 body.
    pub fn message(self) -> &'static str {
        match self {
            Rejection::NulInPath => "Bad Request: path contains %00",
            Rejection::BadMethod => "Bad Request: invalid method",
            Rejection::BadHeaderName => "Bad Request: invalid header name",
        }
    }
}

/// Validates the request line and headers.
pub(crate) fn validate(method: &str, headers: &[(String, String)]) -> Result<(), Rejection> {
    if method.is_empty()
        || !method
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
    {
        return Err(Rejection::BadMethod);
    }
    if headers
        .iter()
        .any(|(n, _)| n.bytes().any(|b| b.is_ascii_whitespace()))
    {
        return Err(Rejection::BadHeaderName);
    }
    Ok(())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Normalizes a path (no query): `%00` rejected; with `Base` and above,
/// `\` → `/`, percent-encoded unreserved characters decoded once, dot
/// segments resolved; `MergeSlashes` merges `//`; `DecodeAndMergeSlashes`
/// first decodes `%2F` and `%5C`.
pub fn normalize_path(path: &str, mode: PathNormalization) -> Result<Cow<'_, str>, Rejection> {
    if path.contains("%00") {
        return Err(Rejection::NulInPath);
    }
    if mode == PathNormalization::None {
        return Ok(Cow::Borrowed(path));
    }
    let needs_work =
        path.contains(['%', '\\', '.']) || (mode != PathNormalization::Base && path.contains("//"));
    if !needs_work {
        return Ok(Cow::Borrowed(path));
    }
    let bytes = path.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            let c = h * 16 + l;
            let decode_slash =
                mode == PathNormalization::DecodeAndMergeSlashes && (c == b'/' || c == b'\\');
            if is_unreserved(c) || decode_slash {
                out.push(if c == b'\\' { b'/' } else { c });
                i += 3;
                continue;
            }
        }
        out.push(if b == b'\\' { b'/' } else { b });
        i += 1;
    }
    let mut resolved = remove_dot_segments(&out);
    if mode != PathNormalization::Base {
        resolved.dedup_by(|a, b| *a == b'/' && *b == b'/');
    }
    // Only ASCII bytes were decoded, so the result stays valid UTF-8.
    let s = String::from_utf8(resolved)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    Ok(if s == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(s)
    })
}

/// RFC 3986 §5.2.4 on an absolute path.
fn remove_dot_segments(input: &[u8]) -> Vec<u8> {
    let mut segments: Vec<&[u8]> = Vec::new();
    let body = input.strip_prefix(b"/").unwrap_or(input);
    let parts: Vec<&[u8]> = body.split(|b| *b == b'/').collect();
    let n = parts.len();
    let mut trailing_slash = false;
    for (idx, seg) in parts.iter().enumerate() {
        let last = idx + 1 == n;
        match *seg {
            b"." => trailing_slash = last,
            b".." => {
                segments.pop();
                trailing_slash = last;
            }
            _ => {
                segments.push(seg);
                trailing_slash = false;
            }
        }
    }
    let mut out = Vec::with_capacity(input.len());
    for seg in &segments {
        out.push(b'/');
        out.extend_from_slice(seg);
    }
    if trailing_slash || out.is_empty() {
        out.push(b'/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathNormalization::*;

    #[test]
    fn normalization_table() {
        let table = [
            ("/a/b", Base, "/a/b"),
            ("/x/../api/v1", Base, "/api/v1"),
            ("/a/./b/../c", Base, "/a/c"),
            ("/a/b/..", Base, "/a/"),
            ("/a/b/.", Base, "/a/b/"),
            ("/../../a", Base, "/a"),
            ("/a\\b", Base, "/a/b"),
            ("/%61%70%69/%2e%2e/admin", Base, "/admin"),
            ("/%7Euser/%2D", Base, "/~user/-"),
            ("/a%2Fb", Base, "/a%2Fb"),
            ("/a%2fb", DecodeAndMergeSlashes, "/a/b"),
            ("/a%5Cb", DecodeAndMergeSlashes, "/a/b"),
            ("/a//b", Base, "/a//b"),
            ("/a//b", MergeSlashes, "/a/b"),
            ("/a%20b", Base, "/a%20b"),
            ("/a/../..%2f", Base, "/..%2f"),
            ("/x/..", None, "/x/.."),
            ("/", Base, "/"),
            ("/.", Base, "/"),
        ];
        for (input, mode, want) in table {
            assert_eq!(
                normalize_path(input, mode).unwrap(),
                want,
                "{input} {mode:?}"
            );
        }
        assert_eq!(normalize_path("/a%00b", Base), Err(Rejection::NulInPath));
        assert_eq!(normalize_path("/a%00b", None), Err(Rejection::NulInPath));
    }

    #[test]
    fn request_validation() {
        assert!(validate("GET", &[]).is_ok());
        assert_eq!(validate("get", &[]), Err(Rejection::BadMethod));
        assert_eq!(
            validate("GET", &[("bad name".into(), "v".into())]),
            Err(Rejection::BadHeaderName)
        );
    }
}
