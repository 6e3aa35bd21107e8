//! What every entry probe decides first.

use aya_ebpf::programs::ProbeContext;
use gotrace_common::probe::Cookie;

/// Whether this hit is a real call. A probe on the stack-check branch sees
/// every pass through the prologue; when the branch to `runtime.morestack`
/// will be taken, the function starts over once the stack has grown, and
/// that pass is the call.
#[inline(always)]
pub fn is_call(ctx: &ProbeContext, cookie: Cookie) -> bool {
    if cookie.flags() & Cookie::FLAG_STACK_CHECK_BRANCH == 0 {
        return true;
    }
    crate::arch::stack_check_passes(ctx)
}
