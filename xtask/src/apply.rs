//! `cargo xtask apply`: resets `vendor/cargo` to the `base` commit and applies each
//! patch of `patches/series` as its own commit with `git am`, refusing any patch that
//! does not apply exactly (no fuzz, no offset).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::git::{self, Git};
use crate::patchfile::{self, FormattedPatch};
use crate::project::Project;
use crate::series::Series;
use crate::shell;
use crate::vendor::hex;

/// What the vendored tree holds: the commit the series was applied (or refreshed)
/// from, and the patch files it corresponds to. Kept in the repository's `.git`.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
pub struct Record {
    base: String,
    head: String,
    patches: Vec<(String, String)>,
}

impl Record {
    /// The record for the tree's current HEAD and the current patch files.
    pub fn current(project: &Project, git: &Git) -> Result<Record> {
        Ok(Record {
            base: base_commit(git)?,
            head: git.rev_parse("HEAD").context("vendor/cargo has no HEAD")?,
            patches: patch_fingerprints(&read_patches(project)?),
        })
    }

    pub fn save(&self, git: &Git) -> Result<()> {
        fs::write(record_path(git), serde_json::to_string_pretty(self)? + "\n")
            .context("could not record the applied series")
    }

    fn load(git: &Git) -> Option<Record> {
        serde_json::from_str(&fs::read_to_string(record_path(git)).ok()?).ok()
    }
}

fn record_path(git: &Git) -> PathBuf {
    git.dir().join(".git").join("xtask-applied.json")
}

fn base_commit(git: &Git) -> Result<String> {
    git.rev_parse(git::BASE_TAG)
        .context("vendor/cargo has no `base` tag: run `cargo xtask vendor`")
}

/// The series as (file name, contents), in order.
pub fn read_patches(project: &Project) -> Result<Vec<(String, String)>> {
    let series = Series::read(&project.series_file())?;
    series
        .entries
        .iter()
        .map(|entry| {
            let path = project.patches_dir().join(&entry.file);
            let text = fs::read_to_string(&path).with_context(|| {
                format!(
                    "patches/series names {}, which cannot be read",
                    project.display(&path)
                )
            })?;
            Ok((entry.file.clone(), text))
        })
        .collect()
}

fn patch_fingerprints(patches: &[(String, String)]) -> Vec<(String, String)> {
    patches
        .iter()
        .map(|(file, text)| (file.clone(), hex(&Sha256::digest(text.as_bytes()))))
        .collect()
}

#[derive(Default, Clone, Copy)]
pub struct ApplyOptions {
    /// Drop commits in the vendored tree that patches/ does not have.
    pub force: bool,
}

/// Makes `vendor/cargo` hold exactly the series; does nothing when it already does.
pub fn ensure(project: &Project, options: ApplyOptions) -> Result<()> {
    let git = Git::new(project.vendored_cargo());
    refuse_uncommitted(&git)?;
    let patches = read_patches(project)?;
    let current = Record::current(project, &git)?;
    let recorded = Record::load(&git);
    if recorded.as_ref() == Some(&current) {
        shell::status(
            "Fresh",
            format!("patch series ({} patches already applied)", patches.len()),
        );
        return Ok(());
    }
    let tree_moved = current.head != current.base
        && recorded
            .as_ref()
            .is_none_or(|r| r.head != current.head || r.base != current.base);
    if tree_moved {
        // Commits made in the tree since the last apply: they are either what patches/
        // already says (refreshed), or work that a reset would drop.
        match applied_patches(&git, &patches)? {
            Some(n) if n == patches.len() => {
                current.save(&git)?;
                shell::status(
                    "Fresh",
                    format!("patch series ({} patches, refreshed)", patches.len()),
                );
                return Ok(());
            }
            // The first patches of the series, as a failed apply leaves the tree: nothing
            // that patches/ does not have.
            Some(_) => {}
            None if !options.force => bail!(
                "vendor/cargo has commits that patches/ does not have; applying the series \
                 would drop them.\nRun `cargo xtask refresh` to write them to patches/, or \
                 `cargo xtask apply --force` to drop them (they stay in `git -C vendor/cargo \
                 reflog`)"
            ),
            None => shell::warn(
                "dropping the commits in vendor/cargo that patches/ does not have (--force)",
            ),
        }
    }
    apply_series(project, &git, &patches)
}

fn apply_series(project: &Project, git: &Git, patches: &[(String, String)]) -> Result<()> {
    git.run(["checkout", "--quiet", "-B", "main", git::BASE_TAG])?;
    git.run(["reset", "--quiet", "--hard", git::BASE_TAG])?;
    for (number, (file, text)) in patches.iter().enumerate() {
        let path = project.patches_dir().join(file);
        shell::status("Applying", file);
        apply_one(git, &path, file)?;
        let head = git.rev_parse("HEAD").context("no HEAD after git am")?;
        let applied = patchfile::format_commit(git, &head, number + 1)?;
        if let Some(why) = patchfile::mismatch(text, &applied.text) {
            git.run(["reset", "--quiet", "--hard", "HEAD~1"])?;
            bail!(
                "patch {file} does not apply exactly: {why}.\nThe tree is left at the patch \
                 before it. Rebase it: `git -C vendor/cargo am --3way ../../patches/{file}`, \
                 fix and commit, `git am --3way` the patches after it the same way, then \
                 `cargo xtask refresh`"
            );
        }
        if applied.file != *file {
            bail!(
                "patch {file} is named {} from its subject: run `cargo xtask refresh`",
                applied.file
            );
        }
    }
    Record::current(project, git)?.save(git)?;
    shell::status(
        "Applied",
        format!(
            "{} patches to {}",
            patches.len(),
            project.display(git.dir())
        ),
    );
    Ok(())
}

