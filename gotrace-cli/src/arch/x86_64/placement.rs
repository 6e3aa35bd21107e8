//! Where probes go in x86-64 machine code: the Go stack check's `JBE`,
//! the first instruction the kernel can probe, and every `ret` and tail
//! jump (see `crate::attach::placement` for why).
//!
//! Where the `JBE` sits depends on the frame: small frames
//! `CMP RSP, [R14+0x10]; JBE` (entry+4), big frames `LEA R12, [RSP-N];
//! CMP R12, [R14+0x10]; JBE` (entry+12), ABI0 assembly loads g from TLS
//! first; leaf functions have no check at all.

use gotrace_common::{arch::x86_64::regs, probe::Cookie};
use iced_x86::{
    Code, ConditionCode, Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory,
    OpAccess, OpKind, Register,
};

use super::uprobes::{self, Handling};
use crate::attach::placement::{
    walk_inlined_exits, Cost, Exit, Flow, Placement, Policy, RegisterSet, Step, Unprobeable,
};

/// Offset of `g.stackguard0` in every Go version's `runtime.g`.
const STACKGUARD0_OFFSET: u64 = 0x10;

/// How many instructions a Go prologue takes to reach its stack check
/// (TLS load, optional `LEA` for big frames, `CMP`, `JBE`).
const PROLOGUE_MAX_INSTRUCTIONS: usize = 4;

/// Bytes read for one instruction (x86's longest is 15).
const MAX_INSTRUCTION: usize = 15;

/// Picks the entry probe of the function whose machine code is `code`,
/// loaded at `address`. Anything that is not a recognised Go stack check
/// keeps the probe on the first instruction, which is always correct,
/// unless the kernel refuses or misruns that instruction: then the probe
/// moves past it where that is exact, else the function is refused.
pub fn entry(code: &[u8], address: u64, policy: Policy) -> Result<Placement, Unprobeable> {
    // Code of unknown size: the entry is all there is to go on.
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
/// (loaded at `address`): there, if the kernel runs it faithfully, else
/// on the next instruction when every pass through `site` reaches it and
/// nothing else in `code` jumps to it (so it counts exactly the same).
pub fn site(code: &[u8], address: u64, site: u64) -> Result<Placement, Unprobeable> {
    let at = usize::try_from(site.wrapping_sub(address))
        .ok()
        .and_then(|offset| code.get(offset..))
        .filter(|rest| !rest.is_empty())
        .ok_or_else(|| Unprobeable("its code is not in the file".to_owned()))?;
    let (what, why) = match uprobes::handling(at) {
        Handling::Emulated | Handling::SingleStepped => return Ok(Placement::AT),
        Handling::Refused(refusal) => (
            refusal.describe(),
            format!(
                "it starts with {}, which the kernel's uprobes refuse",
                refusal.describe()
            ),
        ),
        // Only the 64-bit exchange can be undone after the fact.
        Handling::Misemulated if uprobes::is_xchg_rax_r8(at) => {
            ("`xchg rax, r8`", XCHG_R8.to_owned())
        }
        Handling::Misemulated => return Err(Unprobeable(XCHG_R8.to_owned())),
    };
    let mut decoder = Decoder::with_ip(64, at, site, DecoderOptions::NONE);
    let first = decoder.decode();
    let next = site + first.len() as u64;
    let next_code = &at[first.len()..];
    let moved = first.flow_control() == FlowControl::Next
        && !first.is_invalid()
        && !next_code.is_empty()
        && matches!(
            uprobes::handling(next_code),
            Handling::Emulated | Handling::SingleStepped
        )
        && !jumped_to(code, address, next);
    if !moved {
        return Err(Unprobeable(format!(
            "{why}, and the next instruction is not reached only from it"
        )));
    }
    let xchg = uprobes::is_xchg_rax_r8(at);
    Ok(Placement {
        offset: first.len() as u64,
        flags: if xchg {
            Cookie::FLAG_AFTER_XCHG_RAX_R8
        } else {
            0
        },
        // The kernel program swaps RAX and R8 back after the exchange.
        clobbered: if xchg {
            RegisterSet::EMPTY
        } else {
            written(&first)
        },
        moved_past: Some(what),
    })
}

const XCHG_R8: &str = "it starts with `xchg rax, r8`, which the kernel's uprobe code runs as a \
     nop (Linux bug), so a probe there would corrupt the program";

/// Whether any direct branch or call in `code` (loaded at `address`)
/// targets `target`. Indirect jumps (Go's jump tables) go to `case` heads,
/// which never follow a refused instruction inside a basic block.
fn jumped_to(code: &[u8], address: u64, target: u64) -> bool {
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        let branches = matches!(
            instruction.flow_control(),
            FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch | FlowControl::Call
        );
        if branches && instruction.near_branch_target() == target {
            return true;
        }
    }
    false
}

