//! What the registry saw: every request with the edge that answered it, its conditional
//! headers, the status and whether the answer was stale; counters; and expectations
//! checked when the registry is dropped.

use std::fmt;
use std::ops::RangeInclusive;

/// One request, as the registry answered it.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    /// The edge that answered, for index files (the API and `config.json` bypass the CDN).
    pub edge: Option<usize>,
    pub method: String,
    pub path: String,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub status: u16,
    /// An index answer that differs from what the origin has now.
    pub stale: bool,
}

impl fmt::Display for RequestRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.edge {
            Some(edge) => write!(f, "edge {edge} ")?,
            None => write!(f, "origin ")?,
        }
        write!(f, "{} {}", self.method, self.path)?;
        if let Some(tags) = &self.if_none_match {
            write!(f, " if-none-match: {tags}")?;
        }
        if let Some(since) = &self.if_modified_since {
            write!(f, " if-modified-since: {since}")?;
        }
        write!(f, " -> {}", self.status)?;
        if self.stale {
            write!(f, " (stale)")?;
        }
        Ok(())
    }
}

/// Totals over the log.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counters {
    pub requests: usize,
    pub index_requests: usize,
    pub conditional: usize,
    pub ok: usize,
    pub not_modified: usize,
    pub not_found: usize,
    pub stale: usize,
    pub publishes: usize,
}

impl Counters {
    pub fn of(log: &[RequestRecord]) -> Counters {
        let mut c = Counters::default();
        for r in log {
            c.requests += 1;
            if r.edge.is_some() {
                c.index_requests += 1;
            }
            if r.if_none_match.is_some() || r.if_modified_since.is_some() {
                c.conditional += 1;
            }
            match r.status {
                200 => c.ok += 1,
                304 => c.not_modified += 1,
                404 => c.not_found += 1,
                _ => {}
            }
            if r.stale {
                c.stale += 1;
            }
            if r.method == "PUT" && r.path == "/api/v1/crates/new" && r.status == 200 {
                c.publishes += 1;
            }
        }
        c
    }
}

/// Requests a test expects, checked against the log.
#[derive(Clone, Debug)]
pub struct Expectation {
    method: String,
    path: String,
    status: Option<u16>,
    times: RangeInclusive<usize>,
}

impl Expectation {
    /// Requests with this method and path.
    pub fn request(method: &str, path: &str) -> Expectation {
        Expectation {
            method: method.to_string(),
            path: path.to_string(),
            status: None,
            times: 1..=usize::MAX,
        }
    }

    /// ... answered with this status.
    pub fn status(mut self, status: u16) -> Expectation {
        self.status = Some(status);
        self
    }

    /// ... exactly `n` times.
    pub fn times(mut self, n: usize) -> Expectation {
        self.times = n..=n;
        self
    }

    /// ... a number of times in `range`.
    pub fn times_in(mut self, range: RangeInclusive<usize>) -> Expectation {
        self.times = range;
        self
    }

    /// `Err` with what was expected and what came, when the log does not match.
    pub fn check(&self, log: &[RequestRecord]) -> Result<(), String> {
        let matching = log
            .iter()
            .filter(|r| r.method == self.method && r.path == self.path)
            .filter(|r| self.status.is_none_or(|s| s == r.status))
            .count();
        if self.times.contains(&matching) {
            return Ok(());
        }
        let status = self.status.map(|s| format!(" -> {s}")).unwrap_or_default();
        let times = if self.times.start() == self.times.end() {
            self.times.start().to_string()
        } else if *self.times.end() == usize::MAX {
            format!("at least {}", self.times.start())
        } else {
            format!("{} to {}", self.times.start(), self.times.end())
        };
        Err(format!(
            "expected {times} of `{} {}{status}`, got {matching}; requests received:\n{}",
            self.method,
            self.path,
            log.iter().map(|r| format!("  {r}\n")).collect::<String>()
        ))
    }
}
