//! Go's runtime type descriptors (`internal/abi.Type`, `runtime._type`
//! before Go 1.21), read from the binary: what `trace` needs to name the
//! dynamic type of an interface, which the kernel sends as a pointer.
//!
//! Layout on amd64, Go 1.17 to 1.27 alike: `Size_` at 0, `TFlag` at 20,
//! `Kind_` at 23, `Str` (a name offset from `moduledata.types`) at 40.
//! Names are a flag byte, a varint length and the bytes (Go 1.17+). A
//! struct's descriptor goes on with `PkgPath` (a name pointer) and the
//! `Fields` slice of (name pointer, type pointer, offset) triples.

use super::{image::Image, pclntab::read_uint};

const SIZE_AT: usize = 0;
const TFLAG_AT: usize = 20;
const KIND_AT: usize = 23;
const STR_AT: usize = 40;
const DESCRIPTOR_LEN: usize = 48;
/// `StructType.Fields`: array pointer and length, after `PkgPath`.
const FIELDS_AT: usize = DESCRIPTOR_LEN + 8;
const FIELD_LEN: usize = 24;
/// Most fields of a struct read.
const FIELDS_MAX: u64 = 32;
const KIND_STRUCT: u8 = 25;

/// The name is stored with a `*` to share it with the pointer type's.
const TFLAG_EXTRA_STAR: u8 = 1 << 1;
/// The value sits in the interface's data word itself: a flag of `Kind_`
/// until Go 1.25, of `TFlag` since (the other byte's bit is unused).
const DIRECT_IFACE: u8 = 1 << 5;
const KIND_MASK: u8 = (1 << 5) - 1;

/// Longest type name read.
const NAME_MAX: usize = 512;

/// What an interface's value needs to be printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoType {
    /// `int`, `*main.Request`, `main.Celsius`, `*errors.errorString`.
    pub name: String,
    pub kind: Kind,
    /// The data word is the value (pointer-shaped types), not a pointer to it.
    pub direct: bool,
    /// Bytes of a value.
    pub size: u64,
    /// A struct's fields, in order (empty for other kinds, or when the
    /// binary's pointers to them cannot be followed).
    pub fields: Vec<FieldType>,
}

/// One field of a struct type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldType {
    pub name: String,
    pub offset: u64,
    pub kind: Kind,
    pub size: u64,
}

/// `internal/abi.Kind`, as far as printing cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int {
        size: u8,
        signed: bool,
    },
    Float {
        size: u8,
    },
    String,
    /// Pointers, maps, channels, functions, unsafe.Pointer.
    Reference,
    /// Arrays, structs, slices, interfaces, complex numbers.
    Composite,
}

impl Kind {
    /// `kind` is the descriptor's Kind_ byte; the numbers are Go's
    /// internal/abi Kind values (Bool = 1 ... UnsafePointer = 26).
    fn from_abi(kind: u8) -> Option<Kind> {
        let int = |size, signed| Kind::Int { size, signed };
        Some(match kind & KIND_MASK {
            1 => Kind::Bool,
            2 | 6 => int(8, true),
            3 => int(1, true),
            4 => int(2, true),
            5 => int(4, true),
            7 | 11 | 12 => int(8, false),
            8 => int(1, false),
            9 => int(2, false),
            10 => int(4, false),
            13 => Kind::Float { size: 4 },
            14 => Kind::Float { size: 8 },
            24 => Kind::String,
            18 | 19 | 21 | 22 | 26 => Kind::Reference,
            15 | 16 | 17 | 20 | 23 | 25 => Kind::Composite,
            _ => return None,
        })
    }
}

