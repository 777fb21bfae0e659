//! Git with pinned settings, so that the vendored repository behaves the same on every
//! machine: no user or system configuration, no hooks, no signing, no line-ending
//! conversion, a fixed identity and fixed dates for the commits we make ourselves.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::shell;

/// Identity of the commits xtask makes (the pristine import and the setup commit), and
/// the committer of every applied patch.
pub const NAME: &str = "cargo-monotonic-index xtask";
pub const EMAIL: &str = "xtask@cargo-monotonic-index.invalid";
/// Commits made by xtask carry this date, so that the pristine commit has the same id
/// everywhere.
pub const FIXED_DATE: &str = "2000-01-01T00:00:00+00:00";

/// The tag on the imported crates, exactly as published.
pub const PRISTINE_TAG: &str = "pristine";
/// The tag on the setup commit the series applies to.
pub const BASE_TAG: &str = "base";

pub struct Git {
    dir: PathBuf,
}

impl Git {
    pub fn new(dir: impl Into<PathBuf>) -> Git {
        Git { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A `git` command in this repository with the pinned settings.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new("git");
        cmd.current_dir(&self.dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_COMMITTER_NAME", NAME)
            .env("GIT_COMMITTER_EMAIL", EMAIL)
            .env("LC_ALL", "C")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE");
        for setting in PINNED_SETTINGS {
            cmd.args(["-c", setting]);
        }
        cmd
    }

    pub fn run<I, S>(&self, args: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        shell::output(self.cmd().args(args)).map(drop)
    }

    pub fn stdout<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        shell::stdout(self.cmd().args(args))
    }

    /// The commit id `rev` names, or `None` when it names nothing.
    pub fn rev_parse(&self, rev: &str) -> Option<String> {
        self.stdout([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ])
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
    }

    /// `git status --porcelain`: empty when the tree has nothing uncommitted.
    pub fn uncommitted(&self) -> Result<String> {
        self.stdout(["status", "--porcelain"])
    }

    /// Commits everything in the tree as xtask, with the fixed date.
    pub fn commit_all_fixed(&self, message: &str) -> Result<()> {
        // `--force`: the crates ship files their own .gitignore names (cargo ignores its
        // Cargo.lock), and the import must hold the crates exactly as published.
        self.run(["add", "--all", "--force", "."])?;
        shell::output(
            self.cmd()
                .env("GIT_AUTHOR_NAME", NAME)
                .env("GIT_AUTHOR_EMAIL", EMAIL)
                .env("GIT_AUTHOR_DATE", FIXED_DATE)
                .env("GIT_COMMITTER_DATE", FIXED_DATE)
                .args(["commit", "--quiet", "--no-verify", "-m", message]),
        )
        .map(drop)
    }
}

const PINNED_SETTINGS: &[&str] = &[
    "core.autocrlf=false",
    "core.eol=lf",
    "core.safecrlf=false",
    "core.fileMode=true",
    "core.hooksPath=/dev/null",
    "core.quotePath=true",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "init.defaultBranch=main",
    "diff.algorithm=myers",
    "diff.noprefix=false",
    "diff.mnemonicPrefix=false",
    "diff.renames=true",
    "format.signature=",
    "am.threeWay=false",
    "am.keepcr=false",
    "apply.whitespace=nowarn",
    "advice.detachedHead=false",
    "gc.auto=0",
    "core.abbrev=12",
];

/// The settings a developer needs in the vendored repository to commit there by hand
/// with the same behaviour (written to its `.git/config`).
pub fn local_settings() -> impl Iterator<Item = (&'static str, &'static str)> {
    PINNED_SETTINGS
        .iter()
        .filter_map(|s| s.split_once('='))
        .chain([("user.name", NAME), ("user.email", EMAIL)])
}