/// The general-purpose registers `instruction` writes, as register indexes.
fn written(instruction: &Instruction) -> RegisterSet {
    let mut factory = InstructionInfoFactory::new();
    let mut set = RegisterSet::EMPTY;
    for used in factory.info(instruction).used_registers() {
        let writes = matches!(
            used.access(),
            OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
        );
        if let (true, Some(index)) = (writes, register_index(used.register().full_register())) {
            set.insert(index);
        }
    }
    set
}

/// The `gotrace_common::trace::regs` index of a 64-bit general register.
pub fn register_index(register: Register) -> Option<u32> {
    Some(match register {
        Register::RAX => regs::RAX,
        Register::RBX => regs::RBX,
        Register::RCX => regs::RCX,
        Register::RDX => regs::RDX,
        Register::RSI => regs::RSI,
        Register::RDI => regs::RDI,
        Register::RBP => regs::RBP,
        Register::RSP => regs::RSP,
        Register::R8 => regs::R8,
        Register::R9 => regs::R9,
        Register::R10 => regs::R10,
        Register::R11 => regs::R11,
        Register::R12 => regs::R12,
        Register::R13 => regs::R13,
        Register::R14 => regs::R14,
        Register::R15 => regs::R15,
        _ => return None,
    })
}

/// The `JBE` of a recognised Go stack check, if the prologue has one.
fn stack_check(code: &[u8], address: u64) -> Option<Placement> {
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    // Register ABI functions find g in R14; ABI0 and pre-1.17 functions load
    // it from TLS (`MOV reg, FS:[-8]`) first.
    let mut g_register = Register::R14;
    let mut instruction = Instruction::default();
    let mut previous_was_stack_check = false;
    for _ in 0..PROLOGUE_MAX_INSTRUCTIONS {
        if !decoder.can_decode() {
            break;
        }
        decoder.decode_out(&mut instruction);
        if instruction.is_invalid() {
            break;
        }
        if previous_was_stack_check {
            let target = instruction.near_branch_target();
            let is_jbe = instruction.is_jcc_short_or_near()
                && instruction.condition_code() == ConditionCode::be;
            let end = address + code.len() as u64;
            let offset = instruction.ip() - address;
            let emulated = code
                .get(offset as usize..)
                .is_some_and(|at| uprobes::handling(at) == Handling::Emulated);
            if is_jbe && emulated && (address..end).contains(&target) {
                return Some(Placement {
                    offset,
                    flags: Cookie::FLAG_STACK_CHECK_BRANCH,
                    ..Placement::AT
                });
            }
            break;
        }
        if is_tls_load(&instruction) {
            g_register = instruction.op0_register();
        } else if is_stack_guard_compare(&instruction, g_register) {
            previous_was_stack_check = true;
        } else if !is_frame_address(&instruction) {
            break;
        }
    }
    None
}

/// What a hit of a probe on the instruction at the start of `code` costs.
/// Measured on 6.18: a `push rbp` entry 0.7 us a hit, a `lea` entry 9.5 us.
pub fn cost(code: &[u8]) -> Cost {
    match uprobes::handling(&code[..code.len().min(MAX_INSTRUCTION)]) {
        Handling::Emulated | Handling::Misemulated => Cost::Emulated,
        Handling::SingleStepped | Handling::Refused(_) => Cost::SingleStepped,
    }
}