/// Decodes the descriptor at `address` of `image`; `types` is the base
/// name offsets count from.
pub fn decode(image: &Image<'_>, types: u64, address: u64) -> Option<GoType> {
    let read = |address: u64, len: usize| image.bytes_at(address, len);
    let descriptor = read(address, DESCRIPTOR_LEN)?;
    let size = read_uint(descriptor, SIZE_AT, 8)?;
    let tflag = descriptor[TFLAG_AT];
    let kind_byte = descriptor[KIND_AT];
    let str_offset = i32::from_le_bytes(descriptor[STR_AT..STR_AT + 4].try_into().ok()?);
    let name_at = types.checked_add_signed(i64::from(str_offset))?;
    let mut name = name(read(name_at, 1 + 2)?, |len| read(name_at, len))?;
    if tflag & TFLAG_EXTRA_STAR != 0 {
        name.remove(0);
    }
    let fields = if kind_byte & KIND_MASK == KIND_STRUCT {
        fields(image, address).unwrap_or_default()
    } else {
        Vec::new()
    };
    Some(GoType {
        name,
        kind: Kind::from_abi(kind_byte)?,
        direct: (kind_byte | tflag) & DIRECT_IFACE != 0,
        size,
        fields,
    })
}

/// The fields of the struct type described at `address`; `None` when a
/// pointer on the way leads nowhere (a PIE's, before relocation).
fn fields(image: &Image<'_>, address: u64) -> Option<Vec<FieldType>> {
    let read = |address: u64, len: usize| image.bytes_at(address, len);
    let slice = read(address.checked_add(FIELDS_AT as u64)?, 16)?;
    let (array, count) = (read_uint(slice, 0, 8)?, read_uint(slice, 8, 8)?);
    if count > FIELDS_MAX {
        return None;
    }
    let table = read(array, count as usize * FIELD_LEN)?;
    table
        .chunks_exact(FIELD_LEN)
        .map(|field| {
            let (name_at, type_at) = (read_uint(field, 0, 8)?, read_uint(field, 8, 8)?);
            let descriptor = read(type_at, DESCRIPTOR_LEN)?;
            Some(FieldType {
                name: name(read(name_at, 1 + 2)?, |len| read(name_at, len))?,
                offset: read_uint(field, 16, 8)?,
                kind: Kind::from_abi(descriptor[KIND_AT])?,
                size: read_uint(descriptor, SIZE_AT, 8)?,
            })
        })
        .collect()
}

