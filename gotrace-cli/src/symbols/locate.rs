//! Which file a pattern's `PATH` (or `-p PID`) names.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::process::Process;

/// Directories searched for a library named without a path (`go:` is
/// libgo), as the dynamic linker's default search path on Debian amd64.
const LIBRARY_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
];

/// A binary to trace: the path probes are attached through, and the name to
/// show the user.
#[derive(Debug)]
pub struct Located {
    pub path: PathBuf,
    pub display: String,
}

/// Finds the binary for `path` (from `PATH:FUNC`) and/or `process` (`-p`).
///
/// A path with a `/`, or an existing file, is taken as is; a bare name like
/// `go` or `libgo` is looked up as a shared library (`libgo.so.N`); no path
/// with `-p` means the process's executable. With `-p`, paths are looked up
/// as the process sees them, so binaries in containers resolve: absolute
/// paths through `/proc/PID/root`, bare names among the files it maps.
pub fn locate(path: Option<&str>, process: Option<Process>) -> anyhow::Result<Located> {
    if let (Some(path), Some(process)) = (path, process) {
        if let Some(located) = locate_in_process(path, process)? {
            return Ok(located);
        }
    }
    let Some(path) = path else {
        return match process {
            Some(process) => Ok(Located {
                path: process.exe(),
                display: process.exe_name(),
            }),
            None => bail!("no binary given: write PATH:FUNC (e.g. /usr/bin/app:main.*), or trace a running process with -p PID"),
        };
    };
    let as_path = Path::new(path);
    if path.contains('/') || as_path.exists() {
        if !as_path.exists() {
            bail!("{path}: no such file (give the path of a Go binary, or a library name such as `go` for libgo)");
        }
        return Ok(Located {
            path: as_path.to_owned(),
            display: path.to_owned(),
        });
    }
    match find_library(path) {
        Some(library) => Ok(Located {
            display: library.display().to_string(),
            path: library,
        }),
        None => bail!(
            "{path}: no such file, and no library lib{}.so in {}",
            path.strip_prefix("lib").unwrap_or(path),
            LIBRARY_DIRS.join(", ")
        ),
    }
}

/// `path` as process `process` sees it, or `None` to look it up as usual.
fn locate_in_process(path: &str, process: Process) -> anyhow::Result<Option<Located>> {
    let pid = process.pid();
    if let Some(relative) = path.strip_prefix('/') {
        let inside = process.root().join(relative);
        if !inside.exists() {
            bail!(
                "{path}: no such file in the filesystem of process {pid} (looked in {})",
                inside.display()
            );
        }
        return Ok(Some(Located {
            path: inside,
            display: path.to_owned(),
        }));
    }
    if path.contains('/') {
        return Ok(None);
    }
    let mapped = process.mapped_files()?;
    let exe = process.exe_name();
    let is_exe = Path::new(&exe).file_name().is_some_and(|n| n == path);
    let found = if is_exe {
        Some(exe)
    } else {
        mapped.into_iter().find(|file| {
            Path::new(file)
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| library_name_matches(n, path))
        })
    };
    Ok(found.map(|file| Located {
        path: process.root().join(file.trim_start_matches('/')),
        display: file,
    }))
}

/// Whether file name `file` is the library `name` (`go`, `libgo`,
/// `libgo.so`) or exactly `name`.
fn library_name_matches(file: &str, name: &str) -> bool {
    let stem = name.strip_prefix("lib").unwrap_or(name);
    let stem = stem.split(".so").next().unwrap_or(stem);
    let prefix = format!("lib{stem}.so");
    file == name || file == prefix || file.starts_with(&format!("{prefix}."))
}

/// `go`, `libgo` or `libgo.so` -> the newest `libgo.so*` in the standard
/// directories (the versioned file is what programs map).
fn find_library(name: &str) -> Option<PathBuf> {
    find_library_under(Path::new("/"), name)
}

/// [`find_library`] in the filesystem whose root is `root` (a process's
/// `/proc/PID/root`).
pub fn find_library_under(root: &Path, name: &str) -> Option<PathBuf> {
    LIBRARY_DIRS.iter().find_map(|dir| {
        let dir = root.join(dir.trim_start_matches('/'));
        let mut candidates: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n != name && library_name_matches(n, name))
            })
            .collect();
        // The longest name is the most specific version (libgo.so.21.0.0).
        candidates.sort_by_key(|p| p.as_os_str().len());
        candidates.pop()
    })
}

#[cfg(test)]
mod tests {
    use super::library_name_matches;

    #[test]
    fn library_names() {
        for name in ["go", "libgo", "libgo.so", "libgo.so.21"] {
            assert!(library_name_matches("libgo.so.21", name), "{name}");
        }
        assert!(library_name_matches("libgo.so", "go"));
        assert!(!library_name_matches("libgomp.so.1", "go"));
        assert!(!library_name_matches("libc.so.6", "go"));
        assert!(library_name_matches("counter", "counter"));
    }
}
