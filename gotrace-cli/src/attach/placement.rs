//! Where in a function its entry probe goes.
//!
//! A uprobe on most instructions costs a single-step in the kernel (~14 us
//! per hit measured on this project's VMs); on a conditional branch the
//! kernel emulates it instead (~0.4 us). Go functions with a frame begin with
//! a stack-bound check whose `JBE` jumps to `runtime.morestack`, after which
//! the function starts over from its entry. Probing that `JBE`, and counting
//! only when it will not jump (see `gotrace_common::probe::Cookie`), is
//! both cheaper than the entry and exact: a call that grows its stack, or is
//! preempted through the same path, is counted once instead of twice.

use gotrace_common::probe::Cookie;
use iced_x86::{
    Code, ConditionCode, Decoder, DecoderOptions, FlowControl, Instruction, OpKind, Register,
};

/// Offset of `g.stackguard0` in every Go version's `runtime.g`.
const STACKGUARD0_OFFSET: u64 = 0x10;

/// How many instructions a Go prologue takes to reach its stack check
/// (TLS load, optional `LEA` for big frames, `CMP`, `JBE`).
const PROLOGUE_MAX_INSTRUCTIONS: usize = 4;

/// Where to put the entry probe of one function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Bytes from the function's first instruction.
    pub offset: u64,
    /// `Cookie::FLAG_*` bits the kernel program must honour at that offset.
    pub flags: u32,
}

impl Placement {
    const ENTRY: Placement = Placement {
        offset: 0,
        flags: 0,
    };
}

/// Picks the entry probe site of the function whose machine code is `code`,
/// loaded at `address`. Anything that is not a recognised Go stack check
/// keeps the probe on the first instruction, which is always correct.
pub fn entry(code: &[u8], address: u64) -> Placement {
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
            if is_jbe && (address..end).contains(&target) {
                return Placement {
                    offset: instruction.ip() - address,
                    flags: Cookie::FLAG_STACK_CHECK_BRANCH,
                };
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
    Placement::ENTRY
}

/// Where a call of the function whose machine code is `code` (loaded at
/// `address`) ends: every `ret`, and every direct `jmp` that leaves the
/// function (a tail call). Go's stack copier rejects the return addresses
/// uretprobes plant, so returns are caught by probes on these instructions
/// instead. Indirect jumps are jump tables within the function. Decoding
/// stops at the first invalid instruction, which cannot be reached.
pub fn exits(code: &[u8], address: u64) -> Vec<u64> {
    let end = address + code.len() as u64;
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    let mut exits = Vec::new();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        if instruction.is_invalid() {
            break;
        }
        let leaves = match instruction.flow_control() {
            FlowControl::Return => true,
            FlowControl::UnconditionalBranch => {
                !(address..end).contains(&instruction.near_branch_target())
            }
            _ => false,
        };
        if leaves {
            exits.push(instruction.ip());
        }
    }
    exits
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

    #[test]
    fn small_frame_register_abi() {
        // cmp rsp,[r14+0x10]; jbe +0x20; push rbp
        let code = [0x49, 0x3b, 0x66, 0x10, 0x76, 0x20, 0x55];
        let mut padded = code.to_vec();
        padded.resize(0x40, 0xcc);
        assert_eq!(
            entry(&padded, BASE),
            Placement {
                offset: 4,
                flags: Cookie::FLAG_STACK_CHECK_BRANCH
            }
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
            entry(&code, BASE),
            Placement {
                offset: 12,
                flags: Cookie::FLAG_STACK_CHECK_BRANCH
            }
        );
    }

    #[test]
    fn abi0_loads_g_from_tls() {
        // mov rcx,fs:[-8]; cmp rsp,[rcx+0x10]; jbe +0x20
        let mut code = vec![0x64, 0x48, 0x8b, 0x0c, 0x25, 0xf8, 0xff, 0xff, 0xff];
        code.extend([0x48, 0x3b, 0x61, 0x10, 0x76, 0x20]);
        code.resize(0x40, 0xcc);
        assert_eq!(
            entry(&code, BASE),
            Placement {
                offset: 13,
                flags: Cookie::FLAG_STACK_CHECK_BRANCH
            }
        );
    }

    #[test]
    fn leaf_without_check_keeps_entry() {
        // lea rax,[rbx+rax]; ret  (main.add)
        let code = [0x48, 0x8d, 0x04, 0x03, 0xc3];
        assert_eq!(entry(&code, BASE), Placement::ENTRY);
    }

    #[test]
    fn branch_leaving_the_function_keeps_entry() {
        // A JBE whose target lies outside the function is not Go's morestack call.
        let code = [0x49, 0x3b, 0x66, 0x10, 0x76, 0x7f, 0x55, 0xc3];
        assert_eq!(entry(&code, BASE), Placement::ENTRY);
    }

    #[test]
    fn other_compare_keeps_entry() {
        // cmp rsp,[r14+0x18]; jbe: not stackguard0
        let mut code = vec![0x49, 0x3b, 0x66, 0x18, 0x76, 0x20];
        code.resize(0x40, 0xcc);
        assert_eq!(entry(&code, BASE), Placement::ENTRY);
        // Truncated code never panics.
        assert_eq!(entry(&code[..5], BASE), Placement::ENTRY);
        assert_eq!(entry(&[], BASE), Placement::ENTRY);
    }

    #[test]
    fn exits_are_rets_and_tail_jumps() {
        // cmp rsp,[r14+0x10]; jbe +5; ret; jmp +0x40 (out); call rel; jmp -0x10 (in); int3
        let mut code = vec![0x49, 0x3b, 0x66, 0x10, 0x76, 0x05];
        code.push(0xc3); // ret at +6
        code.extend([0xeb, 0x40]); // jmp out at +7
        code.extend([0xe8, 0, 0, 0, 0]); // call at +9
        code.extend([0xeb, 0xf0]); // jmp back inside at +14
        code.push(0xcc);
        assert_eq!(exits(&code, BASE), vec![BASE + 6, BASE + 7]);
        assert_eq!(exits(&[], BASE), Vec::<u64>::new());
    }
}
