//! How the process's memory allocator treats freed memory.
//!
//! A broker's big allocations churn: every produce request and every Raft message from a peer
//! is read into a buffer of its size (256 KiB – 1 MiB with default batches), which lives until
//! the batch is written and replicated, then is freed. glibc's malloc by default serves blocks
//! above a moving threshold (128 KiB – 32 MiB) with their own `mmap`, and hands the free top of
//! a heap back to the kernel (`madvise(MADV_DONTNEED)` for a thread's heap, `sbrk` for the main
//! one) once it exceeds twice that threshold. The next buffer is then fresh memory: every page
//! of it faults and is zeroed on the first write, inside the socket read that fills it. On the RF 3 loopback cluster at its maximum
//! (`benches/cluster.sh produce`, 2026-12-08) those faults were 6.4 % of all CPU and `madvise`
//! 1.1 %; with the settings below 0.2 % and none.

/// Largest block glibc still serves from a heap instead of its own `mmap`: glibc's maximum for
/// this setting, 4 MiB per byte of a `long` (32 MiB on 64-bit, 16 MiB on 32-bit). A fixed value
/// also turns off the moving threshold.
pub const MMAP_THRESHOLD: usize = (4 << 20) * std::mem::size_of::<std::ffi::c_long>();

/// Free memory at the top of a heap that glibc keeps for reuse instead of returning it to the
/// kernel. glibc's per-thread heaps are at most 64 MiB, so the free top of a thread's heap is
/// kept (a whole extra heap of an arena that fell entirely free is still unmapped); the main
/// heap is trimmed above this. The broker's resident memory thus stays near its peak use (about
/// 110 MiB per broker at that RF 3 maximum) instead of shrinking between bursts.
pub const TRIM_THRESHOLD: usize = 128 << 20;

/// The environment variables through which an operator sets glibc's malloc thresholds directly;
/// when one is set ([`GLIBC_TUNABLES`] only if it names a `glibc.malloc.` tunable),
/// [`keep_freed_memory`] leaves the allocator alone.
pub const GLIBC_MALLOC_ENV: [&str; 2] = ["MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"];

/// glibc's tunables variable (`glibc.malloc.trim_threshold=…:glibc.malloc.mmap_threshold=…`).
pub const GLIBC_TUNABLES: &str = "GLIBC_TUNABLES";

/// What [`keep_freed_memory`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// The thresholds above are in effect.
    Applied,
    /// An operator's environment variable decides instead (one of [`GLIBC_MALLOC_ENV`], or a
    /// `glibc.malloc.` tunable in [`GLIBC_TUNABLES`]).
    LeftToEnvironment,
    /// Not glibc, or it refused a setting: the allocator's defaults stay.
    Unsupported,
}

/// Makes glibc's malloc keep freed memory for reuse (see the module docs). Call once, early in
/// `main`, before threads allocate. `env` reads an environment variable.
pub fn keep_freed_memory(env: &dyn Fn(&str) -> Option<String>) -> Tuning {
    let tunables = env(GLIBC_TUNABLES).is_some_and(|v| v.contains("glibc.malloc."));
    if tunables || GLIBC_MALLOC_ENV.iter().any(|k| env(k).is_some()) {
        return Tuning::LeftToEnvironment;
    }
    set_thresholds()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> Tuning {
    let (Ok(mmap), Ok(trim)) = (
        libc::c_int::try_from(MMAP_THRESHOLD),
        libc::c_int::try_from(TRIM_THRESHOLD),
    ) else {
        return Tuning::Unsupported;
    };
    // SAFETY: mallopt only changes malloc's parameters; it returns 1 on success, 0 on error.
    let ok =
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, mmap) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, trim) == 1 };
    if ok { Tuning::Applied } else { Tuning::Unsupported }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> Tuning {
    Tuning::Unsupported
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operator_setting_wins() {
        for key in GLIBC_MALLOC_ENV {
            let env = |k: &str| (k == key).then(|| "1".to_string());
            assert_eq!(keep_freed_memory(&env), Tuning::LeftToEnvironment, "{key}");
        }
        let env = |k: &str| (k == GLIBC_TUNABLES).then(|| "glibc.malloc.trim_threshold=1".to_string());
        assert_eq!(keep_freed_memory(&env), Tuning::LeftToEnvironment);
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn other_tunables_do_not_stop_the_tuning() {
        let env = |k: &str| (k == GLIBC_TUNABLES).then(|| "glibc.pthread.rseq=0".to_string());
        assert_eq!(keep_freed_memory(&env), Tuning::Applied);
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_accepts_the_thresholds() {
        assert_eq!(keep_freed_memory(&|_| None), Tuning::Applied);
    }
}
