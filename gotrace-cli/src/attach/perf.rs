//! One perf-event uprobe per site: what kernels without uprobe_multi
//! links (before 6.6) offer.
//!
//! Each site is a perf event (`perf_event_open` on the `uprobe` PMU) and a
//! BPF link that attaches the program to it with the site's cookie.
//! Attaching is a few syscalls per site. Detaching is the problem: the
//! kernel releases each event under one global mutex and waits for a grace
//! period each time (`uprobe_unregister_sync`), measured here at 120 ms a
//! site, so 4,400 sites took 540 s, and a process holding them cannot even
//! exit sooner (the kernel closes its files one by one).
//!
//! So releasing many sites is split in two. Closing the links first
//! detaches the program from every event at once (an event whose link
//! closes stays registered while something else holds it), so no gotrace
//! program runs once that is done. The events themselves are then handed
//! to a helper process (`gotrace-detach`), which closes them at the pace
//! the kernel allows while gotrace exits at once.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd, RawFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya_obj::generated::{bpf_attach_type::BPF_PERF_EVENT, bpf_attr, bpf_cmd, perf_event_attr};

use super::{Dropped, Interrupted, Scope, Site};
use crate::stop::Stop;

/// How often attaching many sites one by one says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// From this many sites on, attaching says what it is doing.
const MANY: usize = 1000;

/// Up to this many sites are released in place (a second or so); more go
/// to the helper process.
const RELEASE_IN_PLACE: usize = 8;

/// `PERF_FLAG_FD_CLOEXEC`.
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// One probed site: its event and the link of the program to it.
struct Probe {
    link: OwnedFd,
    event: OwnedFd,
}

/// Perf-event probes; dropping them detaches every site (see the module
/// docs for how).
#[derive(Default)]
pub struct Links(Vec<Probe>);

impl Links {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Moves `other`'s probes into these.
    pub fn append(&mut self, other: &mut Links) {
        self.0.append(&mut other.0);
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        let probes = std::mem::take(&mut self.0);
        if probes.len() <= RELEASE_IN_PLACE {
            return;
        }
        let (links, events): (Vec<OwnedFd>, Vec<OwnedFd>) =
            probes.into_iter().map(|p| (p.link, p.event)).unzip();
        super::close_in_parallel(links);
        release_in_helper(events);
    }
}

/// Closes `events` in a helper process, which outlives gotrace if need be;
/// in place if no helper can be started.
fn release_in_helper(events: Vec<OwnedFd>) {
    let mut keep: Vec<RawFd> = events.iter().map(|e| e.as_raw_fd()).collect();
    keep.sort_unstable();
    // SAFETY: fork in a multi-threaded process: the child only makes
    // async-signal-safe system calls on data prepared before the fork
    // (`keep`), and never returns.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: as above; plain system calls, then _exit.
            unsafe { detach_helper(&keep) }
        }
        -1 => drop(events),
        child => {
            // The grandchild does the work; the child exits at once.
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
            // Our copies: the helper holds the events now, so this is quick.
            drop(events);
        }
    }
}

/// The forked child: starts a grandchild (so that nobody need reap it)
/// that keeps only the `events` descriptors (sorted), closes them, and
/// exits. Never returns.
///
/// # Safety
/// Must only be called in a freshly forked child.
unsafe fn detach_helper(events: &[RawFd]) -> ! {
    // SAFETY: async-signal-safe system calls only, per the caller.
    unsafe {
        if libc::fork() != 0 {
            libc::_exit(0);
        }
        libc::setsid();
        libc::prctl(libc::PR_SET_NAME, c"gotrace-detach".as_ptr());
        // Everything else first: the terminal, the pipes of whoever reads
        // gotrace's output, programs, maps and links.
        let mut from: RawFd = 0;
        for &fd in events {
            if fd > from {
                libc::syscall(libc::SYS_close_range, from as u32, (fd - 1) as u32, 0);
            }
            from = fd + 1;
        }
        libc::syscall(libc::SYS_close_range, from as u32, u32::MAX, 0);
        for &fd in events {
            libc::close(fd);
        }
        libc::_exit(0)
    }
}

/// How far attaching one by one got, over the calls of [`attach`] that
/// make one binary's probes (a budget attaches them in chunks): says what
/// it is doing when there are [`MANY`] sites, and how far it got every
/// [`PROGRESS_EVERY`].
pub struct Progress {
    done: usize,
    total: usize,
    said: Instant,
}

impl Progress {
    pub fn new(total: usize) -> Progress {
        if total >= MANY {
            eprintln!(
                "gotrace: attaching {total} probes one by one; the kernel releases such probes \
                 one at a time (about 0.1 s each on 6.18), in a gotrace-detach process after \
                 gotrace ends"
            );
        }
        Progress {
            done: 0,
            total,
            said: Instant::now(),
        }
    }

