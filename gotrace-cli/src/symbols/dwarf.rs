//! Facts read from DWARF when a binary has it: the layout of runtime types
//! whose field offsets change across Go versions.

use std::{borrow::Cow, collections::HashMap};

use object::{Object as _, ObjectSection as _};

/// The DWARF sections of `object`, decompressed where Go compressed them
/// (missing ones empty).
fn sections<'d>(object: &object::File<'d>) -> Option<gimli::DwarfSections<Cow<'d, [u8]>>> {
    gimli::DwarfSections::load(|id| -> Result<Cow<'d, [u8]>, gimli::Error> {
        Ok(object
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or(Cow::Borrowed(&[])))
    })
    .ok()
}

/// The byte offset of field `member` in struct type `structure` (e.g.
/// `goid` in `runtime.g`), from the first definition found.
pub(super) fn member_offset(
    object: &object::File<'_>,
    structure: &str,
    member: &str,
) -> Option<u64> {
    let sections = sections(object)?;
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

/// The shape of a Go type, as far as argument reading cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// An integer, bool or other scalar of `size` bytes held in one word.
    Word {
        size: u64,
        signed: bool,
    },
    /// A float (in X registers, which uprobes cannot read).
    Float {
        size: u64,
    },
    /// `string`: pointer and length.
    String,
    /// `[]T`: pointer, length, capacity; the element's shape when DWARF
    /// describes it.
    Slice(Option<Box<Shape>>),
    /// An interface: type word (an itab unless `empty`) and data word.
    Interface {
        empty: bool,
    },
    /// A pointer; the pointee's shape when it was worth resolving.
    Pointer(Option<Box<Shape>>),
    Struct {
        size: u64,
        fields: Vec<Field>,
    },
    /// Anything else (arrays, maps by value...), of `size` bytes.
    Other {
        size: u64,
    },
}

/// A struct field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub offset: u64,
    pub shape: Shape,
}

impl Shape {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Shape::Word { size, .. } | Shape::Float { size } | Shape::Other { size } => *size,
            Shape::Struct { size, .. } => *size,
            Shape::String | Shape::Interface { .. } => 16,
            Shape::Slice(_) => 24,
            Shape::Pointer(_) => 8,
        }
    }
}

/// A parameter or result of a function, from DWARF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub shape: Shape,
    /// A result (Go's DW_AT_variable_parameter).
    pub result: bool,
}

/// Go's `DW_AT_go_kind` attribute and the kinds gotrace tells apart.
const DW_AT_GO_KIND: gimli::DwAt = gimli::DwAt(0x2900);
const GO_KIND_INTERFACE: u64 = 20;

/// Pointer levels resolved for field access (`req.URL.Path` needs 2).
const POINTER_DEPTH: u32 = 2;

/// The parameters and results, in declaration order, of each of
/// `functions` that DWARF describes: one pass over the DWARF, whatever the
/// number of functions.
pub fn parameters(object: &object::File<'_>, functions: &[&str]) -> HashMap<String, Vec<Param>> {
    let mut found = HashMap::new();
    let Some(sections) = sections(object) else {
        return found;
    };
    let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, gimli::LittleEndian));
    // Go puts types in the runtime's unit and refers to them from others.
    let mut units = Vec::new();
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        if let Ok(unit) = dwarf.unit(header) {
            units.push(unit);
        }
    }
    let types = Types {
        dwarf: &dwarf,
        units: &units,
    };
    let wanted: std::collections::HashSet<&[u8]> = functions.iter().map(|f| f.as_bytes()).collect();
    for (u, unit) in units.iter().enumerate() {
        let mut entries = unit.entries();
        let mut depth = 0isize;
        // The wanted function being read: its name, depth, parameters.
        let mut inside: Option<(String, isize, Vec<Param>)> = None;
        while let Ok(Some((delta, entry))) = entries.next_dfs() {
            depth += delta;
            if let Some((_, function_depth, _)) = &inside {
                if depth <= *function_depth {
                    let (name, _, params) = inside.take().expect("inside");
                    found.entry(name).or_insert(params);
                }
            }
            if let Some((_, function_depth, params)) = &mut inside {
                if depth == *function_depth + 1 && entry.tag() == gimli::DW_TAG_formal_parameter {
                    let name =
                        string_attr(&dwarf, unit, entry, gimli::DW_AT_name).unwrap_or_default();
                    let result = matches!(
                        entry
                            .attr_value(gimli::DW_AT_variable_parameter)
                            .ok()
                            .flatten(),
                        Some(gimli::AttributeValue::Flag(true))
                    );
                    let shape = types
                        .referenced(u, entry, POINTER_DEPTH, 0)
                        .unwrap_or(Shape::Other { size: 0 });
                    params.push(Param {
                        name,
                        shape,
                        result,
                    });
                }
            } else if entry.tag() == gimli::DW_TAG_subprogram {
                let name = entry
                    .attr_value(gimli::DW_AT_name)
                    .ok()
                    .flatten()
                    .and_then(|v| dwarf.attr_string(unit, v).ok())
                    .map(|s| s.slice());
                if let Some(name) = name.filter(|n| wanted.contains(n)) {
                    inside = Some((
                        String::from_utf8_lossy(name).into_owned(),
                        depth,
                        Vec::new(),
                    ));
                }
            }
        }
        if let Some((name, _, params)) = inside.take() {
            found.entry(name).or_insert(params);
        }
    }
    found
}

