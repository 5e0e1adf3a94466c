//! Headless Chromium (Debian `chromium`) for tests that check a page renders.
//!
//! Chromium is optional: [`find`] returns `None` where it is not installed, and the test skips
//! its rendering check, saying so. [`run_headless`] keeps Chromium off the network (the test
//! machine's network is closed; nothing may be fetched), in a profile of its own that is deleted
//! afterwards, and bounded by coreutils `timeout` so a hung browser cannot hang the test.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Seconds Chromium may run before coreutils `timeout` stops it.
const TIMEOUT_SECS: &str = "120";

/// Flags on every run: headless, no sandbox (tests may run as root in a container), no GPU, and
/// nothing that reaches out to the network or to a shared profile.
const FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// The first of `chromium`, `chromium-browser` on `PATH`.
pub fn find() -> Option<PathBuf> {
    crate::which(&["chromium", "chromium-browser"])
}

/// Runs `chromium` headless on `url` with the standard flags followed by `args` (e.g.
/// `--dump-dom`, `--screenshot=…`, `--window-size=…`) and returns its stdout.
///
/// # Panics
///
/// If `timeout` cannot be run or Chromium fails (or runs out of time); the message carries `args`
/// and Chromium's stderr.
pub fn run_headless(chromium: &Path, args: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().expect("a temp dir for the Chromium profile");
    let out = Command::new("timeout")
        .arg(TIMEOUT_SECS)
        .arg(chromium)
        .args(FLAGS)
        .args(args)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
