//! `cargo xtask build-patched-cargo`: vendors and applies when needed, then builds the
//! patched cargo in release mode into the persistent target directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result};

use crate::apply::{self, ApplyOptions};
use crate::project::{CARGO_VERSION, Project};
use crate::shell;
use crate::vendor::{self, VendorOptions};

/// A `cargo` command that works on the vendored tree `tree` with its target directory.
pub fn cargo_in(tree: &Path, target_dir: &Path, offline: bool) -> Command {
    let mut cmd = shell::cargo();
    cmd.current_dir(tree).env("CARGO_TARGET_DIR", target_dir);
    if offline {
        cmd.arg("--offline");
    }
    cmd
}

/// Vendors and applies the series when needed.
pub fn prepare(project: &Project, offline: bool) -> Result<()> {
    vendor::ensure(project, VendorOptions { offline })?;
    apply::ensure(project, ApplyOptions::default())
}

pub fn patched_cargo(project: &Project, offline: bool) -> Result<PathBuf> {
    prepare(project, offline)?;
    shell::status(
        "Building",
        format!("patched cargo {CARGO_VERSION} (release)"),
    );
    let target_dir = project.vendored_target_dir();
    shell::run(
        cargo_in(&project.vendored_cargo(), &target_dir, offline).args([
            "build",
            "--release",
            "--locked",
            "--bin",
            "cargo",
        ]),
    )
    .context("building the patched cargo failed")?;
    let binary = target_dir.join("release").join("cargo");
    let version = shell::stdout(Command::new(&binary).arg("--version"))
        .with_context(|| format!("the built {} does not run", binary.display()))?;
    shell::status("Built", version.trim());
    Ok(binary)
}

pub fn run(project: &Project, offline: bool) -> Result<()> {
    let binary = patched_cargo(project, offline)?;
    println!("{}", binary.display());
    eprintln!(
        "\nUse it in place of `cargo`, with the toolchain's rustc:\n    \
         {} publish -p a && {} publish -p b\n\
         or make it `cargo +monotonic` with `cargo xtask install`.",
        binary.display(),
        binary.display()
    );
    Ok(())
}
