//! Cargo's own testsuite: build and run it in a vendored tree, read every test's
//! outcome from libtest's output, and compare with the pristine baseline.
//!
//! The published crate fails a few hundred tests on its own (UI fixtures that are
//! symlinks upstream are missing from the `.crate`, tests that assume a non-root user or
//! a git checkout), so a failure counts against the series only when the same test
//! passes on the pristine tree.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use crate::build::cargo_in;
use crate::shell;

/// Bump when the way the testsuite is run changes, so that cached baselines are redone.
pub const RUNNER_VERSION: u32 = 2;

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    Passed,
    Failed,
    Ignored,
}

pub type Outcomes = BTreeMap<String, Outcome>;

/// Where cargo's testsuite runs.
pub struct Tree<'a> {
    pub dir: &'a Path,
    pub target_dir: &'a Path,
    pub offline: bool,
}

impl Tree<'_> {
    /// Runs the tests matching `filters` (all of them when empty) and returns each one's
    /// outcome. libtest's output goes to `log`.
    pub fn run(&self, filters: &[String], log: &Path) -> Result<Outcomes> {
        let mut cmd = cargo_in(self.dir, self.target_dir, self.offline);
        cmd.args([
            "test",
            "--locked",
            "--test",
            "testsuite",
            "--",
            "--color",
            "never",
        ])
        .args(filters)
        // The cross-compilation tests need targets this machine does not have.
        .env("CFG_DISABLE_CROSS_TESTS", "1")
        // Cargo's UI tests compare colours: leave the terminal settings alone.
        .env_remove("CARGO_TERM_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        if let Some(parent) = log.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut log_file = fs::File::create(log)?;
        let mut child = cmd
            .spawn()
            .with_context(|| format!("could not start `{}`", shell::describe(&cmd)))?;
        // Build output on stderr goes to the log from a thread, so neither pipe fills.
        let stderr = child.stderr.take().unwrap();
        let mut stderr_log = log_file.try_clone()?;
        let stderr_thread = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(stderr_log, "{line}");
            }
        });
        let mut outcomes = Outcomes::new();
        let mut finished = false;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line?;
            writeln!(log_file, "{line}")?;
            if let Some((name, outcome)) = parse_line(&line) {
                outcomes.insert(name.to_string(), outcome);
                if outcomes.len().is_multiple_of(500) {
                    shell::status("Running", format!("{} tests done", outcomes.len()));
                }
            }
            finished |= line.starts_with("test result: ");
        }
        child.wait()?;
        let _ = stderr_thread.join();
        if !finished {
            bail!(
                "cargo's testsuite did not run to the end in {}; see {}",
                self.dir.display(),
                log.display()
            );
        }
        Ok(outcomes)
    }
}

/// `test some::name ... ok` (or `FAILED`, `ignored`, `ignored, reason`).
fn parse_line(line: &str) -> Option<(&str, Outcome)> {
    let rest = line.strip_prefix("test ")?;
    let (name, result) = rest.rsplit_once(" ... ")?;
    let outcome = match result {
        "ok" => Outcome::Passed,
        "FAILED" => Outcome::Failed,
        r if r.starts_with("ignored") => Outcome::Ignored,
        _ => return None,
    };
    Some((name, outcome))
}

/// The patched tree's results, read against the pristine baseline.
#[derive(Debug, Default)]
pub struct Comparison {
    pub passed: usize,
    pub ignored: usize,
    /// Fail now, and passed on the pristine tree (or are new): these count against us.
    pub newly_failing: Vec<String>,
    /// Pass now, and failed on the pristine tree.
    pub newly_passing: Vec<String>,
    /// Fail on both trees: not ours.
    pub known_failures: usize,
}

pub fn compare(baseline: &Outcomes, patched: &Outcomes) -> Comparison {
    let mut cmp = Comparison::default();
    for (name, outcome) in patched {
        let before = baseline.get(name);
        match outcome {
            Outcome::Passed => {
                cmp.passed += 1;
                if before == Some(&Outcome::Failed) {
                    cmp.newly_passing.push(name.clone());
                }
            }
            Outcome::Ignored => cmp.ignored += 1,
            Outcome::Failed if before == Some(&Outcome::Failed) => cmp.known_failures += 1,
            Outcome::Failed => cmp.newly_failing.push(name.clone()),
        }
    }
    cmp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libtest_lines() {
        assert_eq!(
            parse_line("test registry::foo ... ok"),
            Some(("registry::foo", Outcome::Passed))
        );
        assert_eq!(
            parse_line("test a::b ... FAILED"),
            Some(("a::b", Outcome::Failed))
        );
        assert_eq!(
            parse_line("test a::c ... ignored, requires nightly"),
            Some(("a::c", Outcome::Ignored))
        );
        assert_eq!(parse_line("test result: ok. 1 passed; 0 failed"), None);
        assert_eq!(parse_line("running 4262 tests"), None);
    }

    #[test]
    fn only_failures_that_pass_on_pristine_count() {
        let baseline = Outcomes::from([
            ("known".into(), Outcome::Failed),
            ("fine".into(), Outcome::Passed),
            ("fixed".into(), Outcome::Failed),
        ]);
        let patched = Outcomes::from([
            ("known".into(), Outcome::Failed),
            ("fine".into(), Outcome::Failed),
            ("fixed".into(), Outcome::Passed),
            ("new_test".into(), Outcome::Failed),
        ]);
        let cmp = compare(&baseline, &patched);
        assert_eq!(cmp.newly_failing, ["fine", "new_test"]);
        assert_eq!(cmp.newly_passing, ["fixed"]);
        assert_eq!(cmp.known_failures, 1);
        assert_eq!(cmp.passed, 1);
    }
}
