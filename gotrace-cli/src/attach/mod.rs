//! Attaching uprobe programs to many instructions of many binaries.
//!
//! Every probe carries a bpf cookie, so a single program serves all
//! functions and learns from the cookie which one fired. Two methods:
//! one uprobe_multi link for all sites of a binary (kernel >= 6.6, see
//! [`multi`]), or else one perf-event uprobe per site (see [`perf`]).
//! As bpftrace and cilium/ebpf do, an [`Attacher`] asks the kernel once
//! per run which it has, loads each program once for that method, and
//! then attaches it to any number of binaries, each giving a [`Link`].
//! Links are file descriptors: dropping one (on any exit path, including
//! an error half way through attaching) detaches its sites, and the kernel
//! does the same if gotrace dies.
//!
//! A site the kernel refuses does not fail the rest: placement already
//! follows the kernel's rules, and should the kernel still refuse a link
//! for one of its sites, the link is split until the refused sites are
//! found, and they are reported and left out ([`Dropped`]).

mod multi;
mod perf;
pub mod placement;
pub(crate) use perf::raise_fd_limit;

use std::{
    collections::HashMap,
    num::NonZeroU32,
    os::fd::{AsFd as _, OwnedFd},
    path::Path,
};

use anyhow::Context as _;
use aya::{programs::UProbe, Ebpf};

use crate::stop::Stop;

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
    pub fn of(process: Option<crate::process::Process>) -> Self {
        process.map_or(Scope::AllProcesses, |p| Scope::Process(p.pid()))
    }

    fn pid(self) -> Option<u32> {
        match self {
            Scope::AllProcesses => None,
            Scope::Process(pid) => Some(pid.get()),
        }
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

/// Which attach method to use; `Auto` is what users get, the others are
/// for benchmarks and tests that compare or break one method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    #[default]
    Auto,
    Multi,
    Perf,
}

/// A site the kernel refused, left out of its link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// Index into the sites asked for.
    pub index: usize,
    pub errno: i32,
}

impl Dropped {
    /// Why, in a user's terms.
    pub fn reason(&self) -> String {
        let error = std::io::Error::from_raw_os_error(self.errno);
        match self.errno {
            // The kernel keeps one uprobe per instruction; a probe of
            // another tool with a different reference counter there makes
            // ours EINVAL (dmesg: "ref_ctr_offset mismatch").
            libc::EINVAL => format!(
                "the kernel refused the probe ({error}): is another tracer (bcc?) probing the \
                 same instruction? see dmesg"
            ),
            _ => format!("the kernel refused the probe ({error})"),
        }
    }
}

/// Attaching stopped because the user (a signal) or `-d` asked.
#[derive(Debug, thiserror::Error)]
#[error("stopped while attaching ({attached} of {total} probes were in place, now detached)")]
pub struct Interrupted {
    pub attached: usize,
    pub total: usize,
}

/// Probes in place in one binary; dropping this detaches them.
pub struct Link {
    pub method: Method,
    /// Sites left out because the kernel refused them.
    pub dropped: Vec<Dropped>,
    _multi: Vec<OwnedFd>,
    _perf: perf::Links,
}

/// What to attach: one program at every site of a file.
pub struct Request<'a> {
    pub program: &'a str,
    /// The path the kernel opens.
    pub target: &'a Path,
    /// The file as the user knows it, for messages.
    pub shown: &'a str,
    pub sites: &'a [Site],
    pub scope: Scope,
}

/// Attaches the programs of one loaded object, as many times as asked.
pub struct Attacher {
    choice: Choice,
    /// Why uprobe_multi links are not used, when they are not.
    no_multi: Option<String>,
    /// The object's programs loaded for uprobe_multi links, by name.
    multi_programs: HashMap<String, OwnedFd>,
    stop: Stop,
    /// How far attaching the current binary one by one got.
    progress: Option<perf::Progress>,
}

/// More refused sites than this in one link is no longer a site's
/// problem: stop splitting and report.
const MAX_DROPPED: usize = 64;

impl Attacher {
    /// Decides the method once: uprobe_multi links if the kernel has them
    /// (asked here) and `choice` allows, else perf events. `stop` is
    /// checked while attaching.
    pub fn new(choice: Choice, stop: Stop) -> Attacher {
        let no_multi = match choice {
            Choice::Perf => Some("per-site probes were asked for".to_owned()),
            Choice::Auto | Choice::Multi => multi::supported().err(),
        };
        Attacher {
            choice,
            no_multi,
            multi_programs: HashMap::new(),
            stop,
            progress: None,
        }
    }

    /// Says that the next attaches, up to the next call, make one
    /// binary's `sites` probes, so that attaching them one by one reports
    /// on all of them at once.
    pub fn expect(&mut self, sites: usize) {
        self.progress = self.no_multi.is_some().then(|| perf::Progress::new(sites));
    }

