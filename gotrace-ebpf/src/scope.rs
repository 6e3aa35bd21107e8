//! Which processes a run keeps (see `gotrace_common::host`): a cgroup v2
//! subtree, and a set of process ids. Checked first by every probe, and by
//! the exec program.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id},
    },
    macros::map,
    maps::HashMap,
};

// Static names are `gotrace_common::host`'s: set by gotrace-cli before load.
#[unsafe(no_mangle)]
static SCOPE_CGROUP_ID: u64 = 0;
#[unsafe(no_mangle)]
static SCOPE_CGROUP_LEVEL: u64 = 0;
#[unsafe(no_mangle)]
static SCOPE_PID_FILTER: u64 = 0;

// One entry until gotrace-cli sizes it (`gotrace_common::host::MAX_PIDS`).
#[map]
static SCOPE_PIDS: HashMap<u32, u8> = HashMap::with_max_entries(1, 0);

/// Whether the running process is in the run's cgroup subtree (always, if
/// the run has none).
#[inline(always)]
pub fn in_cgroup() -> bool {
    // SAFETY: plain constants the loader filled in.
    let (id, level) = unsafe {
        (
            core::ptr::read_volatile(&SCOPE_CGROUP_ID),
            core::ptr::read_volatile(&SCOPE_CGROUP_LEVEL),
        )
    };
    if id == 0 {
        return true;
    }
    // SAFETY: the helpers take no pointers.
    let ancestor = unsafe {
        if level == 0 {
            bpf_get_current_cgroup_id()
        } else {
            bpf_get_current_ancestor_cgroup_id(level as i32)
        }
    };
    ancestor == id
}

/// Whether the run keeps the running process.
#[inline(always)]
pub fn keeps() -> bool {
    if !in_cgroup() {
        return false;
    }
    // SAFETY: a plain constant the loader filled in.
    if unsafe { core::ptr::read_volatile(&SCOPE_PID_FILTER) } == 0 {
        return true;
    }
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the value is only tested for presence.
    unsafe { SCOPE_PIDS.get(pid) }.is_some()
}
