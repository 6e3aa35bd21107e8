//! What every entry probe decides first.

use aya_ebpf::programs::ProbeContext;
use gotrace_common::probe::{Cookie, EFLAGS_CF_ZF};

/// Whether this hit is a real call. A probe on the stack-check branch sees
/// every pass through the prologue; when the branch to `runtime.morestack`
/// will be taken (CF or ZF set), the function starts over once the stack
/// has grown, and that pass is the call.
#[inline(always)]
pub fn is_call(ctx: &ProbeContext, cookie: Cookie) -> bool {
    if cookie.flags() & Cookie::FLAG_STACK_CHECK_BRANCH == 0 {
        return true;
    }
    // SAFETY: `regs` points at the pt_regs the kernel passed to this uprobe.
    let eflags = unsafe { (*ctx.regs).eflags };
    eflags & EFLAGS_CF_ZF == 0
}
