//! A real sparse cargo registry served over HTTP behind a simulated CDN whose edges
//! receive purges late: the registry that reproduces rust-lang/cargo#14644.
//!
//! - [`origin`]: every version of every index file, and the `.crate` files;
//! - [`cdn`]: edges that keep serving their old copy (or a remembered 404) until a purge
//!   reaches them, with a routing policy;
//! - [`api`]: publish, yank and unyank, as crates.io answers them;
//! - [`registry`]: the HTTP server tying them together, with a request log, counters
//!   and expectations checked on drop;
//! - [`flows`]: the user's flows, run with a real cargo binary against it.

pub mod api;
pub mod cdn;
pub mod duration;
pub mod flows;
pub mod log;
pub mod origin;
pub mod registry;

pub use cdn::{PurgeTiming, Route};
pub use log::{Counters, Expectation, RequestRecord};
pub use registry::{HeaderSwitches, LastModified, Registry, RegistryBuilder};
