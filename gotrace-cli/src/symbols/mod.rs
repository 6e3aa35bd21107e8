//! What gotrace knows about a traced binary: its functions (name, address,
//! size), how virtual addresses map to file offsets, and which Go toolchain
//! built it.
//!
//! Each source of function names is its own module (`elf` for `.symtab` /
//! `.dynsym`); [`Binary::open`] merges them so callers never care where a
//! name came from.

mod elf;
mod go;
mod locate;

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use memmap2::Mmap;

pub use go::Toolchain;
pub use locate::locate;

/// One function of a binary that a probe can be attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    /// Symbol name as the toolchain wrote it (`main.(*T).Method`, `fmt.Println`).
    pub name: String,
    /// Virtual address of the first instruction.
    pub address: u64,
    /// Length of the machine code in bytes (0 when the symbol did not say).
    pub size: u64,
}

/// A loadable segment: how a range of virtual addresses sits in the file.
#[derive(Clone, Copy, Debug)]
struct Segment {
    address: u64,
    file_offset: u64,
    file_size: u64,
}

/// Errors found while reading a binary, each naming what was wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum SymbolError {
    /// The file could not be opened or mapped.
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not an ELF object (a script, data, another format...).
    #[error("{path} is not an ELF binary: give the path of a compiled Go program or library")]
    NotElf { path: PathBuf },
}

/// A binary opened for tracing; its bytes are mapped, not copied.
pub struct Binary {
    path: PathBuf,
    data: Mmap,
    functions: Vec<Function>,
    segments: Vec<Segment>,
    toolchain: Option<Toolchain>,
}

impl Binary {
    /// Maps `path` and reads its function table.
    pub fn open(path: &Path) -> Result<Self, SymbolError> {
        let io = |source| SymbolError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        if file.metadata().map_err(io)?.is_dir() {
            return Err(io(std::io::Error::from(std::io::ErrorKind::IsADirectory)));
        }
        // SAFETY: the mapping is read-only; a binary rewritten under us while
        // tracing is already undefined for uprobes themselves.
        let data = unsafe { Mmap::map(&file) }.map_err(io)?;
        let not_elf = || SymbolError::NotElf {
            path: path.to_owned(),
        };
        let object = object::File::parse(&*data).map_err(|_| not_elf())?;
        if object.format() != object::BinaryFormat::Elf {
            return Err(not_elf());
        }
        let functions = elf::functions(&object);
        let segments = elf::segments(&object);
        let toolchain = go::detect(&object);
        drop(object);
        Ok(Self {
            path: path.to_owned(),
            data,
            functions,
            segments,
            toolchain,
        })
    }

    /// The path this binary was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every function found, sorted by address, one entry per address.
    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    /// The Go toolchain that built this binary, if it is a Go binary.
    pub fn toolchain(&self) -> Option<Toolchain> {
        self.toolchain
    }

    /// The file offset of a virtual address, which is what a uprobe is
    /// attached by. `None` when no loadable segment holds the address.
    pub fn file_offset(&self, address: u64) -> Option<u64> {
        self.segments.iter().find_map(|s| {
            let delta = address.checked_sub(s.address)?;
            (delta < s.file_size).then_some(s.file_offset + delta)
        })
    }

    /// The machine code of `function` as stored in the file (empty when its
    /// size is unknown or it lies outside the file).
    pub fn code(&self, function: &Function) -> &[u8] {
        let Some(start) = self.file_offset(function.address) else {
            return &[];
        };
        let start = start as usize;
        let end = start.saturating_add(function.size as usize);
        self.data.get(start..end).unwrap_or(&[])
    }
}
