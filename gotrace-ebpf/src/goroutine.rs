//! Which goroutine is running, as the Go runtime numbers them.
//!
//! gc's register ABI keeps the current `g` in R14 at function entry, on
//! the stack-check branch and at every `ret`; the goroutine id is a field
//! of it at an offset that `gotrace-cli` reads from DWARF or a version
//! table and sets before load.

use aya_ebpf::{helpers::bpf_probe_read_user, programs::ProbeContext};

// Set by gotrace-cli before load: `gotrace_common::probe::GOID_OFFSET`.
#[unsafe(no_mangle)]
static GOID_OFFSET: u64 = 0;

/// The id of the running goroutine. `None` when R14 does not point at
/// readable memory.
#[inline(always)]
pub fn current_id(ctx: &ProbeContext) -> Option<u64> {
    // SAFETY: `regs` points at the pt_regs the kernel passed to this uprobe.
    goid_of(unsafe { (*ctx.regs).r14 })
}

/// The goroutine id of the g at `g`. `None` for a null g, an unknown
/// offset, or memory that cannot be read.
#[inline(always)]
pub fn goid_of(g: u64) -> Option<u64> {
    // SAFETY: a plain constant the loader filled in.
    let offset = unsafe { core::ptr::read_volatile(&GOID_OFFSET) };
    if g == 0 || offset == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_user checks the address and fails cleanly.
    unsafe { bpf_probe_read_user((g + offset) as *const u64) }.ok()
}
