//! Which Go binaries the processes of a scope run: each process's
//! executable, read through `/proc/PID/exe` (so binaries in other mount
//! namespaces, and deleted ones still running, are found), and for gccgo
//! programs the `libgo` they map. Binaries are told apart by device and
//! inode, so that one run by fifty processes is opened and attached once.

use std::{
    collections::BTreeMap,
    num::NonZeroU32,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use super::Scope;
use crate::{
    process::Process,
    symbols::{self, Toolchain},
};

/// A file as the kernel knows it, whatever path leads to it: uprobes are
/// per inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey {
    pub device: u64,
    pub inode: u64,
}

impl FileKey {
    /// The file at `path`, links followed.
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let metadata = std::fs::metadata(path)?;
        Ok(Self {
            device: metadata.dev(),
            inode: metadata.ino(),
        })
    }
}

/// A Go binary that processes in scope run (or, for libgo, map).
#[derive(Clone, Debug)]
pub struct Found {
    pub key: FileKey,
    /// A path to it valid while its first process lives (`/proc/PID/exe`,
    /// or libgo under `/proc/PID/root`): what is opened and attached.
    pub path: PathBuf,
    /// Its path as its processes name it, for output.
    pub display: String,
    pub toolchain: Toolchain,
    /// The processes in scope using it.
    pub pids: Vec<NonZeroU32>,
}

/// Why a process's executable is not traced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// A kernel thread: no executable.
    KernelThread,
    /// It exited while being looked at.
    Exited,
    /// Its executable cannot be read (permission, or a file gone).
    Unreadable(String),
    /// An executable of no Go toolchain (or not ELF at all).
    NotGo,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::KernelThread => f.write_str("kernel thread"),
            Skip::Exited => f.write_str("exited"),
            Skip::Unreadable(why) => write!(f, "unreadable ({why})"),
            Skip::NotGo => f.write_str("not Go"),
        }
    }
}

/// A process not traced, and why.
#[derive(Clone, Debug)]
pub struct Skipped {
    pub pid: NonZeroU32,
    pub comm: String,
    pub why: Skip,
}

/// What a look at the processes found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Go binaries, in the order their first process was found.
    pub found: Vec<Found>,
    pub skipped: Vec<Skipped>,
    /// Processes the scope leaves out (other names, other cgroups).
    pub out_of_scope: usize,
}

/// What is known of each executable already looked at, so that the
/// thousandth `ls` a shell runs is not opened again.
#[derive(Debug, Default)]
pub struct Sniffed(BTreeMap<FileKey, Option<Toolchain>>);

/// Looks at every process the scope keeps (only the `-p` ones, when
/// given).
pub fn scan(scope: &Scope, sniffed: &mut Sniffed) -> anyhow::Result<Scan> {
    let processes = match scope.processes() {
        [] => Process::all()?,
        given => given.to_vec(),
    };
    let mut scan = Scan::default();
    for process in processes {
        if process.pid().get() == std::process::id() {
            continue;
        }
        if scope.excludes(process).is_some() {
            scan.out_of_scope += 1;
            continue;
        }
        match binaries_of(process, sniffed) {
            Ok(found) => {
                for binary in found {
                    match scan.found.iter_mut().find(|f| f.key == binary.key) {
                        Some(known) => known.pids.extend(binary.pids),
                        None => scan.found.push(binary),
                    }
                }
            }
            Err(why) => scan.skipped.push(Skipped {
                pid: process.pid(),
                comm: process.comm().unwrap_or_default(),
                why,
            }),
        }
    }
    Ok(scan)
}

