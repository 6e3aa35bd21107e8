//! Attaching one uprobe program to many instructions of one binary.
//!
//! Every probe carries a bpf cookie, so a single program serves all
//! functions and learns from the cookie which one fired. Two methods:
//! one uprobe_multi link for all sites (kernel >= 6.6, see [`multi`]), or
//! else one perf-event link per site through aya. Either way the links are
//! file descriptors owned by [`Attached`] or the [`aya::Ebpf`]: dropping
//! them (on any exit path, including an error half way through attaching)
//! detaches everything, and the kernel does the same if gotrace dies.

mod multi;
pub mod placement;

use std::{num::NonZeroU32, path::Path};

use anyhow::Context as _;
use aya::{
    programs::{
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
        UProbe,
    },
    Ebpf,
};

/// Where one probe goes: a file offset in the target and its cookie.
#[derive(Clone, Copy, Debug)]
pub struct Site {
    pub file_offset: u64,
    pub cookie: u64,
}

/// Which processes fire the probes.
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    AllProcesses,
    Process(NonZeroU32),
}

impl Scope {
    /// The scope of `-p PID`, or every process without it.
    pub fn of(process: Option<crate::target::Process>) -> Self {
        process.map_or(Scope::AllProcesses, |p| Scope::Process(p.pid()))
    }
}

/// How the probes were attached, for `-v`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    UprobeMulti,
    PerfEvent,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::UprobeMulti => "one uprobe_multi link",
            Method::PerfEvent => "one perf-event uprobe per site",
        })
    }
}

/// Probes in place; dropping this (and the `Ebpf`) detaches them.
pub struct Attached {
    pub method: Method,
    /// Why uprobe_multi was not used, when it was not.
    pub fallback_reason: Option<String>,
    _multi: Option<multi::Link>,
}

/// Which attach method to use; `Auto` is what users get, the others are
/// for benchmarks and tests that compare or break one method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    #[default]
    Auto,
    Multi,
    Perf,
}

/// What to attach: one program of the loaded object at every site of a file.
pub struct Request<'a> {
    /// The embedded object `ebpf` was loaded from (see [`multi`]).
    pub object: &'a [u8],
    pub program: &'a str,
    pub target: &'a Path,
    pub sites: &'a [Site],
    pub scope: Scope,
    pub choice: Choice,
}

/// Attaches `request.program` of `ebpf` at every site, through uprobe_multi
/// when the kernel can.
///
/// `describe(i)` names the function of `sites[i]` for error messages.
pub fn uprobes(
    ebpf: &mut Ebpf,
    request: &Request<'_>,
    describe: impl Fn(usize) -> String,
) -> anyhow::Result<Attached> {
    let pid = match request.scope {
        Scope::AllProcesses => None,
        Scope::Process(pid) => Some(pid.get()),
    };
    let fallback_reason = match request.choice {
        Choice::Perf => "per-site probes were asked for".to_owned(),
        Choice::Auto | Choice::Multi => {
            match multi::attach(
                ebpf,
                request.object,
                request.program,
                request.target,
                request.sites,
                pid,
            ) {
                Ok(link) => {
                    return Ok(Attached {
                        method: Method::UprobeMulti,
                        fallback_reason: None,
                        _multi: Some(link),
                    })
                }
                Err(err) if request.choice == Choice::Multi => return Err(err),
                // Any failure of the multi link (old kernel, odd site) falls
                // back to per-site probes, whose errors name the function.
                Err(err) => format!("{err:#}"),
            }
        }
    };
    per_site(ebpf, request, describe)?;
    Ok(Attached {
        method: Method::PerfEvent,
        fallback_reason: Some(fallback_reason),
        _multi: None,
    })
}

fn per_site(
    ebpf: &mut Ebpf,
    request: &Request<'_>,
    describe: impl Fn(usize) -> String,
) -> anyhow::Result<()> {
    let Request {
        program,
        target,
        sites,
        scope,
        ..
    } = *request;
    raise_fd_limit(sites.len());
    let uprobe: &mut UProbe = ebpf
        .program_mut(program)
        .with_context(|| format!("eBPF program {program} missing from gotrace's object"))?
        .try_into()
        .with_context(|| format!("eBPF program {program} is not a uprobe"))?;
    uprobe
        .load()
        .with_context(|| format!("loading eBPF program {program}"))?;
    let scope = match scope {
        Scope::AllProcesses => UProbeScope::AllProcesses,
        Scope::Process(pid) => UProbeScope::OneProcess(pid),
    };
    for (i, site) in sites.iter().enumerate() {
        let point = UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(site.file_offset),
            cookie: Some(site.cookie),
        };
        uprobe
            .attach(point, target, scope)
            .map_err(|err| {
                let err = anyhow::Error::from(err);
                if has_errno(&err, libc::EINVAL) {
                    // The kernel keeps one uprobe per instruction; a probe of
                    // another tool with a different reference counter there
                    // makes ours EINVAL (dmesg: "ref_ctr_offset mismatch").
                    err.context("is another tracer (bcc?) probing the same instruction? see dmesg")
                } else {
                    err
                }
            })
            .with_context(|| {
                format!(
                    "attaching a uprobe to {} in {} (file offset {:#x})",
                    describe(i),
                    target.display(),
                    site.file_offset
                )
            })?;
    }
    Ok(())
}

fn has_errno(err: &anyhow::Error, errno: i32) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(errno))
    })
}

/// Each perf-event uprobe holds two descriptors (event and link); the usual
/// soft limit of 1024 would stop us at ~500 probes, so raise it to the hard
/// limit. Failing to raise is not an error: the attach then says EMFILE.
fn raise_fd_limit(probes: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
            && limit.rlim_cur < (2 * probes + 64) as libc::rlim_t
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
