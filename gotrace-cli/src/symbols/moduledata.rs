//! The runtime's `firstmoduledata`, found without symbols: it is the one
//! place that still records where Go's text starts once the pclntab header
//! stopped doing so (Go 1.26), and that start is not `.text`'s address when
//! cgo puts C code first.
//!
//! Layout (`runtime/symtab.go`, Go 1.16 to 1.27 alike up to `text`):
//! `pcHeader *pcHeader`, six slices (funcnametab, cutab, filetab, pctab,
//! pclntable, ftab), `findfunctab`, `minpc`, `maxpc`, `text`.

use object::{Object as _, ObjectSection as _};

use super::pclntab::read_uint;

const SLICE: usize = 24;
const FUNCNAMETAB: usize = 8;
const MINPC: usize = 8 + 6 * SLICE + 8;
const TEXT: usize = MINPC + 16;

/// Where moduledata's `text` says Go code starts, given the address of the
/// pclntab (`pcHeader`) and its header's name-table offset. `None` when no
/// word in the data sections points at the table (e.g. PIE binaries, whose
/// pointers are only filled in by relocations at load time).
pub(super) fn text_start(
    object: &object::File<'_>,
    pclntab_address: u64,
    funcname_offset: u64,
) -> Option<u64> {
    [".noptrdata", ".data", ".data.rel.ro"]
        .into_iter()
        .filter_map(|name| object.section_by_name(name))
        .find_map(|section| {
            let data = section.data().ok()?;
            (0..data.len().saturating_sub(TEXT + 8))
                .step_by(8)
                .find_map(|at| {
                    let points_here = read_uint(data, at, 8)? == pclntab_address;
                    let names = read_uint(data, at + FUNCNAMETAB, 8)?;
                    (points_here && names == pclntab_address + funcname_offset)
                        .then(|| read_uint(data, at + TEXT, 8))
                        .flatten()
                })
        })
        .filter(|&text| text != 0)
}
