//! Where probes go in arm64 machine code: the Go stack check's `b.ls`,
//! the first instruction the kernel can probe, and every `ret` and tail
//! branch (see `crate::attach::placement` for why).
//!
//! gc's arm64 prologue loads `g.stackguard0` and compares the stack
//! pointer with it: small frames `ldr x16, [x28, #16]; cmp sp, x16; b.ls`
//! (entry+8), big frames `ldr x16, [x28, #16]; sub x17, sp, #N;
//! cmp x17, x16; b.ls` (entry+12). The `b.ls` jumps to a `bl
//! runtime.morestack` at the function's end, after which the function
//! starts over from its entry. Huge frames check for underflow with a
//! `b.lo` first; leaf functions have no check at all: both keep the probe
//! on the entry. Unlike x86-64, the kernel simulates every `ret` here, so
//! exit probes cost no single-step either.
//!
//! One arm64 rule comes from Go, not the kernel: the assembler expands a
//! load or store of a global (and big constants and offsets) into a
//! sequence through R27 (`adrp x27, ...; add x27, x27, #...; ldr x3,
//! [x27]`), and a goroutine preempted inside one resumes at its start
//! (`PCDATA_UnsafePoint` "restart"). A probe on the sequence's first
//! instruction is then hit twice for one pass (measured: 4-6 extra in
//! 10,000 loop passes under emulation), so probes go after it.

use gotrace_common::{arch::aarch64::regs, probe::Cookie};
use yaxpeax_arch::{Decoder as _, U8Reader};
use yaxpeax_arm::armv8::a64::{InstDecoder, Instruction, Opcode, Operand, SizeCode};

use super::uprobes::{self, Handling};
use crate::attach::placement::{
    walk_inlined_exits, Cost, Exit, Flow, Placement, Policy, RegisterSet, Step, Unprobeable,
    RESTARTED_SEQUENCE,
};

/// Offset of `g.stackguard0` in every Go version's `runtime.g`.
const STACKGUARD0_OFFSET: i32 = 0x10;

/// The register gc keeps g in.
const G_REGISTER: u16 = regs::X28 as u16;

/// `b.cond`'s condition code for LS (unsigned lower or same).
const CONDITION_LS: u8 = 9;

/// How many instructions a Go prologue takes to reach its stack check
/// (guard load, optional `sub` for big frames, `cmp`, `b.ls`).
const PROLOGUE_MAX_INSTRUCTIONS: usize = 4;

/// Every arm64 instruction is 4 bytes.
const INSTRUCTION: u64 = 4;

/// Go's assembler temporary (REGTMP), which compiled Go code uses only in
/// the sequences Go restarts after preemption.
const REGTMP: u16 = 27;

/// The longest such sequence (a 64-bit constant: four `mov`s, then its use).
const RESTART_SEQUENCE_MAX: usize = 5;

/// One decoded instruction and where it is.
struct Decoded {
    address: u64,
    word: u32,
    instruction: Instruction,
}

impl Decoded {
    fn flow(&self) -> Flow {
        let target = || {
            self.pc_offset()
                .map(|o| self.address.wrapping_add_signed(o))
        };
        match self.instruction.opcode {
            Opcode::BL => target().map_or(Flow::Next, Flow::Call),
            Opcode::Bcc(_) | Opcode::CBZ | Opcode::CBNZ | Opcode::TBZ | Opcode::TBNZ => {
                target().map_or(Flow::Stop, Flow::Conditional)
            }
            Opcode::B => target().map_or(Flow::Stop, Flow::Jump),
            Opcode::RET | Opcode::RETAA | Opcode::RETAB => Flow::Return,
            Opcode::BR | Opcode::BRAA | Opcode::BRAAZ | Opcode::BRAB | Opcode::BRABZ => {
                Flow::IndirectJump
            }
            Opcode::BRK
            | Opcode::UDF
            | Opcode::HLT
            | Opcode::ERET
            | Opcode::ERETAA
            | Opcode::ERETAB
            | Opcode::Invalid => Flow::Stop,
            _ => Flow::Next,
        }
    }

    fn pc_offset(&self) -> Option<i64> {
        self.instruction.operands.iter().find_map(|op| match *op {
            Operand::PCOffset(offset) => Some(offset),
            _ => None,
        })
    }

