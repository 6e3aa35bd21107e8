//! Slices and interfaces as `trace` prints them with `%v`, from the bytes
//! the kernel copied (see `gotrace_common::trace::ARG_SLICE`,
//! `ARG_STRING_SLICE` and `ARG_INTERFACE`): `len=3 [1 2 3]`,
//! `len=5 "hello"`, `len=2 ["a" "b"]`, `len=2 [{1 2} {3 -4}]`, `int(42)`,
//! `string("bob")`, `*main.Request(0xc000012345)`, `<nil>`.

use gotrace_common::trace::{
    IFACE_DATA_AT, IFACE_TEXT_AT, IFACE_TEXT_MAX, STRING_SIZE, STRING_SLICE_ELEMENTS,
    STRING_SLICE_ENTRY, STRING_SLICE_TEXT,
};

use crate::symbols::{
    dwarf::Shape,
    types::{FieldType, GoType, Kind},
};

/// A slice of `length` elements of shape `element`, whose first elements
/// are `bytes` (whole elements); `cut` when elements were left out.
pub fn slice(bytes: &[u8], length: u64, cut: bool, element: Option<&Shape>) -> String {
    let more = if cut { " ..." } else { "" };
    let elements: Option<Vec<String>> = match element {
        // []byte and []uint8 read best as text.
        Some(Shape::Word {
            size: 1,
            signed: false,
        }) => {
            return format!("len={length} {:?}{more}", String::from_utf8_lossy(bytes));
        }
        // Whole elements only: the kernel copies at most STRING_SIZE - 1
        // bytes, and none of an element bigger than that.
        Some(shape) if (1..STRING_SIZE as u64).contains(&shape.size()) => bytes
            .chunks_exact(shape.size() as usize)
            .map(|chunk| element_value(chunk, shape))
            .collect(),
        // Nested slices, interfaces...: not decoded (strings have their
        // own kind, see `string_slice`).
        _ => None,
    };
    match elements {
        Some(elements) => format!("len={length} [{}{more}]", elements.join(" ")),
        None if length == 0 => "len=0 []".to_owned(),
        None => format!("len={length} [...]"),
    }
}

/// One slice element of `shape` from its bytes: numbers, pointers, and
/// structs of them field by field (`{1 -2 0xc000012345}`, other fields
/// `...`). `None` for what the bytes cannot show (strings, slices...).
fn element_value(bytes: &[u8], shape: &Shape) -> Option<String> {
    match shape {
        Shape::Word { size, signed } => Some(integer(bytes.get(..*size as usize)?, *signed)),
        Shape::Float { size } => float(bytes.get(..*size as usize)?),
        Shape::Pointer(_) => Some(format!("0x{:x}", le(bytes.get(..8)?))),
        Shape::Struct { fields, .. } => {
            let fields: Vec<String> = fields
                .iter()
                .map(|f| {
                    let at = usize::try_from(f.offset).ok();
                    at.and_then(|at| element_value(bytes.get(at..)?, &f.shape))
                        .unwrap_or_else(|| "...".to_owned())
                })
                .collect();
            Some(format!("{{{}}}", fields.join(" ")))
        }
        _ => None,
    }
}

/// A `[]string` of `length` elements from the kernel's slot (layout of
/// `ARG_STRING_SLICE`); `cut` when elements were left out.
pub fn string_slice(slot: &[u8; STRING_SIZE], length: u64, cut: bool) -> String {
    let shown = (length as usize).min(STRING_SLICE_ELEMENTS);
    let mut elements: Vec<String> = slot
        .chunks_exact(STRING_SLICE_ENTRY)
        .take(shown)
        .map(|entry| {
            let text_length = usize::from(entry[0]);
            let kept = text_length.min(STRING_SLICE_TEXT);
            let text = String::from_utf8_lossy(&entry[1..1 + kept]);
            let more = if text_length > kept { "..." } else { "" };
            format!("{text:?}{more}")
        })
        .collect();
    if cut {
        elements.push("...".to_owned());
    }
    format!("len={length} [{}]", elements.join(" "))
}

