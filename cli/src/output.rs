//! Output helpers: `tabwriter`-style tables (what istioctl prints) and the
//! `-o json|yaml` forms.

use serde::Serialize;
use std::fmt::Write as _;

/// Output format selected with `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Human-readable table (default).
    #[default]
    Table,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Output errors.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Serialization failed (a bug: every printed type serializes).
    #[error("cannot serialize output: {0}")]
    Json(#[from] serde_json::Error),
    /// YAML serialization failed.
    #[error("cannot serialize output: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// Print `value` as JSON or YAML (for [`Format::Table`] the caller prints
/// its own table and this is not called).
pub fn print_structured<T: Serialize>(value: &T, format: Format) -> Result<(), OutputError> {
    match format {
        Format::Json | Format::Table => println!("{}", serde_json::to_string_pretty(value)?),
        Format::Yaml => print!("{}", serde_yaml::to_string(value)?),
    }
    Ok(())
}

/// A table whose columns are padded like Go's `tabwriter` with
/// `minwidth=0, padding=3`: each column as wide as its widest cell plus
/// three spaces, the last column unpadded.
#[derive(Debug, Default, Clone)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with a header row.
    pub fn new<S: AsRef<str>>(header: &[S]) -> Self {
        Table {
            rows: vec![header.iter().map(|s| s.as_ref().to_string()).collect()],
        }
    }

    /// Append a row.
    pub fn row<S: ToString>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows
            .push(cells.into_iter().map(|c| c.to_string()).collect());
    }

    /// Number of data rows (without the header).
    pub fn len(&self) -> usize {
        self.rows.len().saturating_sub(1)
    }

    /// `true` without data rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rendered text (every line ends with `\n`).
    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0usize; cols];
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in &self.rows {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                if i + 1 == r.len() {
                    line.push_str(c);
                } else {
                    let _ = write!(line, "{c:<w$}", w = widths[i] + 3);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Print the table to stdout.
    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// Shorten a digest for tables (`4bf0330d29cf`).
pub fn short_digest(d: &str) -> String {
    d.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let mut t = Table::new(&["NAME", "REVISION", "PROGRAMMED"]);
        t.row(["waypoint", "default", "True"]);
        t.row(["pods-wp", "default", "False"]);
        assert_eq!(
            t.render(),
            "NAME       REVISION   PROGRAMMED\nwaypoint   default    True\npods-wp    default    False\n"
        );
        assert_eq!(t.len(), 2);
    }
}
