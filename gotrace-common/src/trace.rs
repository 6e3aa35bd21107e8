//! `gotrace trace`: one event per probe hit, with arguments read in the
//! kernel as user space described them.
//!
//! `gotrace-cli` turns each probe's arguments into [`ArgSpec`]s (which
//! register or stack slot, read as a word or a string, directly or through
//! a pointer) and its filter into [`Condition`]s, and stores one
//! [`ProbeSpec`] per probe in [`PROBES_MAP`]. The single `trace` program
//! finds its probe from the cookie, reads the arguments, applies the filter
//! and sends an [`Event`] through the [`EVENTS_MAP`] ring buffer.

/// Bytes of [`EVENTS_MAP`] as `gotrace trace` sizes it (the object
/// declares one page, so other tools do not pay for it).
pub const RING_BYTES: u32 = 1 << 24;

/// Name of the uprobe program on every traced instruction (entries, and
/// each `ret` of `r:` probes). Written by `gotrace-ebpf`; read by
/// `gotrace-cli`.
pub const PROGRAM: &str = "trace";

/// Ring buffer of [`Event`]s. Written by the `trace` program; read by
/// `gotrace-cli`. The program also keeps each hit's register copy in it,
/// as a record it discards (readers never see it).
pub const EVENTS_MAP: &str = "TRACE_EVENTS";

/// Array of [`ProbeSpec`], indexed by the cookie's function index. Written
/// by `gotrace-cli` before attaching; read by the `trace` program.
pub const PROBES_MAP: &str = "TRACE_PROBES";

/// Per-CPU array with one `u64`: events dropped because the ring buffer
/// was full. Written by the `trace` program; read by `gotrace-cli`, which
/// reports it.
pub const LOST_MAP: &str = "TRACE_LOST";

/// Global (`u64`) set by `gotrace-cli` before load: only hits of this
/// thread id count (0: any). bcc's `-L`.
pub const TID_FILTER: &str = "TRACE_TID";

/// Arguments (plus filter operands) one probe reads.
pub const MAX_ARGS: usize = 6;
/// Bytes of a string argument kept; longer strings are cut and marked
/// (see [`Event::cut`]).
pub const STRING_SIZE: usize = 64;
/// Filter conditions per probe.
pub const MAX_CONDITIONS: usize = 4;
/// User stack frames kept with `-U`.
pub const MAX_FRAMES: usize = 32;
/// Most probes one run may have (each function, and each inlined copy,
/// is a probe); `gotrace-cli` sizes [`PROBES_MAP`] to the probes it has
/// (the object declares one entry, so other tools do not pay for it).
pub const MAX_PROBES: u32 = 4096;

/// Where a value is: `LOCATION_REGISTER | index` names the `index`-th
/// `u64` of the architecture's `pt_regs` (see [`crate::arch`]),
/// `LOCATION_STACK | offset` the word at the stack pointer + `offset`.
pub const LOCATION_REGISTER: u32 = 1 << 16;
/// See [`LOCATION_REGISTER`].
pub const LOCATION_STACK: u32 = 2 << 16;
/// Masks the kind out of a location.
pub const LOCATION_KIND: u32 = 0xffff << 16;

/// An argument slot is unused.
pub const ARG_NONE: u32 = 0;
/// A machine word.
pub const ARG_WORD: u32 = 1;
/// A Go string: pointer at `first`, length at `second` (or, indirect, a
/// string header at the pointer plus `offset`).
pub const ARG_GO_STRING: u32 = 2;
/// A NUL-terminated C string at the pointer in `first`.
pub const ARG_C_STRING: u32 = 3;
/// A Go slice: array pointer at `first`, length at `second` (or, indirect,
/// a slice header at the pointer plus `offset`). The program copies the
/// first whole elements of [`ArgSpec::element`] bytes, up to
/// [`STRING_SIZE`] - 1 bytes, into the string slot, and the length into
/// the value; the cut bit says elements were left out.
pub const ARG_SLICE: u32 = 4;
/// A Go interface: type word at `first`, data word at `second` (or,
/// indirect, an interface at the pointer plus `offset`). For a non-empty
/// interface the type word is an itab, and [`ArgSpec::element`] is the
/// offset of its `_type` pointer. The string slot receives the layout
/// below; user space finds the type's name and kind in the binary and
/// decides which of the bytes mean something. The value is the data word.
pub const ARG_INTERFACE: u32 = 5;

