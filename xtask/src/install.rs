//! `cargo xtask install`: makes the patched cargo usable as `cargo +monotonic` through
//! rustup, as a linked toolchain that reuses the installed rustc.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::project::Project;
use crate::shell;

pub const TOOLCHAIN: &str = "monotonic";

pub fn run(project: &Project, offline: bool) -> Result<()> {
    if Command::new("rustup").arg("--version").output().is_err() {
        let binary = crate::build::patched_cargo(project, offline)?;
        bail!(
            "rustup is not installed, so there is no `cargo +{TOOLCHAIN}` to make. Use the \
             patched cargo directly: {}",
            binary.display()
        );
    }
    let binary = crate::build::patched_cargo(project, offline)?;
    let sysroot = shell::stdout(Command::new("rustc").args(["--print", "sysroot"]))
        .context("could not find the installed rustc's sysroot")?;
    let sysroot = Path::new(sysroot.trim());

    // A toolchain directory whose every entry links to the installed toolchain, but for
    // bin/cargo, which is the patched one.
    let toolchain = project.root().join("target").join("monotonic-toolchain");
    if toolchain.exists() {
        fs::remove_dir_all(&toolchain)?;
    }
    fs::create_dir_all(toolchain.join("bin"))?;
    for entry in fs::read_dir(sysroot)? {
        let entry = entry?;
        if entry.file_name() != "bin" {
            symlink(entry.path(), toolchain.join(entry.file_name()))?;
        }
    }
    for entry in fs::read_dir(sysroot.join("bin"))? {
        let entry = entry?;
        if entry.file_name() != "cargo" {
            symlink(entry.path(), toolchain.join("bin").join(entry.file_name()))?;
        }
    }
    symlink(&binary, toolchain.join("bin").join("cargo"))?;
    shell::run(
        Command::new("rustup")
            .args(["toolchain", "link", TOOLCHAIN])
            .arg(&toolchain),
    )
    .context("rustup could not link the toolchain")?;
    shell::status(
        "Installed",
        format!(
            "toolchain `{TOOLCHAIN}`: the patched cargo with the rustc of {}",
            sysroot.display()
        ),
    );
    eprintln!(
        "\nUse it as `cargo +{TOOLCHAIN} publish ...`. It links to {} and to the build in \
         target/, so `cargo clean` here breaks it until the next `cargo xtask install`.\n\
         Undo with `rustup toolchain uninstall {TOOLCHAIN}`.",
        project.display(&toolchain)
    );
    Ok(())
}
