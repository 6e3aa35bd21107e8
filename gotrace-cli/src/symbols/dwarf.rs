//! Facts read from DWARF when a binary has it: the layout of runtime types
//! whose field offsets change across Go versions.

use std::borrow::Cow;

use object::{Object as _, ObjectSection as _};

/// The byte offset of field `member` in struct type `structure` (e.g.
/// `goid` in `runtime.g`), from the first definition found.
pub(super) fn member_offset(
    object: &object::File<'_>,
    structure: &str,
    member: &str,
) -> Option<u64> {
    let load = |id: gimli::SectionId| -> Result<Cow<'_, [u8]>, gimli::Error> {
        Ok(object
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or(Cow::Borrowed(&[])))
    };
    let sections = gimli::DwarfSections::load(load).ok()?;
    let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, gimli::LittleEndian));
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        let mut entries = unit.entries();
        // Depth of the struct being read, once found.
        let mut inside: Option<isize> = None;
        let mut depth = 0isize;
        while let Ok(Some((delta, entry))) = entries.next_dfs() {
            depth += delta;
            if let Some(struct_depth) = inside {
                if depth <= struct_depth {
                    return None;
                }
                if depth == struct_depth + 1
                    && entry.tag() == gimli::DW_TAG_member
                    && has_name(&dwarf, &unit, entry, member)
                {
                    return entry
                        .attr_value(gimli::DW_AT_data_member_location)
                        .ok()
                        .flatten()
                        .and_then(|v| v.udata_value());
                }
            } else if entry.tag() == gimli::DW_TAG_structure_type
                && has_name(&dwarf, &unit, entry, structure)
            {
                inside = Some(depth);
            }
        }
    }
    None
}

fn has_name<R: gimli::Reader>(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    entry: &gimli::DebuggingInformationEntry<'_, '_, R>,
    wanted: &str,
) -> bool {
    entry
        .attr_value(gimli::DW_AT_name)
        .ok()
        .flatten()
        .and_then(|v| dwarf.attr_string(unit, v).ok())
        .is_some_and(|s| s.to_slice().is_ok_and(|b| *b == *wanted.as_bytes()))
}
