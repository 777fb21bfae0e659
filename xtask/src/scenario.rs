//! `cargo xtask scenario`: the user's flows with the stock cargo of the toolchain and the
//! patched cargo, side by side, over many trials against the stale-replica CDN; a table,
//! JSON, and an SVG chart of the failure rate against the purge lag.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use cargo_monotonic_index::duration::format_duration;
use cargo_monotonic_index::flows::{self, Flow, TrialSetup};
use serde::Serialize;

use crate::project::Project;
use crate::shell;

pub struct ScenarioOptions {
    pub trials: u64,
    pub seed: u64,
    pub edges: usize,
    pub lags: Vec<Duration>,
    pub flows: Vec<Flow>,
    /// Trials against a CDN without lag, for the extra-requests column.
    pub baseline_trials: u64,
    pub offline: bool,
}

impl Default for ScenarioOptions {
    fn default() -> Self {
        ScenarioOptions {
            trials: 10,
            seed: 1,
            edges: 2,
            lags: vec![Duration::from_secs(30)],
            flows: Flow::ALL.to_vec(),
            baseline_trials: 3,
            offline: false,
        }
    }
}

/// One row: a flow, a cargo and a lag over all trials.
#[derive(Serialize)]
pub struct Row {
    pub flow: &'static str,
    pub cargo: &'static str,
    pub purge_lag_ms: u128,
    pub trials: u64,
    pub failures: u64,
    pub stale_answers: usize,
    pub retries: usize,
    pub warnings: usize,
    /// Mean index requests per trial, minus the mean without lag.
    pub extra_requests: f64,
    pub median_ms: u128,
    pub max_ms: u128,
    /// The first failure's output, to read why.
    pub first_failure: Option<String>,
}

pub fn run(project: &Project, options: &ScenarioOptions) -> Result<()> {
    if options.edges < 2 {
        bail!("--edges must be at least 2: edge 0 is purged at once, the others late");
    }
    let stock = PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    let patched = crate::build::patched_cargo(project, options.offline)?;
    let cargos: [(&'static str, &Path); 2] = [("stock", &stock), ("patched", &patched)];

    let total = options.flows.len() as u64
        * 2
        * (options.lags.len() as u64 * options.trials + options.baseline_trials);
    let mut done = 0;
    let mut rows = Vec::new();
    for &flow in &options.flows {
        for (cargo_name, cargo) in cargos {
            let mut progress = |lag: &str, trial: u64| {
                done += 1;
                progress_line(&format!(
                    "trial {done}/{total}: {} with {cargo_name} cargo, lag {lag}, seed {}",
                    flow.name(),
                    options.seed + trial
                ));
            };
            let baseline: Vec<flows::Trial> = (0..options.baseline_trials)
                .map(|t| {
                    progress("none", t);
                    flows::run_trial(flow, cargo, setup(options, t, None))
                })
                .collect::<Result<_>>()?;
            let baseline_requests = mean(baseline.iter().map(|t| t.index_requests));
            for &lag in &options.lags {
                let trials: Vec<flows::Trial> = (0..options.trials)
                    .map(|t| {
                        progress(&format_duration(lag), t);
                        flows::run_trial(flow, cargo, setup(options, t, Some(lag)))
                    })
                    .collect::<Result<_>>()
                    .with_context(|| format!("a trial of {} could not run", flow.name()))?;
                rows.push(summarize(flow, cargo_name, lag, &trials, baseline_requests));
            }
        }
    }
    if std::io::stderr().is_terminal() {
        eprintln!();
    }

    println!("{}", table(&rows));
    let out_dir = project.root().join("target").join("scenario");
    std::fs::create_dir_all(&out_dir)?;
    let json = out_dir.join("results.json");
    std::fs::write(&json, serde_json::to_string_pretty(&rows)? + "\n")?;
    let svg = out_dir.join("failure-rate.svg");
    std::fs::write(&svg, chart(&rows, &options.lags))?;
    shell::status(
        "Wrote",
        format!("{} and {}", project.display(&json), project.display(&svg)),
    );
    Ok(())
}

fn setup(options: &ScenarioOptions, trial: u64, purge_lag: Option<Duration>) -> TrialSetup {
    TrialSetup {
        seed: options.seed + trial,
        edges: options.edges,
        purge_lag,
    }
}

fn progress_line(text: &str) {
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[2K{:>12} {text}", "Running");
    } else {
        shell::status("Running", text);
    }
}

fn mean(values: impl Iterator<Item = usize>) -> f64 {
    let values: Vec<usize> = values.collect();
    if values.is_empty() {
        return 0.0;
    }
    values.iter().sum::<usize>() as f64 / values.len() as f64
}

fn summarize(
    flow: Flow,
    cargo: &'static str,
    lag: Duration,
    trials: &[flows::Trial],
    baseline_requests: f64,
) -> Row {
    let mut times: Vec<u128> = trials.iter().map(|t| t.wall_time.as_millis()).collect();
    times.sort_unstable();
    Row {
        flow: flow.name(),
        cargo,
        purge_lag_ms: lag.as_millis(),
        trials: trials.len() as u64,
        failures: trials.iter().filter(|t| t.failure.is_some()).count() as u64,
        stale_answers: trials.iter().map(|t| t.stale_answers).sum(),
        retries: trials.iter().map(|t| t.asked_again).sum(),
        warnings: trials.iter().map(|t| t.warnings).sum(),
        extra_requests: mean(trials.iter().map(|t| t.index_requests)) - baseline_requests,
        median_ms: times.get(times.len() / 2).copied().unwrap_or(0),
        max_ms: times.last().copied().unwrap_or(0),
        first_failure: trials.iter().find_map(|t| t.failure.clone()),
    }
}

/// The rows as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| flow | cargo | purge lag | trials | failures | stale answers | retries | extra requests/trial | median | max |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {:+.1} | {:.1} s | {:.1} s |",
            r.flow,
            r.cargo,
            format_duration(Duration::from_millis(r.purge_lag_ms as u64)),
            r.trials,
            r.failures,
            r.stale_answers,
            r.retries,
            r.extra_requests,
            r.median_ms as f64 / 1000.0,
            r.max_ms as f64 / 1000.0,
        );
    }
    out
}

