//! Learning of new programs as they start: the `exec_notify` program on
//! the `sched_process_exec` tracepoint writes the PID of every exec in
//! the run's cgroup to a ring buffer, read here.
//!
//! A tracepoint rather than the proc connector: it is the same eBPF
//! object (no netlink socket, no CAP_NET_ADMIN), the kernel leaves out
//! other cgroups' execs before user space wakes, and each event carries
//! the kernel's own timestamp of the exec, which measures how long a new
//! program ran before its probes were in place.

use anyhow::Context as _;
use aya::{
    maps::{MapData, RingBuf},
    programs::RawTracePoint,
    Ebpf,
};
use gotrace_common::host::{ExecEvent, EXEC_EVENTS_MAP, EXEC_PROGRAM};
use tokio::io::unix::AsyncFd;

/// The tracepoint `exec_notify` is attached to.
const TRACEPOINT: &str = "sched_process_exec";

/// Executions as they happen; dropping this detaches the tracepoint.
pub struct Execs {
    ring: AsyncFd<RingBuf<MapData>>,
    // Held for its drop: the tracepoint stays attached while this lives.
    _link: aya::programs::raw_trace_point::RawTracePointLink,
}

impl Execs {
    /// Attaches `exec_notify` of `ebpf` (loaded with the run's scope) and
    /// takes its ring buffer.
    pub fn start(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let program: &mut RawTracePoint = ebpf
            .program_mut(EXEC_PROGRAM)
            .with_context(|| format!("eBPF program {EXEC_PROGRAM} missing from gotrace's object"))?
            .try_into()
            .with_context(|| format!("eBPF program {EXEC_PROGRAM} is not a raw tracepoint"))?;
        program
            .load()
            .with_context(|| format!("loading eBPF program {EXEC_PROGRAM}"))?;
        let id = program
            .attach(TRACEPOINT)
            .with_context(|| format!("attaching to the {TRACEPOINT} tracepoint"))?;
        let link = program.take_link(id)?;
        let ring =
            RingBuf::try_from(ebpf.take_map(EXEC_EVENTS_MAP).with_context(|| {
                format!("map {EXEC_EVENTS_MAP} missing from gotrace's object")
            })?)?;
        // SAFETY: the AsyncFd owns the ring buffer, so its descriptor stays
        // open for as long as it is registered.
        let ring = unsafe { AsyncFd::register(ring) }.context("polling the exec ring buffer")?;
        Ok(Self { ring, _link: link })
    }

    /// Waits for executions and returns every one reported so far.
    pub async fn next(&mut self) -> anyhow::Result<Vec<ExecEvent>> {
        loop {
            let mut guard = self
                .ring
                .readable_mut()
                .await
                .context("waiting for exec events")?;
            let mut events = Vec::new();
            while let Some(item) = guard.get_inner_mut().next() {
                if item.len() >= std::mem::size_of::<ExecEvent>() {
                    // SAFETY: the kernel wrote a whole `ExecEvent` (length
                    // checked); read_unaligned copes with any alignment.
                    events.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) });
                }
            }
            guard.clear_ready();
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }
}

/// The monotonic clock `bpf_ktime_get_ns` reads, now, in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `now` is.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}
