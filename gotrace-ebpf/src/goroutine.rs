//! Which goroutine is running, as the Go runtime numbers them.
//!
//! gc's register ABI keeps the current `g` in R14 at function entry, on
//! the stack-check branch and at every `ret`; ABI0 assembly and pre-1.17
//! code find it in thread-local storage. The goroutine id is a field of it
//! at an offset that `gotrace-cli` reads from DWARF or a version table and
//! sets before load.

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, bpf_probe_read_user, generated::bpf_get_current_task},
    programs::ProbeContext,
};
use gotrace_common::{funclatency::G_STACK_HI_OFFSET, probe::G_TLS_OFFSET};

// Set by gotrace-cli before load: `gotrace_common::probe::FSBASE_OFFSET`.
#[unsafe(no_mangle)]
static FSBASE_OFFSET: u64 = 0;

// Set by gotrace-cli before load: `gotrace_common::probe::GOID_OFFSET`.
#[unsafe(no_mangle)]
static GOID_OFFSET: u64 = 0;

/// The running goroutine's g, from thread-local storage when `in_tls`,
/// else from R14. `None` when it cannot be read.
#[inline(always)]
pub fn current_g(ctx: &ProbeContext, in_tls: bool) -> Option<u64> {
    let g = if in_tls {
        g_from_tls()?
    } else {
        crate::arch::context_g(ctx)
    };
    (g != 0).then_some(g)
}

/// The top of the stack of the goroutine whose g is at `g`.
#[inline(always)]
pub fn stack_hi(g: u64) -> Option<u64> {
    // SAFETY: bpf_probe_read_user checks the address and fails cleanly.
    unsafe { bpf_probe_read_user((g + G_STACK_HI_OFFSET) as *const u64) }.ok()
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

/// The current g from thread-local storage: the word below the thread's FS
/// base, which the kernel keeps in `task_struct.thread.fsbase` (Go sets it
/// once per thread with arch_prctl, so the saved copy is current).
#[inline(always)]
pub fn g_from_tls() -> Option<u64> {
    // SAFETY: a plain constant the loader filled in.
    let offset = unsafe { core::ptr::read_volatile(&FSBASE_OFFSET) };
    if offset == 0 {
        return None;
    }
    // SAFETY: the helper returns the running task; the kernel read fails
    // cleanly on a bad offset.
    let fsbase: u64 = unsafe {
        let task = bpf_get_current_task();
        bpf_probe_read_kernel((task + offset) as *const u64).ok()?
    };
    let slot = fsbase.checked_add_signed(G_TLS_OFFSET)?;
    // SAFETY: bpf_probe_read_user checks the address and fails cleanly.
    unsafe { bpf_probe_read_user(slot as *const u64) }.ok()
}
