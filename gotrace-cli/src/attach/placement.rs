//! Where in a function its probes go, whatever the architecture: the
//! types every tool works with. How a function's machine code decides
//! them is per-architecture knowledge (`crate::arch`).
//!
//! A uprobe on most instructions costs a single-step in the kernel (~7-14
//! us per hit measured on this project's VMs); on a conditional branch (or
//! a jump, call or `push`) the kernel emulates it instead (~0.5 us). Go
//! functions with a frame begin with a stack-bound check whose branch
//! jumps to `runtime.morestack`, after which the function starts over
//! from its entry. Probing that branch, and counting only when it will not
//! jump (see `gotrace_common::probe::Cookie`), is both cheaper than the
//! entry and exact: a call that grows its stack, or is preempted through
//! the same path, is counted once instead of twice.
//!
//! Some instructions take no probe: the kernel refuses them (`lock`
//! prefixes, `int3`, ...) or runs them wrongly. A probe meant for one moves
//! to the next instruction where every pass through the first reaches the
//! second and nothing else does; the registers the skipped instruction
//! wrote are then no longer what they were at the site, which the tools
//! that read registers check ([`Placement::clobbered`]).

use crate::arch::Arch;

/// What [`Placement::moved_past`] says for a probe that went after an
/// arm64 assembler sequence Go restarts from its start when a goroutine is
/// preempted inside it (see `crate::arch::aarch64::placement`): the kernel
/// could probe it, but one pass would count twice.
pub const RESTARTED_SEQUENCE: &str = "an R27 sequence Go restarts after a preemption";

/// Where to put one probe, relative to the address it was meant for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Bytes from the intended address (the function's first instruction,
    /// or an inlined copy's).
    pub offset: u64,
    /// `Cookie::FLAG_*` bits the kernel program must honour at that offset.
    pub flags: u32,
    /// Registers (as `gotrace_common` register indexes) an instruction
    /// between the intended address and the probe overwrote.
    pub clobbered: RegisterSet,
    /// The instruction the probe moved past, if it had to.
    pub moved_past: Option<&'static str>,
}

impl Placement {
    /// The intended address itself.
    pub const AT: Placement = Placement {
        offset: 0,
        flags: 0,
        clobbered: RegisterSet::EMPTY,
        moved_past: None,
    };

    /// Whether the probe sits on the stack-check branch, which the kernel
    /// emulates, rather than an instruction it single-steps.
    pub fn on_stack_check(&self) -> bool {
        self.flags & gotrace_common::probe::Cookie::FLAG_STACK_CHECK_BRANCH != 0
    }

    /// Where the probe went, for `-v`.
    pub fn describe(&self) -> String {
        if self.on_stack_check() {
            "stack-check branch".to_owned()
        } else if self.moved_past == Some(RESTARTED_SEQUENCE) {
            format!("after {RESTARTED_SEQUENCE}")
        } else if let Some(what) = self.moved_past {
            format!("after {what}, which the kernel cannot probe")
        } else {
            "entry".to_owned()
        }
    }
}

/// A set of registers, by `gotrace_common` register index (bit `i` for
/// index `i`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegisterSet(pub u64);

impl RegisterSet {
    pub const EMPTY: RegisterSet = RegisterSet(0);

    pub fn contains(self, index: u32) -> bool {
        index < 64 && self.0 & (1 << index) != 0
    }

    pub fn insert(&mut self, index: u32) {
        if index < 64 {
            self.0 |= 1 << index;
        }
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Why a function or site takes no probe; says so in a user's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unprobeable(pub String);

impl std::fmt::Display for Unprobeable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unprobeable {}

/// Where entry probes may go; `Cheapest` is what users get, `Entry` is
/// for the benchmark that measures what the stack-check branch saves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    #[default]
    Cheapest,
    Entry,
}

/// One way out of a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    pub address: u64,
    /// A direct jump out of the function (a tail call), which the kernel
    /// emulates; otherwise a return, which it single-steps on x86-64 and
    /// emulates on arm64.
    pub tail_call: bool,
}

/// Where control goes after an instruction, as far as finding a copy's
/// ends needs to know; each architecture decodes its own instructions
/// into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// On to the next instruction (indirect calls too).
    Next,
    /// A direct call: to the target, and back to the next instruction.
    Call(u64),
    /// The next instruction or the target.
    Conditional(u64),
    /// A direct jump.
    Jump(u64),
    Return,
    /// A jump through a register: a jump table or a computed tail call.
    IndirectJump,
    /// Never continues (`int3`, `ud2`, `brk`, `udf`).
    Stop,
}

/// One decoded instruction: how control leaves it, where the next starts.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub flow: Flow,
    pub next: u64,
}

