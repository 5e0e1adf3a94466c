//! `strata-broker`: the Strata server.
//!
//! # Layout
//!
//! - [`raft`]: partition replicas as Raft groups; today the Raft storage adapter that makes the
//!   partition's segment log the Raft log.
//! - [`metrics`]: every Prometheus metric family the broker exports at `GET /metrics`.
//!
//! Not built yet: the wire protocol, listeners, the Raft driver and HTTP endpoint arrive with the
//! single-node broker work.

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
