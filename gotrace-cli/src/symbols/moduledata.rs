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

use std::collections::HashMap;

use object::{Object as _, ObjectSection as _, RelocationFlags};

use super::pclntab::read_uint;

const SLICE: usize = 24;
const FUNCNAMETAB: usize = 8;
const MINPC: usize = 8 + 6 * SLICE + 8;
const TEXT: usize = MINPC + 16;
/// How far past `text` to look for `rodata, gofunc`.
const SEARCH_END: usize = TEXT + 48 * 8;
/// Sections that hold it, by Go version and build mode.
const SECTIONS: [&str; 4] = [".go.module", ".noptrdata", ".data", ".data.rel.ro"];

/// The moduledata's first words, as the program sees them once loaded.
pub(super) struct ModuleData {
    words: Vec<u64>,
}

impl ModuleData {
    /// Finds the moduledata that points at the pclntab at
    /// `pclntab_address`, whose name table is at `funcname_offset` into it.
    /// In PIE binaries from the C linker its pointers are zero in the file
    /// (Go's own linker writes them as well) and filled in at load time by
    /// relative relocations, whose addends are the link-time addresses:
    /// those are read instead.
    pub(super) fn find(
        object: &object::File<'_>,
        pclntab_address: u64,
        funcname_offset: u64,
    ) -> Option<Self> {
        let names_address = pclntab_address + funcname_offset;
        Self::find_in_data(object, pclntab_address, names_address)
            .or_else(|| Self::find_by_relocations(object, pclntab_address, names_address))
    }

    fn find_in_data(
        object: &object::File<'_>,
        pclntab_address: u64,
        names_address: u64,
    ) -> Option<Self> {
        // Go 1.27 gives moduledata a section of its own.
        SECTIONS
            .into_iter()
            .filter_map(|name| object.section_by_name(name))
            .find_map(|section| {
                let data = section.data().ok()?;
                let at = (0..data.len().saturating_sub(TEXT + 8))
                    .step_by(8)
                    .find(|&at| {
                        read_uint(data, at, 8) == Some(pclntab_address)
                            && read_uint(data, at + FUNCNAMETAB, 8) == Some(names_address)
                    })?;
                let bytes = &data[at..data.len().min(at + SEARCH_END)];
                Some(ModuleData {
                    words: bytes
                        .chunks_exact(8)
                        .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
                        .collect(),
                })
            })
    }

    fn find_by_relocations(
        object: &object::File<'_>,
        pclntab_address: u64,
        names_address: u64,
    ) -> Option<Self> {
        let relocated: HashMap<u64, u64> = object
            .dynamic_relocations()?
            .filter(|(_, r)| {
                r.flags()
                    == RelocationFlags::Elf {
                        r_type: object::elf::R_X86_64_RELATIVE,
                    }
            })
            .filter_map(|(at, r)| Some((at, u64::try_from(r.addend()).ok()?)))
            .collect();
        let start = relocated.iter().find_map(|(&at, &value)| {
            (value == pclntab_address
                && relocated.get(&at.wrapping_add(FUNCNAMETAB as u64)) == Some(&names_address))
            .then_some(at)
        })?;
        let section = object
            .sections()
            .find(|s| (s.address()..s.address().saturating_add(s.size())).contains(&start))?;
        let data = section.data().ok()?;
        let offset = usize::try_from(start - section.address()).ok()?;
        let words = (0..SEARCH_END / 8)
            .map_while(|i| {
                let at = start.wrapping_add(8 * i as u64);
                relocated
                    .get(&at)
                    .copied()
                    .or_else(|| read_uint(data, offset + 8 * i, 8))
            })
            .collect();
        Some(ModuleData { words })
    }

    fn word(&self, at: usize) -> Option<u64> {
        self.words.get(at / 8).copied()
    }

    /// Where Go code starts.
    pub(super) fn text(&self) -> Option<u64> {
        self.word(TEXT).filter(|&t| t != 0)
    }

    /// The address of `go:func.*`: the word after `rodata`, whose value is
    /// in `rodata_start` (the `.rodata` section's address, or a little past
    /// it when an external linker put C's read-only data first). The last
    /// such word is taken, because `types` before it can hold the same
    /// address (Go 1.19); `gofunc` itself must satisfy `read_only` (it is
    /// in `.rodata`, or in `.gopclntab` from Go 1.27).
    pub(super) fn gofunc(
        &self,
        rodata_start: std::ops::Range<u64>,
        read_only: impl Fn(u64) -> bool,
    ) -> Option<u64> {
        (TEXT / 8..self.words.len().saturating_sub(1))
            .filter(|&i| rodata_start.contains(&self.words[i]))
            .map(|i| self.words[i + 1])
            .filter(|&gofunc| read_only(gofunc))
            .last()
    }
}
