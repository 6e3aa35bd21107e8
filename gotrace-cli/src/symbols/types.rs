//! Go's runtime type descriptors (`internal/abi.Type`, `runtime._type`
//! before Go 1.21), read from the binary: what `trace` needs to name the
//! dynamic type of an interface, which the kernel sends as a pointer.
//!
//! Layout on amd64, Go 1.17 to 1.27 alike: `Size_` at 0, `TFlag` at 20,
//! `Kind_` at 23, `Str` (a name offset from `moduledata.types`) at 40.
//! Names are a flag byte, a varint length and the bytes (Go 1.17+).

const SIZE_AT: usize = 0;
const TFLAG_AT: usize = 20;
const KIND_AT: usize = 23;
const STR_AT: usize = 40;
const DESCRIPTOR_LEN: usize = 48;

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

/// Decodes the descriptor at `address`; `types` is the base name offsets
/// count from, `read(address, len)` reads the binary.
pub fn decode<'d>(
    read: impl Fn(u64, usize) -> Option<&'d [u8]>,
    types: u64,
    address: u64,
) -> Option<GoType> {
    let descriptor = read(address, DESCRIPTOR_LEN)?;
    let size = u64::from_le_bytes(descriptor[SIZE_AT..SIZE_AT + 8].try_into().ok()?);
    let tflag = descriptor[TFLAG_AT];
    let kind_byte = descriptor[KIND_AT];
    let str_offset = i32::from_le_bytes(descriptor[STR_AT..STR_AT + 4].try_into().ok()?);
    let name_at = types.checked_add_signed(i64::from(str_offset))?;
    let mut name = name(read(name_at, 1 + 2)?, |len| read(name_at, len))?;
    if tflag & TFLAG_EXTRA_STAR != 0 {
        name.remove(0);
    }
    Some(GoType {
        name,
        kind: Kind::from_abi(kind_byte)?,
        direct: (kind_byte | tflag) & DIRECT_IFACE != 0,
        size,
    })
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

    fn read<'d>(data: &'d [u8]) -> impl Fn(u64, usize) -> Option<&'d [u8]> + 'd {
        move |address, len| {
            let start = usize::try_from(address.checked_sub(TYPES)?).ok()?;
            data.get(start..start.checked_add(len)?)
        }
    }

    #[test]
    fn names_kinds_and_direct_values() {
        let int = image(2, 0, "int", 8);
        assert_eq!(
            decode(read(&int), TYPES, 0x1100),
            Some(GoType {
                name: "int".into(),
                kind: Kind::Int {
                    size: 8,
                    signed: true
                },
                direct: false,
                size: 8
            })
        );
        // Go 1.19 marks direct values in the kind byte, Go 1.26+ in tflag.
        let old = decode(
            read(&image(22 | DIRECT_IFACE, 0, "*main.T", 8)),
            TYPES,
            0x1100,
        )
        .unwrap();
        let new = decode(read(&image(22, DIRECT_IFACE, "*main.T", 8)), TYPES, 0x1100).unwrap();
        assert_eq!((old.kind, old.direct), (Kind::Reference, true));
        assert_eq!(old, new);
        // The shared "*T" name of a named type T.
        let named = decode(
            read(&image(25, TFLAG_EXTRA_STAR, "*main.Point", 16)),
            TYPES,
            0x1100,
        );
        assert_eq!(named.map(|t| t.name), Some("main.Point".into()));
    }

    #[test]
    fn garbage_is_not_a_type() {
        let mut bad = image(2, 0, "int", 8);
        bad[0x11] = 0; // empty name
        assert_eq!(decode(read(&bad), TYPES, 0x1100), None);
        let mut control = image(2, 0, "in\u{7}", 8);
        control[0x100 + KIND_AT] = 2;
        assert_eq!(decode(read(&control), TYPES, 0x1100), None);
        assert_eq!(decode(read(&image(0, 0, "x", 8)), TYPES, 0x1100), None);
        assert_eq!(decode(read(&[]), TYPES, 0x1100), None);
        assert_eq!(decode(read(&image(2, 0, "int", 8)), TYPES, u64::MAX), None);
    }
}
