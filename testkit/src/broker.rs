//! A real `strata-broker` process, as a multi-process or crash test needs one.
//!
//! The broker listens on `127.0.0.1:0` for both the protocol and HTTP and writes a ready file
//! naming the addresses it bound; the harness waits for that file instead of reserving ports,
//! which would race the broker's own bind. Each process writes its stderr to a fresh log file in
//! the test's directory (a restart in the same directory gets a new one), printed if the test
//! fails. The data dir is `<dir>/data`, so a restart on the same `dir` recovers the same log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::process::{LoggedChild, read_log};
use crate::wait;

/// How long a broker may take to write its ready file, and to exit after SIGTERM.
const DEADLINE: Duration = Duration::from_secs(30);

/// A running `strata-broker` with its own data dir. Killed on drop if still running.
#[derive(Debug)]
pub struct BrokerProcess {
    /// The binary protocol's address.
    pub addr: SocketAddr,
    /// The HTTP listener's address (health, metrics, admin API, console).
    pub http: SocketAddr,
    process: LoggedChild,
}

impl BrokerProcess {
    /// Starts `binary` with its data and files under `dir`, on ephemeral ports, with a 20 ms Raft
    /// tick, retention checked every 500 ms, and a 10 s shutdown timeout, no config file (`STRATA_CONFIG` removed), and waits up
    /// to 30 s for it to be ready.
    ///
    /// # Panics
    ///
    /// If the broker cannot be started, exits before it is ready, or is not ready in time; the
    /// message includes its log.
    pub fn start(binary: impl AsRef<Path>, dir: &Path) -> BrokerProcess {
        Self::spawn(binary.as_ref(), dir, &[], None)
    }

    /// Starts a broker listening on `listen` (a cluster member's fixed address, see
    /// [`free_port`]) with more flags after the standard ones, without waiting for it: a cluster
    /// member is ready only once a quorum of its peers runs, so start them all, then
    /// [`Starting::wait`] for each.
    ///
    /// # Panics
    ///
    /// If the process cannot be spawned.
    pub fn launch(binary: impl AsRef<Path>, dir: &Path, listen: SocketAddr, extra_args: &[&str]) -> Starting {
        Self::launch_inner(binary.as_ref(), dir, &listen.to_string(), extra_args, None)
    }

    /// As [`BrokerProcess::start`], with more flags after the standard ones.
    ///
    /// # Panics
    ///
    /// As [`BrokerProcess::start`].
    pub fn start_with(binary: impl AsRef<Path>, dir: &Path, extra_args: &[&str]) -> BrokerProcess {
        Self::spawn(binary.as_ref(), dir, extra_args, None)
    }

    /// As [`BrokerProcess::start`], with the process's open-file limit (soft and hard) set to
    /// `nofile`.
    ///
    /// # Panics
    ///
    /// As [`BrokerProcess::start`]; the child fails to start if the limit cannot be set.
    pub fn start_with_fd_limit(binary: impl AsRef<Path>, dir: &Path, nofile: libc::rlim_t) -> BrokerProcess {
        Self::spawn(binary.as_ref(), dir, &[], Some(nofile))
    }

    fn spawn(binary: &Path, dir: &Path, extra_args: &[&str], nofile: Option<libc::rlim_t>) -> BrokerProcess {
        Self::launch_inner(binary, dir, "127.0.0.1:0", extra_args, nofile).wait()
    }

