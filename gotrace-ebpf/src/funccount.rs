//! Counts calls per function: one per-CPU increment per hit, nothing else,
//! so the cost of a hit is the uprobe's own.

use aya_ebpf::{
    helpers::generated::bpf_get_attach_cookie, macros::map, macros::uprobe, maps::PerCpuArray,
    programs::ProbeContext, EbpfContext as _,
};
use gotrace_common::{funccount::DEFAULT_MAX_FUNCTIONS, probe::Cookie};

use crate::entry;

// The static's name is the map name: `gotrace_common::funccount::COUNTS_MAP`.
#[map]
static FUNCCOUNT_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DEFAULT_MAX_FUNCTIONS, 0);

#[uprobe]
pub fn funccount(ctx: ProbeContext) -> u32 {
    // SAFETY: the helper only reads the attach cookie of the running program.
    let cookie = Cookie(unsafe { bpf_get_attach_cookie(ctx.as_ptr()) });
    if !entry::is_call(&ctx, cookie) {
        return 0;
    }
    if let Some(count) = FUNCCOUNT_COUNTS.get_ptr_mut(cookie.function()) {
        // SAFETY: a per-CPU slot is only touched by programs on this CPU, and
        // a uprobe program cannot be preempted by itself on the same CPU.
        unsafe { *count += 1 };
    }
    0
}
