//! arm64 calling conventions' registers:
//!
//! - Go's register ABI (ABIInternal, Go >= 1.18 on arm64): integer
//!   arguments and results in R0-R15, floats in F0-F15, g in R28 in every
//!   function (`src/cmd/compile/abi-internal.md`, "arm64 architecture").
//! - AAPCS64 (gccgo, C): X0-X7; results X0, X1.
//!
//! Go's stack ABI (ABI0) puts arguments from 8(RSP) at entry: 0(RSP) is
//! the caller's saved-LR slot, as the return address is on x86-64.

use gotrace_common::arch::aarch64::regs;

use crate::arch::Registers;

/// x0-x30 as `user_pt_regs` indexes.
const fn x(n: u32) -> u32 {
    regs::X0 + n
}

pub const REGISTERS: Registers = Registers {
    go_integer: &[
        x(0),
        x(1),
        x(2),
        x(3),
        x(4),
        x(5),
        x(6),
        x(7),
        x(8),
        x(9),
        x(10),
        x(11),
        x(12),
        x(13),
        x(14),
        x(15),
    ],
    go_float_count: 16,
    c_arguments: &[x(0), x(1), x(2), x(3), x(4), x(5), x(6), x(7)],
    c_results: &[x(0), x(1)],
    g: regs::X28,
    stack_pointer: regs::SP,
    call_pushes: 0,
    // AAPCS64's DWARF numbering: x0-x30 are 0-30, sp is 31.
    dwarf: &[
        x(0),
        x(1),
        x(2),
        x(3),
        x(4),
        x(5),
        x(6),
        x(7),
        x(8),
        x(9),
        x(10),
        x(11),
        x(12),
        x(13),
        x(14),
        x(15),
        x(16),
        x(17),
        x(18),
        x(19),
        x(20),
        x(21),
        x(22),
        x(23),
        x(24),
        x(25),
        x(26),
        x(27),
        x(28),
        x(29),
        x(30),
        regs::SP,
    ],
};