/// Where one piece of a value is at a pc, as DWARF says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// In a register, by DWARF register number.
    Register(u16),
    /// In memory at the canonical frame address plus this offset.
    Cfa(i64),
}

/// A piece of a value: `size` bytes (0: the whole value) at `place`, or
/// nowhere (optimized out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub size: u64,
    pub place: Option<Place>,
}

/// A parameter of an inlined call, located at one pc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InlinedParam {
    pub param: Param,
    /// Its pieces at the pc; `None` when DWARF gives no location there
    /// (or one gotrace does not read: only registers and frame offsets).
    pub pieces: Option<Vec<Piece>>,
}

/// One inlined call to look up: its first instruction, the function
/// inlined, and the pc where its parameters are wanted (the probe's).
#[derive(Clone, Copy, Debug)]
pub struct InlinedCall<'n> {
    pub first: u64,
    pub name: &'n str,
    pub pc: u64,
}

/// The parameters of each of `calls` that DWARF describes (its
/// `DW_TAG_inlined_subroutine`, found by the lowest address of its ranges
/// and its abstract origin's name), located at the call's `pc`, keyed by
/// the call's first instruction; one pass over the DWARF.
pub fn inlined_parameters(
    object: &object::File<'_>,
    calls: &[InlinedCall<'_>],
) -> HashMap<u64, Vec<InlinedParam>> {
    let mut found = HashMap::new();
    let Some(sections) = sections(object) else {
        return found;
    };
    let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, gimli::LittleEndian));
    let mut units = Vec::new();
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        if let Ok(unit) = dwarf.unit(header) {
            units.push(unit);
        }
    }
    let types = Types {
        dwarf: &dwarf,
        units: &units,
    };
    for (u, unit) in units.iter().enumerate() {
        let mut entries = unit.entries();
        while let Ok(Some((_, entry))) = entries.next_dfs() {
            if entry.tag() != gimli::DW_TAG_inlined_subroutine {
                continue;
            }
            let Some(first) = lowest_pc(&dwarf, unit, entry) else {
                continue;
            };
            let Some(call) = calls.iter().find(|c| c.first == first) else {
                continue;
            };
            // The abstract subprogram this call is a copy of.
            let Some((origin_unit, origin)) = origin_of(&units, u, entry) else {
                continue;
            };
            if string_attr(&dwarf, &units[origin_unit], &origin, gimli::DW_AT_name).as_deref()
                != Some(call.name)
            {
                continue;
            }
            // Where the copy keeps each parameter, by its abstract entry:
            // the compiler leaves out those it keeps nowhere.
            let mut located = HashMap::new();
            if let Ok(mut tree) = unit.entries_tree(Some(entry.offset())) {
                if let Ok(root) = tree.root() {
                    let mut children = root.children();
                    while let Ok(Some(child)) = children.next() {
                        let child = child.entry();
                        if child.tag() != gimli::DW_TAG_formal_parameter {
                            continue;
                        }
                        if let Some((param_unit, abstract_param)) = origin_of(&units, u, child) {
                            located.insert(
                                (param_unit, abstract_param.offset()),
                                location_at(&dwarf, unit, child, call.pc),
                            );
                        }
                    }
                }
            }
            // The parameters themselves, in order, from the abstract
            // function.
            let mut params = Vec::new();
            let abstract_unit = &units[origin_unit];
            if let Ok(mut tree) = abstract_unit.entries_tree(Some(origin.offset())) {
                if let Ok(root) = tree.root() {
                    let mut children = root.children();
                    while let Ok(Some(child)) = children.next() {
                        let param = child.entry();
                        if param.tag() != gimli::DW_TAG_formal_parameter {
                            continue;
                        }
                        let name = string_attr(&dwarf, abstract_unit, param, gimli::DW_AT_name)
                            .unwrap_or_default();
                        let result = matches!(
                            param
                                .attr_value(gimli::DW_AT_variable_parameter)
                                .ok()
                                .flatten(),
                            Some(gimli::AttributeValue::Flag(true))
                        );
                        let shape = types
                            .referenced(origin_unit, param, POINTER_DEPTH, 0)
                            .unwrap_or(Shape::Other { size: 0 });
                        params.push(InlinedParam {
                            param: Param {
                                name,
                                shape,
                                result,
                            },
                            pieces: located.remove(&(origin_unit, param.offset())).flatten(),
                        });
                    }
                }
            }
            found.entry(first).or_insert(params);
        }
    }
    found
}

