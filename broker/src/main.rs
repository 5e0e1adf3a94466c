//! The `strata-broker` binary: parse the configuration, set up logging, run the broker.

use std::process::ExitCode;

use strata_broker::config::{self, ConfigError};

fn main() -> ExitCode {
    // Before anything allocates much (see the module's docs for why).
    let allocator = strata_broker::allocator::keep_freed_memory(&|k| std::env::var(k).ok());
    let loaded = match config::load(std::env::args_os(), &|k| std::env::var(k).ok()) {
        Ok(l) => l,
        // --help and --version print and exit 0; a bad flag prints usage and exits 2.
        Err(ConfigError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("strata-broker: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    tracing::info!(version = strata_broker::VERSION, config = %loaded, "starting strata-broker");
    tracing::info!(?allocator, "malloc thresholds");
    raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strata-worker")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strata-broker: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(strata_broker::run(loaded.options, std::future::pending())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "strata-broker failed");
            eprintln!("strata-broker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft open-files limit to the hard limit: every connection and every partition
/// (a log and two index files per segment) holds descriptors, and the usual soft default of 1024
/// is far below what a broker needs.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let before = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                tracing::info!(from = before, to = lim.rlim_max, "raised the open-files limit");
            }
        }
    }
}
