//! x86-64 calling conventions' registers:
//!
//! - Go's register ABI (ABIInternal, Go >= 1.17): integer arguments and
//!   results in RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11; floats in
//!   X0-X14.
//! - System V (gccgo, C): RDI, RSI, RDX, RCX, R8, R9; results RAX, RDX.
//!
//! Go's stack ABI (ABI0) puts every argument above the return address.

use gotrace_common::arch::x86_64::regs;

use crate::arch::Registers;

pub const REGISTERS: Registers = Registers {
    go_integer: &[
        regs::RAX,
        regs::RBX,
        regs::RCX,
        regs::RDI,
        regs::RSI,
        regs::R8,
        regs::R9,
        regs::R10,
        regs::R11,
    ],
    go_float_count: 15,
    c_arguments: &[
        regs::RDI,
        regs::RSI,
        regs::RDX,
        regs::RCX,
        regs::R8,
        regs::R9,
    ],
    c_results: &[regs::RAX, regs::RDX],
    g: regs::R14,
    stack_pointer: regs::RSP,
    call_pushes: 8,
    // The System V psABI's DWARF numbering.
    dwarf: &[
        regs::RAX,
        regs::RDX,
        regs::RCX,
        regs::RBX,
        regs::RSI,
        regs::RDI,
        regs::RBP,
        regs::RSP,
        regs::R8,
        regs::R9,
        regs::R10,
        regs::R11,
        regs::R12,
        regs::R13,
        regs::R14,
        regs::R15,
    ],
};
