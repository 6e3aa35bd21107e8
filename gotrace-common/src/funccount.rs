//! `gotrace funccount`: one counter per traced function, counted in the kernel.

/// Name of the uprobe program that counts calls.
///
/// Written by `gotrace-ebpf` (the `#[uprobe]` function name); read by
/// `gotrace-cli` to find the program in the loaded object.
pub const PROGRAM: &str = "funccount";

/// Name of the per-CPU array that holds one `u64` call count per function.
///
/// The index is [`Cookie::function`] of the probe that fired. Written by the
/// `funccount` program; read (summed over CPUs) and cleared by `gotrace-cli`,
/// which also sizes it to the number of traced functions before load.
pub const COUNTS_MAP: &str = "FUNCCOUNT_COUNTS";

/// Capacity the kernel object declares for [`COUNTS_MAP`]; `gotrace-cli`
/// resizes the map to the real number of functions before loading.
pub const DEFAULT_MAX_FUNCTIONS: u32 = 1;

/// The bpf cookie attached to every funccount probe.
///
/// Built by `gotrace-cli` at attach time, read by the `funccount` program with
/// `bpf_get_attach_cookie`. The low 32 bits are the function's index in
/// [`COUNTS_MAP`]; the high 32 bits are [`Cookie`] flags.
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

    /// Packs a function index and flags into a cookie.
    pub const fn new(function: u32, flags: u32) -> Self {
        Self(((flags as u64) << 32) | function as u64)
    }

    /// The function's index in [`COUNTS_MAP`].
    pub const fn function(self) -> u32 {
        self.0 as u32
    }

    /// The `FLAG_*` bits.
    pub const fn flags(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// x86 EFLAGS bits the stack-check branch depends on (`JBE` jumps when CF or
/// ZF is set). Read by the `funccount` program from `pt_regs.flags`.
pub const EFLAGS_CF_ZF: u64 = 0x41;
