//! Child processes that clean up after themselves and explain failures.
//!
//! A test that starts a server process must not leave it running when the test fails, and a
//! failure should show what the server said. [`LoggedChild`] sends the child's stderr to a file,
//! kills the child when dropped, and prints the file if the thread is panicking.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often [`wait_or_kill`] looks at the child.
const EXIT_POLL: Duration = Duration::from_millis(5);

/// Waits up to `within` for `child` to exit and returns its status. If it is still running then,
/// kills it, reaps it and returns `None`, so the caller can fail without leaving it behind.
///
/// # Panics
///
/// If the child's status cannot be read (it was already reaped elsewhere).
pub fn wait_or_kill(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("read the child's exit status") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(EXIT_POLL);
    }
}

/// The text of the log file at `path`; empty if it cannot be read (a log is evidence for a
/// failure message, never a reason for another failure).
pub fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A child process with stdin and stdout closed and stderr written to a log file. Killed (if
/// still running) on drop; its log is printed to stderr when dropped during a panic.
#[derive(Debug)]
pub struct LoggedChild {
    child: Child,
    log: PathBuf,
    name: String,
}

impl LoggedChild {
    /// Spawns `cmd`, naming the process `name` in messages, with its stderr going to `log`
    /// (created or truncated).
    ///
    /// # Panics
    ///
    /// If `log` cannot be created or the command cannot be started.
    pub fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> LoggedChild {
        Self::spawn_with_stdout(name, cmd, log, Stdio::null())
    }

    /// As [`LoggedChild::spawn`], with the process's stdout going to `stdout`.
    ///
    /// # Panics
    ///
    /// As [`LoggedChild::spawn`].
    pub fn spawn_with_stdout(name: &str, cmd: &mut Command, log: PathBuf, stdout: Stdio) -> LoggedChild {
        let stderr = std::fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        LoggedChild {
            child,
            log,
            name: name.to_owned(),
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The log file's path.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Everything the process has written to stderr so far (empty if the log cannot be read).
    pub fn logs(&self) -> String {
        read_log(&self.log)
    }

    /// The exit status if the process has exited; `None` while it runs (or if its status cannot
    /// be read).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// As [`wait_or_kill`] on this process.
    pub fn wait_or_kill(&mut self, within: Duration) -> Option<ExitStatus> {
        wait_or_kill(&mut self.child, within)
    }

    /// Sends SIGKILL and reaps the process.
    ///
    /// # Panics
    ///
    /// If the signal cannot be sent or the process cannot be reaped.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL our own child");
        self.child.wait().expect("reap our own child");
    }
}

impl Drop for LoggedChild {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- {} log {} ---\n{}", self.name, self.log.display(), self.logs());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_or_kill_returns_the_status_or_kills() {
        let mut quick = Command::new("true").spawn().unwrap();
        assert!(wait_or_kill(&mut quick, Duration::from_secs(10)).unwrap().success());
        let mut slow = Command::new("sleep").arg("10").spawn().unwrap();
        let started = Instant::now();
        assert_eq!(wait_or_kill(&mut slow, Duration::from_millis(50)), None);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            slow.try_wait().is_err() || slow.try_wait().unwrap().is_some(),
            "killed and reaped"
        );
    }

    #[test]
    fn a_logged_child_keeps_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo to-stdout; echo to-stderr >&2"]);
        let mut child = LoggedChild::spawn("sh", &mut cmd, dir.path().join("sh.log"));
        assert!(child.wait_or_kill(Duration::from_secs(10)).unwrap().success());
        assert_eq!(child.logs(), "to-stderr\n");
    }
}
