//! What gotrace knows about a traced binary: its functions (name, address,
//! size), how virtual addresses map to file offsets, and which Go toolchain
//! built it.
//!
//! Each source of function names is its own module (`elf` for `.symtab` /
//! `.dynsym`); [`Binary::open`] (a file) and [`Binary::parse`] (bytes)
//! merge them so callers never care where a name came from.

pub mod buildinfo;
pub mod dwarf;
mod elf;
mod go;
pub mod image;
pub mod inline;
mod locate;
mod moduledata;
pub mod pclntab;
pub mod types;

use std::{
    collections::HashMap,
    fs::File,
    path::{Path, PathBuf},
};

use memmap2::Mmap;
use object::Object as _;

use crate::arch::Arch;
use image::{Image, Segment};

pub use go::{abi, Abi, Toolchain};
pub use locate::{find_library_under, locate, Located};

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

/// Whether a call to the function `name` never returns: Go's panics and
/// fatal errors (code after such a call runs only when a deferred
/// `recover` resumes the caller).
fn never_returns(name: &str) -> bool {
    matches!(
        name,
        "runtime.gopanic"
            | "runtime.throw"
            | "runtime.fatal"
            | "runtime.fatalthrow"
            | "runtime.fatalpanic"
            | "runtime.Goexit"
    ) || name.starts_with("runtime.panic")
        || name.starts_with("runtime.goPanic")
}

/// Where a binary's function names came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FunctionSource {
    /// `.symtab` / `.dynsym`.
    SymbolTable,
    /// Go's `.gopclntab`, for binaries stripped of `.symtab`.
    Pclntab,
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
    /// An ELF file for another architecture (a 32-bit Go program, say).
    // The reason is part of the message: as a source it would print twice.
    #[error("{path}: {reason}")]
    Architecture {
        path: PathBuf,
        reason: crate::arch::Unsupported,
    },
}

/// A binary's bytes: mapped from its file, or handed over.
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map) => map,
            Bytes::Owned(bytes) => bytes,
        }
    }
}

/// A binary opened for tracing.
pub struct Binary {
    data: Bytes,
    arch: Arch,
    functions: Vec<Function>,
    source: FunctionSource,
    segments: Vec<Segment>,
    toolchain: Option<Toolchain>,
    facts: Facts,
    inlined: Vec<inline::InlinedSite>,
    /// `moduledata.types` of gc binaries (see `go::types_base`).
    types_base: Option<u64>,
    inline_tables: Option<go::InlineTables>,
}

/// What `gotrace info` reports about a binary beyond its functions.
#[derive(Clone, Debug)]
pub struct Facts {
    /// `.go.buildinfo` of gc binaries.
    pub build_info: Option<buildinfo::BuildInfo>,
    /// The `.comment` compiler line (`GCC: (Debian 12.2.0-14) 12.2.0`).
    pub compiler_comment: Option<String>,
    /// `.symtab` is present (the binary is not stripped).
    pub symbol_table: bool,
    /// DWARF debugging information is present.
    pub dwarf: bool,
    /// ET_DYN: a PIE executable or a shared library.
    pub position_independent: bool,
}

/// Where `goid` sits in `runtime.g` in every gc release gotrace knows
/// (Go 1.17 to 1.27, amd64).
pub const DEFAULT_GOID_OFFSET: u64 = 152;

/// Which Go toolchain built the file at `path` (`None`: no Go toolchain),
/// from its section names and symbols only: far cheaper than
/// [`Binary::open`], for looking at every executable of a host.
pub fn toolchain_of(path: &Path) -> Result<Option<Toolchain>, SymbolError> {
    let io = |source| SymbolError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    // SAFETY: read-only, and only for the duration of this look.
    let data = unsafe { Mmap::map(&file) }.map_err(io)?;
    let object = object::File::parse(&*data).map_err(|_| SymbolError::NotElf {
        path: path.to_owned(),
    })?;
    Ok(go::detect(&object))
}

