//! Which Go toolchain built a binary, from marks each toolchain leaves.

use std::cell::OnceCell;

use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

use crate::arch::Arch;

use super::{
    buildinfo,
    image::Image,
    inline::{self, InlinedSite},
    moduledata::ModuleData,
    pclntab::{read_uint, Pclntab},
    Function,
};

/// The two Go compilers, which differ in ABI and in where code lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toolchain {
    /// The standard `gc` toolchain: static runtime, `.gopclntab`, Go ABIs.
    Gc,
    /// gccgo: C calling convention, runtime and standard library in `libgo`.
    Gccgo,
}

impl std::fmt::Display for Toolchain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Toolchain::Gc => "gc",
            Toolchain::Gccgo => "gccgo",
        })
    }
}

/// gc writes `.gopclntab` (kept even by `strip`, since the runtime needs it)
/// and `.go.buildinfo`; gccgo writes `.go_export` in libgo and references
/// `__go_*`/`runtime.*` symbols of libgo from programs.
pub(super) fn detect(object: &object::File<'_>) -> Option<Toolchain> {
    if pclntab_section(object).is_some() || object.section_by_name(".go.buildinfo").is_some() {
        return Some(Toolchain::Gc);
    }
    let gccgo_symbol = |name: &str| {
        name.starts_with("__go_") || name == "runtime.main" || name.starts_with("runtime_")
    };
    let has_gccgo_symbol = object
        .symbols()
        .chain(object.dynamic_symbols())
        .any(|s| s.name().is_ok_and(gccgo_symbol));
    (object.section_by_name(".go_export").is_some() || has_gccgo_symbol).then_some(Toolchain::Gccgo)
}

/// The pclntab's section: `.gopclntab`, or `.data.rel.ro.gopclntab` in PIE
/// binaries of Go before 1.26.
fn pclntab_section<'d, 'f>(object: &'f object::File<'d>) -> Option<object::Section<'d, 'f>> {
    object
        .sections()
        .find(|s| s.name().is_ok_and(|n| n.ends_with(".gopclntab")))
}

/// A gc binary's pclntab and where it sits, found once per binary for
/// both its functions and its inline trees.
pub(super) struct Table<'d> {
    address: u64,
    /// From the table's start to the end of its section.
    data: &'d [u8],
    /// Where `data` starts in the file.
    file_offset: u64,
    funcname_offset: Option<u64>,
    /// The moduledata pointing at the table, looked up on first use: a
    /// scan of the data sections (and of the relocations, in PIE binaries
    /// from the C linker) that only some binaries need.
    module: OnceCell<Option<ModuleData>>,
}

