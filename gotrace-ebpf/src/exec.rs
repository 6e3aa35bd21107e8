//! Tells user space of every execution in the run's scope, so that Go
//! programs started after gotrace are traced too.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{map, raw_tracepoint},
    maps::RingBuf,
    programs::RawTracePointContext,
};
use gotrace_common::host::ExecEvent;

// One page until gotrace-cli sizes it (`gotrace_common::host::EXEC_RING_BYTES`).
#[map]
static EXEC_EVENTS: RingBuf = RingBuf::with_byte_size(4096, 0);

#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn exec_notify(_ctx: RawTracePointContext) -> i32 {
    if !crate::scope::in_cgroup() {
        return 0;
    }
    // A full ring only delays a new program until gotrace rescans.
    let _ = EXEC_EVENTS.output::<ExecEvent>(
        ExecEvent {
            // SAFETY: reads the monotonic clock; no arguments.
            timestamp: unsafe { bpf_ktime_get_ns() },
            pid: (bpf_get_current_pid_tgid() >> 32) as u32,
            pad: 0,
        },
        0,
    );
    0
}
