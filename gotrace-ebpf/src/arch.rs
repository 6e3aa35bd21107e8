//! The traced code's registers, per architecture: every register the
//! programs read from a hit goes through here, by the indexes of
//! `gotrace_common::arch`. The architecture is the one gotrace was built
//! for (`bpf_target_arch`, set by aya-build from gotrace-cli's target).

use aya_ebpf::{bindings::pt_regs, programs::ProbeContext};

/// A copy of a hit's registers: the context allows loads at constant
/// offsets only, and arguments pick registers by index.
pub type Registers = pt_regs;

#[cfg(bpf_target_arch = "x86_64")]
mod imp {
    use aya_ebpf::{bindings::pt_regs, programs::ProbeContext};
    use gotrace_common::arch::x86_64::{regs, EFLAGS_CF_ZF};

    /// A saved register by `pt_regs` index.
    #[inline(always)]
    pub fn register(r: &pt_regs, index: u32) -> Option<u64> {
        Some(match index {
            regs::R15 => r.r15,
            regs::R14 => r.r14,
            regs::R13 => r.r13,
            regs::R12 => r.r12,
            regs::RBP => r.rbp,
            regs::RBX => r.rbx,
            regs::R11 => r.r11,
            regs::R10 => r.r10,
            regs::R9 => r.r9,
            regs::R8 => r.r8,
            regs::RAX => r.rax,
            regs::RCX => r.rcx,
            regs::RDX => r.rdx,
            regs::RSI => r.rsi,
            regs::RDI => r.rdi,
            regs::RSP => r.rsp,
            _ => return None,
        })
    }

    #[inline(always)]
    pub fn stack_pointer(r: &pt_regs) -> u64 {
        r.rsp
    }

    #[inline(always)]
    pub fn instruction_pointer(r: &pt_regs) -> u64 {
        r.rip
    }

    /// Where gc's register ABI keeps the current g (R14).
    #[inline(always)]
    pub fn g(r: &pt_regs) -> u64 {
        r.r14
    }

    /// The caller's return address when the probe sits where the
    /// function has no frame yet (entry, stack-check branch, `ret`): the
    /// word at RSP.
    #[inline(always)]
    pub fn return_address(r: &pt_regs) -> u64 {
        // SAFETY: bpf_probe_read_user checks the address and fails cleanly.
        unsafe { aya_ebpf::helpers::bpf_probe_read_user(r.rsp as *const u64) }.unwrap_or(0)
    }

    /// Whether the Go stack check this probe sits on will not branch to
    /// `runtime.morestack` (`JBE` not taken: CF and ZF clear).
    #[inline(always)]
    pub fn stack_check_passes(ctx: &ProbeContext) -> bool {
        // SAFETY: `regs` points at the pt_regs the kernel passed to this uprobe.
        let eflags = unsafe { (*ctx.regs).eflags };
        eflags & EFLAGS_CF_ZF == 0
    }

    /// The stack pointer, read straight from the context.
    #[inline(always)]
    pub fn context_stack_pointer(ctx: &ProbeContext) -> u64 {
        // SAFETY: `regs` points at the pt_regs the kernel passed to this uprobe.
        unsafe { (*ctx.regs).rsp }
    }

    /// The g register, read straight from the context.
    #[inline(always)]
    pub fn context_g(ctx: &ProbeContext) -> u64 {
        // SAFETY: `regs` points at the pt_regs the kernel passed to this uprobe.
        unsafe { (*ctx.regs).r14 }
    }

    /// Undoes `xchg rax, r8` (see `Cookie::FLAG_AFTER_XCHG_RAX_R8`).
    #[inline(always)]
    pub fn undo_xchg_rax_r8(r: &mut pt_regs) {
        core::mem::swap(&mut r.rax, &mut r.r8);
    }
}

pub use imp::*;

/// A copy of the hit's registers.
#[inline(always)]
pub fn registers(ctx: &ProbeContext) -> Option<Registers> {
    // SAFETY: `ctx.regs` is the kernel's pt_regs of this hit.
    unsafe { aya_ebpf::helpers::bpf_probe_read_kernel(ctx.regs as *const pt_regs) }.ok()
}
