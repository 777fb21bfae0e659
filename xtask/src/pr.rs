//! `cargo xtask pr`: prepares the upstream pull request. Checks that patches/ is what
//! the tree holds, writes the description from the commit messages, and with `--onto`
//! rebases the series onto a clone of cargo's repository (whose master has moved
//! `src/cargo/` to `src/`: `git am --3way` follows the renames).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::git::{self, Git};
use crate::project::{CARGO_VERSION, Project};
use crate::refresh::{self, RefreshOptions};
use crate::{build, shell};

pub struct PrOptions {
    /// A git repository of cargo to rebase the series onto (its HEAD).
    pub onto: Option<PathBuf>,
    pub offline: bool,
}

pub fn run(project: &Project, options: &PrOptions) -> Result<()> {
    build::prepare(project, options.offline)?;
    refresh::run(project, RefreshOptions { check: true })?;
    let out_dir = project.root().join("target").join("upstream-pr");
    std::fs::create_dir_all(&out_dir)?;

    let tree = Git::new(project.vendored_cargo());
    let log = tree.stdout([
        "log",
        "--reverse",
        "--format=%s%n%n%b%x00",
        &format!("{}..HEAD", git::BASE_TAG),
    ])?;
    let description = describe(&log);
    let path = out_dir.join("description.md");
    std::fs::write(&path, &description)?;
    shell::status(
        "Wrote",
        format!("the description to {}", project.display(&path)),
    );

    if let Some(onto) = &options.onto {
        rebase_onto(project, onto, &out_dir.join("cargo"))?;
    }
    Ok(())
}

/// The pull request's text: what, why, how it was tested, and one line per commit.
fn describe(log: &str) -> String {
    let commits: Vec<(&str, &str)> = log
        .split('\0')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| c.split_once("\n\n").unwrap_or((c, "")))
        .collect();
    let mut out = String::from(
        "Don't let the sparse index cache go back in time\n\n\
         ### What does this PR try to resolve?\n\n\
         Fixes #14644. After `cargo publish -p a`, whose wait saw the new index file of `a`,\n\
         `cargo publish -p b` can reach a CDN edge that has not been purged yet. It answers\n\
         with the older file (200, another ETag) or, for a new crate, a remembered 404;\n\
         cargo overwrites its cache and resolution fails.\n\n\
         Cargo now keeps the `Last-Modified` of each sparse index file alongside its `ETag`\n\
         (in the same index-version string, so the cache format and its version are\n\
         unchanged and older cargos keep reading it), and does not replace a cached file\n\
         with an older copy, or drop it on a 404, within ten minutes of fetching it: it\n\
         asks again within `net.retry`, then keeps the cached copy and warns once.\n\n\
         ### How to test and review this PR?\n\n\
         Commit by commit: the first adds `tests/testsuite/stale_index.rs`, passing and\n\
         showing today's behaviour; each fix then changes the expected output.\n\n",
    );
    for (subject, body) in &commits {
        let _ = writeln!(out, "- **{subject}**");
        if let Some(first) = body.split("\n\n").next().filter(|p| !p.is_empty()) {
            let _ = writeln!(out, "  {}", first.replace('\n', "\n  "));
        }
    }
    let _ = write!(
        out,
        "\nTested on cargo {CARGO_VERSION}: the whole testsuite against an unpatched \
         baseline, and end-to-end runs of the reported flow against a CDN simulator \
         (stock cargo fails about half the trials, this one none).\n"
    );
    out
}

fn rebase_onto(project: &Project, onto: &Path, clone: &Path) -> Result<()> {
    if clone.exists() {
        std::fs::remove_dir_all(clone)?;
    }
    shell::output(
        std::process::Command::new("git")
            .args(["clone", "--quiet", "--shared"])
            .arg(onto)
            .arg(clone),
    )
    .with_context(|| format!("could not clone {}", onto.display()))?;
    let repo = Git::new(clone);
    let head = repo.stdout(["log", "-1", "--format=%h %cs %s"])?;
    shell::status("Rebasing", format!("the series onto {}", head.trim()));
    for (file, _) in crate::apply::read_patches(project)? {
        let output = repo
            .cmd()
            .args(["am", "--3way", "--quiet"])
            .arg(project.patches_dir().join(&file))
            .output()?;
        if !output.status.success() {
            let _ = repo.run(["am", "--abort"]);
            bail!(
                "{file} does not rebase onto {}:\n{}",
                head.trim(),
                String::from_utf8_lossy(&output.stderr).trim_end()
            );
        }
        shell::status("Applied", &file);
    }
    shell::status(
        "Rebased",
        format!(
            "the series in {} (branch main): push it to your fork",
            project.display(clone)
        ),
    );
    Ok(())
}
