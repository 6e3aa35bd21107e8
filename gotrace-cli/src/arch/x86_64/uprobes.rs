//! What Linux's x86 uprobe code does with the instruction a probe
//! replaces: refuses it, emulates it, or single-steps a copy of it
//! (`arch_uprobe_analyze_insn` in `arch/x86/kernel/uprobes.c`, the same
//! from 6.1 to 6.18).
//!
//! A refused instruction fails the whole attach: one probe on it makes a
//! uprobe_multi link of 50,000 sites fail with ENOTSUPP, and when no
//! process maps the binary yet, the kernel accepts the link and silently
//! skips the site at exec. So gotrace never asks for such a site: it
//! applies the kernel's rules itself, byte for byte:
//!
//! - refused: a `lock` prefix or an `es`/`cs`/`ss`/`ds` segment override
//!   (`fs`/`gs`, which Go's TLS loads use, are fine); `mov ss`/`pop ss`;
//!   the one-byte opcodes the kernel's table marks bad for 64-bit code
//!   (`int3`, `int n`, `into`, `iret`, I/O, `hlt`, `cli`/`sti`, opcodes
//!   invalid in 64-bit mode), also as the opcode byte of a VEX/EVEX
//!   instruction (`vmovdqu` is `0x6f`); relative branches with a `66`
//!   prefix;
//! - emulated (cheap, ~0.5 us a hit here): relative `jmp`, `call` and
//!   conditional jumps, the kernel's nops, and `push reg`;
//! - single-stepped (~7-14 us): everything else.
//!
//! The kernel's second table (two-byte `0f xx` opcodes) is never reached
//! in 64-bit code, since the first table accepts `0f` itself.
//!
//! One more rule is a bug, not a design: any opcode `0x90` is emulated as a
//! nop, even with REX.B, where it is `xchg rax, r8` (measured on 6.18;
//! tests/misemulated.rs). A probe there would skip the exchange.

use iced_x86::{Code, Decoder, DecoderOptions, Mnemonic};

/// What the kernel does with an instruction under a uprobe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handling {
    /// Run by the kernel itself, without leaving the trap.
    Emulated,
    /// Copied out of line and single-stepped.
    SingleStepped,
    /// Refused with ENOTSUPP or ENOEXEC: no probe may go there.
    Refused(Refusal),
    /// Accepted, but run wrongly: opcode `0x90` with REX.B.
    Misemulated,
}

/// Why the kernel refuses an instruction, in a user's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Undecodable,
    LockPrefix,
    SegmentOverride,
    Breakpoint,
    Interrupt,
    StackSegmentLoad,
    Privileged,
    InvalidIn64Bit,
    OperandSizeBranch,
    /// A VEX/EVEX instruction whose opcode byte is one of the refused
    /// one-byte opcodes (`vmovdqu` is `0x6f`, `outs` to the table).
    VexOpcode,
}

impl Refusal {
    /// What the instruction is, for messages ("it starts with ...").
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::Undecodable => "bytes that do not decode as an instruction",
            Refusal::LockPrefix => "a `lock`-prefixed instruction",
            Refusal::SegmentOverride => "an instruction with an es/cs/ss/ds segment override",
            Refusal::Breakpoint => "`int3`",
            Refusal::Interrupt => "an `int`/`into`/`iret` instruction",
            Refusal::StackSegmentLoad => "a load of the stack segment (`mov ss`/`pop ss`)",
            Refusal::Privileged => "an I/O or privileged instruction",
            Refusal::InvalidIn64Bit => "an opcode that is invalid in 64-bit code",
            Refusal::OperandSizeBranch => "a branch with a 16-bit operand-size prefix",
            Refusal::VexOpcode => "an AVX instruction the kernel's opcode table refuses",
        }
    }
}

/// Legacy prefixes the kernel's decoder skips before the opcode.
const LEGACY_PREFIXES: [u8; 11] = [
    0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3,
];

/// One-byte opcodes the kernel refuses in 64-bit processes (its
/// `good_insns_64` table, by its zero bits).
fn refused_opcode(opcode: u8) -> Option<Refusal> {
    Some(match opcode {
        0xcc | 0xf1 => Refusal::Breakpoint,
        0xcd..=0xcf => Refusal::Interrupt,
        0x6c..=0x6f | 0xe4..=0xe7 | 0xec..=0xef | 0xf4 | 0xfa | 0xfb => Refusal::Privileged,
        0x06 | 0x07 | 0x0e | 0x16 | 0x17 | 0x1e | 0x1f | 0x27 | 0x2f | 0x37 | 0x3f | 0x60
        | 0x61 | 0x62 | 0x82 | 0x9a | 0xd4 | 0xd5 | 0xd6 | 0xea => Refusal::InvalidIn64Bit,
        _ => return None,
    })
}

