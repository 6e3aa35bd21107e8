//! What every probe carries: the cookie naming the traced function and how
//! the probe was placed.

/// The bpf cookie attached to every probe of every tool.
///
/// Built by `gotrace-cli` at attach time, read by the programs with
/// `bpf_get_attach_cookie`. The low 32 bits are the traced function's index
/// (its slot in the tool's maps); bits 32-47 are [`Cookie`] flags; bits
/// 48-63 number the function's probe sites for tools that must tell them
/// apart (trace: which `ret` fired, to learn the load address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct Cookie(pub u64);

impl Cookie {
    /// The probe sits on the `JBE`/`JNA` of the function's stack-bound check
    /// (the branch to `runtime.morestack`) instead of the entry: count only
    /// when that branch will not be taken, i.e. when CF and ZF are both clear
    /// in the saved flags. A taken branch means the function will re-enter
    /// from the top after the stack grows, and is counted then.
    pub const FLAG_STACK_CHECK_BRANCH: u32 = 1 << 0;

    /// The probe sits on the function's second instruction because its
    /// first, `xchg rax, r8`, is one the kernel's uprobe code would run as a
    /// `nop`. Every call passes here exactly once, but RAX and R8 hold each
    /// other's entry values: programs that read arguments swap them back.
    pub const FLAG_AFTER_XCHG_RAX_R8: u32 = 1 << 1;

    /// The function finds the current g in thread-local storage, not in
    /// R14 (ABI0 assembly, and all code of Go < 1.17): programs that key
    /// by goroutine read it there. Set by `funclatency` on entry and exit
    /// probes alike.
    pub const FLAG_G_IN_TLS: u32 = 1 << 2;

    /// The probe is a way out of an inlined copy where the stack pointer
    /// is higher than at the copy's entry (the function returns straight
    /// from the copy, its frame gone): the cookie's site bits hold by how
    /// many bytes, which `funclatency` adds back so that the call's frame
    /// matches its entry's.
    pub const FLAG_FRAME_ADJUST: u32 = 1 << 3;

    /// `funclatency` names the call by its stack pointer alone, for code
    /// whose stacks never move and which keeps no g where gotrace finds it
    /// (gccgo's split stacks, C): the stack pointer at the entry and at the
    /// `ret` of one call is the address of its return address, unique
    /// among the open calls of a process. Set per binary, since one run
    /// may time gc and gccgo programs alike.
    pub const FLAG_KEY_BY_STACK_POINTER: u32 = 1 << 4;

    /// The kernel single-steps the probed instruction (an emulated one is
    /// far cheaper): which of the row's hit counters the hit goes to (see
    /// `crate::budget::HITS_MAP`).
    pub const FLAG_SINGLE_STEPPED: u32 = 1 << 5;

    /// The probe belongs to its binary's odd generation of links (see
    /// `crate::budget`): its hits count only while the row's state says so.
    pub const FLAG_GENERATION: u32 = 1 << 6;

    /// Packs a function index and flags (16 bits) into a cookie.
    pub const fn new(function: u32, flags: u32) -> Self {
        Self::at_site(function, flags, 0)
    }

    /// A cookie for probe site number `site` of the function.
    pub const fn at_site(function: u32, flags: u32, site: u16) -> Self {
        Self(((site as u64) << 48) | (((flags & 0xffff) as u64) << 32) | function as u64)
    }

    /// The traced function's index.
    pub const fn function(self) -> u32 {
        self.0 as u32
    }

    /// The `FLAG_*` bits.
    pub const fn flags(self) -> u32 {
        ((self.0 >> 32) & 0xffff) as u32
    }

    /// The probe site's number (see [`Cookie::at_site`]).
    pub const fn site(self) -> u16 {
        (self.0 >> 48) as u16
    }
}

/// Global (`u64`) set by `gotrace-cli` before load: nonzero to keep
/// funccount's and funclatency's figures per process as well (keyed by
/// [`ProcessKey`]), for `--labels pid|comm`. Read by those programs.
pub const BY_PROCESS: &str = "BY_PROCESS";

/// Key of the per-process maps (`funccount::BY_PROCESS_MAP`,
/// `funclatency::BY_PROCESS_MAP`). Written by the programs; read by
/// `gotrace-cli`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessKey {
    /// The row (cookie's function index).
    pub function: u32,
    /// The process (thread group id).
    pub pid: u32,
}

const _: () = assert!(core::mem::size_of::<ProcessKey>() == 8);

/// Hash of process id (`u32`) -> its name (`[u8; 16]`, NUL-padded), as it
/// was when it first made a (function, process) pair of the per-process
/// maps. Written by funccount and funclatency with [`BY_PROCESS`]; read by
/// `gotrace-cli` for the `comm` label, also after the process exits.
pub const PROCESS_NAMES_MAP: &str = "PROCESS_NAMES";

/// Capacity of [`PROCESS_NAMES_MAP`], set by `gotrace-cli` with
/// [`BY_PROCESS`].
pub const MAX_PROCESS_NAMES: u32 = 1 << 14;

#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` integers without padding.
unsafe impl aya::Pod for ProcessKey {}

/// Global (`u64`) set by `gotrace-cli` before load: the byte offset of
/// `goid` in `runtime.g` (0: unknown, goroutine ids read as 0). Read by
/// every program that names goroutines (funclatency, trace).
pub const GOID_OFFSET: &str = "GOID_OFFSET";

/// Global (`u64`) set by `gotrace-cli` before load: the byte offset of
/// `thread.fsbase` in the kernel's `task_struct`, from the kernel's BTF (0:
/// unknown). Read by the programs that find `g` in thread-local storage,
/// where ABI0 assembly and pre-1.17 Go code keep it.
pub const FSBASE_OFFSET: &str = "FSBASE_OFFSET";

/// Where gc keeps `g` relative to the FS base on linux/amd64 (the
/// runtime's `tlsg`, for binaries Go links itself).
pub const G_TLS_OFFSET: i64 = -8;
