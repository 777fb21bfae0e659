//! `cargo xtask bench`: what the series costs. Pristine cargo 0.98.0 against the patched
//! one, both release builds of the same sources but for the series, resolving a project
//! with many registry dependencies against the CDN registry without lag:
//!
//! - cold (empty cache): the requests must be the same;
//! - warm, online: every file revalidated (304), where the series adds its check; the
//!   requests must be the same; wall time and instructions;
//! - warm, `--offline`: the cache read alone, the hot path; wall time and instructions.
//!
//! Wall times are medians of runs in which the two cargos take turns; instructions come
//! from callgrind, which counts the same whatever else the machine does.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use cargo_monotonic_index::Registry;
use cargo_monotonic_index::flows::{self, Sandbox};

use crate::build::cargo_in;
use crate::project::{CARGO_VERSION, Project};
use crate::{checkout, git, shell};

pub struct BenchOptions {
    pub deps: usize,
    pub runs: usize,
    pub offline: bool,
}

pub fn run(project: &Project, options: &BenchOptions) -> Result<()> {
    let patched = crate::build::patched_cargo(project, options.offline)?;
    let pristine = pristine_release(project, options.offline)?;

    let registry = Registry::builder().edges(1).start()?;
    let deps: Vec<(String, String)> = (0..options.deps)
        .map(|i| (format!("dep{i}"), "1.0.0".to_string()))
        .collect();
    for (name, version) in &deps {
        registry.publish_crate(name, version, &[])?;
    }
    let deps: Vec<(&str, &str)> = deps.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();

    let subjects = [
        Subject::new(&registry, "pristine", pristine, &deps)?,
        Subject::new(&registry, "patched", patched, &deps)?,
    ];
    shell::status("Measuring", "requests, cold and warm");
    let mut requests = Vec::new();
    for subject in &subjects {
        registry.take_requests();
        subject.run(&["generate-lockfile"])?;
        let cold = index_requests(&registry);
        subject.run(&["generate-lockfile"])?;
        let warm = index_requests(&registry);
        requests.push((cold, warm));
    }
    if requests[0] != requests[1] {
        bail!(
            "the patched cargo sent other requests than pristine: (cold, warm) {:?} vs {:?}",
            requests[1],
            requests[0]
        );
    }

    shell::status(
        "Measuring",
        format!(
            "wall times, {} runs each, the two cargos taking turns",
            options.runs
        ),
    );
    let online = interleaved(&subjects, options.runs, &["generate-lockfile"])?;
    registry.take_requests();
    let offline = interleaved(&subjects, options.runs, &["generate-lockfile", "--offline"])?;
    registry.take_requests();

    let instructions = if Command::new("valgrind").arg("--version").output().is_ok() {
        shell::status("Measuring", "instructions with callgrind");
        let mut counts = Vec::new();
        for args in [
            &["generate-lockfile"][..],
            &["generate-lockfile", "--offline"],
        ] {
            counts.push([subjects[0].callgrind(args)?, subjects[1].callgrind(args)?]);
        }
        registry.take_requests();
        Some(counts)
    } else {
        shell::warn("valgrind is not installed: no instruction counts");
        None
    };

    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| {} registry dependencies, {} runs | pristine {CARGO_VERSION} | patched | patched / pristine |",
        options.deps, options.runs
    );
    println!("|---|---|---|---|");
    println!(
        "| requests, cold cache | {} | {} | same |",
        requests[0].0, requests[1].0
    );
    println!(
        "| requests, warm cache (all 304) | {} | {} | same |",
        requests[0].1, requests[1].1
    );
    for (what, [a, b]) in [("online (all 304)", online), ("--offline", offline)] {
        println!(
            "| median wall time, warm, {what} | {:.1} ms | {:.1} ms | {:.3} |",
            ms(a),
            ms(b),
            ratio(ms(b), ms(a))
        );
    }
    for (what, [a, b]) in ["online (all 304)", "--offline"]
        .into_iter()
        .zip(instructions.into_iter().flatten())
    {
        println!(
            "| instructions (callgrind), warm, {what} | {a} | {b} | {:.4} |",
            ratio(b as f64, a as f64)
        );
    }
    Ok(())
}

/// One cargo with its own `$CARGO_HOME` and a project with the dependencies.
struct Subject {
    cargo: PathBuf,
    sandbox: Sandbox,
    project: PathBuf,
}

impl Subject {
    fn new(registry: &Registry, name: &str, cargo: PathBuf, deps: &[(&str, &str)]) -> Result<Self> {
        let sandbox = Sandbox::new(registry)?;
        let project = flows::write_consumer(&sandbox, "bench", deps)
            .with_context(|| format!("could not write the project for the {name} cargo"))?;
        Ok(Subject {
            cargo,
            sandbox,
            project,
        })
    }

    fn run(&self, args: &[&str]) -> Result<Duration> {
        let started = Instant::now();
        let output = self.sandbox.cargo(&self.cargo, &self.project, args)?;
        let elapsed = started.elapsed();
        if !output.status.success() {
            bail!(
                "{} {} failed:\n{}",
                self.cargo.display(),
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(elapsed)
    }

    /// Instructions of one `cargo ARGS`, counted by callgrind.
    fn callgrind(&self, args: &[&str]) -> Result<u64> {
        let out = self.sandbox.path().join("callgrind.out");
        let mut valgrind_args = vec![
            "--tool=callgrind".to_string(),
            format!("--callgrind-out-file={}", out.display()),
            self.cargo.to_str().context("non-UTF-8 path")?.to_string(),
        ];
        valgrind_args.extend(args.iter().map(|a| a.to_string()));
        let valgrind_args: Vec<&str> = valgrind_args.iter().map(String::as_str).collect();
        let output = self
            .sandbox
            .cargo(Path::new("valgrind"), &self.project, &valgrind_args)?;
        if !output.status.success() {
            bail!(
                "callgrind failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let text = std::fs::read_to_string(&out)?;
        text.lines()
            .find_map(|l| {
                l.strip_prefix("summary: ")
                    .or_else(|| l.strip_prefix("totals: "))
            })
            .and_then(|n| n.trim().parse().ok())
            .context("callgrind's output has no summary line")
    }
}

/// The median wall time of `runs` runs of each cargo, taking turns (and swapping who
/// goes first each round) so that a drift of the machine hits both alike.
fn interleaved(subjects: &[Subject; 2], runs: usize, args: &[&str]) -> Result<[Duration; 2]> {
    let mut times = [Vec::new(), Vec::new()];
    for round in 0..runs {
        for i in [round % 2, 1 - round % 2] {
            times[i].push(subjects[i].run(args)?);
        }
    }
    Ok(times.map(median))
}

/// Pristine cargo, built in release mode in `vendor/cargo-at` at the base commit.
fn pristine_release(project: &Project, offline: bool) -> Result<PathBuf> {
    let dir = checkout::at(project, git::BASE_TAG, "the pristine base")?;
    shell::status(
        "Building",
        format!("pristine cargo {CARGO_VERSION} (release)"),
    );
    let target_dir = project.checkout_target_dir();
    shell::run(cargo_in(&dir, &target_dir, offline).args([
        "build",
        "--release",
        "--locked",
        "--bin",
        "cargo",
    ]))
    .context("building the pristine cargo failed")?;
    Ok(target_dir.join("release").join("cargo"))
}

fn index_requests(registry: &Registry) -> usize {
    registry
        .take_requests()
        .iter()
        .filter(|r| r.edge.is_some())
        .count()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}