impl Binary {
    /// Maps `path` (not copied) and reads its function table.
    pub fn open(path: &Path) -> Result<Self, SymbolError> {
        let file = File::open(path).map_err(|source| SymbolError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::open_file(&file, path)
    }

    /// Maps the open `file` and reads its function table; `path` names it
    /// in errors.
    pub fn open_file(file: &File, path: &Path) -> Result<Self, SymbolError> {
        let io = |source| SymbolError::Io {
            path: path.to_owned(),
            source,
        };
        if file.metadata().map_err(io)?.is_dir() {
            return Err(io(std::io::Error::from(std::io::ErrorKind::IsADirectory)));
        }
        // SAFETY: the mapping is read-only; a binary rewritten under us while
        // tracing is already undefined for uprobes themselves.
        let data = unsafe { Mmap::map(file) }.map_err(io)?;
        Self::from_bytes(Bytes::Mapped(data), path)
    }

    /// Reads a binary held in memory (tests, fuzzing), as `open` reads a
    /// file; `bytes` are copied.
    pub fn parse(bytes: &[u8]) -> Result<Self, SymbolError> {
        Self::from_bytes(Bytes::Owned(bytes.to_vec()), Path::new("(bytes)"))
    }

    fn from_bytes(data: Bytes, path: &Path) -> Result<Self, SymbolError> {
        let not_elf = || SymbolError::NotElf {
            path: path.to_owned(),
        };
        let object = object::File::parse(&*data).map_err(|_| not_elf())?;
        if object.format() != object::BinaryFormat::Elf {
            return Err(not_elf());
        }
        let arch = Arch::of_elf(&object).map_err(|reason| SymbolError::Architecture {
            path: path.to_owned(),
            reason,
        })?;
        let mut functions = elf::functions(&object);
        let mut source = FunctionSource::SymbolTable;
        let pclntab = go::Table::find(&object);
        // Stripped Go binaries still carry the runtime's own table.
        if object.symbol_table().is_none() {
            if let Some(from_pclntab) = pclntab
                .as_ref()
                .and_then(|t| go::pclntab_functions(&object, t))
            {
                functions = from_pclntab;
                source = FunctionSource::Pclntab;
            }
        }
        let segments = elf::segments(&object);
        let toolchain = go::detect(&object);
        let image = Image::new(&data, &segments);
        let inline_tables = pclntab
            .as_ref()
            .and_then(|t| go::InlineTables::find(&object, t));
        let inlined = inline_tables
            .as_ref()
            .map(|tables| go::inlined_sites(tables, &data, &image))
            .unwrap_or_default();
        let types_base = (toolchain == Some(Toolchain::Gc))
            .then(|| go::types_base(&object))
            .flatten();
        let facts = Facts {
            build_info: go::build_info(&object, &image),
            compiler_comment: elf::comment(&object),
            symbol_table: object.symbol_table().is_some(),
            dwarf: [".debug_info", ".zdebug_info"]
                .iter()
                .any(|name| object.section_by_name(name).is_some()),
            position_independent: object.kind() == object::ObjectKind::Dynamic,
        };
        drop(object);
        Ok(Self {
            data,
            arch,
            functions,
            source,
            segments,
            toolchain,
            facts,
            inlined,
            types_base,
            inline_tables,
        })
    }

    /// The architecture of its code.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Every function found, sorted by address, one entry per address.
    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    /// Call sites where the compiler inlined a function, in address order.
    pub fn inlined(&self) -> &[inline::InlinedSite] {
        &self.inlined
    }

    /// Where the function names came from.
    pub fn function_source(&self) -> FunctionSource {
        self.source
    }

    /// The Go toolchain that built this binary, if it is a Go binary.
    pub fn toolchain(&self) -> Option<Toolchain> {
        self.toolchain
    }

    /// The binary's bytes by virtual address.
    pub fn image(&self) -> Image<'_> {
        Image::new(&self.data, &self.segments)
    }

    /// The file offset of a virtual address, which is what a uprobe is
    /// attached by. `None` when no loadable segment holds the address.
    pub fn file_offset(&self, address: u64) -> Option<u64> {
        self.image().file_offset(address)
    }

    /// Where the goroutine id sits in `runtime.g`, for keying per-goroutine
    /// state in the kernel: from DWARF when present, else from a table of
    /// Go versions. Parsing DWARF costs time, so only callers that need it
    /// ask.
    pub fn goid_offset(&self) -> Option<(u64, &'static str)> {
        if self.toolchain != Some(Toolchain::Gc) {
            return None;
        }
        let object = object::File::parse(&*self.data).ok()?;
        if let Some(offset) = dwarf::member_offset(&object, "runtime.g", "goid") {
            return Some((offset, "DWARF runtime.g"));
        }
        let version = self.facts.build_info.as_ref()?.go_version.as_str();
        go::goid_offset_for(version).map(|offset| (offset, "Go version table"))
    }

    /// The parameters and results of each of `functions` that DWARF
    /// describes, read in one pass over the binary's DWARF.
    pub fn parameters(&self, functions: &[&str]) -> HashMap<String, Vec<dwarf::Param>> {
        object::File::parse(&*self.data)
            .ok()
            .map(|object| dwarf::parameters(&object, functions))
            .unwrap_or_default()
    }

