//! Whether this process may load eBPF programs and attach uprobes.

/// Capability numbers from `linux/capability.h`.
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Exit status when privilege is missing, as sysexits' `EX_NOPERM`.
pub const EXIT_NOT_PRIVILEGED: u8 = 77;

/// Returned when the effective capabilities cannot load and attach programs.
#[derive(Debug, thiserror::Error)]
#[error(
    "root, or the capabilities CAP_BPF and CAP_PERFMON, are needed to load eBPF programs and attach uprobes: run gotrace with sudo"
)]
pub struct NotPrivileged;

/// Checks the effective capability set: CAP_SYS_ADMIN alone, or CAP_BPF
/// with CAP_PERFMON, is enough for uprobes on kernels since 5.8.
pub fn check() -> Result<(), NotPrivileged> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|_| NotPrivileged)?;
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or(NotPrivileged)?;
    let has = |cap: u32| effective & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        Ok(())
    } else {
        Err(NotPrivileged)
    }
}
