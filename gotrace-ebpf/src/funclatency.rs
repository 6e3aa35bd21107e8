//! Times calls per goroutine: store a start time under the call's key on
//! entry, take it back on the way out, file the elapsed time in the
//! function's log2 histogram (see `gotrace_common::funclatency`).

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated::bpf_get_attach_cookie},
    macros::{map, uprobe},
    maps::{LruHashMap, PerCpuArray},
    programs::ProbeContext,
    EbpfContext as _,
};
use gotrace_common::{
    funclatency::{slot, Latency, StartKey, EVENTS, EVENT_NO_GOID, EVENT_UNPAIRED_RETURN, SLOTS},
    probe::Cookie,
};

use crate::{entry, goroutine};

// Static names are the map names of `gotrace_common::funclatency`; the
// per-function array is resized by gotrace-cli before load.
#[map]
static FUNCLATENCY_LATENCY: PerCpuArray<Latency> = PerCpuArray::with_max_entries(1, 0);
#[map]
static FUNCLATENCY_EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(EVENTS, 0);
// Declared minimal: every tool loads the whole object, and only
// funclatency sizes it (LRU maps preallocate every entry).
#[map]
static FUNCLATENCY_STARTS: LruHashMap<StartKey, u64> = LruHashMap::with_max_entries(1, 0);

// Set by gotrace-cli before load: `gotrace_common::funclatency::{
// UNIT_DIVISOR, KEY_BY_STACK_POINTER}`.
#[unsafe(no_mangle)]
static UNIT_DIVISOR: u64 = 1;
#[unsafe(no_mangle)]
static KEY_BY_STACK_POINTER: u64 = 0;

#[uprobe]
pub fn funclatency_entry(ctx: ProbeContext) -> u32 {
    let cookie = cookie(&ctx);
    if !entry::is_call(&ctx, cookie) {
        return 0;
    }
    // SAFETY: reads the monotonic clock; no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(key) = start_key(&ctx, cookie) else {
        return 0;
    };
    // A start already there is a call that never returned (a panic) at the
    // same place in the goroutine: count it, and start anew.
    if FUNCLATENCY_STARTS
        .insert(key, now, u64::from(BPF_NOEXIST))
        .is_err()
    {
        if let Some(latency) = FUNCLATENCY_LATENCY.get_ptr_mut(cookie.function()) {
            // SAFETY: a per-CPU value, touched only by programs on this CPU.
            unsafe { (*latency).abandoned += 1 };
        }
        let _ = FUNCLATENCY_STARTS.insert(key, now, 0);
    }
    0
}

#[uprobe]
pub fn funclatency_return(ctx: ProbeContext) -> u32 {
    // SAFETY: reads the monotonic clock; no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let cookie = cookie(&ctx);
    let Some(key) = start_key(&ctx, cookie) else {
        return 0;
    };
    // SAFETY: copied out at once; LRU maps tolerate races.
    let Some(start) = (unsafe { FUNCLATENCY_STARTS.get(key) }).copied() else {
        count(EVENT_UNPAIRED_RETURN);
        return 0;
    };
    let _ = FUNCLATENCY_STARTS.remove(key);
    record(cookie.function(), now.saturating_sub(start));
    0
}

/// The key of the call this hit belongs to: its goroutine and frame, or
/// its stack pointer (see `KEY_BY_STACK_POINTER`). Counts `EVENT_NO_GOID`
/// when the goroutine cannot be named.
#[inline(always)]
fn start_key(ctx: &ProbeContext, cookie: Cookie) -> Option<StartKey> {
    let sp = crate::arch::context_stack_pointer(ctx);
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: a plain constant the loader filled in.
    if unsafe { core::ptr::read_volatile(&KEY_BY_STACK_POINTER) } != 0 {
        return Some(StartKey {
            goroutine: 0,
            frame: sp,
            function: cookie.function(),
            pid,
        });
    }
    let in_tls = cookie.flags() & Cookie::FLAG_G_IN_TLS != 0;
    let named = goroutine::current_g(ctx, in_tls)
        .and_then(|g| Some((goroutine::goid_of(g)?, goroutine::stack_hi(g)?)));
    let Some((goid, hi)) = named else {
        count(EVENT_NO_GOID);
        return None;
    };
    let adjust = if cookie.flags() & Cookie::FLAG_FRAME_ADJUST != 0 {
        u64::from(cookie.site())
    } else {
        0
    };
    Some(StartKey {
        goroutine: goid,
        frame: hi.wrapping_sub(sp).wrapping_add(adjust),
        function: cookie.function(),
        pid,
    })
}

/// Files one completed call in its function's histogram and totals.
#[inline(always)]
fn record(function: u32, nanoseconds: u64) {
    // SAFETY: a plain constant the loader filled in.
    let divisor = unsafe { core::ptr::read_volatile(&UNIT_DIVISOR) }.max(1);
    // The compiler knows the slot is below SLOTS and would drop the check
    // the verifier needs: hide the value from it.
    let slot = core::hint::black_box(slot(nanoseconds / divisor) as usize);
    if let Some(latency) = FUNCLATENCY_LATENCY.get_ptr_mut(function) {
        // SAFETY: a per-CPU value is only touched by programs on this CPU,
        // and a uprobe program cannot be preempted by itself on the same
        // CPU; the slot index is bounds-checked for the verifier.
        unsafe {
            if slot < SLOTS {
                (*latency).slots[slot] += 1;
            }
            (*latency).total_ns += nanoseconds;
            (*latency).calls += 1;
        }
    }
}

#[inline(always)]
fn cookie(ctx: &ProbeContext) -> Cookie {
    // SAFETY: the helper only reads the attach cookie of the running program.
    Cookie(unsafe { bpf_get_attach_cookie(ctx.as_ptr()) })
}

#[inline(always)]
fn count(event: u32) {
    if let Some(slot) = FUNCLATENCY_EVENTS.get_ptr_mut(event) {
        // SAFETY: a per-CPU slot is only touched by programs on this CPU, and
        // a uprobe program cannot be preempted by itself on the same CPU.
        unsafe { *slot += 1 };
    }
}