/// The lowest address an entry's code covers (`DW_AT_low_pc` or ranges).
fn lowest_pc<R: gimli::Reader>(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    entry: &gimli::DebuggingInformationEntry<'_, '_, R>,
) -> Option<u64> {
    let mut ranges = dwarf.die_ranges(unit, entry).ok()?;
    let mut lowest: Option<u64> = None;
    while let Ok(Some(range)) = ranges.next() {
        if range.begin < range.end {
            lowest = Some(lowest.map_or(range.begin, |l| l.min(range.begin)));
        }
    }
    lowest
}

/// The entry an entry (of unit `u`) names by `DW_AT_abstract_origin`, and
/// the index of its unit: Go refers to abstract functions and their
/// parameters across units (`DW_FORM_ref_addr`).
fn origin_of<'u, R: gimli::Reader>(
    units: &'u [gimli::Unit<R>],
    u: usize,
    entry: &gimli::DebuggingInformationEntry<'_, '_, R>,
) -> Option<(usize, gimli::DebuggingInformationEntry<'u, 'u, R>)> {
    let (u, offset) = match entry.attr_value(gimli::DW_AT_abstract_origin).ok()?? {
        gimli::AttributeValue::UnitRef(offset) => (u, offset),
        gimli::AttributeValue::DebugInfoRef(global) => units
            .iter()
            .enumerate()
            .find_map(|(i, unit)| Some((i, global.to_unit_offset(&unit.header)?)))?,
        _ => return None,
    };
    Some((u, units[u].entry(offset).ok()?))
}

/// Where `entry`'s `DW_AT_location` puts it at `pc`.
fn location_at<R: gimli::Reader>(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    entry: &gimli::DebuggingInformationEntry<'_, '_, R>,
    pc: u64,
) -> Option<Vec<Piece>> {
    let value = entry.attr_value(gimli::DW_AT_location).ok()??;
    let expression = match value {
        gimli::AttributeValue::Exprloc(expression) => expression,
        value => {
            let mut list = dwarf.attr_locations(unit, value).ok()??;
            loop {
                let entry = list.next().ok()??;
                if (entry.range.begin..entry.range.end).contains(&pc) {
                    break entry.data;
                }
            }
        }
    };
    pieces(expression, unit.encoding())
}

/// The pieces of a location expression made of registers, frame offsets
/// (Go's frame base is the CFA) and `DW_OP_piece`; `None` for anything
/// else.
pub fn pieces<R: gimli::Reader>(
    expression: gimli::Expression<R>,
    encoding: gimli::Encoding,
) -> Option<Vec<Piece>> {
    let mut operations = expression.operations(encoding);
    let mut pieces = Vec::new();
    let mut place: Option<Place> = None;
    let mut constant: Option<i64> = None;
    while let Some(operation) = operations.next().ok()? {
        match operation {
            gimli::Operation::Register { register } => place = Some(Place::Register(register.0)),
            gimli::Operation::CallFrameCFA => place = Some(Place::Cfa(0)),
            gimli::Operation::FrameOffset { offset } => place = Some(Place::Cfa(offset)),
            gimli::Operation::PlusConstant { value } => match &mut place {
                Some(Place::Cfa(offset)) => *offset += i64::try_from(value).ok()?,
                _ => return None,
            },
            gimli::Operation::SignedConstant { value } => constant = Some(value),
            gimli::Operation::UnsignedConstant { value } => {
                constant = Some(i64::try_from(value).ok()?)
            }
            gimli::Operation::Plus => match (&mut place, constant.take()) {
                (Some(Place::Cfa(offset)), Some(value)) => *offset += value,
                _ => return None,
            },
            gimli::Operation::Piece {
                size_in_bits,
                bit_offset: None,
            } if size_in_bits % 8 == 0 => pieces.push(Piece {
                size: size_in_bits / 8,
                place: place.take(),
            }),
            _ => return None,
        }
    }
    if pieces.is_empty() {
        pieces.push(Piece { size: 0, place });
    }
    Some(pieces)
}

/// Go describes `interface{}` with `runtime.eface` (no itab) and every
/// other interface with `runtime.iface`.
fn is_empty_interface(name: &str) -> bool {
    matches!(name, "runtime.eface" | "interface {}" | "any")
}

fn string_attr<R: gimli::Reader>(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    entry: &gimli::DebuggingInformationEntry<'_, '_, R>,
    attr: gimli::DwAt,
) -> Option<String> {
    let value = entry.attr_value(attr).ok().flatten()?;
    let s = dwarf.attr_string(unit, value).ok()?;
    Some(s.to_string_lossy().ok()?.into_owned())
}

