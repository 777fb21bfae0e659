//! The patch files themselves: how commits are written out (one fixed `git
//! format-patch` form, so an unchanged series regenerates byte for byte) and how a
//! patch that applied is checked to have applied exactly.

use std::fs;
use std::path::Path;

use anyhow::{Context as _, Result};

use crate::git::Git;

/// `git format-patch` options of the stable form: zero commit ids, no signature, no
/// `[PATCH n/m]` numbering (so inserting a patch does not rewrite the others).
const FORMAT: &[&str] = &[
    "format-patch",
    "--zero-commit",
    "--no-signature",
    "--no-numbered",
    "--stat=80",
    "--subject-prefix=PATCH",
    "--no-cover-letter",
    "--no-thread",
    "--no-add-header",
    "--no-binary",
];

/// One commit as the patch file `refresh` would write.
#[derive(Debug, PartialEq)]
pub struct FormattedPatch {
    pub file: String,
    pub text: String,
}

/// The commits in `range` (e.g. `base..HEAD`), oldest first, as patch files.
pub fn format_range(git: &Git, range: &str) -> Result<Vec<FormattedPatch>> {
    format(git, &[range], 1)
}

/// One commit as patch number `number`.
pub fn format_commit(git: &Git, commit: &str, number: usize) -> Result<FormattedPatch> {
    let mut patches = format(git, &["-1", commit], number)?;
    patches
        .pop()
        .with_context(|| format!("commit {commit} made no patch"))
}

/// Runs `git format-patch` into a scratch directory inside the repository's `.git`, so
/// that git itself names the files.
fn format(git: &Git, revs: &[&str], start: usize) -> Result<Vec<FormattedPatch>> {
    let out_dir = git.dir().join(".git").join("xtask-format-patch");
    if out_dir.exists() {
        fs::remove_dir_all(&out_dir)?;
    }
    let start = start.to_string();
    let paths = git
        .stdout(
            FORMAT
                .iter()
                .copied()
                .chain(["--start-number", &start, "-o"])
                .chain([out_dir.to_str().context("non-UTF-8 path")?])
                .chain(revs.iter().copied()),
        )
        .with_context(|| format!("could not format {}", revs.join(" ")))?;
    let mut patches = Vec::new();
    for path in paths.lines().map(Path::new) {
        let file = path
            .file_name()
            .context("git format-patch printed no file name")?
            .to_string_lossy()
            .into_owned();
        let text = fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?;
        patches.push(FormattedPatch { file, text });
    }
    let _ = fs::remove_dir_all(&out_dir);
    Ok(patches)
}

/// Where `applied` (the patch as regenerated from the commit `git am` made) differs
/// from `original` (the file in patches/): `None` when they are the same.
pub fn mismatch(original: &str, applied: &str) -> Option<String> {
    if original == applied {
        return None;
    }
    let hunks = |text: &str| -> Vec<(String, String)> {
        let mut file = String::new();
        let mut out = Vec::new();
        for line in text.lines() {
            if let Some(path) = line.strip_prefix("+++ b/") {
                file = path.to_string();
            } else if line.starts_with("@@ ") {
                out.push((file.clone(), line.to_string()));
            }
        }
        out
    };
    let (want, got) = (hunks(original), hunks(applied));
    for ((file, want), (_, got)) in want.iter().zip(&got) {
        if want != got {
            return Some(format!(
                "{file}: the hunk `{want}` applied as `{got}` (at an offset): the \
                 context moved"
            ));
        }
    }
    if want.len() != got.len() {
        return Some(format!(
            "it has {} hunks but applied as {}",
            want.len(),
            got.len()
        ));
    }
    Some("it applied, but is not in the form `cargo xtask refresh` writes".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_hunk_that_moved() {
        let original = "+++ b/src/lib.rs\n@@ -10,3 +10,4 @@ fn a()\n";
        let applied = "+++ b/src/lib.rs\n@@ -13,3 +13,4 @@ fn a()\n";
        let why = mismatch(original, applied).unwrap();
        assert!(why.contains("src/lib.rs"), "{why}");
        assert!(why.contains("@@ -13,3 +13,4 @@"), "{why}");
        assert_eq!(mismatch(original, original), None);
    }
}
