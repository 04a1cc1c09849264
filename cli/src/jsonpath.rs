//! The subset of kubectl's JSONPath templates the guide uses:
//! `{.status.conditions[?(@.type=="Programmed")].status}{"\n"}` — field
//! access, `[n]`, `[*]`, filters `[?(@.field=="value")]` (also `!=`), and
//! quoted literals between `{…}` blocks.

use serde_json::Value;

/// Template errors.
#[derive(Debug, thiserror::Error)]
#[error(
    "unsupported jsonpath {0:?}: meshctl supports {{.a.b}}, [n], [*], [?(@.k==\"v\")] and \"literals\""
)]
pub struct JsonPathError(pub String);

fn split_steps(expr: &str) -> Result<Vec<String>, JsonPathError> {
    let mut steps = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    let mut quoted = false;
    for c in expr.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            '[' if !quoted => {
                if depth == 0 && !cur.is_empty() {
                    steps.push(std::mem::take(&mut cur));
                }
                depth += 1;
                cur.push(c);
            }
            ']' if !quoted => {
                depth -= 1;
                cur.push(c);
                if depth == 0 {
                    steps.push(std::mem::take(&mut cur));
                }
            }
            '.' if !quoted && depth == 0 => {
                if !cur.is_empty() {
                    steps.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if depth != 0 || quoted {
        return Err(JsonPathError(expr.into()));
    }
    if !cur.is_empty() {
        steps.push(cur);
    }
    Ok(steps)
}

fn apply(values: Vec<Value>, step: &str, expr: &str) -> Result<Vec<Value>, JsonPathError> {
    let bad = || JsonPathError(expr.into());
    let mut out = Vec::new();
    if let Some(inner) = step.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        if let Some(filter) = inner.strip_prefix("?(@.").and_then(|s| s.strip_suffix(')')) {
            let (field, op, want) = if let Some((f, w)) = filter.split_once("!=") {
                (f, false, w)
            } else if let Some((f, w)) = filter.split_once("==") {
                (f, true, w)
            } else {
                return Err(bad());
            };
            let want = want.trim().trim_matches('"').trim_matches('\'');
            for v in values {
                for item in v.as_array().cloned().unwrap_or_default() {
                    let got = item.pointer(&format!("/{}", field.trim().replace('.', "/")));
                    let s = got.map(|g| {
                        g.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| g.to_string())
                    });
                    if (s.as_deref() == Some(want)) == op {
                        out.push(item);
                    }
                }
            }
        } else if inner == "*" {
            for v in values {
                match v {
                    Value::Array(a) => out.extend(a),
                    Value::Object(m) => out.extend(m.into_iter().map(|(_, v)| v)),
                    _ => {}
                }
            }
        } else {
            let i: usize = inner.parse().map_err(|_| bad())?;
            out.extend(values.into_iter().filter_map(|v| v.get(i).cloned()));
        }
    } else {
        out.extend(values.into_iter().filter_map(|v| v.get(step).cloned()));
    }
    Ok(out)
}

fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn unescape(lit: &str) -> String {
    lit.replace("\\n", "\n").replace("\\t", "\t")
}

/// Render `template` against `root`.
pub fn render(template: &str, root: &Value) -> Result<String, JsonPathError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&unescape(&rest[..start]));
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .ok_or_else(|| JsonPathError(template.into()))?;
        // A filter may contain '}' only inside quotes; the guide's never does.
        let expr = rest[start + 1..end].trim();
        rest = &rest[end + 1..];
        if let Some(lit) = expr.strip_prefix('"').and_then(|e| e.strip_suffix('"')) {
            out.push_str(&unescape(lit));
            continue;
        }
        let expr = expr.strip_prefix('$').unwrap_or(expr);
        let mut values = vec![root.clone()];
        for step in split_steps(expr)? {
            values = apply(values, &step, template)?;
        }
        out.push_str(
            &values
                .iter()
                .map(render_value)
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    out.push_str(&unescape(rest));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guides_programmed_query() {
        let gw = serde_json::json!({"status": {"conditions": [
            {"type": "Accepted", "status": "True"},
            {"type": "Programmed", "status": "True"}
        ]}, "metadata": {"name": "waypoint"}});
        let t = r#"{.status.conditions[?(@.type=="Programmed")].status}{"\n"}"#;
        assert_eq!(render(t, &gw).unwrap(), "True\n");
        assert_eq!(render("{.metadata.name}", &gw).unwrap(), "waypoint");
        assert_eq!(
            render("{.status.conditions[*].type}", &gw).unwrap(),
            "Accepted Programmed"
        );
        assert_eq!(
            render("{.status.conditions[0].status}", &gw).unwrap(),
            "True"
        );
        assert!(render("{.a[?(@.x>1)]}", &gw).is_err());
    }
}
