//! `gotrace funclatency`: per-goroutine call timing, histograms in the kernel.
//!
//! An entry probe pushes a timestamp on the calling goroutine's stack of
//! open calls of that function; a probe on each `ret` of the function pops
//! it and adds the elapsed time to the function's log2 histogram. Keys
//! carry the goroutine id (not the thread), so a call that parks and
//! resumes on another thread is still paired, and a depth, so recursion
//! pairs each return with its own call.

/// Name of the uprobe program on function entries (or their stack-check
/// branch, see [`crate::probe::Cookie::FLAG_STACK_CHECK_BRANCH`]).
///
/// Written by `gotrace-ebpf`; read by `gotrace-cli` to attach it.
pub const ENTRY_PROGRAM: &str = "funclatency_entry";

/// Name of the uprobe program on every `ret` of a traced function.
///
/// Written by `gotrace-ebpf`; read by `gotrace-cli` to attach it.
pub const RETURN_PROGRAM: &str = "funclatency_return";

/// Per-CPU array of `u64` counts, [`SLOTS`] per function: slot `s` of
/// function `f` is index `f * SLOTS + s` and counts calls whose latency `v`
/// (in the unit of [`UNIT_DIVISOR`]) has `s == bits(v)` (0 and 1 in slot 1,
/// as bcc's `bpf_log2l`). Written by the return program; read and summed by
/// `gotrace-cli`, which sizes it before load.
pub const HISTOGRAM_MAP: &str = "FUNCLATENCY_HISTOGRAM";

/// Log2 slots per function in [`HISTOGRAM_MAP`]: 0 (unused) to 64.
pub const SLOTS: u32 = 65;

/// Per-CPU array of `u64`, [`STATS_PER_FUNCTION`] per function: total
/// latency in nanoseconds (whatever the unit, so no rounding adds up) at `f * 2`, completed calls at
/// `f * 2 + 1`. Written by the return program; read by `gotrace-cli`.
pub const STATS_MAP: &str = "FUNCLATENCY_STATS";

/// Entries per function in [`STATS_MAP`].
pub const STATS_PER_FUNCTION: u32 = 2;

/// LRU hash of [`DepthKey`] -> `u32`: how many calls of a function the
/// goroutine has open. Written by both programs; read by `gotrace-cli` only
/// to count calls still open at the end.
pub const DEPTHS_MAP: &str = "FUNCLATENCY_DEPTHS";

/// LRU hash of [`StartKey`] -> `u64` start time (ns, `bpf_ktime_get_ns`).
/// Written by the entry program, taken by the return program; what remains
/// at the end are calls that never returned (panic, `runtime.Goexit`) or
/// are still running, which `gotrace-cli` reports. LRU, so such leftovers
/// can never fill it.
pub const STARTS_MAP: &str = "FUNCLATENCY_STARTS";

/// Capacity `gotrace-cli` gives [`DEPTHS_MAP`] and [`STARTS_MAP`] (the
/// object declares 1, so other tools do not preallocate them): open calls
/// over all goroutines (64 goroutines 2,000 calls deep fit).
pub const MAX_OPEN_CALLS: u32 = 1 << 17;

/// Per-CPU array of `u64` event counters, indexed by the `EVENT_*`
/// constants. Written by both programs; read by `gotrace-cli`.
pub const EVENTS_MAP: &str = "FUNCLATENCY_EVENTS";

/// A `ret` with no open call: the call began before tracing did.
pub const EVENT_UNPAIRED_RETURN: u32 = 0;
/// The goroutine id could not be read (not a Go goroutine, or a corrupt g).
pub const EVENT_NO_GOID: u32 = 1;
/// A start time was gone at return (evicted from the LRU map).
pub const EVENT_LOST_START: u32 = 2;
/// Number of `EVENT_*` counters.
pub const EVENTS: u32 = 3;

/// Global (`u64`) set by `gotrace-cli` before load: latencies are divided
/// by this before bucketing (1 ns, 1000 us, 1000000 ms), as bcc does. Read
/// by the return program.
pub const UNIT_DIVISOR: &str = "UNIT_DIVISOR";

/// Global (`u64`) set by `gotrace-cli` before load: nonzero to key open
/// calls by their stack pointer instead of goroutine and depth. For code
/// whose stacks never move (gccgo's split stacks, C), RSP at the entry and
/// at the `ret` of one call is the address of its return address: unique
/// among open calls, whichever thread runs the goroutine, and without a
/// g pointer, which gccgo keeps in TLS rather than R14.
pub const KEY_BY_STACK_POINTER: &str = "KEY_BY_STACK_POINTER";

/// Key of [`DEPTHS_MAP`]: a goroutine (or thread) and a traced function.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthKey {
    /// Goroutine id (unused with [`KEY_BY_STACK_POINTER`]).
    pub goid: u64,
    /// The function's index (cookie).
    pub function: u32,
    /// Always 0: no implicit padding.
    pub pad: u32,
}

/// Key of [`STARTS_MAP`]: one open call.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartKey {
    /// Goroutine id, or the stack pointer with [`KEY_BY_STACK_POINTER`].
    pub goid: u64,
    /// The function's index (cookie).
    pub function: u32,
    /// Calls of the function the goroutine had open when this one began,
    /// or the process id with [`KEY_BY_STACK_POINTER`].
    pub depth: u32,
}

const _: () = assert!(core::mem::size_of::<DepthKey>() == 16);
const _: () = assert!(core::mem::size_of::<StartKey>() == 16);

#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` integers without padding.
unsafe impl aya::Pod for DepthKey {}
#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` integers without padding.
unsafe impl aya::Pod for StartKey {}

/// The log2 slot of a latency, as bcc's `bpf_log2l`: 0 and 1 in slot 1,
/// `[2^(s-1), 2^s - 1]` in slot `s`. Used by the return program; the
/// bounds are printed by `gotrace-cli`.
pub const fn slot(value: u64) -> u32 {
    if value == 0 {
        1
    } else {
        64 - value.leading_zeros()
    }
}
