//! Times calls per goroutine: push a start time on entry, pop it at `ret`,
//! count the elapsed time in the function's log2 histogram.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated::bpf_get_attach_cookie},
    macros::{map, uprobe},
    maps::{LruHashMap, PerCpuArray},
    programs::ProbeContext,
    EbpfContext as _,
};
use gotrace_common::{
    funclatency::{
        slot, DepthKey, StartKey, EVENTS, EVENT_LOST_START, EVENT_NO_GOID, EVENT_UNPAIRED_RETURN,
        SLOTS, STATS_PER_FUNCTION,
    },
    probe::Cookie,
};

use crate::{entry, goroutine};

// Static names are the map names of `gotrace_common::funclatency`; the
// per-function arrays are resized by gotrace-cli before load.
#[map]
static FUNCLATENCY_HISTOGRAM: PerCpuArray<u64> = PerCpuArray::with_max_entries(SLOTS, 0);
#[map]
static FUNCLATENCY_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_PER_FUNCTION, 0);
#[map]
static FUNCLATENCY_EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(EVENTS, 0);
// Declared minimal: every tool loads the whole object, and only
// funclatency sizes these (LRU maps preallocate every entry).
#[map]
static FUNCLATENCY_DEPTHS: LruHashMap<DepthKey, u32> = LruHashMap::with_max_entries(1, 0);
#[map]
static FUNCLATENCY_STARTS: LruHashMap<StartKey, u64> = LruHashMap::with_max_entries(1, 0);

// Set by gotrace-cli before load: `gotrace_common::funclatency::{
// UNIT_DIVISOR, KEY_BY_STACK_POINTER}`.
#[unsafe(no_mangle)]
static UNIT_DIVISOR: u64 = 1;
#[unsafe(no_mangle)]
static KEY_BY_STACK_POINTER: u64 = 0;

/// The key of a call open at a stack pointer (see `KEY_BY_STACK_POINTER`).
#[inline(always)]
fn stack_key(ctx: &ProbeContext, function: u32) -> Option<StartKey> {
    // SAFETY: a plain constant the loader filled in.
    if unsafe { core::ptr::read_volatile(&KEY_BY_STACK_POINTER) } == 0 {
        return None;
    }
    Some(StartKey {
        // SAFETY: `regs` points at the pt_regs the kernel passed to this uprobe.
        goid: unsafe { (*ctx.regs).rsp },
        function,
        depth: (bpf_get_current_pid_tgid() >> 32) as u32,
    })
}

#[uprobe]
pub fn funclatency_entry(ctx: ProbeContext) -> u32 {
    let cookie = cookie(&ctx);
    if !entry::is_call(&ctx, cookie) {
        return 0;
    }
    // SAFETY: reads the monotonic clock; no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(key) = stack_key(&ctx, cookie.function()) {
        let _ = FUNCLATENCY_STARTS.insert(key, now, 0);
        return 0;
    }
    let Some(depth_key) = depth_key(&ctx, cookie) else {
        return 0;
    };
    let goid = depth_key.goid;
    // SAFETY: the value is copied out at once; LRU maps tolerate races.
    let depth = unsafe { FUNCLATENCY_DEPTHS.get(depth_key) }
        .copied()
        .unwrap_or(0);
    let start_key = StartKey {
        goid,
        function: cookie.function(),
        depth,
    };
    if FUNCLATENCY_STARTS.insert(start_key, now, 0).is_ok() {
        let _ = FUNCLATENCY_DEPTHS.insert(depth_key, depth + 1, 0);
    }
    0
}

#[uprobe]
pub fn funclatency_return(ctx: ProbeContext) -> u32 {
    // SAFETY: reads the monotonic clock; no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let cookie = cookie(&ctx);
    let function = cookie.function();
    if let Some(key) = stack_key(&ctx, function) {
        // SAFETY: copied out at once.
        match unsafe { FUNCLATENCY_STARTS.get(key) }.copied() {
            Some(start) => {
                let _ = FUNCLATENCY_STARTS.remove(key);
                record(function, now.saturating_sub(start));
            }
            None => count(EVENT_UNPAIRED_RETURN),
        }
        return 0;
    }
    let Some(depth_key) = depth_key(&ctx, cookie) else {
        return 0;
    };
    let goid = depth_key.goid;
    // SAFETY: copied out at once.
    let depth = match unsafe { FUNCLATENCY_DEPTHS.get(depth_key) }.copied() {
        Some(depth) if depth > 0 => depth - 1,
        _ => {
            count(EVENT_UNPAIRED_RETURN);
            return 0;
        }
    };
    if depth == 0 {
        let _ = FUNCLATENCY_DEPTHS.remove(depth_key);
    } else {
        let _ = FUNCLATENCY_DEPTHS.insert(depth_key, depth, 0);
    }
    let start_key = StartKey {
        goid,
        function,
        depth,
    };
    // SAFETY: copied out at once.
    let Some(start) = (unsafe { FUNCLATENCY_STARTS.get(start_key) }).copied() else {
        count(EVENT_LOST_START);
        return 0;
    };
    let _ = FUNCLATENCY_STARTS.remove(start_key);
    record(function, now.saturating_sub(start));
    0
}

/// Files one completed call in its function's histogram and totals.
#[inline(always)]
fn record(function: u32, nanoseconds: u64) {
    // SAFETY: a plain constant the loader filled in.
    let divisor = unsafe { core::ptr::read_volatile(&UNIT_DIVISOR) }.max(1);
    add(
        &FUNCLATENCY_HISTOGRAM,
        function * SLOTS + slot(nanoseconds / divisor),
        1,
    );
    add(
        &FUNCLATENCY_STATS,
        function * STATS_PER_FUNCTION,
        nanoseconds,
    );
    add(&FUNCLATENCY_STATS, function * STATS_PER_FUNCTION + 1, 1);
}

/// The running goroutine's open-call counter key for `function`; counts
/// `EVENT_NO_GOID` when the goroutine cannot be named.
#[inline(always)]
fn depth_key(ctx: &ProbeContext, cookie: Cookie) -> Option<DepthKey> {
    let in_tls = cookie.flags() & Cookie::FLAG_G_IN_TLS != 0;
    let Some(goid) = goroutine::current_id(ctx, in_tls) else {
        count(EVENT_NO_GOID);
        return None;
    };
    Some(DepthKey {
        goid,
        function: cookie.function(),
        pad: 0,
    })
}

#[inline(always)]
fn cookie(ctx: &ProbeContext) -> Cookie {
    // SAFETY: the helper only reads the attach cookie of the running program.
    Cookie(unsafe { bpf_get_attach_cookie(ctx.as_ptr()) })
}

#[inline(always)]
fn count(event: u32) {
    add(&FUNCLATENCY_EVENTS, event, 1);
}

#[inline(always)]
fn add(array: &PerCpuArray<u64>, index: u32, value: u64) {
    if let Some(slot) = array.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot is only touched by programs on this CPU, and
        // a uprobe program cannot be preempted by itself on the same CPU.
        unsafe { *slot += value };
    }
}
