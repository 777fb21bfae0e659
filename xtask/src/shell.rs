//! Cargo-style status lines and checked child processes.

use std::ffi::OsStr;
use std::io::IsTerminal as _;
use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, Result, bail};

/// Prints `verb message` the way cargo does: the verb right-aligned in 12 columns,
/// bold green on a terminal.
pub fn status(verb: &str, message: impl std::fmt::Display) {
    if std::io::stderr().is_terminal() {
        eprintln!("\x1b[1;32m{verb:>12}\x1b[0m {message}");
    } else {
        eprintln!("{verb:>12} {message}");
    }
}

pub fn warn(message: impl std::fmt::Display) {
    if std::io::stderr().is_terminal() {
        eprintln!("\x1b[1;33mwarning\x1b[0m: {message}");
    } else {
        eprintln!("warning: {message}");
    }
}

/// The command line of `cmd`, for error messages.
pub fn describe(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(quote));
    words.join(" ")
}

fn quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '"') {
        format!("{s:?}")
    } else {
        s.into_owned()
    }
}

/// Runs `cmd` with inherited output; fails when it does not exit successfully.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(cmd));
    }
    Ok(())
}

/// Runs `cmd`, capturing its output; fails, quoting stderr, when it does not exit
/// successfully.
pub fn output(cmd: &mut Command) -> Result<Output> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{}`", describe(cmd)))?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}):\n{}",
            describe(cmd),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    Ok(output)
}

/// Runs `cmd` and returns its stdout as text.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    let output = output(cmd)?;
    String::from_utf8(output.stdout)
        .with_context(|| format!("`{}` printed something that is not UTF-8", describe(cmd)))
}

/// A `cargo` command from the toolchain that runs this xtask.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // `cargo run` exports these for the xtask; they must not leak into the cargo
    // processes that build the vendored tree.
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_MANIFEST_DIR",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    cmd
}
