//! Counts calls per function: one per-CPU increment per hit, nothing else,
//! so the cost of a hit is the uprobe's own.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::{bpf_get_current_pid_tgid, generated::bpf_get_attach_cookie},
    macros::{map, uprobe},
    maps::{PerCpuArray, PerCpuHashMap},
    programs::ProbeContext,
    EbpfContext as _,
};
use gotrace_common::{
    funccount::DEFAULT_MAX_FUNCTIONS,
    probe::{Cookie, ProcessKey},
};

use crate::entry;

// The statics' names are the map names: `gotrace_common::funccount::{
// COUNTS_MAP, BY_PROCESS_MAP}`. Entries of the second are made as
// processes call, so it is not preallocated.
#[map]
static FUNCCOUNT_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DEFAULT_MAX_FUNCTIONS, 0);
#[map]
static FUNCCOUNT_BY_PROCESS: PerCpuHashMap<ProcessKey, u64> =
    PerCpuHashMap::with_max_entries(1, BPF_F_NO_PREALLOC);

#[uprobe]
pub fn funccount(ctx: ProbeContext) -> u32 {
    // SAFETY: the helper only reads the attach cookie of the running program.
    let cookie = Cookie(unsafe { bpf_get_attach_cookie(ctx.as_ptr()) });
    if !crate::budget::admit(cookie) || !entry::is_call(&ctx, cookie) || !crate::scope::keeps() {
        return 0;
    }
    if let Some(count) = FUNCCOUNT_COUNTS.get_ptr_mut(cookie.function()) {
        // SAFETY: a per-CPU slot is only touched by programs on this CPU, and
        // a uprobe program cannot be preempted by itself on the same CPU.
        unsafe { *count += 1 };
    }
    if crate::by_process() {
        let key = ProcessKey {
            function: cookie.function(),
            pid: (bpf_get_current_pid_tgid() >> 32) as u32,
        };
        match FUNCCOUNT_BY_PROCESS.get_ptr_mut(key) {
            // SAFETY: as above, this CPU's slot.
            Some(count) => unsafe { *count += 1 },
            // A new pair: this CPU's slot 1, the others 0. A full map
            // leaves the pair out; COUNTS_MAP still has the call.
            None => {
                let _ = FUNCCOUNT_BY_PROCESS.insert(key, 1, 0);
                crate::note_process_name(key.pid);
            }
        }
    }
    0
}
