//! `strata-client`: the async Rust client (Producer, Consumer, Admin) and the `strata` CLI.
//!
//! Not built yet. Today it re-exports the record-batch format a producer encodes with.

pub use strata_protocol as protocol;
