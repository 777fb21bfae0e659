//! `vendor/cargo-at`: a second worktree of the vendored repository for building other
//! points of the series (the pristine base for the baseline, `cargo xtask test --at N`)
//! without touching the files, and so the build, of `vendor/cargo`.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};

use crate::git::Git;
use crate::project::Project;
use crate::shell;

/// Checks out `rev` of the vendored repository in `vendor/cargo-at` and returns its
/// path. Leaves files alone when it is already there, so nothing is rebuilt.
pub fn at(project: &Project, rev: &str, what: &str) -> Result<PathBuf> {
    let main = Git::new(project.vendored_cargo());
    let commit = main
        .rev_parse(rev)
        .with_context(|| format!("`{rev}` names no commit in vendor/cargo"))?;
    let dir = project.checkout_at();
    if !dir.join(".git").exists() {
        let _ = main.run(["worktree", "prune"]);
        let mut add = main.cmd();
        add.args(["worktree", "add", "--quiet", "--detach"])
            .arg(&dir)
            .arg(&commit);
        shell::output(&mut add).context("could not create the worktree vendor/cargo-at")?;
        shell::status(
            "Checked out",
            format!("{what} in {}", project.display(&dir)),
        );
        return Ok(dir);
    }
    let tree = Git::new(&dir);
    let dirty = tree.uncommitted()?;
    if !dirty.is_empty() {
        bail!(
            "vendor/cargo-at has uncommitted changes, which checking out {what} would \
             lose:\n{dirty}\nvendor/cargo-at is scratch space for other points of the \
             series: make your edits in vendor/cargo; discard these with \
             `git -C vendor/cargo-at checkout -f HEAD` if you do not need them"
        );
    }
    if tree.rev_parse("HEAD").as_deref() != Some(commit.as_str()) {
        tree.run(["checkout", "--quiet", "--detach", &commit])?;
        shell::status(
            "Checked out",
            format!("{what} in {}", project.display(&dir)),
        );
    }
    Ok(dir)
}

/// Removes the worktree (before the vendored repository is replaced).
pub fn remove(project: &Project) -> Result<()> {
    let dir = project.checkout_at();
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("could not remove {}", dir.display()))?;
    }
    Ok(())
}
