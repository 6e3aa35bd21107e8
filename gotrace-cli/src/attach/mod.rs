//! Attaching one uprobe program to many instructions of one binary.
//!
//! Every probe carries a bpf cookie, so a single program serves all
//! functions and learns from the cookie which one fired. The links belong to
//! the [`aya::Ebpf`] they were made from: dropping it (on any exit path,
//! including an error half way through attaching) detaches all of them, and
//! since links are file descriptors the kernel does the same if gotrace dies.

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

/// Loads `program` of `ebpf` and attaches it at every site of `target`.
///
/// `describe(i)` names the function of `sites[i]` for error messages.
pub fn uprobes(
    ebpf: &mut Ebpf,
    program: &str,
    target: &Path,
    sites: &[Site],
    scope: Scope,
    describe: impl Fn(usize) -> String,
) -> anyhow::Result<()> {
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
        uprobe.attach(point, target, scope).with_context(|| {
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
