//! Records the git commit the broker is built from, for `strata_build_info{git_commit}`.
//!
//! `STRATA_GIT_COMMIT` in the build environment wins (packagers building from a tarball can set
//! it); otherwise `git rev-parse --short HEAD`; otherwise `unknown`. A missing `git` binary or
//! `.git` directory never fails the build.
//!
//! Cargo re-runs this script only when `HEAD` or the ref it points at changes (and when the
//! variable or this file changes), not on every build: watching a path that does not exist would
//! make Cargo re-run it every time, so only existing paths are watched.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=STRATA_GIT_COMMIT");
    let from_env = std::env::var("STRATA_GIT_COMMIT")
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    let commit = from_env
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .filter(|c| is_plain(c))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=STRATA_GIT_COMMIT={commit}");
    for path in watched_git_files() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// Runs git in the package directory; `None` if git is missing, fails, or prints nothing.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git").args(args).current_dir(dir).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// A label value that needs no escaping and stays short: hex digits and the like.
fn is_plain(s: &str) -> bool {
    s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
}

/// `HEAD`, the ref it names (for a branch) and `packed-refs`, whichever exist. `--git-path` finds
/// them in worktrees and submodules too.
fn watched_git_files() -> Vec<PathBuf> {
    let mut names = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        names.push(r);
    }
    let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from) else {
        return Vec::new();
    };
    // `--git-path` answers relative to the directory git ran in (the package directory).
    names
        .iter()
        .filter_map(|name| git(&["rev-parse", "--git-path", name]))
        .map(|p| dir.join(p))
        .filter(|p| Path::exists(p))
        .collect()
}
