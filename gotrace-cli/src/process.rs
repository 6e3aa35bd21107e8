//! Processes as `/proc` shows them: the ones `-p` names, and every one a
//! host-wide run looks at.

use std::{
    num::NonZeroU32,
    os::fd::{FromRawFd as _, OwnedFd},
    path::PathBuf,
};

use anyhow::{bail, Context as _};

/// A process that existed when gotrace looked it up.
#[derive(Clone, Copy, Debug)]
pub struct Process {
    pid: NonZeroU32,
}

impl Process {
    /// Finds the process `pid`, or says it does not exist.
    pub fn find(pid: u32) -> anyhow::Result<Self> {
        let Some(pid) = NonZeroU32::new(pid) else {
            bail!("-p 0 is not a process: give the PID of the Go program to trace");
        };
        let proc = PathBuf::from(format!("/proc/{pid}"));
        if !proc.exists() {
            bail!("no process with PID {pid}: is it still running? (see `pgrep -a NAME`)");
        }
        Ok(Self { pid })
    }

    /// A process seen in a `/proc` listing or an exec event, which may
    /// have exited since.
    pub fn seen(pid: NonZeroU32) -> Self {
        Self { pid }
    }

    /// Every process now running, in PID order, kernel threads included.
    pub fn all() -> anyhow::Result<Vec<Self>> {
        let mut all: Vec<Self> = std::fs::read_dir("/proc")
            .context("listing /proc")?
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .filter_map(NonZeroU32::new)
            .map(Self::seen)
            .collect();
        all.sort_by_key(|p| p.pid);
        Ok(all)
    }

    pub fn pid(self) -> NonZeroU32 {
        self.pid
    }

    /// Its name (`/proc/PID/comm`, at most 15 bytes), or `None` once it
    /// has exited.
    pub fn comm(self) -> Option<String> {
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", self.pid)).ok()?;
        Some(comm.trim_end_matches('\n').to_owned())
    }

    /// Its cgroup in the v2 hierarchy, as a path from the hierarchy's root
    /// (`/system.slice/app.service`), from `/proc/PID/cgroup`.
    pub fn cgroup(self) -> Option<String> {
        let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", self.pid)).ok()?;
        cgroups
            .lines()
            .find_map(|line| line.strip_prefix("0::"))
            .map(str::to_owned)
    }

    /// Whether it sees another filesystem than gotrace (a container): its
    /// mount namespace differs from ours.
    pub fn in_other_mount_namespace(self) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        let namespace = |pid: &str| std::fs::metadata(format!("/proc/{pid}/ns/mnt")).ok();
        match (namespace(&self.pid.to_string()), namespace("self")) {
            (Some(theirs), Some(ours)) => (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino()),
            _ => false,
        }
    }

    /// The executable as the kernel sees it: `/proc/PID/exe` resolves to the
    /// right inode even inside another mount namespace.
    pub fn exe(self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/exe", self.pid))
    }

    /// The process's root directory: paths it uses resolve under here, even
    /// inside another mount namespace (a container).
    pub fn root(self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid))
    }

    /// The files mapped into the process (executable and libraries), as
    /// paths in its own filesystem, from `/proc/PID/maps`.
    pub fn mapped_files(self) -> anyhow::Result<Vec<String>> {
        let maps_path = format!("/proc/{}/maps", self.pid);
        let maps = std::fs::read_to_string(&maps_path)
            .with_context(|| format!("reading {maps_path} (did process {} exit?)", self.pid))?;
        let mut files: Vec<String> = maps
            .lines()
            // address perms offset dev inode path
            .filter_map(|line| line.split_whitespace().nth(5))
            .filter(|path| path.starts_with('/'))
            .map(str::to_owned)
            .collect();
        files.dedup();
        Ok(files)
    }

    /// The executable's path as the process named it, for messages.
    pub fn exe_name(self) -> String {
        std::fs::read_link(self.exe())
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| format!("/proc/{}/exe", self.pid))
    }

    /// The executable the process runs now, as (device, inode): it
    /// changes when the process execs another program.
    pub fn executable(self) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt as _;
        let exe = std::fs::metadata(format!("/proc/{}/exe", self.pid)).ok()?;
        Some((exe.dev(), exe.ino()))
    }

    /// A pidfd that becomes readable when the process exits.
    pub fn exit_notifier(self) -> anyhow::Result<OwnedFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid.get() as libc::pid_t, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("watching process {} for exit (pidfd_open)", self.pid));
        }
        // SAFETY: the kernel just returned this fd to us and nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }
}
