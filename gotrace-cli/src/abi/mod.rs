//! Where a function's arguments and results are when a probe fires, as
//! locations the `trace` program reads (`gotrace_common::trace::LOCATION_*`).
//!
//! - Go's register ABI (ABIInternal, Go >= 1.17): integer arguments and
//!   results in the architecture's Go registers; what does not fit goes on
//!   the stack above the return address (`src/cmd/compile/abi-internal.md`).
//! - Go's stack ABI (ABI0: assembly functions, and all of Go < 1.17):
//!   every argument on the stack above the return address.
//! - The C ABI (gccgo, C).
//!
//! Locations hold at the function's first instruction and at the stack
//! check branch (neither has moved the stack pointer); results hold at
//! each return.

pub mod named;

use gotrace_common::trace::{G_IN_REGISTER, G_IN_TLS, G_UNKNOWN};

use crate::{
    arch::{register, stack, Arch},
    symbols::{Binary, Function, Toolchain},
};

/// A calling convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convention {
    GoRegister,
    GoStack,
    SystemV,
}

impl Convention {
    /// Where code of this convention on `arch` finds the current g, as
    /// `ProbeSpec::g_from`: arm64 keeps g in R28 even in ABI0 assembly;
    /// x86-64 ABI0 code reaches it through the thread's FS base.
    pub fn g_from(self, arch: Arch) -> u32 {
        match self {
            Convention::GoRegister => G_IN_REGISTER,
            Convention::GoStack if arch.g_always_in_register() => G_IN_REGISTER,
            Convention::GoStack => G_IN_TLS,
            Convention::SystemV => G_UNKNOWN,
        }
    }

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

/// A gc binary of a Go with the register ABI on its architecture (or of
/// an unknown version: the register ABI is the likelier).
fn register_abi(binary: &Binary) -> bool {
    let version = binary
        .facts()
        .build_info
        .as_ref()
        .map(|b| b.go_version.as_str());
    crate::symbols::abi(binary.arch(), Toolchain::Gc, version)
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

/// The `n`-th (1-based) word of the Go argument area.
pub fn go_argument_word(arch: Arch, convention: Convention, n: u32) -> Option<u32> {
    let go = arch.registers().go_integer;
    match convention {
        Convention::GoRegister => Some(match go.get(n as usize - 1) {
            Some(&r) => register(r),
            None => stack(8 * (n - go.len() as u32)),
        }),
        Convention::GoStack => Some(stack(8 * n)),
        Convention::SystemV => None,
    }
}

/// The `n`-th (1-based) C integer argument.
pub fn c_argument(arch: Arch, n: u32) -> u32 {
    let c = arch.registers().c_arguments;
    match c.get(n as usize - 1) {
        Some(&r) => register(r),
        None => stack(8 * (n - c.len() as u32)),
    }
}

/// The `n`-th (1-based) result word at a return, where results are in
/// registers (stack-ABI results need the argument size, unknown here).
pub fn result_word(arch: Arch, convention: Convention, n: u32) -> Option<u32> {
    let registers = match convention {
        Convention::GoRegister => arch.registers().go_integer,
        Convention::SystemV => arch.registers().c_results,
        Convention::GoStack => return None,
    };
    registers.get(n as usize - 1).map(|&r| register(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gotrace_common::arch::x86_64::regs;

    const X86: Arch = Arch::X86_64;

    #[test]
    fn go_register_abi() {
        let word = |n| go_argument_word(X86, Convention::GoRegister, n);
        assert_eq!(word(1), Some(register(regs::RAX)));
        assert_eq!(word(2), Some(register(regs::RBX)));
        assert_eq!(word(9), Some(register(regs::R11)));
        assert_eq!(word(10), Some(stack(8)));
        assert_eq!(
            result_word(X86, Convention::GoRegister, 1),
            Some(register(regs::RAX))
        );
    }

    #[test]
    fn go_stack_abi_and_c() {
        assert_eq!(
            go_argument_word(X86, Convention::GoStack, 1),
            Some(stack(8))
        );
        assert_eq!(
            go_argument_word(X86, Convention::GoStack, 3),
            Some(stack(24))
        );
        assert_eq!(go_argument_word(X86, Convention::SystemV, 1), None);
        assert_eq!(c_argument(X86, 1), register(regs::RDI));
        assert_eq!(c_argument(X86, 7), stack(8));
        assert_eq!(
            result_word(X86, Convention::SystemV, 2),
            Some(register(regs::RDX))
        );
        assert_eq!(result_word(X86, Convention::GoStack, 1), None);
    }
}