/// Type lookup across units.
struct Types<'a, R: gimli::Reader> {
    dwarf: &'a gimli::Dwarf<R>,
    units: &'a [gimli::Unit<R>],
}

impl<R: gimli::Reader> Types<'_, R> {
    /// The shape of the type `entry` (in unit `u`) refers to.
    fn referenced(
        &self,
        u: usize,
        entry: &gimli::DebuggingInformationEntry<'_, '_, R>,
        pointer_depth: u32,
        nesting: u32,
    ) -> Option<Shape> {
        let (u, offset) = match entry.attr_value(gimli::DW_AT_type).ok()?? {
            gimli::AttributeValue::UnitRef(offset) => (u, offset),
            gimli::AttributeValue::DebugInfoRef(global) => self
                .units
                .iter()
                .enumerate()
                .find_map(|(i, unit)| Some((i, global.to_unit_offset(&unit.header)?)))?,
            _ => return None,
        };
        self.shape_at(u, offset, pointer_depth, nesting)
    }

    fn shape_at(
        &self,
        u: usize,
        offset: gimli::UnitOffset<R::Offset>,
        pointer_depth: u32,
        nesting: u32,
    ) -> Option<Shape> {
        if nesting > 8 {
            return None;
        }
        let unit = &self.units[u];
        let entry = unit.entry(offset).ok()?;
        let size = entry
            .attr_value(gimli::DW_AT_byte_size)
            .ok()
            .flatten()
            .and_then(|v| v.udata_value())
            .unwrap_or(0);
        let name = string_attr(self.dwarf, unit, &entry, gimli::DW_AT_name).unwrap_or_default();
        let kind = entry
            .attr_value(DW_AT_GO_KIND)
            .ok()
            .flatten()
            .and_then(|v| v.udata_value());
        Some(match entry.tag() {
            gimli::DW_TAG_typedef => self.referenced(u, &entry, pointer_depth, nesting + 1)?,
            gimli::DW_TAG_base_type => {
                match entry.attr_value(gimli::DW_AT_encoding).ok().flatten() {
                    Some(gimli::AttributeValue::Encoding(gimli::DW_ATE_float)) => {
                        Shape::Float { size }
                    }
                    Some(gimli::AttributeValue::Encoding(gimli::DW_ATE_signed)) => {
                        Shape::Word { size, signed: true }
                    }
                    _ => Shape::Word {
                        size,
                        signed: false,
                    },
                }
            }
            gimli::DW_TAG_pointer_type => Shape::Pointer(
                pointer_depth
                    .checked_sub(1)
                    .and_then(|d| self.referenced(u, &entry, d, nesting + 1))
                    .map(Box::new),
            ),
            gimli::DW_TAG_structure_type if name == "string" => Shape::String,
            gimli::DW_TAG_structure_type if name.starts_with("[]") => {
                // The first member, `array`, points at the elements.
                let mut tree = unit.entries_tree(Some(offset)).ok()?;
                let root = tree.root().ok()?;
                let mut children = root.children();
                let element = match children.next() {
                    Ok(Some(array)) => match self.referenced(u, array.entry(), 1, nesting + 1) {
                        Some(Shape::Pointer(element)) => element,
                        _ => None,
                    },
                    _ => None,
                };
                Shape::Slice(element)
            }
            gimli::DW_TAG_structure_type
                if kind == Some(GO_KIND_INTERFACE)
                    || name == "runtime.iface"
                    || name == "runtime.eface" =>
            {
                Shape::Interface {
                    empty: is_empty_interface(&name),
                }
            }
            gimli::DW_TAG_structure_type => {
                let mut fields = Vec::new();
                let mut tree = unit.entries_tree(Some(offset)).ok()?;
                let root = tree.root().ok()?;
                let mut children = root.children();
                while let Ok(Some(child)) = children.next() {
                    let member = child.entry();
                    if member.tag() != gimli::DW_TAG_member {
                        continue;
                    }
                    let field_offset = member
                        .attr_value(gimli::DW_AT_data_member_location)
                        .ok()
                        .flatten()
                        .and_then(|v| v.udata_value())
                        .unwrap_or(0);
                    fields.push(Field {
                        name: string_attr(self.dwarf, unit, member, gimli::DW_AT_name)
                            .unwrap_or_default(),
                        offset: field_offset,
                        shape: self
                            .referenced(u, member, pointer_depth, nesting + 1)
                            .unwrap_or(Shape::Other { size: 0 }),
                    });
                }
                Shape::Struct { size, fields }
            }
            _ if kind == Some(GO_KIND_INTERFACE) => Shape::Interface {
                empty: is_empty_interface(&name),
            },
            _ => Shape::Other { size },
        })
    }
}