/// The Go binaries `process` runs: its executable if gc built it; its
/// executable and libgo if it is a gccgo program.
pub fn binaries_of(process: Process, sniffed: &mut Sniffed) -> Result<Vec<Found>, Skip> {
    let exe = process.exe();
    let pid = process.pid();
    let key = match FileKey::of(&exe) {
        Ok(key) => key,
        Err(err) => return Err(why_unreadable(process, &err)),
    };
    let toolchain = match sniffed.0.get(&key) {
        Some(known) => *known,
        None => {
            let toolchain = match symbols::toolchain_of(&exe) {
                Ok(toolchain) => toolchain,
                Err(symbols::SymbolError::NotElf { .. }) => None,
                Err(err) => return Err(Skip::Unreadable(err.to_string())),
            };
            sniffed.0.insert(key, toolchain);
            toolchain
        }
    };
    let mut libgo = libgo_of(process);
    if toolchain == Some(Toolchain::Gccgo) && libgo.is_none() {
        libgo = libgo_for_new(process);
    }
    let toolchain = match (toolchain, &libgo) {
        (Some(toolchain), _) => toolchain,
        // A C program that maps libgo (cgo the other way round) runs Go code.
        (None, Some(_)) => Toolchain::Gccgo,
        (None, None) => return Err(Skip::NotGo),
    };
    let exe_display = process.exe_name();
    let mut found = vec![Found {
        key,
        path: exe,
        display: shown(process, exe_display),
        toolchain,
        pids: vec![pid],
    }];
    if toolchain == Toolchain::Gccgo {
        if let Some((path, display)) = libgo {
            if let Ok(key) = FileKey::of(&path) {
                found.push(Found {
                    key,
                    path,
                    display: shown(process, display),
                    toolchain: Toolchain::Gccgo,
                    pids: vec![pid],
                });
            }
        }
    }
    Ok(found)
}

/// A binary's path for output, marked when it is only visible inside
/// the process's own mount namespace (a container).
fn shown(process: Process, path: String) -> String {
    if process.in_other_mount_namespace() {
        format!("{path} (in the mount namespace of PID {})", process.pid())
    } else {
        path
    }
}

/// libgo as `process` maps it, or where its dynamic linker will find it
/// (a gccgo program caught at exec has not mapped it yet): a path to open
/// and the path the process knows it by.
fn libgo_of(process: Process) -> Option<(PathBuf, String)> {
    let mapped = process.mapped_files().ok()?;
    let is_libgo = |file: &str| {
        Path::new(file)
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("libgo.so"))
    };
    if let Some(file) = mapped.into_iter().find(|f| is_libgo(f)) {
        let inside = process.root().join(file.trim_start_matches('/'));
        return Some((inside, file));
    }
    None
}

/// Where a gccgo program started a moment ago will find libgo: the
/// standard library directories of its own filesystem.
fn libgo_for_new(process: Process) -> Option<(PathBuf, String)> {
    let root = process.root();
    let inside = symbols::find_library_under(&root, "go")?;
    let display = Path::new("/")
        .join(inside.strip_prefix(&root).ok()?)
        .display()
        .to_string();
    Some((inside, display))
}

/// Why the executable of `process` could not be looked at.
fn why_unreadable(process: Process, err: &std::io::Error) -> Skip {
    match err.kind() {
        std::io::ErrorKind::NotFound => {
            // Kernel threads have a /proc entry and no executable.
            match std::fs::read(format!("/proc/{}/cmdline", process.pid())) {
                Ok(cmdline) if cmdline.is_empty() => Skip::KernelThread,
                Ok(_) => Skip::Unreadable(err.to_string()),
                Err(_) => Skip::Exited,
            }
        }
        _ => Skip::Unreadable(err.to_string()),
    }
}

impl Scan {
    /// The skipped processes, counted by reason: `3 not Go, 1 unreadable`.
    pub fn skipped_summary(&self) -> String {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for s in &self.skipped {
            let reason = match s.why {
                Skip::Unreadable(_) => "unreadable".to_owned(),
                ref why => why.to_string(),
            };
            *counts.entry(reason).or_default() += 1;
        }
        counts
            .iter()
            .map(|(why, n)| format!("{n} {why}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
