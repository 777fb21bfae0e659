//! `cargo xtask test`: the one test entry point.
//!
//! 1. our crates' tests;
//! 2. cargo's own testsuite on the patched tree, compared with the pristine baseline
//!    (run once, then cached, keyed by the crate versions, the toolchain and the base
//!    commit);
//! 3. our end-to-end tests, which drive the stock and the patched cargo.
//!
//! `--at N` instead runs cargo's testsuite with N patches of the series applied, to show
//! that each step passes on its own (CI runs the test commit alone this way).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use sha2::{Digest as _, Sha256};

use crate::build;
use crate::checkout;
use crate::git::{self, Git};
use crate::project::{CARGO_VERSION, Project};
use crate::shell;
use crate::testsuite::{self, Outcomes, Tree};
use crate::vendor::hex;

/// The part of cargo's testsuite the series touches: `--quick` runs only this.
pub const SLICE: &[&str] = &["stale_index::", "registry::", "publish::", "offline::"];

#[derive(Default)]
pub struct TestOptions {
    pub quick: bool,
    /// Run cargo's testsuite at this point of the series instead (a count of patches,
    /// or the number or name of the last patch to apply).
    pub at: Option<String>,
    /// Test-name filters for cargo's testsuite.
    pub filters: Vec<String>,
    pub offline: bool,
}

/// Passed and failed counts across all stages, for the closing line.
#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
}

pub fn run(project: &Project, options: &TestOptions) -> Result<()> {
    if let Some(point) = &options.at {
        return run_at(project, point, options);
    }
    let mut tally = Tally::default();

    shell::status("Testing", "our crates (cargo test --workspace)");
    let mut ours = shell::cargo();
    ours.current_dir(project.root())
        .args(["test", "--workspace", "--locked"]);
    if options.offline {
        ours.arg("--offline");
    }
    run_libtest(&mut ours, &mut tally, "our crates")?;

    build::prepare(project, options.offline)?;
    let filters = slice(options);
    let baseline = baseline(project, &filters, options.offline)?;
    shell::status("Testing", "cargo's testsuite on the patched tree");
    let patched = Tree {
        dir: &project.vendored_cargo(),
        target_dir: &project.vendored_target_dir(),
        offline: options.offline,
    }
    .run(&filters, &log_path(project, "testsuite-patched"))?;
    let cmp = testsuite::compare(&baseline, &patched);
    report(&cmp, &log_path(project, "testsuite-patched"));
    tally.passed += cmp.passed;
    tally.failed += cmp.newly_failing.len();

    shell::status(
        "Testing",
        "end to end, with the stock and the patched cargo",
    );
    let patched_cargo = project.vendored_target_dir().join("debug").join("cargo");
    let mut e2e = shell::cargo();
    e2e.current_dir(project.root())
        .args(["test", "--workspace", "--locked"])
        .args(options.offline.then_some("--offline"))
        .args(["--", "--ignored"])
        .env(PATCHED_CARGO_ENV, &patched_cargo);
    run_libtest(&mut e2e, &mut tally, "end-to-end tests")?;

    println!("{} passed, {} failed", tally.passed, tally.failed);
    if tally.failed > 0 {
        bail!("{} tests failed", tally.failed);
    }
    Ok(())
}

/// Our end-to-end tests find the patched cargo here; `cargo xtask test` sets it.
pub const PATCHED_CARGO_ENV: &str = "MONOTONIC_PATCHED_CARGO";

fn slice(options: &TestOptions) -> Vec<String> {
    if !options.filters.is_empty() {
        options.filters.clone()
    } else if options.quick {
        SLICE.iter().map(|s| s.to_string()).collect()
    } else {
        Vec::new()
    }
}

fn log_path(project: &Project, name: &str) -> PathBuf {
    project
        .scratch_dir()
        .join("logs")
        .join(format!("{name}.log"))
}

fn report(cmp: &testsuite::Comparison, log: &Path) {
    shell::status(
        "Compared",
        format!(
            "with pristine cargo {CARGO_VERSION}: {} passed, {} newly failing, {} newly \
             passing, {} failing on both (not counted), {} ignored",
            cmp.passed,
            cmp.newly_failing.len(),
            cmp.newly_passing.len(),
            cmp.known_failures,
            cmp.ignored
        ),
    );
    for name in &cmp.newly_failing {
        eprintln!("    newly failing: {name}");
    }
    for name in &cmp.newly_passing {
        eprintln!("    newly passing: {name}");
    }
    if !cmp.newly_failing.is_empty() {
        eprintln!("    libtest's output: {}", log.display());
    }
}

/// The pristine tree's outcomes for `filters`: from the cache, or by running them.
fn baseline(project: &Project, filters: &[String], offline: bool) -> Result<Outcomes> {
    let git = Git::new(project.vendored_cargo());
    let base = git
        .rev_parse(git::BASE_TAG)
        .context("vendor/cargo has no base tag")?;
    let rustc = shell::stdout(Command::new("rustc").arg("-vV"))?;
    // A full run answers any filter; look for it first.
    for key_filters in [&[][..], filters] {
        let path = baseline_path(project, &base, &rustc, key_filters);
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(outcomes) = serde_json::from_str::<Outcomes>(&text)
        {
            shell::status(
                "Fresh",
                format!(
                    "pristine baseline ({} tests, {})",
                    outcomes.len(),
                    project.display(&path)
                ),
            );
            return Ok(outcomes);
        }
    }
    shell::status(
        "Testing",
        format!("cargo's testsuite on pristine cargo {CARGO_VERSION} (the baseline)"),
    );
    let dir = checkout::at(project, git::BASE_TAG, "the pristine base")?;
    let outcomes = Tree {
        dir: &dir,
        target_dir: &project.checkout_target_dir(),
        offline,
    }
    .run(filters, &log_path(project, "testsuite-pristine"))?;
    let path = baseline_path(project, &base, &rustc, filters);
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(&path, serde_json::to_string_pretty(&outcomes)?)?;
    Ok(outcomes)
}

