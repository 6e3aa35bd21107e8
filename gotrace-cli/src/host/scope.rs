//! Which processes a run keeps: `-p` (one or several PIDs), `--comm GLOB`
//! and `-c/--cgroup PATH`. User space uses the scope to choose the
//! binaries it attaches to; the kernel applies it again at every probe
//! (see `gotrace_common::host`), since a probe on a binary fires in every
//! process that runs it.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _};
use aya::EbpfLoader;
use gotrace_common::host::{CGROUP_ID, CGROUP_LEVEL, MAX_PIDS, PIDS_MAP, PID_FILTER};
use regex::Regex;

use crate::{attach, process::Process};

/// The processes a run keeps.
#[derive(Debug)]
pub struct Scope {
    /// `-p`: these processes and no others.
    pids: Vec<Process>,
    comm: Option<Comm>,
    cgroup: Option<Cgroup>,
    /// The globals of `gotrace_common::host`, as the loader borrows them.
    globals: Globals,
}

/// Values of `CGROUP_ID`, `CGROUP_LEVEL` and `PID_FILTER`.
#[derive(Debug)]
struct Globals {
    cgroup_id: u64,
    cgroup_level: u64,
    pid_filter: u64,
}

impl Scope {
    /// Checks each selector: every PID exists, the glob parses, the cgroup
    /// is a directory of the cgroup v2 hierarchy.
    pub fn new(pids: &[u32], comm: Option<&str>, cgroup: Option<&Path>) -> anyhow::Result<Self> {
        let mut processes = Vec::new();
        for &pid in pids {
            let process = Process::find(pid)?;
            if !processes.iter().any(|p: &Process| p.pid() == process.pid()) {
                processes.push(process);
            }
        }
        let mut scope = Self {
            pids: processes,
            comm: comm.map(Comm::new).transpose()?,
            cgroup: cgroup.map(Cgroup::open).transpose()?,
            globals: Globals {
                cgroup_id: 0,
                cgroup_level: 0,
                pid_filter: 0,
            },
        };
        if let Some(cgroup) = &scope.cgroup {
            scope.globals.cgroup_id = cgroup.id;
            scope.globals.cgroup_level = cgroup.level;
        }
        scope.globals.pid_filter = u64::from(scope.filters_by_pid());
        Ok(scope)
    }

    /// The `-p` processes (none: any process).
    pub fn processes(&self) -> &[Process] {
        &self.pids
    }

    /// The one `-p` process, when there is exactly one: probes can then be
    /// limited to it by the kernel's own uprobe filter, before any program
    /// runs.
    pub fn single_process(&self) -> Option<Process> {
        match (self.pids.as_slice(), &self.comm, &self.cgroup) {
            ([one], None, None) => Some(*one),
            _ => None,
        }
    }

    /// Whether processes that start later can join: only `-p` fixes the
    /// set.
    pub fn follows_new_processes(&self) -> bool {
        self.pids.is_empty()
    }

    /// The kernel filter for the links of this run.
    pub fn link_scope(&self) -> attach::Scope {
        attach::Scope::of(self.single_process())
    }

    /// Whether the programs must look the running process up in
    /// `PIDS_MAP` (several `-p` PIDs, or `--comm`).
    pub fn filters_by_pid(&self) -> bool {
        self.single_process().is_none() && (!self.pids.is_empty() || self.comm.is_some())
    }

    /// Whether `process` is kept: `None` when it is, else why not (for
    /// `-v`). A process that exited is not kept.
    pub fn excludes(&self, process: Process) -> Option<String> {
        if !self.pids.is_empty() && !self.pids.iter().any(|p| p.pid() == process.pid()) {
            return Some("not given with -p".to_owned());
        }
        if let Some(comm) = &self.comm {
            let name = process.comm()?;
            if !comm.matches(&name, &process.exe_name()) {
                return Some(format!("its name {name:?} does not match --comm"));
            }
        }
        if let Some(cgroup) = &self.cgroup {
            match process.cgroup() {
                Some(path) if cgroup.holds(&path) => {}
                Some(path) => return Some(format!("it is in cgroup {path}")),
                None => return Some("its cgroup is unknown".to_owned()),
            }
        }
        None
    }