/// Where a call of the function whose machine code is `code` (loaded at
/// `address`) ends: every `ret`, and every direct `jmp` that leaves the
/// function (a tail call). Go's stack copier rejects the return addresses
/// uretprobes plant, so returns are caught by probes on these instructions
/// instead. Indirect jumps are jump tables within the function. Decoding
/// stops at the first invalid instruction, which cannot be reached.
pub fn exits(code: &[u8], address: u64) -> Vec<Exit> {
    let end = address + code.len() as u64;
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    let mut exits = Vec::new();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        if instruction.is_invalid() {
            break;
        }
        let tail_call = match instruction.flow_control() {
            FlowControl::Return => false,
            FlowControl::UnconditionalBranch
                if !(address..end).contains(&instruction.near_branch_target()) =>
            {
                true
            }
            _ => continue,
        };
        exits.push(Exit {
            address: instruction.ip(),
            tail_call,
        });
    }
    exits
}

/// Where a call inlined into the function whose machine code is `code`
/// (loaded at `address`) ends, the copy's code being `body` (sorted
/// ranges) and its first instruction `entry`: x86-64 code decoded for
/// `walk_inlined_exits`, its ends placed by the kernel's rules (`site`).
pub fn inlined_exits(
    code: &[u8],
    address: u64,
    body: &[(u64, u64)],
    entry: u64,
    no_return: &dyn Fn(u64) -> bool,
) -> Result<Vec<Exit>, Unprobeable> {
    // The function's instructions by address (Go keeps no data in text).
    let mut steps = std::collections::BTreeMap::new();
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    while decoder.can_decode() {
        let instruction = decoder.decode();
        if instruction.is_invalid() {
            break;
        }
        let step = Step {
            flow: flow(&instruction),
            next: instruction.next_ip(),
        };
        steps.insert(instruction.ip(), step);
    }
    let function = address..address + code.len() as u64;
    walk_inlined_exits(&steps, function, body, entry, no_return, &|pc| {
        site(code, address, pc)
    })
}

/// How control leaves `instruction`.
fn flow(instruction: &Instruction) -> Flow {
    let target = instruction.near_branch_target();
    match instruction.flow_control() {
        FlowControl::Next | FlowControl::IndirectCall => Flow::Next,
        FlowControl::Call => Flow::Call(target),
        FlowControl::ConditionalBranch => Flow::Conditional(target),
        FlowControl::UnconditionalBranch => Flow::Jump(target),
        FlowControl::Return => Flow::Return,
        FlowControl::IndirectBranch => Flow::IndirectJump,
        // int3, ud2, ...
        _ => Flow::Stop,
    }
}

/// `MOV reg, FS:[disp]`: the g of ABI0 and pre-register-ABI functions.
fn is_tls_load(i: &Instruction) -> bool {
    i.code() == Code::Mov_r64_rm64
        && i.op1_kind() == OpKind::Memory
        && i.segment_prefix() == Register::FS
}

/// `CMP reg, [g+0x10]`: compares SP (or SP-framesize) with g.stackguard0.
fn is_stack_guard_compare(i: &Instruction, g: Register) -> bool {
    i.code() == Code::Cmp_r64_rm64
        && i.op1_kind() == OpKind::Memory
        && i.memory_base() == g
        && i.memory_index() == Register::None
        && i.memory_displacement64() == STACKGUARD0_OFFSET
}

