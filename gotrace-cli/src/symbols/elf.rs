//! Functions and segments from the ELF symbol tables and program headers.

use object::{
    Object as _, ObjectSection as _, ObjectSegment as _, ObjectSymbol as _, SectionKind, SymbolKind,
};

use super::{image::Segment, Function};

/// Function symbols of `.symtab` and `.dynsym` that point into code, sorted
/// by address. Aliases (several names for one address) keep the first name
/// seen, so a probe is never attached twice to one instruction. Zero-size
/// symbols are labels (Go's `runtime.text`, `runtime.etext`), not functions.
pub(super) fn functions(object: &object::File<'_>) -> Vec<Function> {
    let mut functions: Vec<Function> = object
        .symbols()
        .chain(object.dynamic_symbols())
        .filter(|s| {
            s.kind() == SymbolKind::Text && s.address() != 0 && s.size() != 0 && !s.is_undefined()
        })
        .filter(|s| {
            s.section_index()
                .and_then(|i| object.section_by_index(i).ok())
                .is_some_and(|section| section.kind() == SectionKind::Text)
        })
        .filter_map(|s| {
            let name = s.name().ok()?;
            (!name.is_empty()).then(|| Function {
                name: name.to_owned(),
                address: s.address(),
                size: s.size(),
            })
        })
        .collect();
    functions.sort_by_key(|f| f.address);
    functions.dedup_by_key(|f| f.address);
    functions
}

/// The PT_LOAD segments, for turning addresses into file offsets.
pub(super) fn segments(object: &object::File<'_>) -> Vec<Segment> {
    object
        .segments()
        .map(|s| {
            let (file_offset, file_size) = s.file_range();
            Segment {
                address: s.address(),
                file_offset,
                file_size,
            }
        })
        .collect()
}

/// The first compiler line of `.comment` (gccgo and C toolchains write one;
/// gc does not).
pub(super) fn comment(object: &object::File<'_>) -> Option<String> {
    let data = object.section_by_name(".comment")?.data().ok()?;
    data.split(|&b| b == 0)
        .find(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
}