    /// Sets the kernel side of the scope before the object is loaded.
    pub fn configure<'a>(&'a self, loader: &mut EbpfLoader<'a>) {
        loader
            .override_global(CGROUP_ID, &self.globals.cgroup_id, true)
            .override_global(CGROUP_LEVEL, &self.globals.cgroup_level, true)
            .override_global(PID_FILTER, &self.globals.pid_filter, true);
        if self.filters_by_pid() {
            loader.map_max_entries(PIDS_MAP, MAX_PIDS);
        }
    }

    /// How the run is limited, for its banner: empty when it is not.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match self.pids.as_slice() {
            [] => {}
            [one] => parts.push(format!("PID {}", one.pid())),
            many => parts.push(format!(
                "PIDs {}",
                many.iter()
                    .map(|p| p.pid().to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )),
        }
        if let Some(comm) = &self.comm {
            parts.push(format!("processes named {}", comm.glob));
        }
        if let Some(cgroup) = &self.cgroup {
            parts.push(format!("cgroup {}", cgroup.path.display()));
        }
        parts.join(", ")
    }
}

/// `--comm GLOB`.
#[derive(Debug)]
struct Comm {
    glob: String,
    matcher: Regex,
}

impl Comm {
    fn new(glob: &str) -> anyhow::Result<Self> {
        if glob.is_empty() {
            bail!("--comm needs a process name or glob, e.g. --comm 'prometheus*'");
        }
        let matcher = Regex::new(&crate::probe::pattern::glob_to_regex(glob))
            .with_context(|| format!("--comm {glob:?}"))?;
        Ok(Self {
            glob: glob.to_owned(),
            matcher,
        })
    }

    /// Whether a process named `comm` running `exe` matches: by its name,
    /// or by its executable's file name, since the kernel cuts names to
    /// 15 bytes (`prometheus-node` runs `prometheus-node-exporter`).
    fn matches(&self, comm: &str, exe: &str) -> bool {
        let file_name = exe.trim_end_matches(" (deleted)").rsplit('/').next();
        self.matcher.is_match(comm) || file_name.is_some_and(|f| self.matcher.is_match(f))
    }
}

/// `-c/--cgroup PATH`: a cgroup v2 directory, and the processes in it and
/// in the cgroups below it.
#[derive(Debug)]
struct Cgroup {
    /// As found in the filesystem.
    path: PathBuf,
    /// From the hierarchy's root, as `/proc/PID/cgroup` names cgroups.
    relative: String,
    /// The cgroup's id: its directory's inode in cgroup2fs.
    id: u64,
    /// Its depth below the root, for `bpf_get_current_ancestor_cgroup_id`.
    level: u64,
}

/// `statfs` magic of the cgroup v2 filesystem.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

