//! The contract between gotrace's kernel programs (`gotrace-ebpf`) and its
//! user-space loader (`gotrace-cli`): map and program names, map value
//! layouts, and the meaning of the per-probe bpf cookie.
//!
//! Everything here is `#[repr(C)]` with fixed-width fields and no implicit
//! padding, so both sides read the same bytes.
#![no_std]

pub mod arch;
pub mod funccount;
pub mod funclatency;
pub mod probe;
pub mod trace;

/// Every program, map and global of the kernel object, by the names both
/// sides use: what `gotrace-cli`'s unit tests check the built object for,
/// and what the integration tests look for in the kernel once gotrace has
/// ended.
pub mod names {
    use crate::{funccount, funclatency, probe, trace};

    /// The uprobe programs.
    pub const PROGRAMS: [&str; 4] = [
        funccount::PROGRAM,
        funclatency::ENTRY_PROGRAM,
        funclatency::RETURN_PROGRAM,
        trace::PROGRAM,
    ];

    /// The maps.
    pub const MAPS: [&str; 7] = [
        funccount::COUNTS_MAP,
        funclatency::LATENCY_MAP,
        funclatency::STARTS_MAP,
        funclatency::EVENTS_MAP,
        trace::EVENTS_MAP,
        trace::PROBES_MAP,
        trace::LOST_MAP,
    ];

    /// The globals `gotrace-cli` sets before load.
    pub const GLOBALS: [&str; 5] = [
        probe::GOID_OFFSET,
        probe::FSBASE_OFFSET,
        funclatency::UNIT_DIVISOR,
        funclatency::KEY_BY_STACK_POINTER,
        trace::TID_FILTER,
    ];
}
