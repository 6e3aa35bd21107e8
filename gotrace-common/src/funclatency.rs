//! `gotrace funclatency`: per-goroutine call timing, histograms in the kernel.
//!
//! An entry probe stores a start time under the call's [`StartKey`]; a
//! probe on each way out of the function (its `ret`s and tail jumps, or,
//! for an inlined copy, the instructions control reaches when it leaves
//! the copy) takes it back and files the elapsed time in the function's
//! [`Latency`]. The key names the call by its goroutine and its frame's
//! distance from the top of the goroutine's stack, which Go keeps when it
//! moves a stack: a call that parks and resumes on another thread, or
//! whose stack grows, is still paired, each level of a recursion is a call
//! of its own, and a call left by a panic is overwritten by the next call
//! at the same depth instead of pairing with it.

/// Name of the uprobe program on function entries (or their stack-check
/// branch, see [`crate::probe::Cookie::FLAG_STACK_CHECK_BRANCH`]).
///
/// Written by `gotrace-ebpf`; read by `gotrace-cli` to attach it.
pub const ENTRY_PROGRAM: &str = "funclatency_entry";

/// Name of the uprobe program on every way out of a traced function.
///
/// Written by `gotrace-ebpf`; read by `gotrace-cli` to attach it.
pub const RETURN_PROGRAM: &str = "funclatency_return";

/// Per-CPU array of [`Latency`], one per timed function (the cookie's
/// function index). Written by the programs; read and summed over CPUs by
/// `gotrace-cli`, which sizes it before load.
pub const LATENCY_MAP: &str = "FUNCLATENCY_LATENCY";

/// Per-CPU hash of `probe::ProcessKey` -> [`Latency`], kept besides
/// [`LATENCY_MAP`] when `probe::BY_PROCESS` is set. Written by the
/// programs; read by `gotrace-cli`, which sizes it ([`MAX_PROCESS_ROWS`]).
/// Entries are never removed: exported counters must not go backwards.
pub const BY_PROCESS_MAP: &str = "FUNCLATENCY_BY_PROCESS";

/// Capacity of [`BY_PROCESS_MAP`] ((function, process) pairs); calls of
/// pairs beyond it are kept only in [`LATENCY_MAP`].
pub const MAX_PROCESS_ROWS: u32 = 1 << 14;

/// Log2 slots of a [`Latency`]: 0 (unused) to 64.
pub const SLOTS: usize = 65;

/// One function's completed calls. Written by the return program; read by
/// `gotrace-cli`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latency {
    /// `slots[s]` counts calls whose latency `v` (in the unit of
    /// [`UNIT_DIVISOR`]) has `s == slot(v)` (0 and 1 in slot 1, as bcc's
    /// `bpf_log2l`).
    pub slots: [u64; SLOTS],
    /// Sum of the latencies in nanoseconds, whatever the unit, so that no
    /// rounding adds up.
    pub total_ns: u64,
    /// Completed calls.
    pub calls: u64,
    /// Calls that never returned (a panic, `runtime.Goexit`): found when
    /// the next call at the same place in the same goroutine began.
    /// Written by the entry program.
    pub abandoned: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            slots: [0; SLOTS],
            total_ns: 0,
            calls: 0,
            abandoned: 0,
        }
    }
}

/// LRU hash of [`StartKey`] -> `u64` start time (ns, `bpf_ktime_get_ns`).
/// Written by the entry program, taken by the return program; what remains
/// at the end are calls still running, or the last of a goroutine's calls
/// that never returned (earlier ones are counted in
/// [`Latency::abandoned`]), which `gotrace-cli` reports. LRU, so such
/// leftovers can never fill it.
pub const STARTS_MAP: &str = "FUNCLATENCY_STARTS";

/// Capacity `gotrace-cli` gives [`STARTS_MAP`] (the object declares 1, so
/// other tools do not preallocate it): open calls over all goroutines
/// (64 goroutines 2,000 calls deep fit).
pub const MAX_OPEN_CALLS: u32 = 1 << 17;