/// An interface whose data word is `data`, given the kernel's slot bytes
/// and its dynamic type (`None`: nil when `type_address` is 0, else a type
/// the binary does not describe).
pub fn interface(
    slot: &[u8; STRING_SIZE],
    type_address: u64,
    data: u64,
    go_type: Option<&GoType>,
) -> String {
    let Some(t) = go_type else {
        return if type_address == 0 {
            "<nil>".to_owned()
        } else {
            format!("<type 0x{type_address:x}>(0x{data:x})")
        };
    };
    let value = &slot[IFACE_DATA_AT..IFACE_DATA_AT + 16];
    let shown = match t.kind {
        _ if t.direct => format!("0x{data:x}"),
        Kind::Bool | Kind::Int { .. } | Kind::Float { .. } => {
            scalar(value, t.kind).unwrap_or_default()
        }
        Kind::String => {
            let length = le(&value[8..16]);
            let kept = (length as usize).min(IFACE_TEXT_MAX);
            let text = String::from_utf8_lossy(&slot[IFACE_TEXT_AT..IFACE_TEXT_AT + kept]);
            let more = if length as usize > kept { "..." } else { "" };
            format!("{text:?}{more}")
        }
        Kind::Reference => format!("0x{data:x}"),
        Kind::Composite => return format!("{}{{{}}}", t.name, struct_fields(value, &t.fields)),
    };
    format!("{}({shown})", t.name)
}