    fn next(&self) -> u64 {
        self.address + INSTRUCTION
    }
}

/// Decodes the instruction `word`; undefined encodings decode as
/// `Opcode::Invalid`.
fn decode_word(word: u32) -> Instruction {
    let bytes = word.to_le_bytes();
    InstDecoder::default()
        .decode(&mut U8Reader::new(&bytes))
        .unwrap_or_default()
}

/// Every whole instruction of `code`, loaded at `address`.
fn instructions(code: &[u8], address: u64) -> impl Iterator<Item = Decoded> + '_ {
    code.chunks_exact(INSTRUCTION as usize)
        .enumerate()
        .map(move |(i, bytes)| {
            let word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            Decoded {
                address: address + i as u64 * INSTRUCTION,
                word,
                instruction: decode_word(word),
            }
        })
}

/// Picks the entry probe of the function whose machine code is `code`,
/// loaded at `address`: the stack-check `b.ls` with `Policy::Cheapest`
/// where the prologue is gc's, else the first instruction (or the next,
/// if the kernel refuses the first and moving is exact).
pub fn entry(code: &[u8], address: u64, policy: Policy) -> Result<Placement, Unprobeable> {
    if code.is_empty() {
        return Ok(Placement::AT);
    }
    if policy == Policy::Cheapest {
        if let Some(branch) = stack_check(code, address) {
            return Ok(branch);
        }
    }
    site(code, address, address)
}

/// Places a probe meant for the instruction at `site` inside `code`
/// (loaded at `address`): there, unless the kernel refuses it; then on
/// the next instruction when every pass through `site` reaches it and
/// nothing else in `code` branches to it.
pub fn site(code: &[u8], address: u64, site: u64) -> Result<Placement, Unprobeable> {
    if !site.is_multiple_of(INSTRUCTION) {
        return Err(Unprobeable(
            "its address is not 4-byte aligned, which arm64 uprobes require".to_owned(),
        ));
    }
    let at = usize::try_from(site.wrapping_sub(address))
        .ok()
        .and_then(|offset| code.get(offset..))
        .filter(|rest| rest.len() >= INSTRUCTION as usize)
        .ok_or_else(|| Unprobeable("its code is not in the file".to_owned()))?;
    let mut here = instructions(at, site);
    let Some(first) = here.next() else {
        return Err(Unprobeable("its code is not in the file".to_owned()));
    };
    let what = match uprobes::handling(first.word) {
        Handling::Simulated | Handling::SingleStepped if uses_regtmp(&first.instruction) => {
            return Ok(past_restart_sequence(code, address, site).unwrap_or(Placement::AT));
        }
        Handling::Simulated | Handling::SingleStepped => return Ok(Placement::AT),
        Handling::Refused(what) => what,
    };
    let why = format!("it starts with {what}, which the kernel's uprobes refuse");
    let moved = first.flow() == Flow::Next
        && here.next().is_some_and(|next| {
            !matches!(uprobes::handling(next.word), Handling::Refused(_))
                && !jumped_into(code, address, next.address..=next.address)
        });
    if !moved {
        return Err(Unprobeable(format!(
            "{why}, and the next instruction is not reached only from it"
        )));
    }
    Ok(Placement {
        offset: INSTRUCTION,
        flags: 0,
        clobbered: written(&first.instruction),
        moved_past: Some(what),
    })
}

/// The probe for `site`, the first instruction of an R27 sequence, moved
/// to the instruction after the sequence, if every pass through the
/// sequence reaches it and nothing else does. `None` keeps it at `site`
/// (counting a preempted pass twice, rarely, rather than not at all).
fn past_restart_sequence(code: &[u8], address: u64, site: u64) -> Option<Placement> {
    let at = code.get(usize::try_from(site - address).ok()?..)?;
    let mut clobbered = RegisterSet::EMPTY;
    for (i, instruction) in instructions(at, site)
        .take(RESTART_SEQUENCE_MAX + 1)
        .enumerate()
    {
        if matches!(uprobes::handling(instruction.word), Handling::Refused(_)) {
            return None;
        }
        if !uses_regtmp(&instruction.instruction) {
            // One pass over the function for every branch into the rest
            // of the sequence or to the instruction after it.
            let entered = jumped_into(code, address, site + INSTRUCTION..=instruction.address);
            return (i > 0 && !entered).then_some(Placement {
                offset: instruction.address - site,
                flags: 0,
                clobbered,
                moved_past: Some(RESTARTED_SEQUENCE),
            });
        }
        if instruction.flow() != Flow::Next {
            return None;
        }
        clobbered.0 |= written(&instruction.instruction).0;
    }
    None
}