/// Failure rate against purge lag, one line per flow and cargo.
fn chart(rows: &[Row], lags: &[Duration]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 360.0;
    const LEFT: f64 = 60.0;
    const RIGHT: f64 = 260.0;
    const TOP: f64 = 30.0;
    const BOTTOM: f64 = 50.0;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |i: usize| {
        if lags.len() <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (lags.len() - 1) as f64
        }
    };
    let y = |rate: f64| TOP + plot_h * (1.0 - rate);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"18\" font-size=\"14\">Failure rate against purge lag \
         (edge 0 purged at once, the others late)</text>\n"
    );
    for pct in [0, 25, 50, 75, 100] {
        let py = y(pct as f64 / 100.0);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{py}\" x2=\"{}\" y2=\"{py}\" stroke=\"#ddd\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{pct}%</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            py + 4.0
        );
    }
    for (i, lag) in lags.iter().enumerate() {
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x(i),
            H - BOTTOM + 18.0,
            format_duration(*lag)
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">purge lag of the late edges</text>",
        LEFT + plot_w / 2.0,
        H - 12.0
    );
    const COLORS: [&str; 5] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"];
    let mut series: Vec<(&str, &str)> = Vec::new();
    for r in rows {
        if !series.contains(&(r.flow, r.cargo)) {
            series.push((r.flow, r.cargo));
        }
    }
    let flows: Vec<&str> = series.iter().map(|s| s.0).fold(Vec::new(), |mut v, f| {
        if !v.contains(&f) {
            v.push(f);
        }
        v
    });
    for (n, (flow, cargo)) in series.iter().enumerate() {
        let color = COLORS[flows.iter().position(|f| f == flow).unwrap() % COLORS.len()];
        let dash = if *cargo == "stock" {
            ""
        } else {
            " stroke-dasharray=\"6 4\""
        };
        let points: Vec<String> = lags
            .iter()
            .enumerate()
            .filter_map(|(i, lag)| {
                let row = rows.iter().find(|r| {
                    r.flow == *flow && r.cargo == *cargo && r.purge_lag_ms == lag.as_millis()
                })?;
                let rate = row.failures as f64 / row.trials.max(1) as f64;
                Some(format!("{:.1},{:.1}", x(i), y(rate)))
            })
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{dash} points=\"{}\"/>",
            points.join(" ")
        );
        for point in &points {
            let (px, py) = point.split_once(',').unwrap();
            let _ = writeln!(
                svg,
                "<circle cx=\"{px}\" cy=\"{py}\" r=\"3\" fill=\"{color}\"/>"
            );
        }
        let ly = TOP + 16.0 * n as f64;
        let lx = W - RIGHT + 20.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{color}\" \
             stroke-width=\"2\"{dash}/><text x=\"{}\" y=\"{}\">{flow} ({cargo})</text>",
            lx + 24.0,
            lx + 30.0,
            ly + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}
