//! The process named by `-p PID`.

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

    pub fn pid(self) -> NonZeroU32 {
        self.pid
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
