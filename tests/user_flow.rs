//! The user's failure and its fix, with real cargo binaries against the simulator: the
//! stock cargo of the toolchain, and the patched cargo that `cargo xtask test` builds
//! and names in `MONOTONIC_PATCHED_CARGO`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cargo_monotonic_index::flows::{self, Flow, Member, Sandbox, TrialSetup};
use cargo_monotonic_index::{PurgeTiming, Registry, Route};

/// The cargo of the toolchain running the tests.
fn stock_cargo() -> PathBuf {
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| "cargo".into())
}

/// The patched cargo. These tests are `#[ignore]`d in a plain `cargo test`; `cargo xtask
/// test` builds the patched cargo and runs them.
fn patched_cargo() -> PathBuf {
    let path = std::env::var_os("MONOTONIC_PATCHED_CARGO")
        .expect("MONOTONIC_PATCHED_CARGO is not set: run these tests with `cargo xtask test`");
    let path = PathBuf::from(path);
    assert!(path.is_file(), "{} does not exist", path.display());
    path
}

/// `foo` depending on `bar = requirement` from the registry.
fn foo(sandbox: &Sandbox, requirement: &str) -> PathBuf {
    flows::write_consumer(sandbox, "foo", &[("bar", requirement)]).unwrap()
}

fn run(sandbox: &Sandbox, cargo: &Path, dir: &Path, args: &[&str]) -> (bool, String) {
    let output = sandbox.cargo(cargo, dir, args).unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The report, step by step: a first cargo reads the new index file from a purged edge,
/// the next one reaches the edge that still has the old file.
fn newer_read_then_lagging_edge(cargo: &Path) -> (bool, String, Registry) {
    // Requests go to edge 1, 0, 1, ...: the warm-up, the first cargo, the second cargo.
    let registry = Registry::builder()
        .edges(2)
        .route(Route::Scripted(vec![1, 0, 1]))
        .purge(PurgeTiming::Manual)
        .start()
        .unwrap();
    let sandbox = Sandbox::new(&registry).unwrap();
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    registry
        .publish_crate_at("bar", "0.1.0", &[], an_hour_ago)
        .unwrap();
    registry.purge_all();
    let earlier = foo(&sandbox, "0.1.0");
    let (ok, stderr) = run(&sandbox, cargo, &earlier, &["generate-lockfile"]);
    assert!(ok, "{stderr}");

    // Now a publish; edge 0 is purged, edge 1 is not.
    registry.publish_crate("bar", "0.2.0", &[]).unwrap();
    registry.purge(0);
    std::fs::remove_dir_all(&earlier).unwrap();
    let project = foo(&sandbox, "0.2.0");
    let (ok, stderr) = run(&sandbox, cargo, &project, &["generate-lockfile"]);
    assert!(
        ok,
        "the first cargo reads the new file from edge 0:\n{stderr}"
    );

    let (ok, stderr) = run(&sandbox, cargo, &project, &["generate-lockfile"]);
    (ok, stderr, registry)
}

#[test]
fn stock_cargo_goes_back_in_time_on_a_lagging_edge() {
    let (ok, stderr, registry) = newer_read_then_lagging_edge(&stock_cargo());
    assert!(!ok, "stock cargo no longer fails:\n{stderr}");
    assert!(
        stderr.contains("failed to select a version for the requirement `bar = \"^0.2.0\"`"),
        "{stderr}"
    );
    let last = registry.requests().pop().unwrap();
    assert_eq!(
        (last.edge, last.status, last.stale),
        (Some(1), 200, true),
        "{last}"
    );
}

#[test]
#[ignore = "needs the patched cargo: run `cargo xtask test`"]
fn patched_cargo_keeps_the_newer_file() {
    let (ok, stderr, registry) = newer_read_then_lagging_edge(&patched_cargo());
    assert!(ok, "{stderr}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("warning: registry `cdn` answered `3/b/bar`"))
            .count(),
        1,
        "one warning:\n{stderr}"
    );
    // The first answer and the three retries of `net.retry` all reach edge 1.
    let stale: Vec<_> = registry
        .requests()
        .into_iter()
        .filter(|r| r.stale)
        .collect();
    assert_eq!(stale.len(), 4, "{stale:#?}");
}

/// Runs `trials` trials of `flow` with `cargo` (seeds 0, 1, ...; edge 1 purged 30 s
/// late, longer than a trial takes); returns how many failed, printing each failure.
fn failures(flow: Flow, cargo: &Path, trials: u64) -> usize {
    (0..trials)
        .filter(|&seed| {
            let setup = TrialSetup {
                seed,
                edges: 2,
                purge_lag: Some(Duration::from_secs(30)),
            };
            let trial = flows::run_trial(flow, cargo, setup).unwrap();
            if let Some(failure) = &trial.failure {
                eprintln!(
                    "{} failed {} with seed {seed}:\n{failure}",
                    cargo.display(),
                    flow.name()
                );
            }
            trial.failure.is_some()
        })
        .count()
}

#[test]
#[ignore = "needs the patched cargo: run `cargo xtask test`"]
fn publish_then_publish_with_a_late_edge() {
    let patched = failures(Flow::PublishThenPublish, &patched_cargo(), 20);
    let stock = failures(Flow::PublishThenPublish, &stock_cargo(), 20);
    eprintln!("failures in 20 trials: patched {patched}, stock {stock}");
    assert_eq!(patched, 0);
    assert!(stock > 0, "the harness no longer reproduces the bug");
}

#[test]
#[ignore = "needs the patched cargo: run `cargo xtask test`"]
fn new_crate_then_resolve_with_a_late_edge() {
    let patched = failures(Flow::NewCrateThenResolve, &patched_cargo(), 20);
    let stock = failures(Flow::NewCrateThenResolve, &stock_cargo(), 20);
    eprintln!("failures in 20 trials: patched {patched}, stock {stock}");
    assert_eq!(patched, 0);
    assert!(stock > 0, "the harness no longer reproduces the bug");
}

#[test]
#[ignore = "needs the patched cargo: run `cargo xtask test`"]
fn publish_workspace_then_resolve_with_a_late_edge() {
    assert_eq!(failures(Flow::PublishWorkspace, &patched_cargo(), 5), 0);
}

#[test]
#[ignore = "needs the patched cargo: run `cargo xtask test`"]
fn yank_then_resolve_with_a_late_edge() {
    assert_eq!(failures(Flow::YankThenResolve, &patched_cargo(), 10), 0);
}

#[test]
#[ignore = "needs the patched cargo: run `cargo xtask test`"]
fn concurrent_processes_with_a_flapping_cdn() {
    assert_eq!(failures(Flow::ConcurrentProcesses, &patched_cargo(), 10), 0);
}

/// The requests a cargo makes for a fixed piece of work against a CDN without lag, as
/// lines without the parts that change from run to run.
fn requests_for_the_same_work(cargo: &Path) -> Vec<String> {
    let registry = Registry::builder().edges(1).start().unwrap();
    let sandbox = Sandbox::new(&registry).unwrap();
    registry.publish_crate("bar", "0.1.0", &[]).unwrap();
    registry.purge_all();
    let root = flows::write_workspace(
        &sandbox,
        "work",
        &[
            Member {
                name: "a",
                version: "0.1.0",
                deps: &[],
            },
            Member {
                name: "b",
                version: "0.1.0",
                deps: &[("a", "0.1.0")],
            },
        ],
    )
    .unwrap();
    for args in [
        &["publish", "-p", "a"][..],
        &["publish", "-p", "b"],
        &["generate-lockfile"],
        &["update"],
    ] {
        let (ok, stderr) = run(&sandbox, cargo, &root, args);
        assert!(ok, "cargo {args:?}:\n{stderr}");
    }
    registry
        .requests()
        .iter()
        .map(|r| {
            let tags = r.if_none_match.as_deref().unwrap_or("-");
            format!("{} {} {tags} -> {}", r.method, r.path, r.status)
        })
        .collect()
}

#[test]
#[ignore = "needs the patched cargo: run `cargo xtask test`"]
fn without_a_stale_edge_the_requests_are_the_same() {
    let stock = requests_for_the_same_work(&stock_cargo());
    let patched = requests_for_the_same_work(&patched_cargo());
    assert!(stock.len() > 6, "{stock:#?}");
    // ETags are content hashes: the same files give the same requests to the letter.
    assert_eq!(patched, stock);
}

/// One cargo caches `bar`, another then updates with the same `$CARGO_HOME`.
fn shared_cache(first: &Path, second: &Path) -> (Registry, String) {
    let registry = Registry::builder().edges(1).start().unwrap();
    let sandbox = Sandbox::new(&registry).unwrap();
    registry.publish_crate("bar", "0.1.0", &[]).unwrap();
    registry.purge_all();
    let project = foo(&sandbox, "0.1.0");
    let (ok, stderr) = run(&sandbox, first, &project, &["generate-lockfile"]);
    assert!(ok, "{stderr}");
    registry.take_requests();
    let (ok, stderr) = run(&sandbox, second, &project, &["update"]);
    assert!(ok, "{stderr}");
    (registry, stderr)
}

fn bar_request(registry: &Registry) -> cargo_monotonic_index::RequestRecord {
    let requests = registry.requests();
    let mut bar = requests.iter().filter(|r| r.path == "/index/3/b/bar");
    let request = bar.next().expect("bar was requested").clone();
    assert!(bar.next().is_none(), "{requests:#?}");
    request
}

#[test]
#[ignore = "needs the patched cargo: run `cargo xtask test`"]
fn patched_cargo_reads_the_stock_cache() {
    let (registry, stderr) = shared_cache(&stock_cargo(), &patched_cargo());
    assert!(!stderr.contains("warning"), "{stderr}");
    let bar = bar_request(&registry);
    // Revalidated with the stock entry's ETag: not even one unconditional fetch.
    assert_eq!(bar.status, 304, "{bar}");
    assert!(!bar.if_none_match.unwrap().contains("cargo-last-modified"));
}

#[test]
#[ignore = "needs the patched cargo: run `cargo xtask test`"]
fn stock_cargo_reads_the_patched_cache() {
    let (registry, stderr) = shared_cache(&patched_cargo(), &stock_cargo());
    assert!(!stderr.contains("warning"), "{stderr}");
    let bar = bar_request(&registry);
    // Stock cargo sends the patched entry's whole version back: a valid If-None-Match
    // list whose first tag matches, so the answer is still 304.
    let tags = bar.if_none_match.clone().unwrap();
    assert!(tags.contains(", W/\"cargo-last-modified="), "{tags}");
    assert_eq!(bar.status, 304, "{bar}");
}

#[test]
#[ignore = "needs the patched cargo: run `cargo xtask test`"]
fn offline_resolves_from_the_cache_as_before() {
    for cargo in [stock_cargo(), patched_cargo()] {
        let registry = Registry::builder().edges(1).start().unwrap();
        let sandbox = Sandbox::new(&registry).unwrap();
        registry.publish_crate("bar", "0.1.0", &[]).unwrap();
        registry.purge_all();
        let project = foo(&sandbox, "0.1.0");
        assert!(run(&sandbox, &cargo, &project, &["generate-lockfile"]).0);
        registry.take_requests();
        let (ok, stderr) = run(
            &sandbox,
            &cargo,
            &project,
            &["generate-lockfile", "--offline"],
        );
        assert!(ok, "{}: {stderr}", cargo.display());
        assert!(registry.requests().is_empty(), "--offline made requests");
    }
}
