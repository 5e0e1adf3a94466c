//! `strata-testkit`: the harness Strata's integration tests share, so it is written once.
//!
//! It is a dev-dependency of `strata-broker`, `strata-client` and `strata-bench` and depends on
//! none of them: a test that needs the broker binary passes its path in (the broker's own tests
//! with `env!("CARGO_BIN_EXE_strata-broker")`, the client's after locating or building it).
//! Everything here panics with a message naming what went wrong, as a test harness should;
//! nothing is meant for production code.
//!
//! # Layout
//!
//! - [`broker`]: [`BrokerProcess`], a real `strata-broker` process on ephemeral ports with its own
//!   data dir, ready once its ready file names its addresses; `kill -9`, SIGTERM-and-wait, a
//!   lowered open-file limit; its log printed if the test fails.
//! - [`process`]: [`LoggedChild`], any child process whose stderr goes to a log file, killed on
//!   drop and its log printed on failure; [`process::wait_or_kill`], a bounded wait for a child
//!   to exit; [`process::read_log`], a log file's text for a failure message.
//! - [`wait`]: [`wait::until`] and [`wait::until_async`], poll a condition with a deadline and
//!   fail with the last thing seen.
//! - [`http`]: one HTTP/1.1 request over a plain `std::net::TcpStream` (`Connection: close`),
//!   parsed into status, headers and a de-chunked body.
//! - [`chromium`]: find headless Chromium on `PATH` and run it off the network in a throwaway
//!   profile, bounded by coreutils `timeout`.
//! - [`which`]: the first of some program names found on `PATH` (tests that need an optional
//!   tool skip, saying so, when it is absent).
#![deny(missing_docs)]

pub mod broker;
pub mod chromium;
pub mod http;
pub mod process;
pub mod wait;

pub use broker::{BrokerProcess, Starting, free_port};
pub use process::LoggedChild;

use std::path::PathBuf;

/// The first file named one of `names` in the directories of `PATH`, searched in `PATH` order
/// (and, within a directory, in the order of `names`); `None` if there is none or `PATH` is unset.
pub fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|p| p.is_file())
}
