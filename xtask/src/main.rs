//! `cargo xtask`: the workflow around the patch series. One module per subcommand.

mod apply;
mod bench;
mod build;
mod checkout;
mod git;
mod install;
mod patchfile;
mod pr;
mod project;
mod refresh;
mod scenario;
mod series;
mod shell;
mod test;
mod testsuite;
mod vendor;

use anyhow::{Result, bail};

use project::Project;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  vendor                 get cargo (pinned in xtask/src/project.rs) and cargo-test-support
                         through cargo, verify them, commit them in vendor/cargo
  apply [--force]        reset vendor/cargo to the base and apply patches/series
  refresh [--check]      write the commits of vendor/cargo back to patches/
  build-patched-cargo    vendor, apply and build the patched cargo (release)
  install                make the patched cargo available as `cargo +monotonic`
  pr [--onto CARGO_GIT_DIR]
                         prepare the upstream pull request: check patches/, write its
                         description, rebase the series onto a cargo repository
  scenario [--trials N] [--seed N] [--edges N] [--lags 0s,5s,30s] [--flows a,b]
                         the user's flows with stock and patched cargo against the
                         stale-replica CDN: a table, JSON and an SVG chart
  bench [--deps N] [--runs N]
                         what the series costs: pristine against patched cargo, requests,
                         wall time and instructions for a project with N dependencies
  test [--quick] [--at N] [FILTER...]
                         our tests, cargo's testsuite against the pristine baseline,
                         and the end-to-end tests; --at N runs cargo's testsuite with
                         only N patches applied

options for every command:
  --offline              use only what cargo has cached
";

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let offline = take_flag(&mut args, "--offline")
        || std::env::var_os("CARGO_NET_OFFLINE").is_some_and(|v| v == "true");
    let project = Project::locate()?;
    let Some(command) = (!args.is_empty()).then(|| args.remove(0)) else {
        eprint!("{USAGE}");
        bail!("no command given");
    };
    match command.as_str() {
        "vendor" => {
            no_more(&args)?;
            vendor::ensure(&project, vendor::VendorOptions { offline })
        }
        "apply" => {
            let force = take_flag(&mut args, "--force");
            no_more(&args)?;
            vendor::ensure(&project, vendor::VendorOptions { offline })?;
            apply::ensure(&project, apply::ApplyOptions { force })
        }
        "refresh" => {
            let check = take_flag(&mut args, "--check");
            no_more(&args)?;
            refresh::run(&project, refresh::RefreshOptions { check })
        }
        "build-patched-cargo" => {
            no_more(&args)?;
            build::run(&project, offline)
        }
        "install" => {
            no_more(&args)?;
            install::run(&project, offline)
        }
        "test" => {
            let quick = take_flag(&mut args, "--quick");
            let at = take_value(&mut args, "--at")?;
            if let Some(flag) = args.iter().find(|a| a.starts_with('-')) {
                bail!("unknown option `{flag}` for `cargo xtask test`\n\n{USAGE}");
            }
            let options = test::TestOptions {
                quick,
                at,
                filters: args,
                offline,
            };
            test::run(&project, &options)
        }
        "scenario" => {
            let mut options = scenario::ScenarioOptions {
                offline,
                ..Default::default()
            };
            if let Some(n) = take_number(&mut args, "--trials")? {
                options.trials = n;
            }
            if let Some(n) = take_number(&mut args, "--seed")? {
                options.seed = n;
            }
            if let Some(n) = take_number(&mut args, "--edges")? {
                options.edges = n;
            }
            if let Some(n) = take_number(&mut args, "--baseline-trials")? {
                options.baseline_trials = n;
            }
            if let Some(v) = take_value(&mut args, "--lags")? {
                options.lags = v
                    .split(',')
                    .map(cargo_monotonic_index::duration::parse_duration)
                    .collect::<Result<_>>()?;
            }
            if let Some(v) = take_value(&mut args, "--flows")? {
                options.flows = v
                    .split(',')
                    .map(|name| {
                        cargo_monotonic_index::flows::Flow::from_name(name).ok_or_else(|| {
                            anyhow::anyhow!(
                                "unknown flow `{name}`; the flows are {}",
                                cargo_monotonic_index::flows::Flow::ALL
                                    .map(|f| f.name())
                                    .join(", ")
                            )
                        })
                    })
                    .collect::<Result<_>>()?;
            }
            no_more(&args)?;
            scenario::run(&project, &options)
        }
        "pr" => {
            let onto = take_value(&mut args, "--onto")?.map(std::path::PathBuf::from);
            no_more(&args)?;
            pr::run(&project, &pr::PrOptions { onto, offline })
        }
        "bench" => {
            let mut options = bench::BenchOptions {
                deps: 200,
                runs: 30,
                offline,
            };
            if let Some(n) = take_number(&mut args, "--deps")? {
                options.deps = n;
            }
            if let Some(n) = take_number(&mut args, "--runs")? {
                options.runs = n;
            }
            no_more(&args)?;
            bench::run(&project, &options)
        }
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

fn take_flag(args: &mut Vec<String>, flag: &str) -> bool {
    let before = args.len();
    args.retain(|a| a != flag);
    args.len() != before
}

fn take_value(args: &mut Vec<String>, flag: &str) -> Result<Option<String>> {
    let Some(i) = args.iter().position(|a| a == flag) else {
        return Ok(None);
    };
    if i + 1 >= args.len() {
        bail!("`{flag}` needs a value");
    }
    args.remove(i);
    Ok(Some(args.remove(i)))
}

fn take_number<T: std::str::FromStr>(args: &mut Vec<String>, flag: &str) -> Result<Option<T>> {
    take_value(args, flag)?
        .map(|v| {
            v.parse()
                .map_err(|_| anyhow::anyhow!("`{flag}` takes a number, not `{v}`"))
        })
        .transpose()
}

fn no_more(args: &[String]) -> Result<()> {
    match args.first() {
        Some(arg) => bail!("unexpected argument `{arg}`\n\n{USAGE}"),
        None => Ok(()),
    }
}
