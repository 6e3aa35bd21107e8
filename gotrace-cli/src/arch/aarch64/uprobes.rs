//! What Linux's arm64 uprobe code does with the instruction a probe
//! replaces: refuses it, simulates it, or single-steps a copy of it
//! (`arm_probe_decode_insn` in `arch/arm64/kernel/probes/decode-insn.c`,
//! reached from `arch_uprobe_analyze_insn`; the same in 6.1 and 6.12).
//!
//! The kernel classes an instruction by masks over its 32 bits
//! (`arch/arm64/include/asm/insn.h`), and so does this module, mask for
//! mask, so that it agrees with the kernel on encodings a decoder might
//! name differently:
//!
//! - simulated (no single-step): `b.cond`, `cbz`/`cbnz`, `tbz`/`tbnz`,
//!   `adr`/`adrp`, `b`/`bl`, `br`/`blr`/`ret`, and `ldr`/`ldrsw` of a
//!   literal. arm64 is cheap where x86-64 is not: every `ret` is simulated;
//! - refused: other branches (pointer-authenticated `retaa`, `braa`, ...),
//!   exception generation (`svc`, `brk`, ...), `eret`, `msr`, `mrs` of DAIF,
//!   hints outside the kernel's list (`yield`, `wfe`, ...), exclusive loads
//!   and stores (`ldaxr`/`stlxr`: their monitor does not survive the
//!   single-step exception), and other literal loads (`prfm`);
//! - single-stepped: everything else.
//!
//! One more class is the kernel's oversight rather than its rule: a SIMD
//! `ldr` of a literal is not in its literal list, so it is single-stepped
//! out of line and loads from the wrong address. No probe goes there.

/// What the kernel does with an instruction under a uprobe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handling {
    /// Simulated by the kernel, without leaving the trap.
    Simulated,
    /// Copied out of line and single-stepped.
    SingleStepped,
    /// Refused (or run wrongly): no probe may go there. Says what the
    /// instruction is.
    Refused(&'static str),
}

/// `insn & mask == value` tests, named as the kernel names them.
const fn is(insn: u32, mask: u32, value: u32) -> bool {
    insn & mask == value
}

fn is_b(i: u32) -> bool {
    is(i, 0xFC00_0000, 0x1400_0000)
}
fn is_bl(i: u32) -> bool {
    is(i, 0xFC00_0000, 0x9400_0000)
}
fn is_cbz_cbnz(i: u32) -> bool {
    is(i, 0x7E00_0000, 0x3400_0000)
}
fn is_tbz_tbnz(i: u32) -> bool {
    is(i, 0x7E00_0000, 0x3600_0000)
}
pub fn is_bcond(i: u32) -> bool {
    is(i, 0xFF00_0010, 0x5400_0000)
}
fn is_br(i: u32) -> bool {
    is(i, 0xFFFF_FC1F, 0xD61F_0000)
}
fn is_br_auth(i: u32) -> bool {
    is(i, 0xFEFF_F800, 0xD61F_0800)
}
fn is_blr(i: u32) -> bool {
    is(i, 0xFFFF_FC1F, 0xD63F_0000)
}
fn is_blr_auth(i: u32) -> bool {
    is(i, 0xFEFF_F800, 0xD63F_0800)
}
pub fn is_ret(i: u32) -> bool {
    is(i, 0xFFFF_FC1F, 0xD65F_0000)
}
fn is_ret_auth(i: u32) -> bool {
    is(i, 0xFFFF_FBFF, 0xD65F_0BFF)
}
fn is_eret(i: u32) -> bool {
    is(i, 0xFFFF_FFFF, 0xD69F_03E0) || is(i, 0xFFFF_FBFF, 0xD69F_0BFF)
}
fn is_exception(i: u32) -> bool {
    is(i, 0xFF00_0000, 0xD400_0000)
}
fn is_hint(i: u32) -> bool {
    is(i, 0xFFFF_F01F, 0xD503_201F)
}
fn is_mrs(i: u32) -> bool {
    is(i, 0xFFF0_0000, 0xD530_0000)
}
fn is_msr(i: u32) -> bool {
    is(i, 0xFFF8_F01F, 0xD500_401F) || is(i, 0xFFF0_0000, 0xD510_0000)
}
fn is_adr_adrp(i: u32) -> bool {
    is(i, 0x1F00_0000, 0x1000_0000)
}
fn is_ldr_literal(i: u32) -> bool {
    is(i, 0xBF00_0000, 0x1800_0000)
}
fn is_ldrsw_literal(i: u32) -> bool {
    is(i, 0xFF00_0000, 0x9800_0000)
}
fn is_prfm_literal(i: u32) -> bool {
    is(i, 0xFF00_0000, 0xD800_0000)
}
fn is_simd_ldr_literal(i: u32) -> bool {
    is(i, 0x3F00_0000, 0x1C00_0000)
}
fn is_exclusive(i: u32) -> bool {
    is(i, 0x3F80_0000, 0x0800_0000)
}