    /// The parameters of inlined calls, each located at its pc (see
    /// `dwarf::inlined_parameters`), keyed by the call's first
    /// instruction; empty without DWARF.
    pub fn inlined_parameters(
        &self,
        calls: &[dwarf::InlinedCall<'_>],
    ) -> HashMap<u64, Vec<dwarf::InlinedParam>> {
        object::File::parse(&*self.data)
            .ok()
            .map(|object| dwarf::inlined_parameters(&object, calls))
            .unwrap_or_default()
    }

    /// How far below its value at the entry of the function holding `pc`
    /// the stack pointer is at `pc` (gc binaries, Go 1.18+).
    pub fn sp_delta(&self, pc: u64) -> Option<u64> {
        let tables = self.inline_tables.as_ref()?;
        tables.table(&self.data)?.sp_delta(pc)
    }

    /// The function whose code holds `address`.
    pub fn function_at(&self, address: u64) -> Option<&Function> {
        let after = self.functions.partition_point(|f| f.address <= address);
        let f = self.functions.get(after.checked_sub(1)?)?;
        (address < f.address.saturating_add(f.size.max(1))).then_some(f)
    }

    /// Places a probe meant for `address` inside the function that holds
    /// it (an inlined copy's first instruction), by the kernel's rules.
    pub fn place_in_function(
        &self,
        address: u64,
    ) -> Result<crate::attach::placement::Placement, crate::attach::placement::Unprobeable> {
        let parent = self.function_at(address).ok_or_else(|| {
            crate::attach::placement::Unprobeable("it lies in no known function".to_owned())
        })?;
        crate::attach::placement::site(self.arch, self.code(parent), parent.address, address)
    }

    /// The virtual address a file offset is loaded at.
    pub fn address_of_file_offset(&self, offset: u64) -> Option<u64> {
        self.image().address_of_file_offset(offset)
    }

    /// Version, stripping, DWARF and PIE facts.
    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    /// The machine code of `function` as stored in the file (empty when its
    /// size is unknown or it lies outside the file).
    pub fn code(&self, function: &Function) -> &[u8] {
        self.code_at(function.address, function.size)
    }

    /// The frames at code address `pc`: calls inlined there, innermost
    /// first, then the function holding the code. Empty outside Go code;
    /// just the function where there are no inline trees.
    pub fn frames_at(&self, pc: u64) -> Vec<&str> {
        if let Some(tables) = &self.inline_tables {
            if let Some(table) = tables.table(&self.data) {
                return inline::frames_at(&table, &self.image(), tables.gofunc, pc);
            }
        }
        self.function_at(pc)
            .map(|f| vec![f.name.as_str()])
            .unwrap_or_default()
    }

    /// The code of an inlined copy: the address ranges of its body, calls
    /// inlined into it included, sorted and merged.
    pub fn inlined_body(&self, site: &inline::InlinedSite) -> Option<Vec<(u64, u64)>> {
        let tables = self.inline_tables.as_ref()?;
        let table = tables.table(&self.data)?;
        inline::body(&table, &self.image(), tables.gofunc, site)
    }

    /// Every way out of the inlined copy `site` (see
    /// `placement::inlined_exits`); Go's panic functions do not return.
    pub fn inlined_exits(
        &self,
        site: &inline::InlinedSite,
    ) -> Result<Vec<crate::attach::placement::Exit>, crate::attach::placement::Unprobeable> {
        use crate::attach::placement::{self, Unprobeable};
        let parent = self
            .function_at(site.address)
            .ok_or_else(|| Unprobeable("it lies in no known function".to_owned()))?;
        let body = self
            .inlined_body(site)
            .ok_or_else(|| Unprobeable("its code is not in the inline tree".to_owned()))?;
        let no_return = |target: u64| {
            self.function_at(target)
                .is_some_and(|f| f.address == target && never_returns(&f.name))
        };
        placement::inlined_exits(
            self.arch,
            self.code(parent),
            parent.address,
            &body,
            site.address,
            &no_return,
        )
    }

    /// The Go type whose descriptor is at link-time `address` (an
    /// interface's dynamic type), if this is a gc binary and it is one.
    pub fn go_type(&self, address: u64) -> Option<types::GoType> {
        types::decode(&self.image(), self.types_base?, address)
    }

    /// Up to `len` bytes of machine code from `address` (fewer at the end of
    /// the file, none outside it).
    pub fn code_at(&self, address: u64, len: u64) -> &[u8] {
        self.image().code_at(address, len)
    }
}