    fn launch_inner(
        binary: &Path,
        dir: &Path,
        listen: &str,
        extra_args: &[&str],
        nofile: Option<libc::rlim_t>,
    ) -> Starting {
        let ready = dir.join("ready.json");
        // A restart in the same dir must not read the previous process's ready file.
        let _ = std::fs::remove_file(&ready);
        let log = dir.join(format!(
            "broker-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("the clock is after 1970")
                .as_nanos()
        ));
        let mut cmd = Command::new(binary);
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: setrlimit is async-signal-safe and only touches the child's own limits.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        cmd.args(["--listen", listen, "--http", "127.0.0.1:0", "--shutdown-timeout", "10s"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--ready-file")
            .arg(&ready)
            .args(extra_args)
            .env("STRATA_RAFT_TICK", "20ms")
            .env("STRATA_RETENTION_CHECK_INTERVAL", "500ms")
            .env_remove("STRATA_CONFIG");
        let process = LoggedChild::spawn("broker", &mut cmd, log.clone());
        Starting { process, ready, log }
    }

    /// The process id (to send signals such as SIGSTOP).
    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}

/// A broker process started by [`BrokerProcess::launch`], not yet known to be ready.
pub struct Starting {
    process: LoggedChild,
    ready: PathBuf,
    log: PathBuf,
}

/// A free TCP port on 127.0.0.1 for a broker that must know its peers' addresses before they
/// start. Picked below the kernel's ephemeral range (32768–60999 by default), so the source
/// port of some outgoing connection (peers reconnecting, clients) cannot take it between this
/// check and the broker's bind — or while the broker is down for a restart — and never twice in
/// one test process.
///
/// # Panics
///
/// If no port in the range can be bound.
pub fn free_port() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Processes running tests at once start at different points of the range.
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    for _ in 0..SPAN {
        let port = LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port as u16)) {
            return l.local_addr().expect("a bound listener has an address");
        }
    }
    panic!("no free port in 127.0.0.1:{LOW}..{}", LOW + SPAN);
}

impl Starting {
    /// Waits up to 30 s for the broker's ready file.
    ///
    /// # Panics
    ///
    /// If the broker exits before it is ready or is not ready in time; the message includes its
    /// log.
    pub fn wait(self) -> BrokerProcess {
        let Starting {
            mut process,
            ready,
            log,
        } = self;
        let (addr, http) = wait::until(
            DEADLINE,
            Duration::from_millis(10),
            || {
                if let Some(addrs) = read_ready_file(&ready) {
                    return Ok(addrs);
                }
                if let Some(status) = process.try_wait() {
                    panic!("broker exited early with {status}:\n{}", process.logs());
                }
                Err(())
            },
            |()| format!("broker not ready in time:\n{}", read_log(&log)),
        );
        BrokerProcess { addr, http, process }
    }
}

impl BrokerProcess {
    /// Everything the broker has logged so far.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// `kill -9`: no chance to flush or to say goodbye.
    ///
    /// # Panics
    ///
    /// If the process cannot be killed or reaped.
    pub fn kill9(mut self) {
        self.process.kill();
    }

    /// Sends SIGTERM and waits up to 30 s for the broker to drain and exit.
    ///
    /// # Panics
    ///
    /// If it is still running after that (it is then killed); the message includes its log.
    pub fn sigterm_and_wait(mut self) -> ExitStatus {
        let pid = libc::pid_t::try_from(self.process.id()).expect("a process id fits pid_t");
        // SAFETY: sending a signal to our own child process, which has not been reaped yet (this
        // value owns it), so the pid cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.process
            .wait_or_kill(DEADLINE)
            .unwrap_or_else(|| panic!("broker did not exit after SIGTERM:\n{}", self.logs()))
    }
}

/// The protocol and HTTP addresses from a broker's ready file, once it exists and is complete.
fn read_ready_file(path: &Path) -> Option<(SocketAddr, SocketAddr)> {
    let text = std::fs::read_to_string(path).ok()?;
    let v = serde_json::from_str::<serde_json::Value>(&text).ok()?;
    let addr = |key: &str| {
        v[key]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("ready file {}: no address `{key}` in {text}", path.display()))
    };
    Some((addr("listen"), addr("http")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "broker exited early with exit status: 1")]
    fn a_binary_that_exits_at_once_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        BrokerProcess::start(crate::which(&["false"]).expect("`false` on PATH"), dir.path());
    }
}
