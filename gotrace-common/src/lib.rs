//! The contract between gotrace's kernel programs (`gotrace-ebpf`) and its
//! user-space loader (`gotrace-cli`): map and program names, map value
//! layouts, and the meaning of the per-probe bpf cookie.
//!
//! Everything here is `#[repr(C)]` with fixed-width fields and no implicit
//! padding, so both sides read the same bytes.
#![no_std]

pub mod arch;
pub mod budget;
pub mod funccount;
pub mod funclatency;
pub mod host;
pub mod probe;
pub mod trace;

/// Every program, map and global of the kernel object, by the names both
/// sides use: what `gotrace-cli`'s unit tests check the built object for,
/// and what the integration tests look for in the kernel once gotrace has
/// ended.
pub mod names {
    use crate::{budget, funccount, funclatency, host, probe, trace};

    /// The programs.
    pub const PROGRAMS: [&str; 5] = [
        funccount::PROGRAM,
        funclatency::ENTRY_PROGRAM,
        funclatency::RETURN_PROGRAM,
        trace::PROGRAM,
        host::EXEC_PROGRAM,
    ];

    /// The maps.
    pub const MAPS: [&str; 15] = [
        budget::HITS_MAP,
        budget::ROW_STATE_MAP,
        probe::PROCESS_NAMES_MAP,
        funccount::COUNTS_MAP,
        funccount::BY_PROCESS_MAP,
        funclatency::LATENCY_MAP,
        funclatency::BY_PROCESS_MAP,
        funclatency::STARTS_MAP,
        funclatency::NESTS_MAP,
        funclatency::EVENTS_MAP,
        trace::EVENTS_MAP,
        trace::PROBES_MAP,
        trace::LOST_MAP,
        host::EXEC_EVENTS_MAP,
        host::PIDS_MAP,
    ];

    /// The globals `gotrace-cli` sets before load.
    pub const GLOBALS: [&str; 9] = [
        probe::GOID_OFFSET,
        probe::BY_PROCESS,
        probe::FSBASE_OFFSET,
        funclatency::UNIT_DIVISOR,
        funclatency::LEVEL,
        trace::TID_FILTER,
        host::CGROUP_ID,
        host::CGROUP_LEVEL,
        host::PID_FILTER,
    ];
}
