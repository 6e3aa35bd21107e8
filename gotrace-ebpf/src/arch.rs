//! The traced code's registers, per architecture: every register the
//! programs read from a hit goes through here, by the indexes of
//! `gotrace_common::arch`. The architecture is the one gotrace was built
//! for (`bpf_target_arch`, set by aya-build from gotrace-cli's target).

use aya_ebpf::programs::ProbeContext;

#[cfg(bpf_target_arch = "x86_64")]
mod imp {
    use aya_ebpf::{bindings::pt_regs, programs::ProbeContext};
    use gotrace_common::arch::x86_64::{regs, EFLAGS_CF_ZF};

    /// A copy of a hit's registers: the context allows loads at constant
    /// offsets only, and arguments pick registers by index.
    pub type Registers = pt_regs;

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

#[cfg(bpf_target_arch = "aarch64")]
mod imp {
    use aya_ebpf::{bindings::user_pt_regs, programs::ProbeContext};
    use gotrace_common::arch::aarch64::{regs, PSTATE_C, PSTATE_Z};

    /// A copy of a hit's registers. On arm64 the context of a uprobe
    /// program is a `user_pt_regs` (aya's `pt_regs` is opaque there).
    pub type Registers = user_pt_regs;

    /// The context's registers, where the kernel put them.
    #[inline(always)]
    fn context(ctx: &ProbeContext) -> *const user_pt_regs {
        ctx.regs as *const user_pt_regs
    }

    /// A saved register by `user_pt_regs` index.
    #[inline(always)]
    pub fn register(r: &user_pt_regs, index: u32) -> Option<u64> {
        match index {
            0..=30 => r.regs.get(index as usize).copied(),
            regs::SP => Some(r.sp),
            regs::PC => Some(r.pc),
            regs::PSTATE => Some(r.pstate),
            _ => None,
        }
    }

    #[inline(always)]
    pub fn stack_pointer(r: &user_pt_regs) -> u64 {
        r.sp
    }

    #[inline(always)]
    pub fn instruction_pointer(r: &user_pt_regs) -> u64 {
        r.pc
    }

    /// Where gc keeps the current g on arm64 (R28, in every function).
    #[inline(always)]
    pub fn g(r: &user_pt_regs) -> u64 {
        r.regs[regs::X28 as usize]
    }

    /// The caller's return address where the function has not saved the
    /// link register yet (entry, stack-check branch) or has restored it
    /// (`ret`): x30.
    #[inline(always)]
    pub fn return_address(r: &user_pt_regs) -> u64 {
        r.regs[regs::X30 as usize]
    }

    /// Whether the Go stack check this probe sits on will not branch to
    /// `runtime.morestack` (`B.LS` not taken: C set and Z clear).
    #[inline(always)]
    pub fn stack_check_passes(ctx: &ProbeContext) -> bool {
        // SAFETY: the context points at the user_pt_regs of this uprobe hit.
        let pstate = unsafe { (*context(ctx)).pstate };
        pstate & (PSTATE_C | PSTATE_Z) == PSTATE_C
    }

    /// The stack pointer, read straight from the context.
    #[inline(always)]
    pub fn context_stack_pointer(ctx: &ProbeContext) -> u64 {
        // SAFETY: the context points at the user_pt_regs of this uprobe hit.
        unsafe { (*context(ctx)).sp }
    }

    /// The g register, read straight from the context.
    #[inline(always)]
    pub fn context_g(ctx: &ProbeContext) -> u64 {
        // SAFETY: the context points at the user_pt_regs of this uprobe hit.
        unsafe { (*context(ctx)).regs[regs::X28 as usize] }
    }

    /// Never needed: no arm64 placement moves a probe past an exchange.
    #[inline(always)]
    pub fn undo_xchg_rax_r8(_: &mut user_pt_regs) {}
}

pub use imp::*;

/// Copies the hit's registers to `to`, memory the program owns alone
/// (see `trace`, which keeps them in a ring buffer record: neither the
/// stack nor a per-CPU slot will do). False if the kernel read failed.
#[inline(always)]
pub fn copy_registers(ctx: &ProbeContext, to: *mut Registers) -> bool {
    // SAFETY: `ctx.regs` is the kernel's register frame of this hit and
    // `to` points at `size_of::<Registers>()` writable bytes.
    let read = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            to.cast(),
            core::mem::size_of::<Registers>() as u32,
            ctx.regs as *const core::ffi::c_void,
        )
    };
    read >= 0
}
