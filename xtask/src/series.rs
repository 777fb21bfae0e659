//! `patches/series`: the order of the patches, one file name a line, with `#` comments.
//!
//! A run of comment lines directly above an entry belongs to that entry and travels
//! with it when `cargo xtask refresh` rewrites the file; everything above the first
//! entry's comments is the header and is kept as it is.

use std::path::Path;

use anyhow::{Context as _, Result, bail};

#[derive(Debug, Default, PartialEq)]
pub struct Series {
    pub header: Vec<String>,
    pub entries: Vec<Entry>,
}

#[derive(Debug, PartialEq)]
pub struct Entry {
    pub comments: Vec<String>,
    pub file: String,
}

pub const DEFAULT_HEADER: &str = "\
# The patch series against the `cargo` crate, applied in this order by
# `cargo xtask apply` and rewritten by `cargo xtask refresh`.
";

impl Series {
    pub fn read(path: &Path) -> Result<Series> {
        match std::fs::read_to_string(path) {
            Ok(text) => Series::parse(&text).with_context(|| format!("in {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Series::parse(DEFAULT_HEADER)?)
            }
            Err(e) => Err(e).with_context(|| format!("could not read {}", path.display())),
        }
    }

    pub fn parse(text: &str) -> Result<Series> {
        let mut series = Series::default();
        let mut pending: Vec<String> = Vec::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.is_empty() {
                // A blank line detaches the comments above it from the next entry.
                if series.entries.is_empty() {
                    series.header.append(&mut pending);
                    series.header.push(String::new());
                } else {
                    pending.clear();
                }
            } else if trimmed.starts_with('#') {
                pending.push(line.trim_end().to_string());
            } else {
                if !trimmed.ends_with(".patch") || trimmed.contains(['/', '\\']) {
                    bail!("`{trimmed}` is not the name of a patch file in patches/");
                }
                series.entries.push(Entry {
                    comments: std::mem::take(&mut pending),
                    file: trimmed.to_string(),
                });
            }
        }
        if series.entries.is_empty() {
            series.header.append(&mut pending);
        }
        Ok(series)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.header {
            out.push_str(line);
            out.push('\n');
        }
        for entry in &self.entries {
            for line in &entry.comments {
                out.push_str(line);
                out.push('\n');
            }
            out.push_str(&entry.file);
            out.push('\n');
        }
        out
    }

    /// The same series with `files` as its entries, each keeping the comments it had.
    pub fn with_files(&self, files: &[String]) -> Series {
        let entries = files
            .iter()
            .map(|file| Entry {
                comments: self
                    .entries
                    .iter()
                    .find(|e| &e.file == file)
                    .map(|e| e.comments.clone())
                    .unwrap_or_default(),
                file: file.clone(),
            })
            .collect();
        Series {
            header: self.header.clone(),
            entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# header line

# about the tests
0001-add-tests.patch
0002-fix.patch
";

    #[test]
    fn round_trips_byte_for_byte() {
        let series = Series::parse(TEXT).unwrap();
        assert_eq!(series.render(), TEXT);
        assert_eq!(series.entries[0].comments, ["# about the tests"]);
        assert!(series.entries[1].comments.is_empty());
    }

    #[test]
    fn comments_follow_their_patch_when_files_change() {
        let series = Series::parse(TEXT).unwrap();
        let renamed =
            series.with_files(&["0001-add-tests.patch".into(), "0002-other.patch".into()]);
        assert_eq!(
            renamed.render(),
            "# header line\n\n# about the tests\n0001-add-tests.patch\n0002-other.patch\n"
        );
    }

    #[test]
    fn rejects_paths() {
        assert!(Series::parse("../evil.patch\n").is_err());
        assert!(Series::parse("notes.txt\n").is_err());
    }
}
