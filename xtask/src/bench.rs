//! `cargo xtask bench`: what the series costs. Pristine cargo 0.98.0 against the patched
//! one, both release builds of the same sources but for the series, resolving a project
//! with many registry dependencies against the CDN registry without lag:
//!
//! - cold (empty cache): the requests must be the same;
//! - warm, online: every file revalidated (304), the requests must be the same;
//! - warm, `--offline`: the cache read alone, the hot path; wall time and instructions.

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

    let mut results = Vec::new();
    for (name, cargo) in [("pristine", &pristine), ("patched", &patched)] {
        shell::status(
            "Measuring",
            format!("{name} cargo ({} runs each)", options.runs),
        );
        results.push(measure(&registry, cargo, &deps, options.runs)?);
    }
    let [pristine, patched] = &results[..] else {
        unreachable!()
    };
    if pristine.cold_requests != patched.cold_requests
        || pristine.warm_requests != patched.warm_requests
    {
        bail!(
            "the patched cargo sent other requests than pristine: cold {} vs {}, warm {} vs {}",
            patched.cold_requests,
            pristine.cold_requests,
            patched.warm_requests,
            pristine.warm_requests
        );
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| {} registry dependencies, {} runs | pristine {CARGO_VERSION} | patched | patched / pristine |",
        options.deps, options.runs
    );
    println!("|---|---|---|---|");
    println!(
        "| requests, cold cache | {} | {} | same |",
        pristine.cold_requests, patched.cold_requests
    );
    println!(
        "| requests, warm cache (all 304) | {} | {} | same |",
        pristine.warm_requests, patched.warm_requests
    );
    println!(
        "| median wall time, warm, online | {:.1} ms | {:.1} ms | {:.3} |",
        ms(pristine.warm_online),
        ms(patched.warm_online),
        ratio(ms(patched.warm_online), ms(pristine.warm_online))
    );
    println!(
        "| median wall time, warm, --offline | {:.1} ms | {:.1} ms | {:.3} |",
        ms(pristine.warm_offline),
        ms(patched.warm_offline),
        ratio(ms(patched.warm_offline), ms(pristine.warm_offline))
    );
    match (pristine.instructions, patched.instructions) {
        (Some(a), Some(b)) => println!(
            "| instructions (callgrind), warm, --offline | {a} | {b} | {:.4} |",
            ratio(b as f64, a as f64)
        ),
        _ => shell::warn("valgrind is not installed: no instruction counts"),
    }
    Ok(())
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

struct Measurement {
    cold_requests: usize,
    warm_requests: usize,
    warm_online: Duration,
    warm_offline: Duration,
    instructions: Option<u64>,
}

fn measure(
    registry: &Registry,
    cargo: &Path,
    deps: &[(&str, &str)],
    runs: usize,
) -> Result<Measurement> {
    let sandbox = Sandbox::new(registry)?;
    let project = flows::write_consumer(&sandbox, "bench", deps)?;
    let run = |args: &[&str]| -> Result<Duration> {
        let started = Instant::now();
        let output = sandbox.cargo(cargo, &project, args)?;
        let elapsed = started.elapsed();
        if !output.status.success() {
            bail!(
                "cargo {} failed:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(elapsed)
    };
    registry.take_requests();
    run(&["generate-lockfile"])?;
    let cold_requests = index_requests(registry);
    run(&["generate-lockfile"])?;
    let warm_requests = index_requests(registry);
    let warm_online = median(
        (0..runs)
            .map(|_| run(&["generate-lockfile"]))
            .collect::<Result<_>>()?,
    );
    registry.take_requests();
    let warm_offline = median(
        (0..runs)
            .map(|_| run(&["generate-lockfile", "--offline"]))
            .collect::<Result<_>>()?,
    );
    let instructions = callgrind(&sandbox, cargo, &project)?;
    Ok(Measurement {
        cold_requests,
        warm_requests,
        warm_online,
        warm_offline,
        instructions,
    })
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

/// Instructions of one `cargo generate-lockfile --offline`, counted by callgrind; `None`
/// when valgrind is not installed.
fn callgrind(sandbox: &Sandbox, cargo: &Path, project: &Path) -> Result<Option<u64>> {
    if Command::new("valgrind").arg("--version").output().is_err() {
        return Ok(None);
    }
    let out = sandbox.path().join("callgrind.out");
    let valgrind = PathBuf::from("valgrind");
    let output = sandbox.cargo(
        &valgrind,
        project,
        &[
            "--tool=callgrind",
            &format!("--callgrind-out-file={}", out.display()),
            cargo.to_str().context("non-UTF-8 path")?,
            "generate-lockfile",
            "--offline",
        ],
    )?;
    if !output.status.success() {
        bail!(
            "callgrind failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = std::fs::read_to_string(&out)?;
    let total = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary: ")
                .or_else(|| l.strip_prefix("totals: "))
        })
        .and_then(|n| n.trim().parse().ok())
        .context("callgrind's output has no summary line")?;
    Ok(Some(total))
}
