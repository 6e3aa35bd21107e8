//! Where in a function its entry probe goes.
//!
//! A uprobe on most instructions costs a single-step in the kernel (~14 us
//! per hit measured on this project's VMs); on a conditional branch (or a
//! jump, call or `push`) the kernel emulates it instead (~0.4 us). Go functions with a frame begin with
//! a stack-bound check whose `JBE` jumps to `runtime.morestack`, after which
//! the function starts over from its entry. Probing that `JBE`, and counting
//! only when it will not jump (see `gotrace_common::probe::Cookie`), is
//! both cheaper than the entry and exact: a call that grows its stack, or is
//! preempted through the same path, is counted once instead of twice.
//!
//! Some instructions must not be probed at all: Linux's x86 uprobe code
//! emulates opcode `0x90` as a `nop`, but with REX.B it is `xchg rax, r8`,
//! and a probe there skips the exchange (measured on 6.18 with bpftrace as
//! well as gotrace; tests/misemulated.rs). Go 1.19's
//! `runtime.gcWriteBarrierR8` begins with one, and a probe on it corrupted
//! the heap of the soak test. Which prefixes the kernel looks past is not
//! known here, so any legacy prefix before such a REX byte counts too.

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

    /// Whether the probe sits on the stack-check branch, which the kernel
    /// emulates, rather than an instruction it single-steps.
    pub fn on_stack_check(&self) -> bool {
        self.flags & Cookie::FLAG_STACK_CHECK_BRANCH != 0
    }

    /// Where the probe went, for `-v`.
    pub fn describe(&self) -> &'static str {
        if self.on_stack_check() {
            "stack-check branch"
        } else if self.flags & Cookie::FLAG_AFTER_XCHG_RAX_R8 != 0 {
            "after xchg rax, r8"
        } else {
            "entry"
        }
    }
}

/// Why a function or site takes no probe; says so in a user's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unprobeable(&'static str);

impl std::fmt::Display for Unprobeable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Unprobeable {}

const XCHG_R8: Unprobeable = Unprobeable(
    "it starts with `xchg rax, r8`, which the kernel's uprobe code runs as a nop \
     (Linux bug), so a probe there would corrupt the program",
);

/// Where entry probes may go; `Cheapest` is what users get, `Entry` is
/// for the benchmark that measures what the stack-check branch saves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    #[default]
    Cheapest,
    Entry,
}

/// Picks the entry probe site of the function whose machine code is `code`,
/// loaded at `address`. Anything that is not a recognised Go stack check
/// keeps the probe on the first instruction, which is always correct,
/// unless the kernel would run that instruction wrongly: then the probe
/// moves past it where that is exact, else the function is refused.
pub fn entry(code: &[u8], address: u64, policy: Policy) -> Result<Placement, Unprobeable> {
    let branch = match policy {
        Policy::Cheapest => stack_check(code, address),
        Policy::Entry => None,
    };
    let placement = branch.unwrap_or(Placement::ENTRY);
    if placement.offset != 0 || !kernel_runs_as_nop(code) {
        return Ok(placement);
    }
    after_xchg_r8(code, address).ok_or(XCHG_R8)
}

/// Refuses a site (an inlined copy's first instruction) whose instruction,
/// starting at `code`, the kernel would run wrongly.
pub fn check_site(code: &[u8]) -> Result<(), Unprobeable> {
    if kernel_runs_as_nop(code) {
        Err(XCHG_R8)
    } else {
        Ok(())
    }
}

/// Whether the instruction at the start of `code` is opcode `0x90` with
/// REX.B (`xchg rax, r8` or a narrower form), which the kernel emulates as
/// a `nop`. Legacy prefixes are skipped the way the kernel's decoder does.
fn kernel_runs_as_nop(code: &[u8]) -> bool {
    const LEGACY_PREFIXES: [u8; 11] = [
        0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65,
    ];
    let rest = match code.iter().position(|b| !LEGACY_PREFIXES.contains(b)) {
        Some(start) => &code[start..],
        None => return false,
    };
    matches!(rest, [rex @ 0x40..=0x4f, 0x90, ..] if rex & 1 != 0)
}

