//! The user's flows, run with a real, unmodified cargo binary against the registry: the
//! failure of rust-lang/cargo#14644 as users hit it, for any cargo.
//!
//! Each trial gets its own registry (edge 0 purged at once, the other edges late), its
//! own `$CARGO_HOME` and workspace, and runs cargo processes one after another, as a
//! shell does with `&&`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, bail};

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
}

impl Flow {
    pub const ALL: [Flow; 2] = [Flow::PublishThenPublish, Flow::NewCrateThenResolve];

    pub fn name(self) -> &'static str {
        match self {
            Flow::PublishThenPublish => "publish-then-publish",
            Flow::NewCrateThenResolve => "new-crate-then-resolve",
        }
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
    pub warnings: usize,
}

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
    let steps: Vec<(&str, Vec<&str>)> = match flow {
        Flow::PublishThenPublish => {
            // `a 0.1.0` is old news: every edge has its file.
            let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
            registry.publish_crate_at("a", "0.1.0", &[], an_hour_ago)?;
            registry.purge_all();
            registry.warm("1/a");
            vec![
                ("work", vec!["publish", "-p", "a"]),
                ("work", vec!["publish", "-p", "b"]),
            ]
        }
        Flow::NewCrateThenResolve => {
            // Somebody looked for `a` before it existed: every edge remembers a 404.
            registry.warm("1/a");
            vec![
                ("work", vec!["publish", "-p", "a"]),
                ("consumer", vec!["generate-lockfile"]),
            ]
        }
    };
    let (a_version, b_requirement) = match flow {
        Flow::PublishThenPublish => ("0.2.0", "0.2.0"),
        Flow::NewCrateThenResolve => ("0.1.0", "0.1.0"),
    };
    let root = write_workspace(
        &sandbox,
        "work",
        &[
            Member {
                name: "a",
                version: a_version,
                deps: &[],
            },
            Member {
                name: "b",
                version: "0.2.0",
                deps: &[("a", b_requirement)],
            },
        ],
    )?;

    // Outside the workspace, so that it needs `a` from the registry.
    let consumer = write_consumer(&sandbox, "consumer", &[("a", b_requirement)])?;

    let started = Instant::now();
    let mut failure = None;
    let mut warnings = 0;
    let mut log = Vec::new();
    let mut asked_again = 0;
    for (dir, args) in &steps {
        let dir = if *dir == "consumer" { &consumer } else { &root };
        let output = sandbox.cargo(cargo, dir, args)?;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        warnings += stderr
            .lines()
            .filter(|l| l.starts_with("warning: registry `"))
            .count();
        let step_log = registry.take_requests();
        asked_again += asked_again_after_stale(&step_log);
        log.extend(step_log);
        if !output.status.success() {
            failure = Some(format!("cargo {}:\n{stderr}", args.join(" ")));
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

/// Fails with the trial's output when it failed.
pub fn expect_success(trial: &Trial) -> Result<()> {
    match &trial.failure {
        Some(failure) => bail!("the flow failed: {failure}"),
        None => Ok(()),
    }
}
