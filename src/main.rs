//! `cargo-monotonic-index serve`: the stale-replica CDN registry, for trying a cargo by
//! hand against a CDN whose edges purge late.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use cargo_monotonic_index::duration::{format_duration, parse_duration};
use cargo_monotonic_index::{HeaderSwitches, LastModified, PurgeTiming, Registry, Route};

const USAGE: &str = "\
usage: cargo-monotonic-index serve [options]

Serves a sparse registry on 127.0.0.1 behind a simulated CDN, and logs each request.

options:
  --edges N            CDN edges (default 2)
  --purge-lag DURATION each change reaches edge 0 at once and every other edge this
                       late (default 30s; e.g. 500ms, 30s, 2m)
  --route POLICY       random, round-robin or sticky (per connection) (default random)
  --seed N             seed of the random routing (default 7)
  --max-age DURATION   how long an edge keeps a copy without a purge (default 600s)
  --port N             port on 127.0.0.1 (default: a free one)
  --token TOKEN        the API token publishes must carry
  --no-etag            send no ETag
  --last-modified MODE http (default), none, unparseable or after-date
";

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("serve") => {}
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            return Ok(());
        }
        Some(other) => bail!("unknown command `{other}`\n\n{USAGE}"),
        None => bail!("no command given\n\n{USAGE}"),
    }
    let mut edges = 2;
    let mut lag = Duration::from_secs(30);
    let mut route = "random".to_string();
    let mut seed = 7;
    let mut builder = Registry::builder().print_requests(true);
    let mut headers = HeaderSwitches::default();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("`{flag}` needs a value\n\n{USAGE}"))
        };
        match flag.as_str() {
            "--edges" => edges = value()?.parse().context("--edges takes a number")?,
            "--purge-lag" => lag = parse_duration(&value()?)?,
            "--route" => route = value()?,
            "--seed" => seed = value()?.parse().context("--seed takes a number")?,
            "--max-age" => builder = builder.max_age(parse_duration(&value()?)?),
            "--port" => builder = builder.port(value()?.parse().context("--port takes a number")?),
            "--token" => builder = builder.token(&value()?),
            "--no-etag" => headers.etag = false,
            "--last-modified" => {
                headers.last_modified = match value()?.as_str() {
                    "http" => LastModified::HttpDate,
                    "none" => LastModified::Absent,
                    "unparseable" => LastModified::Unparseable,
                    "after-date" => LastModified::AfterDate,
                    other => bail!("unknown --last-modified `{other}`\n\n{USAGE}"),
                }
            }
            other => bail!("unknown option `{other}`\n\n{USAGE}"),
        }
    }
    if edges == 0 {
        bail!("--edges must be at least 1");
    }
    let route = match route.as_str() {
        "random" => Route::Random { seed },
        "round-robin" => Route::RoundRobin,
        "sticky" => Route::Sticky,
        other => bail!("unknown --route `{other}`: use random, round-robin or sticky"),
    };
    let lags = std::iter::once(Duration::ZERO)
        .chain(std::iter::repeat_n(lag, edges - 1))
        .collect();
    let registry = builder
        .edges(edges)
        .route(route)
        .purge(PurgeTiming::Lagged(lags))
        .headers(headers)
        .start()?;
    println!("{}", registry.index_url());
    eprintln!(
        "\nA registry behind {edges} CDN edges; edge 0 is purged at once, the others {} \
         late.\nPaste into $CARGO_HOME/config.toml (or .cargo/config.toml):\n\n{}\
         [registry]\ndefault = \"cdn\"\n\nthen `cargo publish`, and depend on its crates with \
         `registry = \"cdn\"`. Ctrl-C stops it.\n",
        format_duration(lag),
        registry.cargo_config("cdn")
    );
    // Serve until interrupted; the registry's thread answers requests.
    loop {
        std::thread::park();
    }
}