/// The kernel's `aarch64_insn_is_branch`.
fn is_branch(i: u32) -> bool {
    is_b(i)
        || is_bl(i)
        || is_cbz_cbnz(i)
        || is_tbz_tbnz(i)
        || is_ret(i)
        || is_ret_auth(i)
        || is_br(i)
        || is_br_auth(i)
        || is_blr(i)
        || is_blr_auth(i)
        || is_bcond(i)
}

/// Hints the kernel single-steps (`aarch64_insn_is_steppable_hint`): NOP,
/// pointer authentication and BTI landing pads, by `CRm:op2`.
fn is_steppable_hint(i: u32) -> bool {
    matches!(
        i & 0xFE0,
        0x000
            | 0x0E0
            | 0x100
            | 0x140
            | 0x300
            | 0x320
            | 0x340
            | 0x360
            | 0x400
            | 0x440
            | 0x480
            | 0x4C0
    )
}

/// The DAIF system register's `op0:op1:CRn:CRm:op2`, as `mrs` encodes it.
const SYSREG_DAIF: u32 = 0xDA11;

/// What the kernel does with the instruction whose encoding is `insn`.
pub fn handling(insn: u32) -> Handling {
    if is_bcond(insn)
        || is_cbz_cbnz(insn)
        || is_tbz_tbnz(insn)
        || is_adr_adrp(insn)
        || is_b(insn)
        || is_bl(insn)
        || is_br(insn)
        || is_blr(insn)
        || is_ret(insn)
        || is_ldr_literal(insn)
        || is_ldrsw_literal(insn)
    {
        return Handling::Simulated;
    }
    // The branch, exception and system class (op0 = 101x).
    if (insn >> 25) & 0xE == 0xA {
        if is_branch(insn) {
            return Handling::Refused("a pointer-authenticated branch");
        }
        if is_exception(insn) {
            return Handling::Refused("an exception-generating instruction (`svc`, `brk`, ...)");
        }
        if is_eret(insn) {
            return Handling::Refused("`eret`");
        }
        if is_msr(insn) {
            return Handling::Refused("`msr`");
        }
        if is_mrs(insn) && (insn & 0x1F_FFE0) >> 5 == SYSREG_DAIF {
            return Handling::Refused("`mrs` of DAIF");
        }
        if is_hint(insn) && !is_steppable_hint(insn) {
            return Handling::Refused("a hint such as `yield` or `wfe`");
        }
        return Handling::SingleStepped;
    }
    if is_exclusive(insn) {
        return Handling::Refused("an exclusive load or store (`ldaxr`, `stlxr`, ...)");
    }
    if is_prfm_literal(insn) {
        return Handling::Refused("a `prfm` of a literal");
    }
    if is_simd_ldr_literal(insn) {
        return Handling::Refused(
            "a SIMD `ldr` of a literal, which the kernel single-steps from the wrong address",
        );
    }
    Handling::SingleStepped
}

/// The instruction at the start of `code`, if there are 4 bytes.
pub fn word(code: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(code.get(..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Encodings from `llvm-mc -triple=aarch64 -show-encoding`, as Go
    // 1.19 and 1.27 emit them (see placement's tests).
    #[test]
    fn classes_as_the_kernel_does() {
        // ret, b.ls, cbnz x0, b, bl, adrp x27, ldr x0 literal.
        for simulated in [
            0xd65f03c0, 0x54000169, 0xb5000140, 0x17ffffef, 0x97ff5c5d, 0x90000c1b, 0x58000040,
        ] {
            assert_eq!(handling(simulated), Handling::Simulated, "{simulated:#x}");
        }
        // ldr x16, [x28, #16]; cmp sp, x16; str x30, [sp, #-32]!; nop;
        // mrs x0, tpidr_el0; dmb ish; cas x1, x2, [x0].
        for stepped in [
            0xf9400b90, 0xeb3063ff, 0xf81e0ffe, 0xd503201f, 0xd53bd040, 0xd5033bbf, 0xc8a17c02,
        ] {
            assert_eq!(handling(stepped), Handling::SingleStepped, "{stepped:#x}");
        }
        // ldaxr x1, [x0]; stlxr w2, x1, [x0]; svc #0; brk #0; yield;
        // retaa; msr daifset, #2; mrs x0, daif; prfm pldl1keep, literal;
        // ldr d0, literal.
        for refused in [
            0xc85ffc01, 0xc802fc01, 0xd4000001, 0xd4200000, 0xd503203f, 0xd65f0bff, 0xd50342df,
            0xd53b4220, 0xd8000040, 0x5c000040,
        ] {
            assert!(
                matches!(handling(refused), Handling::Refused(_)),
                "{refused:#x}"
            );
        }
    }
}