/// A struct value's fields as `X:1 Y:-4`, from its first bytes `value`
/// (what the kernel copied); fields beyond them, and fields that are not
/// numbers, show as `...`. Just `...` when the fields are unknown.
fn struct_fields(value: &[u8], fields: &[FieldType]) -> String {
    if fields.is_empty() {
        return "...".to_owned();
    }
    fields
        .iter()
        .map(|f| {
            let bytes = usize::try_from(f.offset)
                .ok()
                .and_then(|at| value.get(at..at.checked_add(usize::try_from(f.size).ok()?)?));
            let shown = bytes.and_then(|b| scalar(b, f.kind));
            format!("{}:{}", f.name, shown.as_deref().unwrap_or("..."))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A bool, integer or float of `kind` from the start of `bytes`; `None`
/// for other kinds, or when `bytes` is too short.
fn scalar(bytes: &[u8], kind: Kind) -> Option<String> {
    match kind {
        Kind::Bool => bytes.first().map(|&b| (b != 0).to_string()),
        Kind::Int { size, signed } => Some(integer(bytes.get(..usize::from(size))?, signed)),
        Kind::Float { size } => float(bytes.get(..usize::from(size))?),
        _ => None,
    }
}

/// A little-endian integer of 1 to 8 bytes.
fn le(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word[..bytes.len().min(8)].copy_from_slice(&bytes[..bytes.len().min(8)]);
    u64::from_le_bytes(word)
}

fn integer(bytes: &[u8], signed: bool) -> String {
    let raw = le(bytes);
    let bits = 8 * bytes.len().clamp(1, 8) as u32;
    if signed {
        (((raw << (64 - bits)) as i64) >> (64 - bits)).to_string()
    } else {
        raw.to_string()
    }
}

fn float(bytes: &[u8]) -> Option<String> {
    Some(match bytes.len() {
        4 => f32::from_le_bytes(bytes.try_into().ok()?).to_string(),
        8 => f64::from_le_bytes(bytes.try_into().ok()?).to_string(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::dwarf::Field;

    fn words(values: &[i64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn slices() {
        let int = Shape::Word {
            size: 8,
            signed: true,
        };
        assert_eq!(
            slice(&words(&[1, -2, 3]), 3, false, Some(&int)),
            "len=3 [1 -2 3]"
        );
        assert_eq!(
            slice(&words(&[0, 1, 2, 3, 4, 5, 6]), 10, true, Some(&int)),
            "len=10 [0 1 2 3 4 5 6 ...]"
        );
        let byte = Shape::Word {
            size: 1,
            signed: false,
        };
        assert_eq!(slice(b"hi\n", 3, false, Some(&byte)), r#"len=3 "hi\n""#);
        let int16 = Shape::Word {
            size: 2,
            signed: true,
        };
        assert_eq!(
            slice(&[0xff, 0xff, 7, 0], 2, false, Some(&int16)),
            "len=2 [-1 7]"
        );
        let field = |name: &str, offset, shape| Field {
            name: name.to_owned(),
            offset,
            shape,
        };
        let point = Shape::Struct {
            size: 16,
            fields: vec![field("X", 0, int.clone()), field("Y", 8, int.clone())],
        };
        assert_eq!(
            slice(&words(&[1, 2, 3, -4]), 2, false, Some(&point)),
            "len=2 [{1 2} {3 -4}]"
        );
        let named = Shape::Struct {
            size: 24,
            fields: vec![
                field("Name", 0, Shape::String),
                field("N", 16, int16.clone()),
            ],
        };
        assert_eq!(
            slice(&words(&[0, 0, 7, 0, 0, 9]), 4, true, Some(&named)),
            "len=4 [{... 7} {... 9} ...]"
        );
        let big = Shape::Struct {
            size: 64,
            fields: Vec::new(),
        };
        assert_eq!(slice(&[0; 63], 3, false, Some(&big)), "len=3 [...]");
        assert_eq!(
            slice(&[0; 48], 3, false, Some(&Shape::String)),
            "len=3 [...]"
        );
        assert_eq!(slice(&[], 0, false, None), "len=0 []");
        assert_eq!(
            slice(
                &1.5f64.to_le_bytes(),
                1,
                false,
                Some(&Shape::Float { size: 8 })
            ),
            "len=1 [1.5]"
        );
    }

    #[test]
    fn string_slices() {
        let mut slot = [0u8; STRING_SIZE];
        let long = b"a-path-longer-than-twenty-bytes";
        for (e, text) in [&b"GET"[..], long, b""].iter().enumerate() {
            let entry = &mut slot[e * STRING_SLICE_ENTRY..(e + 1) * STRING_SLICE_ENTRY];
            entry[0] = text.len() as u8;
            let kept = text.len().min(STRING_SLICE_TEXT);
            entry[1..1 + kept].copy_from_slice(&text[..kept]);
        }
        assert_eq!(
            string_slice(&slot, 4, true),
            r#"len=4 ["GET" "a-path-longer-than-t"... "" ...]"#
        );
        assert_eq!(string_slice(&slot, 1, false), r#"len=1 ["GET"]"#);
        assert_eq!(string_slice(&slot, 0, false), "len=0 []");
    }

    fn slot(value: [u64; 2], text: &[u8]) -> [u8; STRING_SIZE] {
        let mut slot = [0u8; STRING_SIZE];
        slot[IFACE_DATA_AT..IFACE_DATA_AT + 8].copy_from_slice(&value[0].to_le_bytes());
        slot[IFACE_DATA_AT + 8..IFACE_DATA_AT + 16].copy_from_slice(&value[1].to_le_bytes());
        slot[IFACE_TEXT_AT..IFACE_TEXT_AT + text.len()].copy_from_slice(text);
        slot
    }

    fn go_type(name: &str, kind: Kind, direct: bool) -> GoType {
        GoType {
            name: name.into(),
            kind,
            direct,
            size: 8,
            fields: Vec::new(),
        }
    }

    #[test]
    fn interfaces() {
        let int = go_type(
            "int",
            Kind::Int {
                size: 8,
                signed: true,
            },
            false,
        );
        assert_eq!(
            interface(
                &slot([(-42i64) as u64, 0], b""),
                0x4a0000,
                0xc000,
                Some(&int)
            ),
            "int(-42)"
        );
        let string = go_type("string", Kind::String, false);
        assert_eq!(
            interface(&slot([0xc100, 3], b"bob"), 0x4a0000, 0xc000, Some(&string)),
            r#"string("bob")"#
        );
        assert_eq!(
            interface(&slot([0xc100, 100], &[b'x'; 40]), 1, 2, Some(&string)),
            format!("string({:?}...)", "x".repeat(40))
        );
        let pointer = go_type("*errors.errorString", Kind::Reference, true);
        assert_eq!(
            interface(&slot([0, 0], b""), 0x4a0000, 0xc000012345, Some(&pointer)),
            "*errors.errorString(0xc000012345)"
        );
        let mut point = go_type("main.Point", Kind::Composite, false);
        assert_eq!(
            interface(&slot([1, 2], b""), 1, 2, Some(&point)),
            "main.Point{...}"
        );
        let int32 = Kind::Int {
            size: 4,
            signed: true,
        };
        let field = |name: &str, offset, kind, size| FieldType {
            name: name.into(),
            offset,
            kind,
            size,
        };
        point.fields = vec![
            field("X", 0, int32, 4),
            field("Y", 4, int32, 4),
            field("Label", 8, Kind::String, 16),
            field("Far", 24, int32, 4),
        ];
        let x_y = 1 | (((-4i32) as u32 as u64) << 32);
        assert_eq!(
            interface(&slot([x_y, 0], b""), 1, 2, Some(&point)),
            "main.Point{X:1 Y:-4 Label:... Far:...}"
        );
        assert_eq!(interface(&slot([0, 0], b""), 0, 0, None), "<nil>");
        assert_eq!(
            interface(&slot([0, 0], b""), 0x10, 0x20, None),
            "<type 0x10>(0x20)"
        );
    }
}
