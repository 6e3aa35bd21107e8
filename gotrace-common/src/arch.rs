//! The register layouts of the architectures gotrace traces: which `u64`
//! of the kernel's `pt_regs` (x86-64) or `user_pt_regs` (arm64) holds
//! which register, as both sides name them. `gotrace-cli` writes these
//! indexes into argument locations (`crate::trace::LOCATION_REGISTER`);
//! the kernel programs read them.

/// x86-64: `struct pt_regs`.
pub mod x86_64 {
    /// Indexes of `struct pt_regs` fields, in `u64`s.
    pub mod regs {
        pub const R15: u32 = 0;
        pub const R14: u32 = 1;
        pub const R13: u32 = 2;
        pub const R12: u32 = 3;
        pub const RBP: u32 = 4;
        pub const RBX: u32 = 5;
        pub const R11: u32 = 6;
        pub const R10: u32 = 7;
        pub const R9: u32 = 8;
        pub const R8: u32 = 9;
        pub const RAX: u32 = 10;
        pub const RCX: u32 = 11;
        pub const RDX: u32 = 12;
        pub const RSI: u32 = 13;
        pub const RDI: u32 = 14;
        pub const RSP: u32 = 19;
        /// Number of `u64`s in `pt_regs`.
        pub const COUNT: u32 = 21;
    }

    /// EFLAGS bits the Go stack-check branch depends on (`JBE` jumps when
    /// CF or ZF is set). Read by the entry programs from `pt_regs.flags`.
    pub const EFLAGS_CF_ZF: u64 = 0x41;
}

/// arm64: `struct user_pt_regs` (x0-x30, sp, pc, pstate), what uprobe
/// programs see on arm64.
pub mod aarch64 {
    /// Indexes of `struct user_pt_regs` fields, in `u64`s: `Xn` is `n`.
    pub mod regs {
        /// The first of x0-x30 (`regs[31]`); x`n` is `X0 + n`.
        pub const X0: u32 = 0;
        /// Where gc keeps the current g, in every function (ABI0 too).
        pub const X28: u32 = 28;
        /// The frame pointer.
        pub const X29: u32 = 29;
        /// The link register: the return address until a function saves it.
        pub const X30: u32 = 30;
        /// The stack pointer.
        pub const SP: u32 = 31;
        /// The probed instruction's address.
        pub const PC: u32 = 32;
        /// The condition flags (and more), for `PSTATE_*`.
        pub const PSTATE: u32 = 33;
        /// Number of `u64`s in `user_pt_regs`.
        pub const COUNT: u32 = 34;
    }

    /// PSTATE's zero flag. `B.LS` branches when C is clear or Z is set;
    /// the entry programs read both from `pstate` on the stack-check
    /// branch (`Cookie::FLAG_STACK_CHECK_BRANCH`).
    pub const PSTATE_Z: u64 = 1 << 30;
    /// PSTATE's carry flag (see [`PSTATE_Z`]).
    pub const PSTATE_C: u64 = 1 << 29;
}
