//! `strata-broker`: the Strata server.
//!
//! Not built yet: the wire protocol, listeners, partition replicas and HTTP endpoint arrive with
//! the single-node broker work. Today this crate only links the storage engine it will serve.

/// The broker's version, as reported by `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