impl<'d> Table<'d> {
    pub(super) fn find(object: &object::File<'d>) -> Option<Table<'d>> {
        let (section, start) = match pclntab_section(object) {
            Some(section) => (section, 0),
            None => merged_pclntab(object)?,
        };
        let data = section.data().ok()?.get(start..)?;
        Some(Table {
            address: section.address().checked_add(start as u64)?,
            data,
            file_offset: section.file_range()?.0.checked_add(start as u64)?,
            funcname_offset: read_uint(data, 8 + 3 * 8, 8),
            module: OnceCell::new(),
        })
    }

    fn module(&self, object: &object::File<'_>) -> Option<&ModuleData> {
        self.module
            .get_or_init(|| ModuleData::find(object, self.address, self.funcname_offset?))
            .as_ref()
    }

    /// The address Go's text starts at, which offset-style pclntabs (Go
    /// 1.18+) count from: the header's word while it was written (Go
    /// 1.18-1.25), else moduledata's `text`, else the `.text` section
    /// (right for pure-Go binaries, where nothing precedes Go code).
    fn text_start(&self, object: &object::File<'_>) -> Option<u64> {
        if let Some(text) = Pclntab::header_text_start(self.data).filter(|&t| t != 0) {
            return Some(text);
        }
        self.module(object)
            .and_then(ModuleData::text)
            .or_else(|| object.section_by_name(".text").map(|s| s.address()))
    }
}

/// The pclntab of a binary whose linker merged it into another section:
/// external linkers put Go < 1.26's `.data.rel.ro.gopclntab` of PIE
/// binaries into `.data.rel.ro`. Found by its header (magic, two zero
/// bytes, instruction quantum 1, pointer size 8) and kept if it parses.
fn merged_pclntab<'d, 'f>(
    object: &'f object::File<'d>,
) -> Option<(object::Section<'d, 'f>, usize)> {
    const HEADER_TAIL: [u8; 4] = [0, 0, 1, 8];
    let section = object.section_by_name(".data.rel.ro")?;
    let data = section.data().ok()?;
    let start = (0..data.len().saturating_sub(8)).step_by(8).find(|&at| {
        data[at + 4..at + 8] == HEADER_TAIL && Pclntab::parse(&data[at..], None).is_ok()
    })?;
    Some((section, start))
}

/// The functions of a gc binary's pclntab, sorted by address; `None` when
/// there is no readable table.
pub(super) fn pclntab_functions(object: &object::File<'_>, t: &Table<'_>) -> Option<Vec<Function>> {
    let table = Pclntab::parse(t.data, t.text_start(object)).ok()?;
    let mut functions: Vec<Function> = table
        .functions()
        .map(|f| Function {
            name: f.name.to_owned(),
            address: f.entry,
            size: f.end - f.entry,
        })
        .collect();
    functions.sort_by_key(|f| f.address);
    functions.dedup_by_key(|f| f.address);
    Some(functions)
}

/// Where a gc binary keeps its inline trees: the pclntab (a range of the
/// file) and `go:func.*`, which the trees' funcdata offsets count from.
pub(super) struct InlineTables {
    pub table: std::ops::Range<usize>,
    pub text_start: Option<u64>,
    pub gofunc: u64,
}

impl InlineTables {
    pub(super) fn find(object: &object::File<'_>, t: &Table<'_>) -> Option<InlineTables> {
        let start = usize::try_from(t.file_offset).ok()?;
        let size = t.data.len();
        let symbol = object
            .symbols()
            .find(|s| s.name().is_ok_and(|n| n == "go:func.*" || n == "go.func.*"))
            .map(|s| s.address());
        let gofunc = symbol.or_else(|| {
            // Go's own read-only data starts the section, unless an
            // external linker put some of C's first (crt's few bytes).
            const C_RODATA_MAX: u64 = 0x1000;
            let rodata = object.section_by_name(".rodata")?.address();
            let rodata = rodata..rodata.saturating_add(C_RODATA_MAX);
            let read_only = |address: u64| {
                object.sections().any(|s| {
                    s.kind() == object::SectionKind::ReadOnlyData
                        && (s.address()..s.address() + s.size()).contains(&address)
                })
            };
            t.module(object)?.gofunc(rodata, read_only)
        })?;
        Some(InlineTables {
            table: start..start.checked_add(size)?,
            text_start: t.text_start(object),
            gofunc,
        })
    }

    /// The pclntab in `file`.
    pub(super) fn table<'d>(&self, file: &'d [u8]) -> Option<Pclntab<'d>> {
        Pclntab::parse(file.get(self.table.clone())?, self.text_start).ok()
    }
}

/// The inlined call sites of a gc binary (Go 1.18+).
pub(super) fn inlined_sites(
    tables: &InlineTables,
    file: &[u8],
    image: &Image<'_>,
) -> Vec<InlinedSite> {
    tables
        .table(file)
        .map(|table| inline::sites(&table, image, tables.gofunc))
        .unwrap_or_default()
}