fn apply_one(git: &Git, path: &Path, file: &str) -> Result<()> {
    let output = git
        .cmd()
        .args([
            "am",
            "--quiet",
            "--committer-date-is-author-date",
            "--whitespace=nowarn",
        ])
        .arg(path)
        .output()
        .context("could not run git am")?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let _ = git.run(["am", "--abort"]);
    let failed_at = stderr
        .lines()
        .find_map(|line| line.strip_prefix("error: patch failed: "))
        .map(|at| format!(" at {at}"))
        .unwrap_or_default();
    bail!(
        "patch {file} does not apply{failed_at}: its context does not match cargo's \
         sources.\ngit am said:\n{}\nThe tree is left at the patch before it. Rebase it: \
         `git -C vendor/cargo am --3way ../../patches/{file}`, fix and commit, `git am \
         --3way` the patches after it the same way, then `cargo xtask refresh`",
        stderr
            .lines()
            .filter(|line| !line.starts_with("hint:"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// How many patches of the series the commits above `base` are, when they format to
/// exactly the first patch files (all of them, or those before a patch that failed).
pub fn applied_patches(git: &Git, patches: &[(String, String)]) -> Result<Option<usize>> {
    let formatted = patchfile::format_range(git, &format!("{}..HEAD", git::BASE_TAG))?;
    Ok(series_prefix(&formatted, patches))
}

/// `Some(formatted.len())` when the formatted commits are the first patch files.
pub fn series_prefix(formatted: &[FormattedPatch], patches: &[(String, String)]) -> Option<usize> {
    let in_series = formatted.len() <= patches.len()
        && formatted
            .iter()
            .zip(patches)
            .all(|(f, (file, text))| f.file == *file && f.text == *text);
    in_series.then_some(formatted.len())
}

fn refuse_uncommitted(git: &Git) -> Result<()> {
    let dirty = git.uncommitted()?;
    if !dirty.is_empty() {
        bail!(
            "vendor/cargo has uncommitted changes:\n{dirty}\nCommit them \
             (`git -C vendor/cargo commit -a`) and run `cargo xtask refresh` to keep them in \
             patches/, or set them aside with `git -C vendor/cargo stash`"
        );
    }
    Ok(())
}

/// Fails when `vendor/cargo` holds work that patches/ does not: uncommitted changes, or
/// commits that neither came from the series nor were refreshed into it.
pub fn check_no_unsaved_work(project: &Project) -> Result<()> {
    let git = Git::new(project.vendored_cargo());
    if !git.dir().join(".git").exists() {
        return Ok(());
    }
    refuse_uncommitted(&git)?;
    let Some(head) = git.rev_parse("HEAD") else {
        return Ok(());
    };
    let recorded = Record::load(&git);
    if recorded.is_some_and(|r| r.head == head)
        || git.rev_parse(git::BASE_TAG).as_deref() == Some(&head)
    {
        return Ok(());
    }
    if git.rev_parse(git::BASE_TAG).is_none() {
        // Without the tag nothing says which commits came from the series.
        bail!(
            "vendor/cargo has no `{}` tag, so its commits cannot be compared with patches/: \
             if `git -C vendor/cargo log` shows nothing you need, remove vendor/ and run \
             again; otherwise tag the setup commit (`git -C vendor/cargo tag {} <commit>`) \
             and run `cargo xtask refresh`",
            git::BASE_TAG,
            git::BASE_TAG
        );
    }
    if applied_patches(&git, &read_patches(project)?)?.is_some() {
        return Ok(());
    }
    bail!(
        "vendor/cargo has commits that patches/ does not have: run `cargo xtask refresh` \
         to keep them"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partly_applied_series_is_a_prefix() {
        let patches: Vec<(String, String)> = ["0001-a.patch", "0002-b.patch"]
            .iter()
            .map(|f| (f.to_string(), format!("text of {f}")))
            .collect();
        let formatted = |files: &[(&str, &str)]| -> Vec<FormattedPatch> {
            files
                .iter()
                .map(|(file, text)| FormattedPatch {
                    file: file.to_string(),
                    text: text.to_string(),
                })
                .collect()
        };
        let first = ("0001-a.patch", "text of 0001-a.patch");
        let second = ("0002-b.patch", "text of 0002-b.patch");
        assert_eq!(series_prefix(&formatted(&[]), &patches), Some(0));
        assert_eq!(series_prefix(&formatted(&[first]), &patches), Some(1));
        assert_eq!(
            series_prefix(&formatted(&[first, second]), &patches),
            Some(2)
        );
        // An edited commit, or one more than the series has, is work to keep.
        assert_eq!(
            series_prefix(&formatted(&[("0001-a.patch", "edited")]), &patches),
            None
        );
        assert_eq!(
            series_prefix(&formatted(&[first, second, ("0003-c.patch", "")]), &patches),
            None
        );
    }
}