    /// Why uprobe_multi links are not used, when they are not.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.no_multi.as_deref()
    }

    /// Loads `program` of `ebpf` for the method in use. Done for every
    /// program before the caller takes maps out of `ebpf`: the
    /// uprobe_multi loader relocates map references by the maps `ebpf`
    /// still holds (aya relocated its own copies when it loaded the
    /// object, so per-site probes can load theirs at any time).
    pub fn load(&mut self, ebpf: &mut Ebpf, program: &str) -> anyhow::Result<()> {
        if self.no_multi.is_none() {
            self.multi_program(ebpf, program)?;
        } else {
            aya_program(ebpf, program)?;
        }
        Ok(())
    }

    /// The program loaded for uprobe_multi links.
    fn multi_program(&mut self, ebpf: &mut Ebpf, name: &str) -> anyhow::Result<&OwnedFd> {
        if !self.multi_programs.contains_key(name) {
            let loaded = multi::load(ebpf, crate::ebpf::object(), name)?;
            self.multi_programs.insert(name.to_owned(), loaded);
        }
        Ok(&self.multi_programs[name])
    }

    /// Attaches `request.program` of `ebpf` at every site of
    /// `request.target`. When both methods fail, the error says why each
    /// did.
    pub fn attach(&mut self, ebpf: &mut Ebpf, request: &Request<'_>) -> anyhow::Result<Link> {
        if let Some(reason) = &self.no_multi {
            if self.choice == Choice::Multi {
                anyhow::bail!("uprobe_multi links were asked for, but {reason}");
            }
            return self.attach_perf(ebpf, request);
        }
        let multi_error = match self.attach_multi(ebpf, request) {
            Ok(link) => return Ok(link),
            Err(err)
                if self.choice == Choice::Multi
                    || err.is::<Interrupted>()
                    || process_gone(&err) =>
            {
                return Err(err)
            }
            Err(err) => err,
        };
        // The kernel has uprobe_multi links but would not make this one for
        // a reason that is not a site's: one perf event per site may still
        // work.
        self.attach_perf(ebpf, request).map_err(|perf_error| {
            if perf_error.is::<Interrupted>() {
                return perf_error;
            }
            anyhow::anyhow!(
                "attaching to {}: with one uprobe_multi link: {multi_error:#}; \
                 with one perf event per site: {perf_error:#}",
                request.shown
            )
        })
    }

    fn attach_perf(&mut self, ebpf: &mut Ebpf, request: &Request<'_>) -> anyhow::Result<Link> {
        let program = aya_program(ebpf, request.program)?.as_fd();
        let (links, dropped) = perf::attach(
            program,
            request.target,
            request.shown,
            request.sites,
            request.scope,
            &self.stop,
            self.progress.as_mut(),
        )?;
        Ok(Link {
            method: Method::PerfEvent,
            dropped,
            _multi: Vec::new(),
            _perf: links,
        })
    }

    /// One link for all sites; if the kernel refuses a site, halves the
    /// set until the refused sites are alone, keeping the links it could
    /// make on the way.
    fn attach_multi(&mut self, ebpf: &mut Ebpf, request: &Request<'_>) -> anyhow::Result<Link> {
        let stop = self.stop.clone();
        let program = self.multi_program(ebpf, request.program)?;
        let sites = request.sites;
        let mut links = Vec::new();
        let mut attached = 0;
        let mut dropped = Vec::new();
        // Ranges of `sites` still to link, the next on top.
        let mut pending: Vec<std::ops::Range<usize>> = Vec::new();
        pending.push(0..sites.len());
        while let Some(range) = pending.pop() {
            if stop.requested() {
                return Err(Interrupted {
                    attached,
                    total: sites.len(),
                }
                .into());
            }
            let error = match multi::link(
                program.as_fd(),
                request.target,
                &sites[range.clone()],
                request.scope.pid(),
            ) {
                Ok(link) => {
                    links.push(link);
                    attached += range.len();
                    continue;
                }
                Err(error) => error,
            };
            let context = || {
                format!(
                    "creating a uprobe_multi link for {} sites in {}",
                    range.len(),
                    request.shown
                )
            };
            let errno = error.raw_os_error().filter(|&e| is_site_errno(e));
            match errno {
                Some(_) if range.len() > 1 && dropped.len() < MAX_DROPPED => {
                    let middle = range.start + range.len() / 2;
                    pending.push(middle..range.end);
                    pending.push(range.start..middle);
                }
                Some(errno) if range.len() == 1 && dropped.len() < MAX_DROPPED => {
                    dropped.push(Dropped {
                        index: range.start,
                        errno,
                    });
                }
                _ => return Err(anyhow::Error::from(error).context(context())),
            }
        }
        if links.is_empty() && !sites.is_empty() {
            let reason = dropped.first().map(Dropped::reason).unwrap_or_default();
            anyhow::bail!(
                "the kernel refused every probe site in {}: {reason}",
                request.shown
            );
        }
        dropped.sort_by_key(|d| d.index);
        Ok(Link {
            method: Method::UprobeMulti,
            dropped,
            _multi: links,
            _perf: perf::Links::default(),
        })
    }
}

