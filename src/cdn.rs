//! The CDN: edges in front of the origin, each keeping its own copy of each index file
//! (or the 404 it got) until a purge reaches it or the copy expires after `max-age`.
//!
//! Each change at the origin schedules one purge per edge, each with its own timing:
//! purges are not atomic, so for a while some edges serve the new file and others the
//! old one. Tests purge edges themselves (`PurgeTiming::Manual`), so nothing depends on
//! the wall clock; the binary gives each edge a lag.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::origin::Origin;

/// How requests are spread over the edges.
#[derive(Clone, Debug)]
pub enum Route {
    /// Uniformly at random, reproducible from the seed.
    Random { seed: u64 },
    /// Edge 0, 1, ..., n-1, 0, ...
    RoundRobin,
    /// Each connection keeps the edge its first request got (assigned round robin).
    Sticky,
    /// These edges in order, then the last one for every request after.
    Scripted(Vec<usize>),
}

/// When a purge reaches each edge.
#[derive(Clone, Debug)]
pub enum PurgeTiming {
    /// Only when the test says so: [`Cdn::purge`].
    Manual,
    /// Edge `i` is purged `lags[i]` after each change (edges past the list: the last lag).
    Lagged(Vec<Duration>),
}

/// What an edge holds for one path.
#[derive(Clone, Copy, Debug)]
struct EdgeCopy {
    /// The version of the file it fetched, or `None` for a remembered 404.
    version: Option<usize>,
    fetched: Instant,
}

#[derive(Debug)]
struct PendingPurge {
    edge: usize,
    path: String,
    /// `None` under manual timing.
    due: Option<Instant>,
}

/// Which copy an edge answered with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EdgeAnswer {
    pub edge: usize,
    /// The version served, or `None` for a 404.
    pub version: Option<usize>,
    /// The origin has something else now.
    pub stale: bool,
}

pub struct Cdn {
    edges: Vec<HashMap<String, EdgeCopy>>,
    route: Route,
    next_edge: usize,
    rng: fastrand::Rng,
    sticky: HashMap<SocketAddr, usize>,
    timing: PurgeTiming,
    pending: Vec<PendingPurge>,
    max_age: Duration,
}

impl Cdn {
    pub fn new(edges: usize, route: Route, timing: PurgeTiming, max_age: Duration) -> Cdn {
        assert!(edges > 0, "a CDN needs at least one edge");
        let seed = match &route {
            Route::Random { seed } => *seed,
            _ => 0,
        };
        Cdn {
            edges: vec![HashMap::new(); edges],
            route,
            next_edge: 0,
            rng: fastrand::Rng::with_seed(seed),
            sticky: HashMap::new(),
            timing,
            pending: Vec::new(),
            max_age,
        }
    }

    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }

    /// Picks the edge for a request that came on `connection`.
    pub fn route(&mut self, connection: Option<SocketAddr>) -> usize {
        let n = self.edges.len();
        match &mut self.route {
            Route::Random { .. } => self.rng.usize(..n),
            Route::RoundRobin => self.round_robin(),
            Route::Sticky => match connection {
                Some(addr) => match self.sticky.get(&addr) {
                    Some(edge) => *edge,
                    None => {
                        let edge = self.round_robin();
                        self.sticky.insert(addr, edge);
                        edge
                    }
                },
                None => self.round_robin(),
            },
            Route::Scripted(script) => {
                let edge = if script.len() > 1 {
                    script.remove(0)
                } else {
                    script.first().copied().unwrap_or(0)
                };
                edge.min(n - 1)
            }
        }
    }

    fn round_robin(&mut self) -> usize {
        let edge = self.next_edge % self.edges.len();
        self.next_edge += 1;
        edge
    }

    /// What `edge` answers for `path` at `now`: its copy while it is fresh and not
    /// purged, else the origin's current file (or 404), which it then keeps.
    pub fn fetch(&mut self, edge: usize, path: &str, origin: &Origin, now: Instant) -> EdgeAnswer {
        self.apply_due_purges(now);
        let current = origin.current(path).map(|(n, _)| n);
        let max_age = self.max_age;
        let copy = self.edges[edge]
            .entry(path.to_string())
            .and_modify(|copy| {
                if now.duration_since(copy.fetched) >= max_age {
                    *copy = EdgeCopy {
                        version: current,
                        fetched: now,
                    };
                }
            })
            .or_insert(EdgeCopy {
                version: current,
                fetched: now,
            });
        EdgeAnswer {
            edge,
            version: copy.version,
            stale: copy.version != current,
        }
    }

    /// The origin changed `path`: schedule a purge on every edge.
    pub fn changed(&mut self, path: &str, now: Instant) {
        for edge in 0..self.edges.len() {
            let due = match &self.timing {
                PurgeTiming::Manual => None,
                PurgeTiming::Lagged(lags) => {
                    let lag = lags.get(edge).or(lags.last()).copied().unwrap_or_default();
                    Some(now + lag)
                }
            };
            self.pending.push(PendingPurge {
                edge,
                path: path.to_string(),
                due,
            });
        }
        self.apply_due_purges(now);
    }

    /// Delivers every pending purge to `edge` now. Returns how many there were.
    pub fn purge(&mut self, edge: usize) -> usize {
        self.deliver(|p| p.edge == edge)
    }

    /// Delivers every pending purge now.
    pub fn purge_all(&mut self) -> usize {
        self.deliver(|_| true)
    }

    /// The purges not delivered yet, as (edge, path).
    pub fn pending_purges(&self) -> Vec<(usize, String)> {
        self.pending
            .iter()
            .map(|p| (p.edge, p.path.clone()))
            .collect()
    }

    fn apply_due_purges(&mut self, now: Instant) {
        self.deliver(|p| p.due.is_some_and(|due| due <= now));
    }

    fn deliver(&mut self, which: impl Fn(&PendingPurge) -> bool) -> usize {
        let (due, rest): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(|p| which(p));
        self.pending = rest;
        for purge in &due {
            self.edges[purge.edge].remove(&purge.path);
        }
        due.len()
    }
}
