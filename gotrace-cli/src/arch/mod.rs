//! What gotrace knows about each machine architecture, behind one
//! boundary (as bpftrace's `src/arch/`): which ELF files it can trace,
//! where the kernel lets probes go and what they cost there (placement),
//! and which registers hold Go's and C's arguments. Everything else is
//! written once for all architectures.
//!
//! A binary is traced only on its own architecture: a 32-bit x86 Go
//! program runs on an x86-64 kernel, but its code decoded as 64-bit code
//! would put probes inside instructions, and its ABI has no registers.

pub mod aarch64;
pub mod x86_64;

use gotrace_common::trace::{LOCATION_REGISTER, LOCATION_STACK};

/// An architecture gotrace traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

/// An ELF file of an architecture gotrace cannot trace here.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("it is {found} code, and this gotrace traces {host} programs only")]
pub struct Unsupported {
    found: String,
    host: &'static str,
}

impl Arch {
    /// The architecture gotrace itself runs on, which is the only one it
    /// can trace: uprobes run the traced code on this machine.
    pub const fn host() -> Arch {
        #[cfg(target_arch = "aarch64")]
        return Arch::Aarch64;
        #[cfg(not(target_arch = "aarch64"))]
        return Arch::X86_64;
    }

    /// What users call it.
    pub const fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86-64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The architecture of an ELF file, if gotrace can trace it here.
    pub fn of_elf(object: &object::File<'_>) -> Result<Arch, Unsupported> {
        use object::{Architecture, Object as _};
        let host = Arch::host();
        let found = match (object.architecture(), object.is_64()) {
            (Architecture::X86_64, true) => Arch::X86_64,
            (Architecture::X86_64_X32, _) => return Err(host.unsupported("x32 (32-bit x86-64)")),
            (Architecture::I386, _) => return Err(host.unsupported("32-bit x86 (i386)")),
            (Architecture::Aarch64, true) => Arch::Aarch64,
            (Architecture::Aarch64_Ilp32, _) => return Err(host.unsupported("arm64 ILP32")),
            (Architecture::Arm, _) => return Err(host.unsupported("32-bit arm")),
            (other, _) => return Err(host.unsupported(&format!("{other:?}").to_lowercase())),
        };
        if found != host {
            return Err(host.unsupported(found.name()));
        }
        Ok(found)
    }

    fn unsupported(self, found: &str) -> Unsupported {
        Unsupported {
            found: found.to_owned(),
            host: self.name(),
        }
    }

    /// Where this architecture's calling conventions keep arguments.
    pub const fn registers(self) -> &'static Registers {
        match self {
            Arch::X86_64 => &x86_64::abi::REGISTERS,
            Arch::Aarch64 => &aarch64::abi::REGISTERS,
        }
    }

    /// The first Go 1.N whose gc compiler passes arguments in registers
    /// here (ABIInternal came to amd64 in 1.17, to arm64 in 1.18).
    pub const fn register_abi_since(self) -> u32 {
        match self {
            Arch::X86_64 => 17,
            Arch::Aarch64 => 18,
        }
    }

    /// Where gc code finds the current g: in a register in every function
    /// on arm64 (R28); on x86-64 only in register-ABI functions (R14),
    /// while ABI0 assembly loads it from thread-local storage.
    pub const fn g_always_in_register(self) -> bool {
        matches!(self, Arch::Aarch64)
    }
}

/// The registers of the calling conventions gotrace decodes, as
/// `gotrace_common::trace` register indexes of the architecture's
/// `pt_regs`.
#[derive(Debug)]
pub struct Registers {
    /// Go's register ABI (ABIInternal): integer arguments and results, in
    /// order (`src/cmd/compile/abi-internal.md`).
    pub go_integer: &'static [u32],
    /// How many floating-point registers Go's register ABI uses, which
    /// uprobes cannot read but which decide where later arguments go.
    pub go_float_count: usize,
    /// The C ABI's integer arguments (gccgo, C).
    pub c_arguments: &'static [u32],
    /// The C ABI's integer results.
    pub c_results: &'static [u32],
    /// Where gc's register ABI keeps the current g.
    pub g: u32,
    /// The stack pointer.
    pub stack_pointer: u32,
    /// Bytes a call pushes: the return address on x86-64; nothing on
    /// arm64, whose calls leave it in the link register. Go's DWARF
    /// canonical frame address is the stack pointer at entry plus these.
    pub call_pushes: u64,
    /// The registers by DWARF register number (integer registers only).
    pub dwarf: &'static [u32],
}

/// A register as a location the kernel programs read.
pub const fn register(index: u32) -> u32 {
    LOCATION_REGISTER | index
}

/// The word at the stack pointer + `offset` as a location.
pub const fn stack(offset: u32) -> u32 {
    LOCATION_STACK | offset
}