/// Whether `instruction` reads or writes R27.
fn uses_regtmp(instruction: &Instruction) -> bool {
    instruction.operands.iter().any(|operand| match *operand {
        Operand::Register(_, n)
        | Operand::RegisterOrSP(_, n)
        | Operand::RegisterPair(_, n)
        | Operand::RegShift(_, _, _, n)
        | Operand::RegPreIndex(n, _, _)
        | Operand::RegPostIndex(n, _) => n == REGTMP,
        Operand::RegRegOffset(a, b, ..) | Operand::RegPostIndexReg(a, b) => {
            a == REGTMP || b == REGTMP
        }
        _ => false,
    })
}

/// Whether any direct branch or call in `code` (loaded at `address`)
/// targets an address in `targets`.
fn jumped_into(code: &[u8], address: u64, targets: std::ops::RangeInclusive<u64>) -> bool {
    instructions(code, address).any(|i| {
        matches!(
            i.flow(),
            Flow::Call(t) | Flow::Conditional(t) | Flow::Jump(t) if targets.contains(&t)
        )
    })
}

/// The general-purpose registers `instruction` may write, as register
/// indexes: every register it names, and the base of a pre- or
/// post-indexed address. Over-approximate on purpose: a register wrongly
/// counted only makes trace refuse an argument, one missed would make it
/// print a wrong value.
fn written(instruction: &Instruction) -> RegisterSet {
    let mut set = RegisterSet::EMPTY;
    for operand in &instruction.operands {
        let register = match *operand {
            Operand::Register(_, n) if n < 31 => n,
            Operand::RegisterOrSP(_, n)
            | Operand::RegisterPair(_, n)
            | Operand::RegPreIndex(n, _, true)
            | Operand::RegPostIndex(n, _)
            | Operand::RegPostIndexReg(n, _) => n,
            _ => continue,
        };
        // Register 31 is SP where an operand can be SP.
        set.insert(if register == 31 {
            regs::SP
        } else {
            regs::X0 + u32::from(register)
        });
    }
    set
}

/// The stack-check `b.ls` of a gc prologue, if `code` starts with one.
fn stack_check(code: &[u8], address: u64) -> Option<Placement> {
    let end = address + code.len() as u64;
    let mut prologue = instructions(code, address).take(PROLOGUE_MAX_INSTRUCTIONS);
    let load = prologue.next()?;
    let guard = match load.instruction.operands {
        [Operand::Register(SizeCode::X, guard), Operand::RegPreIndex(G_REGISTER, STACKGUARD0_OFFSET, false), ..]
            if load.instruction.opcode == Opcode::LDR =>
        {
            guard
        }
        _ => return None,
    };
    let mut compared = false;
    for i in prologue {
        match i.instruction.opcode {
            Opcode::Bcc(CONDITION_LS) if compared => {
                let Flow::Conditional(target) = i.flow() else {
                    return None;
                };
                let inside = (address..end).contains(&target);
                return (inside && uprobes::handling(i.word) == Handling::Simulated).then(|| {
                    Placement {
                        offset: i.address - address,
                        flags: Cookie::FLAG_STACK_CHECK_BRANCH,
                        ..Placement::AT
                    }
                });
            }
            // `cmp` is `subs xzr, ...`: it must read the guard.
            Opcode::SUBS
                if i.instruction.operands.iter().any(|op| {
                    matches!(*op, Operand::Register(SizeCode::X, r)
                        | Operand::RegShift(_, 0, SizeCode::X, r) if r == guard)
                }) =>
            {
                compared = true;
            }
            // The frame's lowest address, for big frames.
            Opcode::SUB if !compared => {}
            _ => return None,
        }
    }
    None
}