/// `LEA reg, [RSP-framesize]`, which big frames compute before the compare.
fn is_frame_address(i: &Instruction) -> bool {
    i.code() == Code::Lea_r64_m && i.memory_base() == Register::RSP
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x401000;

    fn placed(offset: u64, flags: u32) -> Placement {
        Placement {
            offset,
            flags,
            ..Placement::AT
        }
    }

    #[test]
    fn small_frame_register_abi() {
        // cmp rsp,[r14+0x10]; jbe +0x20; push rbp
        let code = [0x49, 0x3b, 0x66, 0x10, 0x76, 0x20, 0x55];
        let mut padded = code.to_vec();
        padded.resize(0x40, 0xcc);
        assert_eq!(
            entry(&padded, BASE, Policy::Cheapest),
            Ok(placed(4, Cookie::FLAG_STACK_CHECK_BRANCH))
        );
    }

    #[test]
    fn big_frame_register_abi() {
        // lea r12,[rsp-0x480]; cmp r12,[r14+0x10]; jbe near +0x100
        let mut code = vec![0x4c, 0x8d, 0xa4, 0x24, 0x80, 0xfb, 0xff, 0xff];
        code.extend([0x4d, 0x3b, 0x66, 0x10]);
        code.extend([0x0f, 0x86, 0x00, 0x01, 0x00, 0x00]);
        code.resize(0x200, 0xcc);
        assert_eq!(
            entry(&code, BASE, Policy::Cheapest),
            Ok(placed(12, Cookie::FLAG_STACK_CHECK_BRANCH))
        );
    }

    #[test]
    fn abi0_loads_g_from_tls() {
        // mov rcx,fs:[-8]; cmp rsp,[rcx+0x10]; jbe +0x20
        let mut code = vec![0x64, 0x48, 0x8b, 0x0c, 0x25, 0xf8, 0xff, 0xff, 0xff];
        code.extend([0x48, 0x3b, 0x61, 0x10, 0x76, 0x20]);
        code.resize(0x40, 0xcc);
        assert_eq!(
            entry(&code, BASE, Policy::Cheapest),
            Ok(placed(13, Cookie::FLAG_STACK_CHECK_BRANCH))
        );
        // The TLS load itself (fs override) is a fine entry probe.
        assert_eq!(entry(&code, BASE, Policy::Entry), Ok(Placement::AT));
    }

    #[test]
    fn entry_policy_skips_the_branch() {
        let mut code = vec![0x49, 0x3b, 0x66, 0x10, 0x76, 0x20, 0x55];
        code.resize(0x40, 0xcc);
        assert_eq!(entry(&code, BASE, Policy::Entry), Ok(Placement::AT));
    }

    #[test]
    fn leaf_without_check_keeps_entry() {
        // lea rax,[rbx+rax]; ret  (main.add)
        let code = [0x48, 0x8d, 0x04, 0x03, 0xc3];
        assert_eq!(entry(&code, BASE, Policy::Cheapest), Ok(Placement::AT));
    }

    #[test]
    fn branch_leaving_the_function_keeps_entry() {
        // A JBE whose target lies outside the function is not Go's morestack call.
        let code = [0x49, 0x3b, 0x66, 0x10, 0x76, 0x7f, 0x55, 0xc3];
        assert_eq!(entry(&code, BASE, Policy::Cheapest), Ok(Placement::AT));
    }

    #[test]
    fn other_compare_keeps_entry() {
        // cmp rsp,[r14+0x18]; jbe: not stackguard0
        let mut code = vec![0x49, 0x3b, 0x66, 0x18, 0x76, 0x20];
        code.resize(0x40, 0xcc);
        assert_eq!(entry(&code, BASE, Policy::Cheapest), Ok(Placement::AT));
        // Truncated code never panics.
        assert_eq!(entry(&code[..5], BASE, Policy::Cheapest), Ok(Placement::AT));
        assert_eq!(entry(&[], BASE, Policy::Cheapest), Ok(Placement::AT));
    }

    #[test]
    fn xchg_rax_r8_entry_moves_past_it() {
        // Go 1.19 runtime.gcWriteBarrierR8: xchg rax,r8; call rel32; xchg rax,r8; ret
        let code = [0x49, 0x90, 0xe8, 0, 0, 0, 0, 0x49, 0x90, 0xc3];
        assert_eq!(
            entry(&code, BASE, Policy::Cheapest),
            Ok(Placement {
                offset: 2,
                flags: Cookie::FLAG_AFTER_XCHG_RAX_R8,
                clobbered: RegisterSet::EMPTY,
                moved_past: Some("`xchg rax, r8`"),
            })
        );
    }

    #[test]
    fn xchg_rax_r8_entry_refused_when_moving_is_not_exact() {
        // The second instruction is a loop head: a probe there would count the loop.
        let looping = [0x49, 0x90, 0x48, 0xff, 0xc8, 0x75, 0xfb, 0xc3];
        assert!(entry(&looping, BASE, Policy::Cheapest).is_err());
        // The 32-bit form loses RAX's upper half: nothing to swap back.
        assert!(entry(&[0x41, 0x90, 0xc3], BASE, Policy::Cheapest).is_err());
        // Followed by another one.
        assert!(entry(&[0x49, 0x90, 0x49, 0x90, 0xc3], BASE, Policy::Cheapest).is_err());
        assert!(entry(&[0x49, 0x90], BASE, Policy::Cheapest).is_err());
    }

    #[test]
    fn refused_entries_move_to_the_next_instruction() {
        // Go 1.19 main.casOnce: lock cmpxchg [rbx],rcx; sete al; ret
        let code = [0xf0, 0x48, 0x0f, 0xb1, 0x0b, 0x0f, 0x94, 0xc0, 0xc3];
        let placement = entry(&code, BASE, Policy::Cheapest).unwrap();
        assert_eq!(placement.offset, 5);
        assert_eq!(placement.flags, 0);
        assert_eq!(placement.moved_past, Some("a `lock`-prefixed instruction"));
        // cmpxchg writes RAX (the old value) but not its operands.
        assert!(placement.clobbered.contains(regs::RAX));
        assert!(!placement.clobbered.contains(regs::RBX));
        assert!(!placement.clobbered.contains(regs::RCX));
        // runtime/internal/atomic.(*Uint8).And: lock and [rax],bl; ret
        let and = entry(&[0xf0, 0x20, 0x18, 0xc3], BASE, Policy::Cheapest).unwrap();
        assert_eq!((and.offset, and.clobbered), (3, RegisterSet::EMPTY));
    }

    #[test]
    fn refused_entries_that_cannot_move() {
        // runtime.abort: int3; jmp self. int3 does not fall through.
        let abort = entry(&[0xcc, 0xeb, 0xfe], BASE, Policy::Cheapest).unwrap_err();
        assert!(abort.0.contains("`int3`"), "{abort}");
        // lock inc [rax]; then a loop back to right after it.
        let looping = [0xf0, 0xff, 0x00, 0x48, 0xff, 0xc9, 0x75, 0xfb, 0xc3];
        assert!(entry(&looping, BASE, Policy::Cheapest).is_err());
        // Nothing after it.
        assert!(entry(&[0xf0, 0xff, 0x00], BASE, Policy::Cheapest).is_err());
    }

    #[test]
    fn inlined_sites_move_within_their_function() {
        // nop; lock cmpxchg [rbx],rcx; sete al; ret  (Go 1.27 casOnce with
        // main.swap inlined at +1)
        let code = [0x90, 0xf0, 0x48, 0x0f, 0xb1, 0x0b, 0x0f, 0x94, 0xc0, 0xc3];
        assert_eq!(site(&code, BASE, BASE).unwrap(), Placement::AT);
        let moved = site(&code, BASE, BASE + 1).unwrap();
        assert_eq!(moved.offset, 5);
        // Outside the code: no probe.
        assert!(site(&code, BASE, BASE + 0x100).is_err());
        assert!(site(&code, BASE, BASE - 1).is_err());
    }

    #[test]
    fn inlined_copies_end_where_control_leaves_them() {
        let mut code = vec![0xb8, 1, 0, 0, 0]; // +00 mov eax,1 (parent)
        code.extend([0x48, 0x85, 0xdb]); //       +05 test rbx,rbx (the copy)
        code.extend([0x74, 0x05]); //             +08 je +0f (inside)
        code.extend([0x83, 0xc0, 0x02]); //       +0a add eax,2
        code.extend([0xeb, 0x06]); //             +0d jmp +15 (out)
        code.extend([0xe8, 0, 0, 0, 0]); //       +0f call, returns to +14 (out)
        code.push(0x90); //                       +14 nop (parent)
        code.extend([0x48, 0x89, 0xc1]); //       +15 mov rcx,rax
        code.push(0xc3); //                       +18 ret
        let body = [(BASE + 5, BASE + 0x14)];
        let exits = inlined_exits(&code, BASE, &body, BASE + 5, &|_| false).unwrap();
        let offsets: Vec<u64> = exits.iter().map(|e| e.address - BASE).collect();
        assert_eq!(offsets, [0x14, 0x15]);
    }

    #[test]
    fn inlined_copies_the_function_returns_from() {
        // test rbx,rbx; ret: the function returns from inside the copy.
        let code = [0x48, 0x85, 0xdb, 0xc3, 0x90];
        let exits = inlined_exits(&code, BASE, &[(BASE, BASE + 4)], BASE, &|_| false).unwrap();
        assert_eq!(
            exits,
            [Exit {
                address: BASE + 3,
                tail_call: false
            }]
        );
    }

    #[test]
    fn code_after_a_panic_is_not_a_way_out() {
        // +0 test rax,rax; +3 jl +0a; +5 add rax,1; +9 nop (out);
        // +0a call gopanic (+0f); +0f nop; +10 ret   (after the panic,
        // reached only by a recover: not an end of the copy)
        let mut code = vec![0x48, 0x85, 0xc0, 0x7c, 0x05, 0x48, 0x83, 0xc0, 0x01, 0x90];
        code.extend([0xe8, 0x00, 0x00, 0x00, 0x00, 0x90, 0xc3]);
        let body = [(BASE, BASE + 9), (BASE + 0x0a, BASE + 0x11)];
        let panics = |target: u64| target == BASE + 0x0f;
        let exits = inlined_exits(&code, BASE, &body, BASE, &panics).unwrap();
        assert_eq!(
            exits.iter().map(|e| e.address - BASE).collect::<Vec<_>>(),
            [9]
        );
        // Without knowing that the call does not return, the ret counts.
        let exits = inlined_exits(&code, BASE, &body, BASE, &|_| false).unwrap();
        assert_eq!(exits.len(), 2);
    }

    #[test]
    fn inlined_copies_that_cannot_be_timed() {
        // A jump table inside the copy.
        let code = [0x48, 0x85, 0xdb, 0xff, 0xe0, 0x90];
        assert!(inlined_exits(&code, BASE, &[(BASE, BASE + 5)], BASE, &|_| false).is_err());
        // A loop back to its first instruction: dec rcx; jne -5.
        let code = [0x48, 0xff, 0xc9, 0x75, 0xfb, 0x90];
        assert!(inlined_exits(&code, BASE, &[(BASE, BASE + 5)], BASE, &|_| false).is_err());
    }

    #[test]
    fn costs() {
        assert_eq!(cost(&[0x55]), Cost::Emulated); // push rbp
        assert_eq!(cost(&[0x76, 0x20]), Cost::Emulated); // jbe
        assert_eq!(cost(&[0x48, 0x8d, 0x04, 0x03]), Cost::SingleStepped); // lea
        assert_eq!(cost(&[0xc3]), Cost::SingleStepped); // ret
        assert_eq!(cost(&[]), Cost::SingleStepped);
    }

    #[test]
    fn exits_are_rets_and_tail_jumps() {
        // cmp rsp,[r14+0x10]; jbe +5; ret; jmp +0x40 (out); call rel; jmp -0x10 (in); int3
        let mut code = vec![0x49, 0x3b, 0x66, 0x10, 0x76, 0x05];
        code.push(0xc3); // ret at +6
        code.extend([0xeb, 0x40]); // jmp out at +7
        code.extend([0xe8, 0, 0, 0, 0]); // call at +9
        code.extend([0xeb, 0xf0]); // jmp back inside at +14
        code.extend([0xf3, 0xc3]); // rep ret at +16
        code.push(0xcc);
        assert_eq!(
            exits(&code, BASE),
            [
                Exit {
                    address: BASE + 6,
                    tail_call: false
                },
                Exit {
                    address: BASE + 7,
                    tail_call: true
                },
                Exit {
                    address: BASE + 16,
                    tail_call: false
                },
            ]
        );
        assert_eq!(exits(&[], BASE), Vec::<Exit>::new());
    }
}