/// A Go `[]string`: array pointer at `first`, length at `second` (or,
/// indirect, a slice header at the pointer plus `offset`). The length goes
/// into the value; the string slot holds the first
/// [`STRING_SLICE_ELEMENTS`] elements, each in [`STRING_SLICE_ENTRY`] bytes:
/// its length (capped at 255) in one byte, then up to
/// [`STRING_SLICE_TEXT`] bytes of its text. The cut bit says elements
/// were left out; an element's own length says whether its text was cut.
pub const ARG_STRING_SLICE: u32 = 6;

/// [`ARG_STRING_SLICE`]: elements copied.
pub const STRING_SLICE_ELEMENTS: usize = 3;
/// [`ARG_STRING_SLICE`]: bytes of text kept per element.
pub const STRING_SLICE_TEXT: usize = 20;
/// [`ARG_STRING_SLICE`]: bytes per element in the string slot.
pub const STRING_SLICE_ENTRY: usize = 1 + STRING_SLICE_TEXT;
const _: () = assert!(STRING_SLICE_ELEMENTS * STRING_SLICE_ENTRY <= STRING_SIZE);

/// Whether arguments of kind `kind` are two-word headers (pointer or type
/// word, then length or data word). Read by both sides.
pub const fn is_two_words(kind: u32) -> bool {
    matches!(
        kind,
        ARG_GO_STRING | ARG_SLICE | ARG_STRING_SLICE | ARG_INTERFACE
    )
}

/// [`ARG_INTERFACE`]: the `_type` pointer (0 for a nil interface).
pub const IFACE_TYPE_AT: usize = 0;
/// [`ARG_INTERFACE`]: 16 bytes read at the data pointer (the value of a
/// type stored indirectly: an integer, a string header...).
pub const IFACE_DATA_AT: usize = 8;
/// [`ARG_INTERFACE`]: the text a string header in the data bytes points
/// to, up to [`IFACE_TEXT_MAX`] bytes, read whatever the type (a failed or
/// meaningless read is simply not shown).
pub const IFACE_TEXT_AT: usize = 24;
/// See [`IFACE_TEXT_AT`].
pub const IFACE_TEXT_MAX: usize = STRING_SIZE - IFACE_TEXT_AT;

/// How to read one argument. Written by `gotrace-cli`; read by `trace`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArgSpec {
    /// `ARG_*`.
    pub kind: u32,
    /// Nonzero: `first` holds a pointer, and the value (word or string
    /// header) is read from user memory at that pointer plus `offset`.
    pub indirect: u32,
    /// Location of the value, or of the pointer when `indirect`.
    pub first: u32,
    /// Location of a Go string's length (direct strings only).
    pub second: u32,
    /// Byte offset added to the pointer when `indirect` (a struct field).
    pub offset: u64,
    /// [`ARG_SLICE`]: bytes per element (nonzero). [`ARG_INTERFACE`]:
    /// offset of `_type` in the itab, 0 for `interface{}`.
    pub element: u32,
    /// Always 0: no implicit padding.
    pub pad: u32,
}

/// Compare as signed integers.
pub const OP_EQ: u32 = 1;
pub const OP_NE: u32 = 2;
pub const OP_LT: u32 = 3;
pub const OP_LE: u32 = 4;
pub const OP_GT: u32 = 5;
pub const OP_GE: u32 = 6;
/// String equality against [`Condition::string`].
pub const OP_STR_EQ: u32 = 7;
pub const OP_STR_NE: u32 = 8;

/// One comparison of a filter. Written by `gotrace-cli`; read by `trace`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Condition {
    /// `OP_*`, 0 for an unused slot.
    pub op: u32,
    /// Which of the probe's arguments is compared.
    pub arg: u32,
    /// The constant of a numeric comparison.
    pub value: i64,
    /// Length of [`Condition::string`].
    pub string_len: u32,
    /// Always 0: no implicit padding.
    pub pad: u32,
    /// The constant of a string comparison.
    pub string: [u8; STRING_SIZE],
}

impl Default for Condition {
    fn default() -> Self {
        Self {
            op: 0,
            arg: 0,
            value: 0,
            string_len: 0,
            pad: 0,
            string: [0; STRING_SIZE],
        }
    }
}

/// Conditions all hold.
pub const JOIN_AND: u32 = 0;
/// At least one condition holds.
pub const JOIN_OR: u32 = 1;