/// What a hit of a probe on the instruction at the start of `code` costs.
pub fn cost(code: &[u8]) -> Cost {
    match uprobes::word(code).map(uprobes::handling) {
        Some(Handling::Simulated) => Cost::Emulated,
        _ => Cost::SingleStepped,
    }
}

/// Every `ret` and every `b` out of the function.
pub fn exits(code: &[u8], address: u64) -> Vec<Exit> {
    let end = address + code.len() as u64;
    instructions(code, address)
        .filter_map(|i| {
            let tail_call = match i.flow() {
                Flow::Return => false,
                Flow::Jump(target) if !(address..end).contains(&target) => true,
                _ => return None,
            };
            Some(Exit {
                address: i.address,
                tail_call,
            })
        })
        .collect()
}

/// Where a call inlined into the function `code` (at `address`) ends, its
/// copy's code being `body` and its first instruction `entry`: arm64 code
/// decoded for `walk_inlined_exits`, its ends placed by `site`.
pub fn inlined_exits(
    code: &[u8],
    address: u64,
    body: &[(u64, u64)],
    entry: u64,
    no_return: &dyn Fn(u64) -> bool,
) -> Result<Vec<Exit>, Unprobeable> {
    let steps = instructions(code, address)
        .map(|i| {
            let step = Step {
                flow: i.flow(),
                next: i.next(),
            };
            (i.address, step)
        })
        .collect();
    let function = address..address + code.len() as u64;
    walk_inlined_exits(&steps, function, body, entry, no_return, &|pc| {
        site(code, address, pc)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0xa4f70;

    fn code(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    fn on_branch(offset: u64) -> Placement {
        Placement {
            offset,
            flags: Cookie::FLAG_STACK_CHECK_BRANCH,
            ..Placement::AT
        }
    }

    /// Go 1.27's `main.work` of tests/fixtures/counter (llvm-objdump):
    /// ldr x16, [x28, #0x10]; cmp sp, x16; b.ls +0x2c; str x30, [sp,
    /// #-0x20]!; stur x29, [sp, #-8]; sub x29, sp, #8; str x0, [sp,
    /// #0x28]; bl leaf; ldr x1, [sp, #0x28]; add x0, x0, x1; ldur x29,
    /// [sp, #-8]; ldr x30, [sp], #0x20; ret; str x0, [sp, #8]; mov x3,
    /// x30; bl morestack; ldr x0, [sp, #8]; b main.work.
    const WORK: [u32; 18] = [
        0xf9400b90, 0xeb3063ff, 0x54000169, 0xf81e0ffe, 0xf81f83fd, 0xd10023fd, 0xf90017e0,
        0x97fffff5, 0xf94017e1, 0x8b010000, 0xf85f83fd, 0xf84207fe, 0xd65f03c0, 0xf90007e0,
        0xaa1e03e3, 0x97ff8c95, 0xf94007e0, 0x17ffffef,
    ];

    #[test]
    fn small_frame_probes_the_branch() {
        let work = code(&WORK);
        assert_eq!(entry(&work, BASE, Policy::Cheapest), Ok(on_branch(8)));
        assert_eq!(entry(&work, BASE, Policy::Entry), Ok(Placement::AT));
    }

    #[test]
    fn big_frame_probes_the_branch() {
        // main.grow: ldr x16, [x28, #0x10]; sub x17, sp, #0x1a0; cmp x17,
        // x16; b.ls +0x9c; then padding up to the branch's target.
        let mut words = vec![0xf9400b90, 0xd10683f1, 0xeb10023f, 0x540004e9];
        words.resize(0x30, 0xd503201f);
        assert_eq!(
            entry(&code(&words), BASE, Policy::Cheapest),
            Ok(on_branch(12))
        );
    }

    #[test]
    fn branch_leaving_the_function_or_other_checks_keep_the_entry() {
        // b.ls beyond the end of the code.
        assert_eq!(
            entry(&code(&WORK[..4]), BASE, Policy::Cheapest),
            Ok(Placement::AT)
        );
        // The guard loaded from another offset of g (stackguard1).
        let mut other = WORK;
        other[0] = 0xf9400f90;
        assert_eq!(
            entry(&code(&other), BASE, Policy::Cheapest),
            Ok(Placement::AT)
        );
        // A huge frame's underflow check (b.lo) comes first.
        let mut huge = WORK;
        huge[2] = 0x54000163;
        assert_eq!(
            entry(&code(&huge), BASE, Policy::Cheapest),
            Ok(Placement::AT)
        );
        // A leaf: neg x1, x0; ...; ret.
        let leaf = code(&[0xcb0003e1, 0x8b000c21, 0x91000420, 0xd65f03c0]);
        assert_eq!(entry(&leaf, BASE, Policy::Cheapest), Ok(Placement::AT));
        assert_eq!(entry(&[], BASE, Policy::Cheapest), Ok(Placement::AT));
    }

    #[test]
    fn exits_are_the_ret_and_tail_branches() {
        let work = code(&WORK);
        assert_eq!(
            exits(&work, BASE),
            vec![Exit {
                address: BASE + 12 * 4,
                tail_call: false
            }]
        );
        // add x0, x0, #1; b elsewhere (a tail call).
        let tail = code(&[0x91000400, 0x14000100]);
        assert_eq!(
            exits(&tail, BASE),
            vec![Exit {
                address: BASE + 4,
                tail_call: true
            }]
        );
        assert_eq!(cost(&work[12 * 4..]), Cost::Emulated);
        assert_eq!(cost(&work), Cost::SingleStepped);
        assert_eq!(cost(&work[8..]), Cost::Emulated);
    }

    #[test]
    fn refused_entries_move_when_exact() {
        // ldaxr x1, [x0]; add x1, x1, #1; ret.
        let exclusive = code(&[0xc85ffc01, 0x91000421, 0xd65f03c0]);
        let placed = entry(&exclusive, BASE, Policy::Cheapest).unwrap();
        assert_eq!(placed.offset, 4);
        assert!(placed.clobbered.contains(regs::X0 + 1));
        assert!(placed.moved_past.is_some());
        // ...but not onto a loop head: ldaxr x1, [x0]; cbnz x1, back to the
        // second instruction; ret.
        let looping = code(&[0xc85ffc01, 0xd503201f, 0xb5ffffe1, 0xd65f03c0]);
        assert!(entry(&looping, BASE, Policy::Cheapest).is_err());
        // Nor past a refused branch, nor at an unaligned site.
        assert!(entry(&code(&[0xd65f0bff, 0xd65f03c0]), BASE, Policy::Cheapest).is_err());
        assert!(site(&code(&WORK), BASE, BASE + 2).is_err());
    }

    /// Go 1.19's main.work of tests/fixtures/inlined, at its inlined
    /// main.scale: `adrp x27; add x27, x27, #0x48; ldr x3, [x27]` loads
    /// main.sink, then `add x3, x3, x1`.
    #[test]
    fn probes_go_after_sequences_go_restarts() {
        let words = [0xf000073b, 0x9101237b, 0xf9400363, 0x8b010063, 0xd65f03c0];
        let placed = site(&code(&words), BASE, BASE).unwrap();
        assert_eq!(placed.offset, 12);
        assert_eq!(placed.moved_past, Some(RESTARTED_SEQUENCE));
        assert!(placed.clobbered.contains(regs::X0 + 27));
        assert!(placed.clobbered.contains(regs::X0 + 3));
        assert!(!placed.clobbered.contains(regs::X0 + 1));
        // Not when the instruction after it is also reached by a branch:
        // then the probe stays on the sequence.
        let mut looping = words.to_vec();
        looping.push(0x17fffffe); // b to the `add x3`.
        assert_eq!(site(&code(&looping), BASE, BASE), Ok(Placement::AT));
    }

    #[test]
    fn inlined_copy_ends_where_control_leaves_it() {
        // 0: cmp x0, #0; 4: b.eq 12; 8: add x0, x0, #1; 12: mov x1, x0;
        // 16: ret. The copy is 0..12: it ends at 12, from both paths.
        let words = [0xf100001f, 0x54000040, 0x91000400, 0xaa0003e1, 0xd65f03c0];
        let exits =
            inlined_exits(&code(&words), BASE, &[(BASE, BASE + 12)], BASE, &|_| false).unwrap();
        assert_eq!(
            exits,
            vec![Exit {
                address: BASE + 12,
                tail_call: false
            }]
        );
    }
}
