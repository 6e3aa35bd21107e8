//! amd64 calling conventions, as locations the `trace` program reads
//! (`gotrace_common::trace::LOCATION_*`).
//!
//! - Go's register ABI (ABIInternal, Go >= 1.17): integer arguments and
//!   results in RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11; what does not fit
//!   goes on the stack above the return address
//!   (`src/cmd/compile/abi-internal.md`).
//! - Go's stack ABI (ABI0: assembly functions, and all of Go < 1.17):
//!   every argument on the stack above the return address.
//! - System V (gccgo, C): RDI, RSI, RDX, RCX, R8, R9; results RAX, RDX.
//!
//! Locations hold at the function's first instruction and at the stack
//! check branch (neither has moved RSP); results hold at each `ret`.

use gotrace_common::trace::{regs, LOCATION_REGISTER, LOCATION_STACK};

use crate::symbols::{Binary, Function, Toolchain};

/// Go's integer argument and result registers, in order.
pub const GO_INT_REGISTERS: [u32; 9] = [
    regs::RAX,
    regs::RBX,
    regs::RCX,
    regs::RDI,
    regs::RSI,
    regs::R8,
    regs::R9,
    regs::R10,
    regs::R11,
];

const SYSV_ARGUMENTS: [u32; 6] = [
    regs::RDI,
    regs::RSI,
    regs::RDX,
    regs::RCX,
    regs::R8,
    regs::R9,
];
const SYSV_RESULTS: [u32; 2] = [regs::RAX, regs::RDX];

/// A calling convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convention {
    GoRegister,
    GoStack,
    SystemV,
}

impl Convention {
    /// The calling convention of `function` in `binary`.
    pub fn of(binary: &Binary, function: &Function) -> Convention {
        match binary.toolchain() {
            // Assembly functions keep the stack ABI; the symbol table marks
            // them `.abi0`.
            Some(Toolchain::Gc) if register_abi(binary) && !function.name.ends_with(".abi0") => {
                Convention::GoRegister
            }
            Some(Toolchain::Gc) => Convention::GoStack,
            _ => Convention::SystemV,
        }
    }
}

/// A gc binary of Go 1.17 or later (or of an unknown version: the
/// register ABI is the likelier).
fn register_abi(binary: &Binary) -> bool {
    let version = binary
        .facts()
        .build_info
        .as_ref()
        .map(|b| b.go_version.as_str());
    crate::symbols::abi(Toolchain::Gc, version)
        .is_none_or(|abi| abi == crate::symbols::Abi::Register)
}

impl std::fmt::Display for Convention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Convention::GoRegister => "Go register ABI",
            Convention::GoStack => "Go stack ABI (ABI0)",
            Convention::SystemV => "System V C ABI",
        })
    }
}

/// A register as a location.
pub const fn register(index: u32) -> u32 {
    LOCATION_REGISTER | index
}

/// The word at RSP + `offset` as a location.
pub const fn stack(offset: u32) -> u32 {
    LOCATION_STACK | offset
}

/// The `n`-th (1-based) word of the Go argument area.
pub fn go_argument_word(convention: Convention, n: u32) -> Option<u32> {
    match convention {
        Convention::GoRegister => Some(match GO_INT_REGISTERS.get(n as usize - 1) {
            Some(&r) => register(r),
            None => stack(8 * (n - GO_INT_REGISTERS.len() as u32)),
        }),
        Convention::GoStack => Some(stack(8 * n)),
        Convention::SystemV => None,
    }
}

/// The `n`-th (1-based) C integer argument.
pub fn c_argument(n: u32) -> u32 {
    match SYSV_ARGUMENTS.get(n as usize - 1) {
        Some(&r) => register(r),
        None => stack(8 * (n - SYSV_ARGUMENTS.len() as u32)),
    }
}

/// The `n`-th (1-based) result word at a `ret`, where results are in
/// registers (stack-ABI results need the argument size, unknown here).
pub fn result_word(convention: Convention, n: u32) -> Option<u32> {
    let registers: &[u32] = match convention {
        Convention::GoRegister => &GO_INT_REGISTERS,
        Convention::SystemV => &SYSV_RESULTS,
        Convention::GoStack => return None,
    };
    registers.get(n as usize - 1).map(|&r| register(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_register_abi() {
        assert_eq!(
            go_argument_word(Convention::GoRegister, 1),
            Some(register(regs::RAX))
        );
        assert_eq!(
            go_argument_word(Convention::GoRegister, 2),
            Some(register(regs::RBX))
        );
        assert_eq!(
            go_argument_word(Convention::GoRegister, 9),
            Some(register(regs::R11))
        );
        assert_eq!(go_argument_word(Convention::GoRegister, 10), Some(stack(8)));
        assert_eq!(
            result_word(Convention::GoRegister, 1),
            Some(register(regs::RAX))
        );
    }

    #[test]
    fn go_stack_abi_and_c() {
        assert_eq!(go_argument_word(Convention::GoStack, 1), Some(stack(8)));
        assert_eq!(go_argument_word(Convention::GoStack, 3), Some(stack(24)));
        assert_eq!(go_argument_word(Convention::SystemV, 1), None);
        assert_eq!(c_argument(1), register(regs::RDI));
        assert_eq!(c_argument(7), stack(8));
        assert_eq!(
            result_word(Convention::SystemV, 2),
            Some(register(regs::RDX))
        );
        assert_eq!(result_word(Convention::GoStack, 1), None);
    }
}