/// The base that type descriptors' name offsets count from
/// (`moduledata.types`): the `runtime.types` symbol; in stripped binaries
/// the section the linker starts with type data: `.go.type` (Go 1.26+;
/// `.data.rel.ro.go.type` in PIE), before that `.rodata`.
pub(super) fn types_base(object: &object::File<'_>) -> Option<u64> {
    if let Some(symbol) = object
        .symbols()
        .find(|s| s.name().is_ok_and(|n| n == "runtime.types"))
    {
        return Some(symbol.address());
    }
    object
        .sections()
        .find(|s| s.name().is_ok_and(|n| n.ends_with(".go.type")))
        .or_else(|| object.section_by_name(".rodata"))
        .map(|s| s.address())
}

/// The `.go.buildinfo` of a gc binary (the pre-1.18 layout points
/// elsewhere in the binary `image`).
pub(super) fn build_info(
    object: &object::File<'_>,
    image: &Image<'_>,
) -> Option<buildinfo::BuildInfo> {
    let data = object.section_by_name(".go.buildinfo")?.data().ok()?;
    buildinfo::parse(data, image).ok()
}

/// How a function receives its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abi {
    /// gc's ABIInternal (Go >= 1.17 on amd64, >= 1.18 on arm64): arguments
    /// in registers (`crate::arch::Registers::go_integer`). Assembly (ABI0)
    /// functions still use the stack.
    Register,
    /// gc's ABI0 (Go < 1.17): every argument on the stack.
    Stack,
    /// gccgo: the System V C calling convention.
    SystemV,
}

impl std::fmt::Display for Abi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Abi::Register => "register (ABIInternal); assembly functions use ABI0 (stack)",
            Abi::Stack => "stack (ABI0)",
            Abi::SystemV => "System V C ABI",
        })
    }
}

/// The ABI of Go functions of a binary of `arch`, from its toolchain and
/// Go version (`go1.N[.M]`); `None` when the version of a gc binary is
/// unknown.
pub fn abi(arch: Arch, toolchain: Toolchain, go_version: Option<&str>) -> Option<Abi> {
    match toolchain {
        Toolchain::Gccgo => Some(Abi::SystemV),
        Toolchain::Gc => {
            let minor: u32 = go_version?
                .strip_prefix("go1.")?
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()?;
            Some(if minor >= arch.register_abi_since() {
                Abi::Register
            } else {
                Abi::Stack
            })
        }
    }
}

/// Offset of `goid` in `runtime.g` by Go version, for binaries without
/// DWARF. Read from the DWARF of Go 1.19.8 and 1.27.3 builds (152 in
/// both); the fields before `goid` did not change in between for amd64.
pub(super) fn goid_offset_for(go_version: &str) -> Option<u64> {
    let minor = go_minor(go_version)?;
    (17..=27)
        .contains(&minor)
        .then_some(super::DEFAULT_GOID_OFFSET)
}

fn go_minor(go_version: &str) -> Option<u32> {
    go_version
        .strip_prefix("go1.")?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_from_version() {
        let x86 = Arch::X86_64;
        assert_eq!(
            abi(x86, Toolchain::Gc, Some("go1.19.8")),
            Some(Abi::Register)
        );
        assert_eq!(abi(x86, Toolchain::Gc, Some("go1.17")), Some(Abi::Register));
        assert_eq!(abi(x86, Toolchain::Gc, Some("go1.16.15")), Some(Abi::Stack));
        assert_eq!(
            abi(x86, Toolchain::Gc, Some("go1.27rc1")),
            Some(Abi::Register)
        );
        assert_eq!(abi(x86, Toolchain::Gc, Some("devel +abc")), None);
        assert_eq!(abi(x86, Toolchain::Gc, None), None);
        assert_eq!(abi(x86, Toolchain::Gccgo, None), Some(Abi::SystemV));
        let arm = Arch::Aarch64;
        assert_eq!(abi(arm, Toolchain::Gc, Some("go1.17.13")), Some(Abi::Stack));
        assert_eq!(abi(arm, Toolchain::Gc, Some("go1.18")), Some(Abi::Register));
    }
}
