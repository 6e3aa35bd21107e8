//! Times calls per goroutine: store a start time under the call's key on
//! entry, take it back on the way out, file the elapsed time in the
//! function's log2 histogram (see `gotrace_common::funclatency`).

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated::bpf_get_attach_cookie},
    macros::{map, uprobe},
    maps::{Array, LruHashMap, PerCpuArray, PerCpuHashMap},
    programs::ProbeContext,
    EbpfContext as _,
};
use gotrace_common::{
    funclatency::{
        slot, Latency, Nest, NestKey, StartKey, EVENTS, EVENT_NO_GOID, EVENT_UNPAIRED_RETURN,
        MAX_LEVEL, SLOTS,
    },
    probe::{Cookie, ProcessKey},
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

// `--labels`: made as processes call, so not preallocated.
#[map]
static FUNCLATENCY_BY_PROCESS: PerCpuHashMap<ProcessKey, Latency> =
    PerCpuHashMap::with_max_entries(1, BPF_F_NO_PREALLOC);

// One Latency of zeros, never written: the first value of a new pair.
#[map]
static FUNCLATENCY_ZERO: Array<Latency> = Array::with_max_entries(1, 0);

// Sized by gotrace-cli with -l only, like the starts.
#[map]
static FUNCLATENCY_NESTS: LruHashMap<NestKey, Nest> = LruHashMap::with_max_entries(1, 0);

// Set by gotrace-cli before load: `gotrace_common::funclatency::{
// UNIT_DIVISOR, LEVEL}`.
#[unsafe(no_mangle)]
static UNIT_DIVISOR: u64 = 1;
#[unsafe(no_mangle)]
static NESTING_LEVEL: u64 = 0;

#[uprobe]
pub fn funclatency_entry(ctx: ProbeContext) -> u32 {
    let cookie = cookie(&ctx);
    // Returns need no scope check: a call out of scope has no start.
    if !crate::budget::admit(cookie) || !entry::is_call(&ctx, cookie) || !crate::scope::keeps() {
        return 0;
    }
    // SAFETY: reads the monotonic clock; no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(key) = start_key(&ctx, cookie) else {
        return 0;
    };
    // SAFETY: a plain constant the loader filled in.
    let level = unsafe { core::ptr::read_volatile(&NESTING_LEVEL) };
    if level != 0 && nest_enter(&key) != level {
        return 0;
    }
    // A start already there is a call that never returned (a panic) at the
    // same place in the goroutine: count it, and start anew.
    if FUNCLATENCY_STARTS
        .insert(key, now, u64::from(BPF_NOEXIST))
        .is_err()
    {
        for latency in latencies(cookie.function(), key.pid).into_iter().flatten() {
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
    if !crate::budget::admit(cookie) {
        return 0;
    }
    let Some(key) = start_key(&ctx, cookie) else {
        return 0;
    };
    // SAFETY: a plain constant the loader filled in.
    if unsafe { core::ptr::read_volatile(&NESTING_LEVEL) } != 0 {
        nest_leave(&key);
    }
    // SAFETY: copied out at once; LRU maps tolerate races.
    let Some(start) = (unsafe { FUNCLATENCY_STARTS.get(key) }).copied() else {
        count(EVENT_UNPAIRED_RETURN);
        return 0;
    };
    let _ = FUNCLATENCY_STARTS.remove(key);
    record(cookie.function(), key.pid, now.saturating_sub(start));
    0
}

/// The key of the call this hit belongs to: its goroutine and frame, or
/// its stack pointer (see `Cookie::FLAG_KEY_BY_STACK_POINTER`). Counts
/// `EVENT_NO_GOID` when the goroutine cannot be named.
#[inline(always)]
fn start_key(ctx: &ProbeContext, cookie: Cookie) -> Option<StartKey> {
    let sp = crate::arch::context_stack_pointer(ctx);
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if cookie.flags() & Cookie::FLAG_KEY_BY_STACK_POINTER != 0 {
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

/// Records the call `key` as open in its goroutine and returns its level
/// (1: no timed call of the goroutine is open around it).
#[inline(always)]
fn nest_enter(key: &StartKey) -> u64 {
    let nest_key = NestKey {
        goroutine: key.goroutine,
        pid: key.pid,
        pad: 0,
    };
    if FUNCLATENCY_NESTS.get_ptr_mut(nest_key).is_none() {
        let empty = Nest {
            depth: 0,
            frames: [0; MAX_LEVEL],
        };
        let _ = FUNCLATENCY_NESTS.insert(nest_key, empty, 0);
    }
    let Some(nest) = FUNCLATENCY_NESTS.get_ptr_mut(nest_key) else {
        return 0;
    };
    // SAFETY: a map value, valid while the program runs; a goroutine runs
    // on one CPU at a time, so its entry is not written concurrently.
    let nest = unsafe { &mut *nest };
    let depth = drop_returned(nest, key.frame);
    if let Some(slot) = nest.frames.get_mut(core::hint::black_box(depth)) {
        *slot = key.frame;
    }
    nest.depth = (depth + 1).min(MAX_LEVEL) as u64;
    depth as u64 + 1
}

/// Forgets the call `key` (and any deeper one) on its way out.
#[inline(always)]
fn nest_leave(key: &StartKey) {
    let nest_key = NestKey {
        goroutine: key.goroutine,
        pid: key.pid,
        pad: 0,
    };
    if let Some(nest) = FUNCLATENCY_NESTS.get_ptr_mut(nest_key) {
        // SAFETY: as in `nest_enter`.
        let nest = unsafe { &mut *nest };
        nest.depth = drop_returned(nest, key.frame) as u64;
    }
}

/// The number of `nest`'s calls still open around a call at `frame`:
/// those at or below it have returned.
#[inline(always)]
fn drop_returned(nest: &Nest, frame: u64) -> usize {
    let mut depth = (nest.depth as usize).min(MAX_LEVEL);
    for _ in 0..MAX_LEVEL {
        // The verifier needs the index bounded where it is used.
        let below = core::hint::black_box(depth).wrapping_sub(1);
        match nest.frames.get(below) {
            Some(&open) if open >= frame => depth = below,
            _ => break,
        }
    }
    depth
}

/// The [`Latency`] values a call of row `function` in process `pid` is
/// filed in: the row's, and with `--labels` the (row, process) pair's
/// (made on its first call; left out when the map is full).
#[inline(always)]
fn latencies(function: u32, pid: u32) -> [Option<*mut Latency>; 2] {
    let row = FUNCLATENCY_LATENCY.get_ptr_mut(function);
    if !crate::by_process() {
        return [row, None];
    }
    let key = ProcessKey { function, pid };
    if FUNCLATENCY_BY_PROCESS.get_ptr_mut(key).is_none() {
        // A Latency is larger than the BPF stack: copy a zeroed one from
        // a map.
        if let Some(zero) = FUNCLATENCY_ZERO.get(0) {
            let _ = FUNCLATENCY_BY_PROCESS.insert(key, zero, BPF_NOEXIST.into());
            crate::note_process_name(pid);
        }
    }
    [row, FUNCLATENCY_BY_PROCESS.get_ptr_mut(key)]
}

/// Files one completed call in its function's histogram and totals.
#[inline(always)]
fn record(function: u32, pid: u32, nanoseconds: u64) {
    // SAFETY: a plain constant the loader filled in.
    let divisor = unsafe { core::ptr::read_volatile(&UNIT_DIVISOR) }.max(1);
    // The compiler knows the slot is below SLOTS and would drop the check
    // the verifier needs: hide the value from it.
    let slot = core::hint::black_box(slot(nanoseconds / divisor) as usize);
    for latency in latencies(function, pid).into_iter().flatten() {
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