    fn tick(&mut self) {
        if self.total >= MANY && self.said.elapsed() >= PROGRESS_EVERY {
            eprintln!(
                "gotrace: attached {} of {} probes one by one (no uprobe_multi links here)",
                self.done, self.total
            );
            self.said = Instant::now();
        }
        self.done += 1;
    }
}

/// Attaches `program` at every site, one perf event each, checking `stop`
/// between sites and telling `progress` (its own when `None`). Sites the
/// kernel refuses are dropped and reported; any other error ends the
/// attach, detaching what was attached.
pub fn attach(
    program: BorrowedFd<'_>,
    target: &Path,
    shown: &str,
    sites: &[Site],
    scope: Scope,
    stop: &Stop,
    progress: Option<&mut Progress>,
) -> anyhow::Result<(Links, Vec<Dropped>)> {
    raise_fd_limit(2 * sites.len());
    let pmu = uprobe_pmu()?;
    let path = CString::new(target.as_os_str().as_bytes())
        .with_context(|| format!("{shown} contains a NUL byte"))?;
    let mut own = None;
    let progress = match progress {
        Some(progress) => progress,
        None => own.insert(Progress::new(sites.len())),
    };
    let mut links = Links::default();
    let mut dropped = Vec::new();
    for (i, site) in sites.iter().enumerate() {
        if stop.requested() {
            return Err(Interrupted {
                attached: links.len(),
                total: sites.len(),
            }
            .into());
        }
        progress.tick();
        let probe = open_event(pmu, &path, site.file_offset, scope).and_then(|event| {
            let link = link_event(program, &event, site.cookie)?;
            Ok(Probe { link, event })
        });
        match probe {
            Ok(probe) => links.0.push(probe),
            Err(err) => match err.raw_os_error().filter(|&e| super::is_site_errno(e)) {
                Some(errno) => dropped.push(Dropped { index: i, errno }),
                None => {
                    return Err(anyhow::Error::from(err).context(format!(
                        "attaching a uprobe at file offset {:#x} of {shown}",
                        site.file_offset,
                    )))
                }
            },
        }
    }
    Ok((links, dropped))
}

/// The `uprobe` PMU's perf event type.
fn uprobe_pmu() -> anyhow::Result<u32> {
    const TYPE: &str = "/sys/bus/event_source/devices/uprobe/type";
    let text = std::fs::read_to_string(TYPE)
        .with_context(|| format!("reading {TYPE} (is this kernel built with uprobes?)"))?;
    text.trim()
        .parse()
        .with_context(|| format!("{TYPE} holds {text:?}"))
}

/// A perf event for a uprobe at `offset` of `path`.
fn open_event(pmu: u32, path: &CString, offset: u64, scope: Scope) -> io::Result<OwnedFd> {
    // SAFETY: perf_event_attr is a plain C struct; all-zero is its default.
    let mut attr: perf_event_attr = unsafe { std::mem::zeroed() };
    attr.size = std::mem::size_of::<perf_event_attr>() as u32;
    attr.type_ = pmu;
    attr.__bindgen_anon_3.config1 = path.as_ptr() as u64;
    attr.__bindgen_anon_4.config2 = offset;
    let (pid, cpu) = match scope.pid() {
        Some(pid) => (pid as libc::pid_t, -1),
        None => (-1, 0),
    };
    // SAFETY: attr is valid for the call; the path it points to outlives it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const perf_event_attr,
            pid,
            cpu,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// A BPF link of `program` to the perf `event`, with the site's cookie.
fn link_event(program: BorrowedFd<'_>, event: &OwnedFd, cookie: u64) -> io::Result<OwnedFd> {
    // SAFETY: bpf_attr is a plain C union; all-zero is its default.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing the link_create member of a zeroed union.
    unsafe {
        let create = &mut attr.link_create;
        create.__bindgen_anon_1.prog_fd = program.as_raw_fd() as u32;
        create.__bindgen_anon_2.target_fd = event.as_raw_fd() as u32;
        create.attach_type = BPF_PERF_EVENT as u32;
        create.__bindgen_anon_3.perf_event.bpf_cookie = cookie;
    }
    super::multi::bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr)
}

/// Each perf-event uprobe holds two descriptors (event and link), and a
/// budget splits links into chunks; the usual soft limit of 1024 would
/// stop us at ~500 probes, so raise it to the hard limit when needed.
/// Failing to raise is not an error: the attach then says EMFILE.
pub(crate) fn raise_fd_limit(descriptors: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
            && limit.rlim_cur < (descriptors + 64) as libc::rlim_t
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
