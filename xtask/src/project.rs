//! Where things live in this repository, and the one pin of the cargo version we patch.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

/// The `cargo` crate on crates.io that `patches/` applies to. The only pin: everything
/// else (cargo-test-support's version, checksums) is read from the registry and from
/// this crate's own lockfile.
pub const CARGO_VERSION: &str = "0.98.0";

/// Paths of the repository, all derived from its root.
pub struct Project {
    root: PathBuf,
}

impl Project {
    /// The repository that holds this xtask.
    pub fn locate() -> Result<Project> {
        let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = xtask_dir
            .parent()
            .context("xtask is expected to live one level below the repository root")?;
        Ok(Project {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn patches_dir(&self) -> PathBuf {
        self.root.join("patches")
    }

    pub fn series_file(&self) -> PathBuf {
        self.patches_dir().join("series")
    }

    /// The vendored cargo tree, with the series applied as commits.
    pub fn vendored_cargo(&self) -> PathBuf {
        self.root.join("vendor").join("cargo")
    }

    /// A second worktree of the vendored repository, checked out at some other point of
    /// the series (the pristine base for the baseline, or `--at N`), so that the main
    /// tree's files, and so its build, are never disturbed.
    pub fn checkout_at(&self) -> PathBuf {
        self.root.join("vendor").join("cargo-at")
    }

    /// The target directory of `vendor/cargo`, reused by every build of it.
    pub fn vendored_target_dir(&self) -> PathBuf {
        self.root.join("target").join("vendored-cargo")
    }

    /// The target directory of `vendor/cargo-at`. It cannot share the one above: cargo
    /// hashes a path package relative to its workspace root, so the two trees' crates
    /// would get the same file names and each build would pass off the other's binary.
    pub fn checkout_target_dir(&self) -> PathBuf {
        self.root.join("target").join("vendored-cargo-at")
    }

    /// Scratch space for generated manifests and staging directories.
    pub fn scratch_dir(&self) -> PathBuf {
        self.root.join("target").join("xtask")
    }

    /// Shows `path` relative to the repository root when it is inside it.
    pub fn display(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}