/// A name: flag byte, varint length, bytes. `head` holds its first bytes,
/// `whole(len)` reads `len` bytes from its start.
fn name<'d>(head: &[u8], whole: impl Fn(usize) -> Option<&'d [u8]>) -> Option<String> {
    let mut length = 0usize;
    let mut header = 1;
    for (i, &byte) in head.iter().skip(1).enumerate() {
        length |= usize::from(byte & 0x7f) << (7 * i);
        header += 1;
        if byte & 0x80 == 0 {
            break;
        }
    }
    if length == 0 || length > NAME_MAX {
        return None;
    }
    let bytes = whole(header + length)?.get(header..)?;
    let text = std::str::from_utf8(bytes).ok()?;
    (!text.chars().any(char::is_control)).then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::image::Segment;

    const TYPES: u64 = 0x1000;

    /// A binary image holding one descriptor at 0x1100 and its name at
    /// TYPES + 0x10.
    fn image(kind: u8, tflag: u8, name: &str, size: u64) -> Vec<u8> {
        let mut data = vec![0u8; 0x200];
        let d = 0x100;
        data[d..d + 8].copy_from_slice(&size.to_le_bytes());
        data[d + TFLAG_AT] = tflag;
        data[d + KIND_AT] = kind;
        data[d + STR_AT..d + STR_AT + 4].copy_from_slice(&0x10i32.to_le_bytes());
        data[0x10] = 0; // flags
        data[0x11] = name.len() as u8;
        data[0x12..0x12 + name.len()].copy_from_slice(name.as_bytes());
        data
    }

    /// `data` loaded at TYPES.
    fn decoded(data: &[u8], address: u64) -> Option<GoType> {
        let segments = [Segment {
            address: TYPES,
            file_offset: 0,
            file_size: data.len() as u64,
        }];
        decode(&Image::new(data, &segments), TYPES, address)
    }

    #[test]
    fn names_kinds_and_direct_values() {
        let int = image(2, 0, "int", 8);
        assert_eq!(
            decoded(&int, 0x1100),
            Some(GoType {
                name: "int".into(),
                kind: Kind::Int {
                    size: 8,
                    signed: true
                },
                direct: false,
                size: 8,
                fields: Vec::new(),
            })
        );
        // Go 1.19 marks direct values in the kind byte, Go 1.26+ in tflag.
        let old = decoded(&image(22 | DIRECT_IFACE, 0, "*main.T", 8), 0x1100).unwrap();
        let new = decoded(&image(22, DIRECT_IFACE, "*main.T", 8), 0x1100).unwrap();
        assert_eq!((old.kind, old.direct), (Kind::Reference, true));
        assert_eq!(old, new);
        // The shared "*T" name of a named type T.
        let named = decoded(&image(25, TFLAG_EXTRA_STAR, "*main.Point", 16), 0x1100);
        assert_eq!(named.map(|t| t.name), Some("main.Point".into()));
    }

    /// `struct { X int32; Name string }` at 0x1100, its fields' table at
    /// 0x1180, their names at 0x11c0 and 0x11c8, their types at 0x1000
    /// and 0x1030 (descriptors are only read for kind and size there).
    #[test]
    fn struct_fields() {
        let mut data = image(KIND_STRUCT, 0, "main.T", 24);
        data.resize(0x300, 0);
        let put = |data: &mut Vec<u8>, at: usize, value: u64| {
            data[at..at + 8].copy_from_slice(&value.to_le_bytes())
        };
        put(&mut data, 0x100 + FIELDS_AT, TYPES + 0x180);
        put(&mut data, 0x100 + FIELDS_AT + 8, 2);
        for (i, (name_at, type_at, offset)) in [(0x1c0, 0x200, 0), (0x1c8, 0x240, 8)]
            .into_iter()
            .enumerate()
        {
            let f = 0x180 + i * FIELD_LEN;
            put(&mut data, f, TYPES + name_at);
            put(&mut data, f + 8, TYPES + type_at);
            put(&mut data, f + 16, offset);
        }
        data[0x1c0..0x1c3].copy_from_slice(&[0, 1, b'X']);
        data[0x1c8..0x1ce].copy_from_slice(&[0, 4, b'N', b'a', b'm', b'e']);
        data[0x200 + KIND_AT] = 5; // int32
        put(&mut data, 0x200 + SIZE_AT, 4);
        data[0x240 + KIND_AT] = 24; // string
        put(&mut data, 0x240 + SIZE_AT, 16);
        let t = decoded(&data, 0x1100).unwrap();
        assert_eq!(t.kind, Kind::Composite);
        assert_eq!(
            t.fields,
            [
                FieldType {
                    name: "X".into(),
                    offset: 0,
                    kind: Kind::Int {
                        size: 4,
                        signed: true
                    },
                    size: 4
                },
                FieldType {
                    name: "Name".into(),
                    offset: 8,
                    kind: Kind::String,
                    size: 16
                },
            ]
        );
        // A field table pointer that leads nowhere (an unrelocated PIE's)
        // leaves the type without fields, still named.
        put(&mut data, 0x100 + FIELDS_AT, 0);
        let t = decoded(&data, 0x1100).unwrap();
        assert_eq!((t.name.as_str(), t.fields.len()), ("main.T", 0));
    }

    #[test]
    fn garbage_is_not_a_type() {
        let mut bad = image(2, 0, "int", 8);
        bad[0x11] = 0; // empty name
        assert_eq!(decoded(&bad, 0x1100), None);
        let mut control = image(2, 0, "in\u{7}", 8);
        control[0x100 + KIND_AT] = 2;
        assert_eq!(decoded(&control, 0x1100), None);
        assert_eq!(decoded(&image(0, 0, "x", 8), 0x1100), None);
        assert_eq!(decoded(&[], 0x1100), None);
        assert_eq!(decoded(&image(2, 0, "int", 8), u64::MAX), None);
    }
}
