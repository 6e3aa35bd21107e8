//! Admits a hit (see `gotrace_common::budget`): it counts only if its row
//! is not detached and its link is of the generation that counts; every
//! admitted hit is counted by row and cost kind.

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray},
};
use gotrace_common::{
    budget::{ROW_DETACHED, ROW_GENERATION},
    probe::Cookie,
};

// Sized by gotrace-cli before load: `gotrace_common::budget::{HITS_MAP,
// ROW_STATE_MAP}`.
#[map]
static PROBE_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);
#[map]
static ROW_STATE: Array<u32> = Array::with_max_entries(1, 0);

/// Whether the hit of the probe with `cookie` counts; counts it if so.
#[inline(always)]
pub fn admit(cookie: Cookie) -> bool {
    let row = cookie.function();
    let state = ROW_STATE.get(row).copied().unwrap_or(0);
    let generation = u32::from(cookie.flags() & Cookie::FLAG_GENERATION != 0);
    if state & ROW_DETACHED != 0 || state & ROW_GENERATION != generation {
        return false;
    }
    let kind = u32::from(cookie.flags() & Cookie::FLAG_SINGLE_STEPPED != 0);
    if let Some(hits) = PROBE_HITS.get_ptr_mut(row.wrapping_mul(2).wrapping_add(kind)) {
        // SAFETY: a per-CPU slot is only touched by programs on this CPU.
        unsafe { *hits += 1 };
    }
    true
}
