//! The user's flows, run with a real, unmodified cargo binary against the registry: the
//! failure of rust-lang/cargo#14644 as users hit it, for any cargo.
//!
//! Each trial gets its own registry (edge 0 purged at once, the other edges late), its
//! own `$CARGO_HOME` and workspace, and runs cargo processes one after another, as a
//! shell does with `&&`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result};

use crate::{Counters, PurgeTiming, Registry, RequestRecord, Route};

/// The name the flows give the registry in cargo's configuration.
pub const REGISTRY_NAME: &str = "cdn";

/// A `$CARGO_HOME` that knows the registry, and a directory for workspaces.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new(registry: &Registry) -> Result<Sandbox> {
        let dir = tempfile::Builder::new()
            .prefix("cargo-monotonic-index-")
            .tempdir()
            .context("could not make a temporary directory")?;
        let sandbox = Sandbox { dir };
        std::fs::create_dir_all(sandbox.cargo_home())?;
        std::fs::write(
            sandbox.cargo_home().join("config.toml"),
            format!(
                "{}\n[registry]\ndefault = \"{REGISTRY_NAME}\"\n\n[net]\ngit-fetch-with-cli = false\n",
                registry.cargo_config(REGISTRY_NAME)
            ),
        )?;
        Ok(sandbox)
    }

    pub fn cargo_home(&self) -> PathBuf {
        self.dir.path().join("cargo-home")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `cargo args...` in `dir` with this `$CARGO_HOME`, and nothing of the
    /// environment of the cargo that may be running us.
    pub fn cargo(&self, cargo: &Path, dir: &Path, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new(cargo);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO") || key.starts_with("__CARGO") || key.starts_with("RUSTC_") {
                cmd.env_remove(key.as_ref());
            }
        }
        cmd.current_dir(dir)
            .args(args)
            .env("CARGO_HOME", self.cargo_home())
            .env("CARGO_TARGET_DIR", self.dir.path().join("target"))
            .env("CARGO_TERM_COLOR", "never")
            .output()
            .with_context(|| format!("could not run {}", cargo.display()))
    }
}

/// A crate of a workspace: its name, version, and dependencies on other members
/// (`(name, requirement)`), which are path dependencies published to the registry.
pub struct Member<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub deps: &'a [(&'a str, &'a str)],
}

/// Writes a workspace of `members` under the sandbox and returns its root.
pub fn write_workspace(sandbox: &Sandbox, name: &str, members: &[Member<'_>]) -> Result<PathBuf> {
    let root = sandbox.path().join(name);
    let names: Vec<String> = members.iter().map(|m| format!("\"{}\"", m.name)).collect();
    std::fs::create_dir_all(&root)?;
    std::fs::write(
        root.join("Cargo.toml"),
        format!(
            "[workspace]\nmembers = [{}]\nresolver = \"2\"\n",
            names.join(", ")
        ),
    )?;
    for member in members {
        let dir = root.join(member.name);
        std::fs::create_dir_all(dir.join("src"))?;
        let deps: String = member
            .deps
            .iter()
            .map(|(dep, req)| {
                format!(
                    "{dep} = {{ path = \"../{dep}\", version = \"{req}\", registry = \"{REGISTRY_NAME}\" }}\n"
                )
            })
            .collect();
        std::fs::write(
            dir.join("Cargo.toml"),
            format!(
                "[package]\nname = \"{}\"\nversion = \"{}\"\nedition = \"2021\"\n\
                 description = \"a crate of the flows\"\nlicense = \"MIT\"\n\
                 publish = [\"{REGISTRY_NAME}\"]\n\n[dependencies]\n{deps}",
                member.name, member.version
            ),
        )?;
        std::fs::write(dir.join("src/lib.rs"), "")?;
    }
    Ok(root)
}

/// Writes a package `name` that depends on registry crates (`(name, requirement)`), and
/// returns its directory.
pub fn write_consumer(sandbox: &Sandbox, name: &str, deps: &[(&str, &str)]) -> Result<PathBuf> {
    let root = sandbox.path().join(name);
    std::fs::create_dir_all(root.join("src"))?;
    let deps: String = deps
        .iter()
        .map(|(dep, req)| {
            format!("{dep} = {{ version = \"{req}\", registry = \"{REGISTRY_NAME}\" }}\n")
        })
        .collect();
    std::fs::write(
        root.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [dependencies]\n{deps}"
        ),
    )?;
    std::fs::write(root.join("src/lib.rs"), "")?;
    Ok(root)
}

