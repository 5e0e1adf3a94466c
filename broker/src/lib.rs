//! `strata-broker`: the Strata server.
//!
//! # Layout
//!
//! - [`server`]: [`run`] — the listener, the shared [`server::Broker`] state, start-up and drain.
//! - [`api`]: one handler per request API; [`groups`]: the consumer group coordinator (state and
//!   offsets in `__consumer_offsets`, assignment, sessions).
//! - [`driver`]: the per-broker Raft driver (every partition's `RawNode`, group commit);
//!   [`raft`]: the Raft storage adapter that makes the partition's segment log the Raft log;
//!   [`peer`]: Raft messages to other brokers; [`partition`]: what handlers see of a replica.
//! - [`controller`]: the metadata Raft group and its applied view; [`topics`]: topic configs and
//!   the registry; [`join`]: data-only brokers joining; [`producers`]: idempotent producer state.
//! - [`config`], [`options`]: settings from file, environment and flags.
//! - [`http`]: health, `/metrics` ([`metrics`]), the JSON admin API and the console page.

pub mod allocator;
pub mod api;
pub mod config;
pub mod controller;
pub mod driver;
pub mod groups;
pub mod http;
pub mod join;
pub mod metrics;
pub mod options;
pub mod partition;
pub mod peer;
pub mod producers;
pub mod raft;
pub mod server;
pub mod topics;

pub use options::{BrokerOptions, GroupOptions, TopicDefaults};
pub use server::run;

/// The broker's version, as reported by `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