fn baseline_path(project: &Project, base: &str, rustc: &str, filters: &[String]) -> PathBuf {
    let key = format!(
        "{CARGO_VERSION}\n{base}\n{rustc}\nrunner {}\n{}",
        testsuite::RUNNER_VERSION,
        filters.join("\n")
    );
    let key = &hex(&Sha256::digest(key.as_bytes()))[..16];
    project
        .checkout_target_dir()
        .join("baselines")
        .join(format!("cargo-{CARGO_VERSION}-{key}.json"))
}

/// Runs cargo's testsuite (or the given filters) with only part of the series applied.
fn run_at(project: &Project, point: &str, options: &TestOptions) -> Result<()> {
    build::prepare(project, options.offline)?;
    let patches = crate::apply::read_patches(project)?;
    let count = patches_up_to(
        point,
        &patches.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(),
    )?;
    let rev = format!("{}~{}", "HEAD", patches.len() - count);
    let what = match count {
        0 => "the base, with no patch".to_string(),
        n => format!("the series up to {}", patches[n - 1].0),
    };
    let dir = checkout::at(project, &rev, &what)?;
    shell::status("Testing", format!("cargo's testsuite at {what}"));
    let outcomes = Tree {
        dir: &dir,
        target_dir: &project.checkout_target_dir(),
        offline: options.offline,
    }
    .run(
        &slice(options),
        &log_path(project, &format!("testsuite-at-{count}")),
    )?;
    let failed: Vec<&String> = outcomes
        .iter()
        .filter(|(_, o)| **o == testsuite::Outcome::Failed)
        .map(|(n, _)| n)
        .collect();
    let passed = outcomes
        .values()
        .filter(|o| **o == testsuite::Outcome::Passed)
        .count();
    for name in &failed {
        eprintln!("    failed: {name}");
    }
    println!("{passed} passed, {} failed", failed.len());
    if !failed.is_empty() {
        bail!("{} tests failed at {what}", failed.len());
    }
    Ok(())
}

/// How many patches `point` means: a count (`0` is the base), or the number or file name
/// of the last patch to apply (`0001`, `0001-add-tests.patch`).
fn patches_up_to(point: &str, files: &[&str]) -> Result<usize> {
    if let Some(i) = files
        .iter()
        .position(|f| *f == point || f.starts_with(&format!("{point}-")))
    {
        return Ok(i + 1);
    }
    match point.parse::<usize>() {
        Ok(n) if n <= files.len() => Ok(n),
        _ => bail!(
            "`--at {point}` names no point of the series: give a count from 0 to {} or a \
             patch of patches/series",
            files.len()
        ),
    }
}

/// Runs a `cargo test`, echoing its output, and adds its summary lines to `tally`.
fn run_libtest(cmd: &mut Command, tally: &mut Tally, what: &str) -> Result<()> {
    cmd.stdout(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start `{}`", shell::describe(cmd)))?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line?;
        println!("{line}");
        if let Some(summary) = line.strip_prefix("test result: ") {
            passed += count_in(summary, " passed");
            failed += count_in(summary, " failed");
        }
    }
    let status = child.wait()?;
    tally.passed += passed;
    tally.failed += failed;
    if !status.success() && failed == 0 {
        // Nothing failed as a test, so the build did.
        bail!(
            "`{}` failed ({status}) before its tests ran",
            shell::describe(cmd)
        );
    }
    shell::status(
        "Tested",
        format!("{what}: {passed} passed, {failed} failed"),
    );
    Ok(())
}

/// `ok. 5 passed; 0 failed; ...` -> the number before `word`.
fn count_in(summary: &str, word: &str) -> usize {
    summary
        .split(';')
        .find_map(|part| {
            part.trim()
                .strip_suffix(word)
                .map(|n| n.rsplit(' ').next().unwrap_or(n))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_summary_counts() {
        let summary = "FAILED. 12 passed; 3 failed; 1 ignored; 0 measured; 0 filtered out";
        assert_eq!(count_in(summary, " passed"), 12);
        assert_eq!(count_in(summary, " failed"), 3);
        assert_eq!(count_in("ok. 7 passed; 0 failed", " passed"), 7);
    }

    #[test]
    fn points_of_the_series() {
        let files = ["0001-add-tests.patch", "0002-fix.patch"];
        assert_eq!(patches_up_to("0", &files).unwrap(), 0);
        assert_eq!(patches_up_to("2", &files).unwrap(), 2);
        assert_eq!(patches_up_to("0001", &files).unwrap(), 1);
        assert_eq!(patches_up_to("0002-fix.patch", &files).unwrap(), 2);
        assert!(patches_up_to("3", &files).is_err());
        assert!(patches_up_to("nope", &files).is_err());
    }
}