/// The kernel's multi-byte nops (`x86_nops`, by length), which it
/// emulates as jumps to the next instruction.
const NOPS: [&[u8]; 8] = [
    &[0x90],
    &[0x66, 0x90],
    &[0x0f, 0x1f, 0x00],
    &[0x0f, 0x1f, 0x40, 0x00],
    &[0x0f, 0x1f, 0x44, 0x00, 0x00],
    &[0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
    &[0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
    &[0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
];

/// What the kernel does with a probe on the instruction at the start of
/// `code`.
pub fn handling(code: &[u8]) -> Handling {
    let mut decoder = Decoder::new(64, code, DecoderOptions::NONE);
    if !decoder.can_decode() {
        return Handling::Refused(Refusal::Undecodable);
    }
    let instruction = decoder.decode();
    if instruction.is_invalid() {
        return Handling::Refused(Refusal::Undecodable);
    }
    let bytes = &code[..instruction.len()];
    let prefix_end = bytes
        .iter()
        .position(|b| !LEGACY_PREFIXES.contains(b))
        .unwrap_or(bytes.len());
    let prefixes = &bytes[..prefix_end];
    let mut rest = &bytes[prefix_end..];
    let rex = match rest.first() {
        Some(&b @ 0x40..=0x4f) => {
            rest = &rest[1..];
            Some(b)
        }
        _ => None,
    };
    // VEX and EVEX prefixes carry the opcode map; the kernel's opcode is
    // the byte after them.
    let opcode_at = match rest.first() {
        Some(0xc5) => 2,
        Some(0xc4) => 3,
        Some(0x62) => 4,
        _ => 0,
    };
    let Some(&opcode) = rest.get(opcode_at) else {
        return Handling::Refused(Refusal::Undecodable);
    };
    let second = rest.get(opcode_at + 1).copied();
    if prefixes.contains(&0xf0) {
        return Handling::Refused(Refusal::LockPrefix);
    }
    if prefixes
        .iter()
        .any(|p| matches!(p, 0x26 | 0x2e | 0x36 | 0x3e))
    {
        return Handling::Refused(Refusal::SegmentOverride);
    }
    let modrm_reg = second.map(|modrm| (modrm >> 3) & 7);
    if opcode == 0x17 || (opcode == 0x8e && modrm_reg == Some(2)) {
        return Handling::Refused(Refusal::StackSegmentLoad);
    }
    // The kernel's decoder keeps one opcode byte for VEX and EVEX
    // instructions and looks it up in the same one-byte table (measured:
    // `vmovdqu` c5 fe 6f and `vmovdqu64` 62 f1 fe 48 6f are refused,
    // `vpcmpeqb` c5 e5 74 is not).
    if let Some(refusal) = refused_opcode(opcode) {
        return Handling::Refused(if opcode_at == 0 {
            refusal
        } else {
            Refusal::VexOpcode
        });
    }
    if NOPS.contains(&bytes) || (opcode_at == 0 && opcode == 0x90) {
        // `0x90` after any prefixes is a nop to the kernel; with REX.B it
        // is really an exchange with r8.
        let exchange = !matches!(instruction.mnemonic(), Mnemonic::Nop | Mnemonic::Pause);
        return if opcode == 0x90 && exchange {
            Handling::Misemulated
        } else {
            Handling::Emulated
        };
    }
    let relative_branch = opcode_at == 0
        && (matches!(opcode, 0x70..=0x7f | 0xe8 | 0xe9 | 0xeb)
            || (opcode == 0x0f && matches!(second, Some(0x80..=0x8f))));
    if relative_branch {
        return if prefixes.contains(&0x66) {
            Handling::Refused(Refusal::OperandSizeBranch)
        } else {
            Handling::Emulated
        };
    }
    // `push reg`, alone or with REX.B exactly (push r8-r15).
    let push = opcode_at == 0
        && (0x50..=0x57).contains(&opcode)
        && prefixes.is_empty()
        && matches!(rex, None | Some(0x41));
    if push {
        return Handling::Emulated;
    }
    Handling::SingleStepped
}

/// Whether the instruction at the start of `code` is exactly `xchg rax,
/// r8` (REX.W+B, no other prefix, as Go's assembler writes `XCHGQ R8,
/// AX`): the one misemulated instruction whose effect a probe after it can
/// undo, by swapping the two registers back.
pub fn is_xchg_rax_r8(code: &[u8]) -> bool {
    let mut decoder = Decoder::new(64, code, DecoderOptions::NONE);
    decoder.can_decode()
        && matches!(code, [0x48..=0x4f, 0x90, ..])
        && decoder.decode().code() == Code::Xchg_r64_RAX
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: &[u8]) -> Refusal {
        match handling(code) {
            Handling::Refused(why) => why,
            other => panic!("{code:02x?}: {other:?}, expected a refusal"),
        }
    }

    #[test]
    fn refusals_of_the_kernel() {
        // runtime.abort
        assert_eq!(refused(&[0xcc]), Refusal::Breakpoint);
        assert_eq!(refused(&[0xcd, 0x80]), Refusal::Interrupt);
        // lock xadd [rax], ecx; lock and [rax], bl; lock cmpxchg [rbx], rcx
        assert_eq!(refused(&[0xf0, 0x0f, 0xc1, 0x08]), Refusal::LockPrefix);
        assert_eq!(refused(&[0xf0, 0x20, 0x18]), Refusal::LockPrefix);
        assert_eq!(
            refused(&[0xf0, 0x48, 0x0f, 0xb1, 0x0b]),
            Refusal::LockPrefix
        );
        // ds: mov rcx, [rax]
        assert_eq!(refused(&[0x3e, 0x48, 0x8b, 0x08]), Refusal::SegmentOverride);
        // mov ss, ax; pop ss is invalid in 64-bit code anyway
        assert_eq!(refused(&[0x8e, 0xd0]), Refusal::StackSegmentLoad);
        assert_eq!(refused(&[0xf4]), Refusal::Privileged); // hlt
                                                           // in al, dx
        assert_eq!(refused(&[0xec]), Refusal::Privileged);
        // jmp with an operand-size prefix (rel32 to Intel, rel16 to AMD)
        assert_eq!(
            refused(&[0x66, 0xe9, 0x00, 0x00, 0x00, 0x00]),
            Refusal::OperandSizeBranch
        );
        // vmovdqu ymm2, [rsi]; vmovdqu64 zmm1, [rax] (Go 1.27's
        // internal/runtime/gc/scan.expandAVX512_1 starts with it)
        assert_eq!(refused(&[0xc5, 0xfe, 0x6f, 0x16]), Refusal::VexOpcode);
        assert_eq!(
            refused(&[0x62, 0xf1, 0xfe, 0x48, 0x6f, 0x08]),
            Refusal::VexOpcode
        );
        // ud2 decodes; bytes that do not decode at all
        assert_eq!(refused(&[0x0f]), Refusal::Undecodable);
        assert_eq!(refused(&[]), Refusal::Undecodable);
    }

    #[test]
    fn what_the_kernel_accepts() {
        use Handling::*;
        // mov rcx, fs:[-8]: Go's TLS load; fs/gs overrides are fine.
        assert_eq!(
            handling(&[0x64, 0x48, 0x8b, 0x0c, 0x25, 0xf8, 0xff, 0xff, 0xff]),
            SingleStepped
        );
        assert_eq!(handling(&[0x49, 0x3b, 0x66, 0x10]), SingleStepped); // cmp
        assert_eq!(handling(&[0x76, 0x20]), Emulated); // jbe
        assert_eq!(handling(&[0x0f, 0x86, 0, 1, 0, 0]), Emulated); // jbe near
        assert_eq!(handling(&[0xe8, 0, 0, 0, 0]), Emulated); // call
        assert_eq!(handling(&[0xeb, 0x10]), Emulated); // jmp
        assert_eq!(handling(&[0x55]), Emulated); // push rbp
        assert_eq!(handling(&[0x41, 0x56]), Emulated); // push r14
        assert_eq!(handling(&[0x48, 0x55]), SingleStepped); // push rbp with REX.W
        assert_eq!(handling(&[0xc3]), SingleStepped); // ret
        assert_eq!(handling(&[0xf3, 0xc3]), SingleStepped); // rep ret
        assert_eq!(handling(&[0xff, 0xd0]), SingleStepped); // call rax
        assert_eq!(handling(&[0x0f, 0x05]), SingleStepped); // syscall
        assert_eq!(handling(&[0x48, 0x87, 0x08]), SingleStepped); // xchg: implicit lock, no prefix
        assert_eq!(handling(&[0x90]), Emulated);
        assert_eq!(handling(&[0x0f, 0x1f, 0x44, 0x00, 0x00]), Emulated);
        assert_eq!(handling(&[0xf3, 0x90]), Emulated); // pause
        assert_eq!(handling(&[0xc5, 0xe5, 0x74, 0xc2]), SingleStepped); // vpcmpeqb
    }

    #[test]
    fn rex_b_nops_are_misemulated() {
        for rex in 0x40..=0x4fu8 {
            let expected = if rex & 1 == 1 {
                Handling::Misemulated
            } else {
                Handling::Emulated
            };
            assert_eq!(handling(&[rex, 0x90]), expected, "{rex:#x} 90");
        }
        assert_eq!(handling(&[0x66, 0x41, 0x90]), Handling::Misemulated);
        assert_eq!(handling(&[0x66, 0x90]), Handling::Emulated);
        assert_eq!(handling(&[0x49, 0x91]), Handling::SingleStepped); // xchg rax, r9
        assert!(is_xchg_rax_r8(&[0x49, 0x90]));
        assert!(!is_xchg_rax_r8(&[0x41, 0x90]));
        assert!(!is_xchg_rax_r8(&[0x66, 0x49, 0x90]));
        assert!(!is_xchg_rax_r8(&[0x90]));
    }
}