/// Per-CPU array of `u64` event counters, indexed by the `EVENT_*`
/// constants. Written by both programs; read by `gotrace-cli`.
pub const EVENTS_MAP: &str = "FUNCLATENCY_EVENTS";

/// A way out with no open call: the call began before tracing did, or
/// (for an inlined copy) the parent's own code passed there.
pub const EVENT_UNPAIRED_RETURN: u32 = 0;
/// The goroutine could not be named (not a Go goroutine, or a corrupt g).
pub const EVENT_NO_GOID: u32 = 1;
/// Number of `EVENT_*` counters.
pub const EVENTS: u32 = 2;

/// Global (`u64`) set by `gotrace-cli` before load: latencies are divided
/// by this before bucketing (1 ns, 1000 us, 1000000 ms), as bcc does. Read
/// by the return program.
pub const UNIT_DIVISOR: &str = "UNIT_DIVISOR";

/// Global (`u64`) set by `gotrace-cli` before load (`-l LEVEL`): nonzero to
/// time only calls at this nesting depth, 1 being the outermost open call
/// of a timed function in its goroutine. Read by both programs.
pub const LEVEL: &str = "NESTING_LEVEL";

/// LRU hash of [`NestKey`] -> [`Nest`]: each goroutine's open calls of
/// timed functions, outermost first, kept only with [`LEVEL`]. Written by
/// both programs; `gotrace-cli` only sizes it ([`MAX_NESTS`]).
pub const NESTS_MAP: &str = "FUNCLATENCY_NESTS";

/// Capacity `gotrace-cli` gives [`NESTS_MAP`] with `-l`: goroutines with
/// timed calls open at once.
pub const MAX_NESTS: u32 = 1 << 14;

/// Open calls a [`Nest`] holds: deeper calls are never at the level asked
/// for (at most this).
pub const MAX_LEVEL: usize = 32;

/// Key of [`NESTS_MAP`]: one goroutine. Written and read by the programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NestKey {
    pub goroutine: u64,
    pub pid: u32,
    /// Always 0: no implicit padding.
    pub pad: u32,
}

/// One goroutine's open calls of timed functions, by frame (as in
/// [`StartKey::frame`]: larger is deeper). An entry first drops the calls
/// at or below its own frame, which have returned (or were left by a
/// panic), and its level is then the number left plus one; a way out
/// drops its own call and any deeper. Written and read by the programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nest {
    /// Open calls in `frames`, outermost first.
    pub depth: u64,
    pub frames: [u64; MAX_LEVEL],
}

/// Offset of `stack.hi` (the top of the goroutine's stack) in `runtime.g`,
/// the same in every Go version: `stack` (`lo`, `hi`) comes first.
pub const G_STACK_HI_OFFSET: u64 = 8;

/// Key of [`STARTS_MAP`]: one open call. Written by the entry program,
/// looked up by the return program; `gotrace-cli` counts what is left.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartKey {
    /// The goroutine id (0 with `Cookie::FLAG_KEY_BY_STACK_POINTER`).
    pub goroutine: u64,
    /// Where the call's frame is: the top of the goroutine's stack minus
    /// the stack pointer at the entry (the same at every way out, and kept
    /// when Go moves the stack); with `Cookie::FLAG_KEY_BY_STACK_POINTER`, the stack
    /// pointer itself.
    pub frame: u64,
    /// The timed function's index (cookie).
    pub function: u32,
    /// The process (goroutine ids and stack addresses are per process).
    pub pid: u32,
}

const _: () = assert!(core::mem::size_of::<StartKey>() == 24);
const _: () = assert!(core::mem::size_of::<NestKey>() == 16);
const _: () = assert!(core::mem::size_of::<Nest>() == 8 * (MAX_LEVEL + 1));
const _: () = assert!(core::mem::size_of::<Latency>() == 8 * (SLOTS + 3));

#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` integers without padding.
unsafe impl aya::Pod for StartKey {}
#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` integers without padding.
unsafe impl aya::Pod for Latency {}

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