/// A function that starts with a plain 64-bit `xchg rax, r8` (REX.W+B, no
/// other prefix, as Go's assembler writes `XCHGQ R8, AX`) is probed on its
/// second instruction, with the two registers to swap back before reading
/// arguments. That is exact only if nothing in the function jumps there.
fn after_xchg_r8(code: &[u8], address: u64) -> Option<Placement> {
    const XCHG_RAX_R8_LEN: u64 = 2;
    if !matches!(code, [0x48..=0x4f, 0x90, ..] if code[0] & 0b1001 == 0b1001) {
        return None;
    }
    let second = address + XCHG_RAX_R8_LEN;
    let rest = code.get(XCHG_RAX_R8_LEN as usize..)?;
    if rest.is_empty() || kernel_runs_as_nop(rest) {
        return None;
    }
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        if instruction.is_invalid() {
            break;
        }
        let branches = matches!(
            instruction.flow_control(),
            FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch | FlowControl::Call
        );
        if branches && instruction.near_branch_target() == second {
            return None;
        }
    }
    Some(Placement {
        offset: XCHG_RAX_R8_LEN,
        flags: Cookie::FLAG_AFTER_XCHG_RAX_R8,
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
            if is_jbe && (address..end).contains(&target) {
                return Some(Placement {
                    offset: instruction.ip() - address,
                    flags: Cookie::FLAG_STACK_CHECK_BRANCH,
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

/// One way out of a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    pub address: u64,
    /// A direct `jmp` out of the function (a tail call), which the kernel
    /// emulates; otherwise a `ret`, which it single-steps.
    pub tail_call: bool,
}

/// Whether the kernel emulates the instruction at the start of `code`
/// (loaded at `address`) instead of single-stepping it: a direct branch or
/// call, or a `push` of a 64-bit register (Go's `push rbp` in functions
/// without a stack check). Measured on 6.18: a `push rbp` entry costs
/// 0.7 us a hit, a `lea` entry 9.5 us. Used to report what probes cost.
pub fn kernel_emulates(code: &[u8], address: u64) -> bool {
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    if !decoder.can_decode() {
        return false;
    }
    let instruction = decoder.decode();
    match instruction.flow_control() {
        FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch | FlowControl::Call => {
            instruction.op0_kind() == OpKind::NearBranch64
        }
        _ => instruction.code() == Code::Push_r64,
    }
}

/// Where a call of the function whose machine code is `code` (loaded at
/// `address`) ends: every `ret`, and every direct `jmp` that leaves the
/// function (a tail call). Go's stack copier rejects the return addresses
/// uretprobes plant, so returns are caught by probes on these instructions
/// instead. Indirect jumps are jump tables within the function. Decoding
/// stops at the first invalid instruction, which cannot be reached.
pub fn exit_sites(code: &[u8], address: u64) -> Vec<Exit> {
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

/// The addresses of [`exit_sites`].
pub fn exits(code: &[u8], address: u64) -> Vec<u64> {
    exit_sites(code, address)
        .into_iter()
        .map(|exit| exit.address)
        .collect()
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
            entry(&padded, BASE, Policy::Cheapest),
            Ok(Placement {
                offset: 4,
                flags: Cookie::FLAG_STACK_CHECK_BRANCH
            })
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
            Ok(Placement {
                offset: 12,
                flags: Cookie::FLAG_STACK_CHECK_BRANCH
            })
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
            Ok(Placement {
                offset: 13,
                flags: Cookie::FLAG_STACK_CHECK_BRANCH
            })
        );
    }

    #[test]
    fn entry_policy_skips_the_branch() {
        let mut code = vec![0x49, 0x3b, 0x66, 0x10, 0x76, 0x20, 0x55];
        code.resize(0x40, 0xcc);
        assert_eq!(entry(&code, BASE, Policy::Entry), Ok(Placement::ENTRY));
    }

    #[test]
    fn leaf_without_check_keeps_entry() {
        // lea rax,[rbx+rax]; ret  (main.add)
        let code = [0x48, 0x8d, 0x04, 0x03, 0xc3];
        assert_eq!(entry(&code, BASE, Policy::Cheapest), Ok(Placement::ENTRY));
    }

    #[test]
    fn branch_leaving_the_function_keeps_entry() {
        // A JBE whose target lies outside the function is not Go's morestack call.
        let code = [0x49, 0x3b, 0x66, 0x10, 0x76, 0x7f, 0x55, 0xc3];
        assert_eq!(entry(&code, BASE, Policy::Cheapest), Ok(Placement::ENTRY));
    }

    #[test]
    fn other_compare_keeps_entry() {
        // cmp rsp,[r14+0x18]; jbe: not stackguard0
        let mut code = vec![0x49, 0x3b, 0x66, 0x18, 0x76, 0x20];
        code.resize(0x40, 0xcc);
        assert_eq!(entry(&code, BASE, Policy::Cheapest), Ok(Placement::ENTRY));
        // Truncated code never panics.
        assert_eq!(
            entry(&code[..5], BASE, Policy::Cheapest),
            Ok(Placement::ENTRY)
        );
        assert_eq!(entry(&[], BASE, Policy::Cheapest), Ok(Placement::ENTRY));
    }

    #[test]
    fn xchg_rax_r8_entry_moves_past_it() {
        // Go 1.19 runtime.gcWriteBarrierR8: xchg rax,r8; call rel32; xchg rax,r8; ret
        let code = [0x49, 0x90, 0xe8, 0, 0, 0, 0, 0x49, 0x90, 0xc3];
        assert_eq!(
            entry(&code, BASE, Policy::Cheapest),
            Ok(Placement {
                offset: 2,
                flags: Cookie::FLAG_AFTER_XCHG_RAX_R8
            })
        );
    }

    #[test]
    fn xchg_rax_r8_entry_refused_when_moving_is_not_exact() {
        // The second instruction is a loop head: a probe there would count the loop.
        let looping = [0x49, 0x90, 0x48, 0xff, 0xc8, 0x75, 0xfb, 0xc3];
        assert_eq!(entry(&looping, BASE, Policy::Cheapest), Err(XCHG_R8));
        // The 32-bit form loses RAX's upper half: nothing to swap back.
        assert_eq!(
            entry(&[0x41, 0x90, 0xc3], BASE, Policy::Cheapest),
            Err(XCHG_R8)
        );
        // Followed by another one.
        assert_eq!(
            entry(&[0x49, 0x90, 0x49, 0x90, 0xc3], BASE, Policy::Cheapest),
            Err(XCHG_R8)
        );
        assert_eq!(entry(&[0x49, 0x90], BASE, Policy::Cheapest), Err(XCHG_R8));
    }

    #[test]
    fn only_rex_b_nops_are_misemulated() {
        for rex in 0x40..=0x4fu8 {
            assert_eq!(
                kernel_runs_as_nop(&[rex, 0x90]),
                rex & 1 == 1,
                "{rex:#x} 90"
            );
        }
        assert!(kernel_runs_as_nop(&[0x66, 0x41, 0x90]));
        assert!(!kernel_runs_as_nop(&[0x90]));
        assert!(!kernel_runs_as_nop(&[0x66, 0x90]));
        assert!(!kernel_runs_as_nop(&[0xf3, 0x90])); // pause
        assert!(!kernel_runs_as_nop(&[0x49, 0x91])); // xchg rax,r9: single-stepped
        assert!(!kernel_runs_as_nop(&[0x66, 0x66]));
        assert!(!kernel_runs_as_nop(&[]));
        assert_eq!(check_site(&[0x4d, 0x90]), Err(XCHG_R8));
        assert_eq!(check_site(&[0x55]), Ok(()));
    }

    #[test]
    fn emulated_first_instructions() {
        assert!(kernel_emulates(&[0x55], BASE)); // push rbp
        assert!(kernel_emulates(&[0x41, 0x56], BASE)); // push r14
        assert!(kernel_emulates(&[0x76, 0x20], BASE)); // jbe
        assert!(kernel_emulates(&[0xe8, 0, 0, 0, 0], BASE)); // call rel32
        assert!(!kernel_emulates(&[0xff, 0xd0], BASE)); // call rax
        assert!(!kernel_emulates(&[0x48, 0x8d, 0x04, 0x03], BASE)); // lea
        assert!(!kernel_emulates(&[0x49, 0x3b, 0x66, 0x10], BASE)); // cmp
        assert!(!kernel_emulates(&[0xc3], BASE)); // ret
        assert!(!kernel_emulates(&[], BASE));
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
            exit_sites(&code, BASE),
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
        assert_eq!(exits(&code, BASE), vec![BASE + 6, BASE + 7, BASE + 16]);
        assert_eq!(exits(&[], BASE), Vec::<u64>::new());
    }
}
