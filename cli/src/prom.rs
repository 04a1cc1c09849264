//! Reading Prometheus text exposition: sum a metric over the samples whose
//! labels match.

use std::collections::BTreeMap;

/// One sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

fn parse_labels(s: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        chars.next()?; // '='
        if chars.next()? != '"' {
            return None;
        }
        let mut val = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => val.push('\n'),
                    c => val.push(c),
                },
                '"' => break,
                c => val.push(c),
            }
        }
        out.insert(key.trim().to_string(), val);
    }
}

/// Parse every sample (comments and malformed lines skipped).
pub fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (head, rest) = match line.find('{') {
            Some(i) => {
                let Some(j) = line.rfind('}') else { continue };
                let Some(labels) = parse_labels(&line[i + 1..j]) else {
                    continue;
                };
                ((line[..i].to_string(), labels), &line[j + 1..])
            }
            None => match line.split_once(' ') {
                Some((n, r)) => ((n.to_string(), BTreeMap::new()), r),
                None => continue,
            },
        };
        if let Some(v) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            out.push(Sample {
                name: head.0,
                labels: head.1,
                value: v,
            });
        }
    }
    out
}

/// Sum of `name` over samples carrying every `(label, value)` of `want`.
pub fn sum(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    parse(text)
        .iter()
        .filter(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_matching_samples() {
        let t = "# TYPE istio_requests_total counter\n\
            istio_requests_total{reporter=\"waypoint\",destination_version=\"v2\",response_code=\"200\"} 7\n\
            istio_requests_total{reporter=\"waypoint\",destination_version=\"v1\",response_code=\"200\"} 60\n\
            istio_requests_total{reporter=\"waypoint\",destination_version=\"v2\",response_code=\"503\",path=\"a\\\"b,c\"} 1\n";
        assert_eq!(
            sum(t, "istio_requests_total", &[("destination_version", "v2")]),
            8.0
        );
        assert_eq!(
            sum(
                t,
                "istio_requests_total",
                &[("destination_version", "v2"), ("response_code", "200")]
            ),
            7.0
        );
        assert_eq!(parse(t)[2].labels["path"], "a\"b,c");
    }
}
