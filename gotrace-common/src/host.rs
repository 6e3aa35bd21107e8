//! Tracing many programs at once: which processes a run keeps (its
//! scope, checked by every probe in the kernel) and the executions it
//! learns of (a raw tracepoint on `sched_process_exec`), so that programs
//! started after gotrace are traced too.

/// Name of the raw tracepoint program on `sched_process_exec`. Written by
/// `gotrace-ebpf`; read by `gotrace-cli` to attach it when it follows new
/// processes.
pub const EXEC_PROGRAM: &str = "exec_notify";

/// Ring buffer of [`ExecEvent`]s. Written by the exec program; read by
/// `gotrace-cli`.
pub const EXEC_EVENTS_MAP: &str = "EXEC_EVENTS";

/// Bytes of [`EXEC_EVENTS_MAP`] as `gotrace-cli` sizes it (the object
/// declares one page).
pub const EXEC_RING_BYTES: u32 = 1 << 18;

/// One execution. Written by the exec program; read by `gotrace-cli`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    /// `bpf_ktime_get_ns` at the exec (CLOCK_MONOTONIC), to measure how
    /// soon probes were in place.
    pub timestamp: u64,
    /// The process that exec'd (its thread group id).
    pub pid: u32,
    /// Always 0: no implicit padding.
    pub pad: u32,
}

const _: () = assert!(core::mem::size_of::<ExecEvent>() == 16);

/// Global (`u64`) set by `gotrace-cli` before load: nonzero to keep only
/// processes in the cgroup v2 whose id this is, and its descendants (see
/// [`CGROUP_LEVEL`]). Read by every probe and by the exec program.
pub const CGROUP_ID: &str = "SCOPE_CGROUP_ID";

/// Global (`u64`) set by `gotrace-cli` before load: the depth of
/// [`CGROUP_ID`] below the root of the cgroup v2 hierarchy, for
/// `bpf_get_current_ancestor_cgroup_id`.
pub const CGROUP_LEVEL: &str = "SCOPE_CGROUP_LEVEL";

/// Global (`u64`) set by `gotrace-cli` before load: nonzero to keep only
/// the processes in [`PIDS_MAP`]. Read by every probe.
pub const PID_FILTER: &str = "SCOPE_PID_FILTER";

/// Hash of process id (`u32`) -> `u8` (1): the processes kept when
/// [`PID_FILTER`] is set (`-p` with several processes, `--comm`). Written
/// by `gotrace-cli` as it finds them; read by every probe.
pub const PIDS_MAP: &str = "SCOPE_PIDS";

/// Capacity of [`PIDS_MAP`].
pub const MAX_PIDS: u32 = 1 << 14;

#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` integers without padding.
unsafe impl aya::Pod for ExecEvent {}
