//! The controller shell: watches, caches, leader election, health and metrics endpoints.
//! Decisions are made by the pure modules; this module only observes and writes.

mod analysis;
mod caches;
mod children;
mod cli;
mod error;
mod fence;
mod http;
mod leadership;
mod memory;
pub mod metrics;
mod reconcile;
mod run;
mod triggers;
mod turns;

pub use children::{fingerprint, server_side_apply};
pub use cli::{LogFormat, RunArgs};
pub use error::Error;
pub use run::run;