/// Detaches `links` together: closing a uprobe_multi link waits for an
/// RCU grace period (40-90 ms each measured on 6.18, while the target
/// runs), so the hundreds of links of a budget's chunks, closed one after
/// the other, took seconds. Perf events go to one helper process (see
/// `perf`).
pub fn release(links: Vec<Link>) {
    let mut fds = Vec::new();
    // Perf events together, so that one helper process releases them all.
    let mut perf = perf::Links::default();
    for mut link in links {
        fds.append(&mut link._multi);
        perf.append(&mut link._perf);
    }
    close_in_parallel(fds);
    drop(perf);
}

/// Threads that close links at once (see [`close_in_parallel`]).
const CLOSING_THREADS: usize = 64;

/// Closes `fds` from many threads at once: closing a link waits for a
/// grace period outside any lock (6.13+), and waits that overlap share it.
pub(crate) fn close_in_parallel(fds: Vec<OwnedFd>) {
    let per_thread = fds.len().div_ceil(CLOSING_THREADS).max(1);
    let mut fds = fds.into_iter();
    std::thread::scope(|scope| loop {
        let chunk: Vec<OwnedFd> = fds.by_ref().take(per_thread).collect();
        if chunk.is_empty() {
            break;
        }
        // A thread that cannot start leaves its chunk to this one.
        let _ = std::thread::Builder::new().spawn_scoped(scope, move || drop(chunk));
    });
}

/// What the kernel says one program has cost so far, while BPF run-time
/// statistics are on (`aya::sys::enable_stats`; zero otherwise).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunTime {
    pub nanoseconds: u64,
    pub runs: u64,
}

impl Attacher {
    /// The run time of `program` as loaded for the method in use, from its
    /// descriptor's fdinfo (where the kernel shows `run_time_ns` and
    /// `run_cnt`: the same for programs aya loaded and gotrace's own).
    pub fn run_time(&mut self, ebpf: &mut Ebpf, program: &str) -> anyhow::Result<RunTime> {
        use std::os::fd::AsRawFd as _;
        let fd = if self.no_multi.is_none() {
            self.multi_program(ebpf, program)?.as_raw_fd()
        } else {
            aya_program(ebpf, program)?.as_fd().as_raw_fd()
        };
        let path = format!("/proc/self/fdinfo/{fd}");
        let info = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        Ok(run_time_of(&info))
    }
}

/// `run_time_ns` and `run_cnt` of a BPF program's fdinfo.
fn run_time_of(fdinfo: &str) -> RunTime {
    let field = |name: &str| {
        fdinfo
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    RunTime {
        nanoseconds: field("run_time_ns:"),
        runs: field("run_cnt:"),
    }
}

/// `name` as aya loads it (once), probing which BTF features an older
/// kernel has, for per-site probes (see `perf`).
fn aya_program<'e>(ebpf: &'e mut Ebpf, name: &str) -> anyhow::Result<&'e aya::programs::ProgramFd> {
    let uprobe: &mut UProbe = ebpf
        .program_mut(name)
        .with_context(|| format!("eBPF program {name} missing from gotrace's object"))?
        .try_into()
        .with_context(|| format!("eBPF program {name} is not a uprobe"))?;
    if uprobe.fd().is_err() {
        uprobe
            .load()
            .with_context(|| format!("loading eBPF program {name}"))?;
    }
    uprobe
        .fd()
        .with_context(|| format!("eBPF program {name} is not loaded"))
}

/// Whether `err` is the kernel saying the process probes were scoped to
/// is gone: no other method can attach to it either.
pub fn process_gone(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            == Some(libc::ESRCH)
    })
}

/// Errors the kernel gives for one site it will not probe: an instruction
/// it refuses (ENOTSUPP, ENOEXEC), or a uprobe of another tool already on
/// the instruction with another reference counter (EINVAL).
fn is_site_errno(errno: i32) -> bool {
    const ENOTSUPP: i32 = 524;
    matches!(errno, ENOTSUPP | libc::ENOEXEC | libc::EINVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_time_from_fdinfo() {
        // funccount's program under --budget, read on 6.18.
        let fdinfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1038\n\
                      prog_type:\t2\nprog_jited:\t1\nprog_tag:\t4a8ba11ef6d769d0\n\
                      memlock:\t4096\nprog_id:\t459\nrun_time_ns:\t25269013\n\
                      run_cnt:\t295057\nrecursion_misses:\t0\nverified_insns:\t91\n";
        assert_eq!(
            run_time_of(fdinfo),
            RunTime {
                nanoseconds: 25_269_013,
                runs: 295_057
            }
        );
        // Before 5.1 there are no such fields: nothing is known to cost.
        assert_eq!(run_time_of("prog_type:\t2\n"), RunTime::default());
    }
}