impl Cgroup {
    /// Finds `path`: a directory of a cgroup v2 mount, or a path from the
    /// hierarchy's root (`/system.slice/app.service`).
    fn open(path: &Path) -> anyhow::Result<Self> {
        let mount = cgroup2_mount()?;
        let path = if path.starts_with(&mount.point) {
            path.to_owned()
        } else {
            let inside = mount.point.join(path.strip_prefix("/").unwrap_or(path));
            if !inside.exists() && path.exists() {
                bail!(
                    "{} is not in the cgroup v2 hierarchy (mounted at {}): give a directory under it",
                    path.display(),
                    mount.point.display()
                );
            }
            inside
        };
        let metadata = std::fs::metadata(&path).map_err(|_| {
            anyhow::anyhow!(
                "no cgroup {}: give a directory under {} (e.g. a container's or a service's cgroup)",
                path.display(),
                mount.point.display()
            )
        })?;
        if !metadata.is_dir() || !is_cgroup2(&path) {
            bail!(
                "{} is not a cgroup v2 directory: give one under {}",
                path.display(),
                mount.point.display()
            );
        }
        let below = path
            .strip_prefix(&mount.point)
            .context("cgroup path outside its mount")?;
        let components: Vec<String> = below
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let root = mount.root.trim_end_matches('/');
        let relative = if components.is_empty() {
            if root.is_empty() {
                "/".to_owned()
            } else {
                root.to_owned()
            }
        } else {
            format!("{root}/{}", components.join("/"))
        };
        let level = relative.split('/').filter(|c| !c.is_empty()).count() as u64;
        Ok(Self {
            path,
            relative,
            id: metadata.ino(),
            level,
        })
    }

    /// Whether the cgroup `path` (from `/proc/PID/cgroup`) is this one or
    /// below it.
    fn holds(&self, path: &str) -> bool {
        self.relative == "/"
            || path == self.relative
            || path
                .strip_prefix(self.relative.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// Where the cgroup v2 hierarchy is mounted, and which of its cgroups is
/// the mount's root.
struct Mount {
    point: PathBuf,
    root: String,
}

/// The first cgroup v2 mount in `/proc/self/mountinfo`.
fn cgroup2_mount() -> anyhow::Result<Mount> {
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    mountinfo
        .lines()
        .find_map(|line| {
            // id parent dev root point options [optional...] - type source super
            let (mount, fs) = line.split_once(" - ")?;
            if fs.split_whitespace().next()? != "cgroup2" {
                return None;
            }
            let fields: Vec<&str> = mount.split_whitespace().collect();
            Some(Mount {
                root: unescape(fields.get(3)?),
                point: PathBuf::from(unescape(fields.get(4)?)),
            })
        })
        .context(
            "no cgroup v2 hierarchy is mounted, so --cgroup cannot be used \
             (mount -t cgroup2 none /sys/fs/cgroup/unified)",
        )
}

/// mountinfo writes spaces and other separators as octal escapes (`\040`).
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_cgroup2(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: a NUL-terminated path and a buffer of the size statfs writes.
    if unsafe { libc::statfs(c_path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: statfs filled it in, since it returned 0.
    let f_type = unsafe { stat.assume_init() }.f_type;
    // glibc's f_type is signed, musl's unsigned.
    #[allow(clippy::unnecessary_cast)]
    let magic = f_type as i64;
    magic == CGROUP2_SUPER_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cgroup(relative: &str) -> Cgroup {
        Cgroup {
            path: PathBuf::new(),
            relative: relative.to_owned(),
            id: 1,
            level: 1,
        }
    }

    #[test]
    fn cgroup_subtrees() {
        let app = cgroup("/system.slice/app.service");
        assert!(app.holds("/system.slice/app.service"));
        assert!(app.holds("/system.slice/app.service/worker"));
        assert!(!app.holds("/system.slice/app.service2"));
        assert!(!app.holds("/system.slice"));
        assert!(cgroup("/").holds("/anything"));
    }

    #[test]
    fn comm_globs() {
        let comm = Comm::new("prom*").unwrap();
        assert!(comm.matches("prometheus", "/usr/bin/prometheus"));
        assert!(!comm.matches("node", "/usr/bin/node"));
        // Names longer than the kernel keeps match by the executable.
        let long = Comm::new("prometheus-node-exporter").unwrap();
        assert!(long.matches("prometheus-node", "/usr/bin/prometheus-node-exporter"));
        assert!(long.matches("x", "/tmp/prometheus-node-exporter (deleted)"));
        assert!(Comm::new("").is_err());
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/sys/fs/my\040cgroup"), "/sys/fs/my cgroup");
        assert_eq!(unescape(r"/a\b"), r"/a\b");
    }
}