/// Where a call inlined into a function ends, whatever the architecture:
/// the first instruction outside its copy's ranges `body` that control
/// reaches from `entry`, placed by `place` (its result is complete there),
/// and every return or tail jump inside the copy. `steps` are the
/// function's instructions by address, `function` its addresses. Calls to
/// targets for which `no_return` holds (Go's panics) end a path: code
/// after them runs only when a deferred `recover` resumes the function.
/// Refused when the ends cannot all be found: a jump table inside the
/// copy, or a loop back to its first instruction.
pub fn walk_inlined_exits(
    steps: &std::collections::BTreeMap<u64, Step>,
    function: std::ops::Range<u64>,
    body: &[(u64, u64)],
    entry: u64,
    no_return: &dyn Fn(u64) -> bool,
    place: &dyn Fn(u64) -> Result<Placement, Unprobeable>,
) -> Result<Vec<Exit>, Unprobeable> {
    let inside = |pc: u64| body.iter().any(|&(start, end)| (start..end).contains(&pc));
    let mut exits: Vec<Exit> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut pending = vec![entry];
    while let Some(pc) = pending.pop() {
        if !seen.insert(pc) {
            continue;
        }
        let Some(&Step { flow, next }) = steps.get(&pc) else {
            return Err(Unprobeable(format!(
                "control reaches {pc:#x}, which is not an instruction of the function"
            )));
        };
        let successors = match flow {
            Flow::Next => vec![next],
            Flow::Call(target) if no_return(target) => Vec::new(),
            Flow::Call(_) => vec![next],
            Flow::Conditional(target) => vec![next, target],
            Flow::Jump(target) if function.contains(&target) => vec![target],
            // The function leaves from inside the copy, frame and all.
            Flow::Jump(_) | Flow::Return => {
                exits.push(Exit {
                    address: pc,
                    tail_call: flow != Flow::Return,
                });
                Vec::new()
            }
            Flow::IndirectJump => {
                return Err(Unprobeable(
                    "it holds a jump table, whose targets no decoder sees".to_owned(),
                ))
            }
            // The end of a panic call that does not return.
            Flow::Stop => Vec::new(),
        };
        for successor in successors {
            if successor == entry {
                return Err(Unprobeable(
                    "its first instruction is also a loop head inside it".to_owned(),
                ));
            }
            if inside(successor) {
                pending.push(successor);
            } else if !exits.iter().any(|e| e.address == successor) {
                let placed = place(successor).map_err(|why| {
                    Unprobeable(format!("one of its ends cannot be probed: {why}"))
                })?;
                exits.push(Exit {
                    address: successor + placed.offset,
                    tail_call: false,
                });
            }
        }
    }
    exits.sort_unstable_by_key(|e| e.address);
    exits.dedup_by_key(|e| e.address);
    Ok(exits)
}

/// How the kernel runs a probed instruction, which decides what a hit
/// costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cost {
    /// The kernel emulates it (a branch, a `push`): ~0.5 us a hit here.
    Emulated,
    /// The kernel single-steps a copy of it: ~7-14 us a hit here.
    SingleStepped,
}

/// Picks the entry probe of the function whose machine code is `code`,
/// loaded at `address`: the stack-check branch where there is one (with
/// `Policy::Cheapest`), else the first instruction the kernel can probe.
pub fn entry(
    arch: Arch,
    code: &[u8],
    address: u64,
    policy: Policy,
) -> Result<Placement, Unprobeable> {
    match arch {
        Arch::X86_64 => crate::arch::x86_64::placement::entry(code, address, policy),
        Arch::Aarch64 => crate::arch::aarch64::placement::entry(code, address, policy),
    }
}

/// Places a probe meant for `site` inside the function whose machine code
/// is `code` (loaded at `address`): an inlined copy's first instruction.
pub fn site(arch: Arch, code: &[u8], address: u64, site: u64) -> Result<Placement, Unprobeable> {
    match arch {
        Arch::X86_64 => crate::arch::x86_64::placement::site(code, address, site),
        Arch::Aarch64 => crate::arch::aarch64::placement::site(code, address, site),
    }
}

/// Every way out of the function: returns and tail jumps.
pub fn exits(arch: Arch, code: &[u8], address: u64) -> Vec<Exit> {
    match arch {
        Arch::X86_64 => crate::arch::x86_64::placement::exits(code, address),
        Arch::Aarch64 => crate::arch::aarch64::placement::exits(code, address),
    }
}

/// Where a call inlined into the function `code` (at `address`) ends, its
/// copy's code being `body` and its first instruction `entry`; calls to
/// targets for which `no_return` holds never return (see the
/// architecture's `inlined_exits`).
pub fn inlined_exits(
    arch: Arch,
    code: &[u8],
    address: u64,
    body: &[(u64, u64)],
    entry: u64,
    no_return: &dyn Fn(u64) -> bool,
) -> Result<Vec<Exit>, Unprobeable> {
    match arch {
        Arch::X86_64 => {
            crate::arch::x86_64::placement::inlined_exits(code, address, body, entry, no_return)
        }
        Arch::Aarch64 => {
            crate::arch::aarch64::placement::inlined_exits(code, address, body, entry, no_return)
        }
    }
}

/// What a hit of a probe on the instruction at the start of `code` costs.
pub fn cost(arch: Arch, code: &[u8]) -> Cost {
    match arch {
        Arch::X86_64 => crate::arch::x86_64::placement::cost(code),
        Arch::Aarch64 => crate::arch::aarch64::placement::cost(code),
    }
}