/// The flows of the report and around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// `cargo publish -p a && cargo publish -p b`, b needing the `a` just published; `a`
    /// had an older version, which the late edges still serve.
    PublishThenPublish,
    /// A brand-new crate `a` is published, then a project that needs it resolves; the
    /// late edges still remember a 404 for `a`.
    NewCrateThenResolve,
    /// `cargo publish --workspace` of `a`, `b` (needs a) and `c` (needs a and b), then a
    /// project that needs `c` resolves.
    PublishWorkspace,
    /// `cargo yank a@0.1.1`; once a resolve shows the yank, a new project that asks for
    /// `a = "0.1"` must not get the yanked version.
    YankThenResolve,
    /// Somebody published `a 0.2.0`; once one resolve has seen it, two cargo processes
    /// sharing `$CARGO_HOME` resolve projects that need it at the same time.
    ConcurrentProcesses,
}

impl Flow {
    pub const ALL: [Flow; 5] = [
        Flow::PublishThenPublish,
        Flow::NewCrateThenResolve,
        Flow::PublishWorkspace,
        Flow::YankThenResolve,
        Flow::ConcurrentProcesses,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Flow::PublishThenPublish => "publish-then-publish",
            Flow::NewCrateThenResolve => "new-crate-then-resolve",
            Flow::PublishWorkspace => "publish-workspace",
            Flow::YankThenResolve => "yank-then-resolve",
            Flow::ConcurrentProcesses => "concurrent-processes",
        }
    }

    pub fn from_name(name: &str) -> Option<Flow> {
        Flow::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// The CDN of one trial.
#[derive(Clone, Copy, Debug)]
pub struct TrialSetup {
    pub seed: u64,
    pub edges: usize,
    /// How late the purges reach every edge but edge 0. `None`: no lag at all.
    pub purge_lag: Option<Duration>,
}

/// What one trial did.
#[derive(Debug)]
pub struct Trial {
    /// The command that failed, and what it printed.
    pub failure: Option<String>,
    pub wall_time: Duration,
    pub index_requests: usize,
    pub stale_answers: usize,
    /// Index requests that asked for a path again right after a stale 200 or 404.
    pub asked_again: usize,
    /// The patched cargo's warnings about stale answers.
    pub warnings: usize,
}

/// One step of a flow.
enum Step {
    /// A cargo process; when `lock` is given, the directory's `Cargo.lock` must then
    /// hold that package at that version.
    Cargo {
        dir: PathBuf,
        args: Vec<&'static str>,
        lock: Option<(&'static str, &'static str)>,
    },
    /// The user waiting until a change is visible: runs the command until `Cargo.lock`
    /// holds the package at the version (at most [`WAIT_ATTEMPTS`] times). Its failures
    /// do not count: no cargo can see what no edge it reached has.
    Until {
        dir: PathBuf,
        args: Vec<&'static str>,
        lock: (&'static str, &'static str),
    },
    /// Cargo processes at the same time, sharing `$CARGO_HOME`.
    Together(Vec<(PathBuf, Vec<&'static str>)>),
}

const WAIT_ATTEMPTS: usize = 30;

/// Runs one trial of `flow` with the cargo binary `cargo`.
pub fn run_trial(flow: Flow, cargo: &Path, setup: TrialSetup) -> Result<Trial> {
    let lags = match setup.purge_lag {
        Some(lag) => std::iter::once(Duration::ZERO)
            .chain(std::iter::repeat_n(lag, setup.edges.saturating_sub(1)))
            .collect(),
        None => vec![Duration::ZERO],
    };
    let registry = Registry::builder()
        .edges(setup.edges)
        .route(Route::Random { seed: setup.seed })
        .purge(PurgeTiming::Lagged(lags))
        .start()?;
    let sandbox = Sandbox::new(&registry)?;
    let steps = prepare(flow, &registry, &sandbox)?;

    let started = Instant::now();
    let mut failure = None;
    let mut warnings = 0;
    let mut log = Vec::new();
    let mut asked_again = 0;
    for step in &steps {
        let outcome = run_step(&sandbox, cargo, step);
        let step_log = registry.take_requests();
        asked_again += asked_again_after_stale(&step_log);
        log.extend(step_log);
        let (stderr, result) = outcome?;
        warnings += stderr
            .lines()
            .filter(|l| l.starts_with("warning: registry `"))
            .count();
        if let Err(why) = result {
            failure = Some(why);
            break;
        }
    }
    let wall_time = started.elapsed();
    let counters = Counters::of(&log);
    Ok(Trial {
        failure,
        wall_time,
        index_requests: counters.index_requests,
        stale_answers: counters.stale,
        asked_again,
        warnings,
    })
}

/// Gives the registry the history the flow starts from, writes the projects, and
/// returns the steps.
fn prepare(flow: Flow, registry: &Registry, sandbox: &Sandbox) -> Result<Vec<Step>> {
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let member = |name, version, deps| Member {
        name,
        version,
        deps,
    };
    Ok(match flow {
        Flow::PublishThenPublish => {
            // `a 0.1.0` is old news: every edge has its file.
            registry.publish_crate_at("a", "0.1.0", &[], an_hour_ago)?;
            registry.purge_all();
            registry.warm("1/a");
            let work = write_workspace(
                sandbox,
                "work",
                &[
                    member("a", "0.2.0", &[]),
                    member("b", "0.2.0", &[("a", "0.2.0")]),
                ],
            )?;
            vec![
                cargo_step(&work, &["publish", "-p", "a"]),
                cargo_step(&work, &["publish", "-p", "b"]),
            ]
        }
        Flow::NewCrateThenResolve => {
            // Somebody looked for `a` before it existed: every edge remembers a 404.
            registry.warm("1/a");
            let work = write_workspace(sandbox, "work", &[member("a", "0.1.0", &[])])?;
            // Outside the workspace, so that it needs `a` from the registry.
            let consumer = write_consumer(sandbox, "consumer", &[("a", "0.1.0")])?;
            vec![
                cargo_step(&work, &["publish", "-p", "a"]),
                cargo_step(&consumer, &["generate-lockfile"]),
            ]
        }
        Flow::PublishWorkspace => {
            registry.publish_crate_at("a", "0.1.0", &[], an_hour_ago)?;
            registry.purge_all();
            for path in ["1/a", "1/b", "1/c"] {
                registry.warm(path);
            }
            let work = write_workspace(
                sandbox,
                "work",
                &[
                    member("a", "0.2.0", &[]),
                    member("b", "0.2.0", &[("a", "0.2.0")]),
                    member("c", "0.2.0", &[("a", "0.2.0"), ("b", "0.2.0")]),
                ],
            )?;
            let consumer = write_consumer(sandbox, "consumer", &[("c", "0.2.0")])?;
            vec![
                cargo_step(&work, &["publish", "--workspace"]),
                cargo_step(&consumer, &["generate-lockfile"]),
            ]
        }
        Flow::YankThenResolve => {
            registry.publish_crate_at("a", "0.1.0", &[], an_hour_ago)?;
            registry.publish_crate_at("a", "0.1.1", &[], an_hour_ago)?;
            registry.purge_all();
            registry.warm("1/a");
            let first = write_consumer(sandbox, "first", &[("a", "0.1")])?;
            let second = write_consumer(sandbox, "second", &[("a", "0.1")])?;
            vec![
                cargo_step(&first, &["yank", "a@0.1.1"]),
                Step::Until {
                    dir: first,
                    args: vec!["generate-lockfile"],
                    lock: ("a", "0.1.0"),
                },
                Step::Cargo {
                    dir: second,
                    args: vec!["generate-lockfile"],
                    lock: Some(("a", "0.1.0")),
                },
            ]
        }
        Flow::ConcurrentProcesses => {
            registry.publish_crate_at("a", "0.1.0", &[], an_hour_ago)?;
            registry.purge_all();
            registry.warm("1/a");
            registry.publish_crate("a", "0.2.0", &[])?;
            let consumers: Vec<PathBuf> = ["first", "second", "third"]
                .into_iter()
                .map(|name| write_consumer(sandbox, name, &[("a", "0.2.0")]))
                .collect::<Result<_>>()?;
            vec![
                Step::Until {
                    dir: consumers[0].clone(),
                    args: vec!["generate-lockfile"],
                    lock: ("a", "0.2.0"),
                },
                Step::Together(
                    consumers[1..]
                        .iter()
                        .map(|dir| (dir.clone(), vec!["generate-lockfile"]))
                        .collect(),
                ),
            ]
        }
    })
}

fn cargo_step(dir: &Path, args: &[&'static str]) -> Step {
    Step::Cargo {
        dir: dir.to_path_buf(),
        args: args.to_vec(),
        lock: None,
    }
}

/// Runs a step: its stderr, and whether it did what the flow needs.
fn run_step(
    sandbox: &Sandbox,
    cargo: &Path,
    step: &Step,
) -> Result<(String, std::result::Result<(), String>)> {
    let describe = |args: &[&str], stderr: &str| format!("cargo {}:\n{stderr}", args.join(" "));
    match step {
        Step::Cargo { dir, args, lock } => {
            let output = sandbox.cargo(cargo, dir, args)?;
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            let result = if !output.status.success() {
                Err(describe(args, &stderr))
            } else if let Some((name, version)) = lock
                && !lock_holds(dir, name, version)
            {
                Err(format!(
                    "cargo {} did not lock {name} {version}",
                    args.join(" ")
                ))
            } else {
                Ok(())
            };
            Ok((stderr, result))
        }
        Step::Until { dir, args, lock } => {
            let mut stderr = String::new();
            for _ in 0..WAIT_ATTEMPTS {
                let output = sandbox.cargo(cargo, dir, args)?;
                stderr.push_str(&String::from_utf8_lossy(&output.stderr));
                if output.status.success() && lock_holds(dir, lock.0, lock.1) {
                    return Ok((stderr, Ok(())));
                }
            }
            let why = format!("{} {} never became visible", lock.0, lock.1);
            Ok((stderr, Err(why)))
        }
        Step::Together(runs) => {
            let outputs: Vec<Result<Output>> = std::thread::scope(|scope| {
                let handles: Vec<_> = runs
                    .iter()
                    .map(|(dir, args)| scope.spawn(move || sandbox.cargo(cargo, dir, args)))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let mut stderr = String::new();
            let mut result = Ok(());
            for ((_, args), output) in runs.iter().zip(outputs) {
                let output = output?;
                let text = String::from_utf8_lossy(&output.stderr).into_owned();
                if !output.status.success() && result.is_ok() {
                    result = Err(describe(args, &text));
                }
                stderr.push_str(&text);
            }
            Ok((stderr, result))
        }
    }
}

/// Whether `dir/Cargo.lock` locks `name` at `version`.
fn lock_holds(dir: &Path, name: &str, version: &str) -> bool {
    std::fs::read_to_string(dir.join("Cargo.lock"))
        .is_ok_and(|lock| lock.contains(&format!("name = \"{name}\"\nversion = \"{version}\"")))
}

/// Index requests of one cargo process that asked for a path again right after a stale
/// 200 or 404 for it: retries, or the publish wait polling again.
fn asked_again_after_stale(log: &[RequestRecord]) -> usize {
    let mut after_stale = std::collections::HashSet::new();
    let mut count = 0;
    for r in log.iter().filter(|r| r.edge.is_some()) {
        if after_stale.remove(r.path.as_str()) {
            count += 1;
        }
        if r.stale && r.status != 304 {
            after_stale.insert(r.path.as_str());
        }
    }
    count
}
