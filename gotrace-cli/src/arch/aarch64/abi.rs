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

/// The registers in AAPCS64's DWARF numbering, as `user_pt_regs`
/// indexes: x0-x30 are 0-30, sp is 31. The ABIs' lists are its prefixes.
const DWARF: [u32; 32] = {
    let mut registers = [regs::SP; 32];
    let mut n = 0;
    while n < 31 {
        registers[n] = regs::X0 + n as u32;
        n += 1;
    }
    registers
};

pub const REGISTERS: Registers = Registers {
    go_integer: DWARF.split_at(16).0,
    go_float_count: 16,
    c_arguments: DWARF.split_at(8).0,
    c_results: DWARF.split_at(2).0,
    g: regs::X28,
    stack_pointer: regs::SP,
    call_pushes: 0,
    dwarf: &DWARF,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_prefixes_of_the_dwarf_numbering() {
        assert_eq!(REGISTERS.go_integer, (0..16).collect::<Vec<u32>>());
        assert_eq!(REGISTERS.c_arguments, (0..8).collect::<Vec<u32>>());
        assert_eq!(REGISTERS.c_results, [0, 1]);
        assert_eq!(REGISTERS.dwarf[30], regs::X30);
        assert_eq!(REGISTERS.dwarf[31], regs::SP);
    }
}
