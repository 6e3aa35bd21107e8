//! The runtime's `firstmoduledata`, found without symbols: it is the one
//! place that still records where Go's text starts once the pclntab header
//! stopped doing so (Go 1.26), and that start is not `.text`'s address when
//! cgo puts C code first. It also locates `go:func.*`, the base of
//! funcdata such as inline trees.
//!
//! Layout (`runtime/symtab.go`, Go 1.16 to 1.27 alike up to `text`):
//! `pcHeader *pcHeader`, six slices (funcnametab, cutab, filetab, pctab,
//! pclntable, ftab), `findfunctab`, `minpc`, `maxpc`, `text`. Later fields
//! were added over the versions, but `rodata` is always followed by
//! `gofunc` (Go 1.18+).

use object::{Object as _, ObjectSection as _};

use super::pclntab::read_uint;

const SLICE: usize = 24;
const FUNCNAMETAB: usize = 8;
const MINPC: usize = 8 + 6 * SLICE + 8;
const TEXT: usize = MINPC + 16;
/// How far past `text` to look for `rodata, gofunc`.
const SEARCH_END: usize = TEXT + 48 * 8;

/// The bytes of the moduledata, located by its first two fields.
pub(super) struct ModuleData<'d> {
    bytes: &'d [u8],
}

impl<'d> ModuleData<'d> {
    /// Finds the moduledata that points at the pclntab at
    /// `pclntab_address`, whose name table is at `funcname_offset` into it.
    /// `None` for PIE binaries, whose pointers are only filled in by
    /// relocations at load time.
    pub(super) fn find(
        object: &object::File<'d>,
        pclntab_address: u64,
        funcname_offset: u64,
    ) -> Option<Self> {
        // Go 1.27 gives moduledata a section of its own.
        [".go.module", ".noptrdata", ".data", ".data.rel.ro"]
            .into_iter()
            .filter_map(|name| object.section_by_name(name))
            .find_map(|section| {
                let data = section.data().ok()?;
                (0..data.len().saturating_sub(TEXT + 8))
                    .step_by(8)
                    .find_map(|at| {
                        let points_here = read_uint(data, at, 8)? == pclntab_address;
                        let names = read_uint(data, at + FUNCNAMETAB, 8)?;
                        (points_here && names == pclntab_address + funcname_offset).then(|| {
                            ModuleData {
                                bytes: &data[at..data.len().min(at + SEARCH_END)],
                            }
                        })
                    })
            })
    }

    /// Where Go code starts.
    pub(super) fn text(&self) -> Option<u64> {
        read_uint(self.bytes, TEXT, 8).filter(|&t| t != 0)
    }

    /// The address of `go:func.*`: the word after `rodata`, whose value is
    /// the `.rodata` section's address. The last such word is taken,
    /// because `types` before it can hold the same address (Go 1.19);
    /// `gofunc` itself must satisfy `read_only` (it is in `.rodata`, or in
    /// `.gopclntab` from Go 1.27).
    pub(super) fn gofunc(&self, rodata: u64, read_only: impl Fn(u64) -> bool) -> Option<u64> {
        (TEXT..self.bytes.len().saturating_sub(8))
            .step_by(8)
            .filter(|&at| read_uint(self.bytes, at, 8) == Some(rodata))
            .filter_map(|at| read_uint(self.bytes, at + 8, 8))
            .filter(|&gofunc| read_only(gofunc))
            .last()
    }
}