/// [`ProbeSpec::g_from`]: no g here (gccgo, C); goroutine ids read as 0.
pub const G_UNKNOWN: u32 = 0;
/// gc code with g in a register: R14 in register-ABI code on x86-64,
/// R28 in every function on arm64.
pub const G_IN_REGISTER: u32 = 1;
/// ABI0 assembly and pre-1.17 code: g in thread-local storage (see
/// `probe::FSBASE_OFFSET`).
pub const G_IN_TLS: u32 = 2;

/// One probe: what to read and when to send. Written by `gotrace-cli`
/// into [`PROBES_MAP`]; read by `trace`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    pub args: [ArgSpec; MAX_ARGS],
    pub conditions: [Condition; MAX_CONDITIONS],
    /// `JOIN_*` of the conditions.
    pub join: u32,
    /// Nonzero: record the user stack (`-U`).
    pub stack: u32,
    /// Only this process (thread group) fires the probe (0: any). Probes of
    /// a multi link filter by pid already; this also covers per-site ones.
    pub pid: u32,
    /// Where the current g is when the probe fires (`G_*`), for the
    /// goroutine id.
    pub g_from: u32,
}

impl Default for ProbeSpec {
    fn default() -> Self {
        Self {
            args: [ArgSpec::default(); MAX_ARGS],
            conditions: [Condition::default(); MAX_CONDITIONS],
            join: JOIN_AND,
            stack: 0,
            pid: 0,
            g_from: G_UNKNOWN,
        }
    }
}

/// One hit. Written by `trace` into [`EVENTS_MAP`]; read by `gotrace-cli`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Event {
    /// `bpf_ktime_get_ns` at the hit.
    pub timestamp: u64,
    /// Goroutine id (0 if unknown).
    pub goid: u64,
    pub pid: u32,
    pub tid: u32,
    /// Index of the probe (the cookie's function index).
    pub probe: u32,
    /// Bit `i` set: string argument `i` was longer than [`STRING_SIZE`] - 1
    /// bytes and is cut. Bit `i + 16` set: argument `i` could not be read.
    pub cut: u32,
    /// Bytes of [`Event::stack`] filled (0 without `-U`).
    pub stack_bytes: u32,
    /// Which of the probe's sites fired (`Cookie::site`).
    pub site: u16,
    /// The CPU it fired on (`bpf_get_smp_processor_id`, trace's `-C`).
    pub cpu: u16,
    /// Where it fired in the process: with the site's link-time address,
    /// the load bias of a PIE binary, exact even once the process is gone.
    pub ip: u64,
    /// With `-U`: the word at RSP, the caller's return address. Every
    /// probe sits where the function has no frame of its own (entry,
    /// stack-check branch, `ret`), so the kernel's frame-pointer walk
    /// starts at the caller's caller and this is the missing frame.
    pub return_address: u64,
    pub comm: [u8; 16],
    /// Word arguments; for strings, the length the program saw.
    pub values: [u64; MAX_ARGS],
    /// String arguments, NUL-padded.
    pub strings: [[u8; STRING_SIZE]; MAX_ARGS],
    /// User stack return addresses, innermost first.
    pub stack: [u64; MAX_FRAMES],
}

// The kernel program compares strings a word at a time.
const _: () = assert!(core::mem::offset_of!(Condition, string).is_multiple_of(8));
const _: () = assert!(core::mem::offset_of!(Event, strings).is_multiple_of(8));
const _: () = assert!(core::mem::align_of::<Event>() == 8);
const _: () = assert!(STRING_SIZE.is_multiple_of(8));

/// Bit in [`Event::cut`] for argument `i` that could not be read.
pub const fn unreadable_bit(i: usize) -> u32 {
    1 << (i + 16)
}

const _: () = assert!(core::mem::size_of::<ArgSpec>() == 32);
const _: () = assert!(core::mem::size_of::<Condition>() == 24 + STRING_SIZE);
const _: () = assert!(
    core::mem::size_of::<ProbeSpec>() == 32 * MAX_ARGS + (24 + STRING_SIZE) * MAX_CONDITIONS + 16
);
const _: () = assert!(
    core::mem::size_of::<Event>()
        == 56 + 16 + 8 * MAX_ARGS + STRING_SIZE * MAX_ARGS + 8 * MAX_FRAMES
);

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]` integers and byte arrays without padding.
unsafe impl aya::Pod for ProbeSpec {}
