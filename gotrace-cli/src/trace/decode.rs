//! Turning what the `trace` program sent (an `Event`) back into values and
//! stack frames, with the binary's help: the load bias of a PIE, type
//! descriptors of interface values, function names and inline trees.

use gotrace_common::trace::{
    unreadable_bit, ArgSpec, Event, ARG_C_STRING, ARG_GO_STRING, ARG_INTERFACE, ARG_SLICE,
    ARG_STRING_SLICE, IFACE_TYPE_AT, STRING_SIZE,
};

use super::plan::Shown;
use crate::{
    output::{events::Value, govalue},
    symbols::{dwarf::Shape, types::GoType, Binary},
};

/// How far the process loaded the probe's binary from its link-time
/// addresses (0 unless PIE): where the probe fired against where its site
/// is in the file. `sites` are the probe's link-time addresses by
/// `Cookie::site`.
pub fn load_bias(event: &Event, sites: &[u64]) -> u64 {
    sites
        .get(event.site as usize)
        .map_or(0, |&site| event.ip.wrapping_sub(site))
}

/// The value of argument slot `i` of `event`, read as `arg` says;
/// `go_type(address)` names the type descriptor at a run-time address.
pub fn value(
    event: &Event,
    i: usize,
    arg: &ArgSpec,
    shown: &Shown,
    string_size: usize,
    go_type: impl Fn(u64) -> Option<GoType>,
) -> Value {
    if shown.missing {
        return Value::Missing;
    }
    if event.cut & unreadable_bit(i) != 0 {
        return Value::Unreadable;
    }
    let cut = event.cut & (1 << i) != 0;
    match arg.kind {
        ARG_GO_STRING | ARG_C_STRING => {
            let length = (event.values[i] as usize).min(STRING_SIZE - 1);
            let bytes = &event.strings[i][..length];
            let bytes = if arg.kind == ARG_C_STRING {
                bytes.split(|&b| b == 0).next().unwrap_or_default()
            } else {
                bytes
            };
            let keep = string_size.saturating_sub(1);
            Value::Text {
                bytes: bytes[..bytes.len().min(keep)].to_vec(),
                cut: cut || bytes.len() > keep,
            }
        }
        ARG_SLICE => {
            // The whole elements the program copied (see `read_slice`).
            let element = u64::from(arg.element.max(1));
            let count = event.values[i].min((STRING_SIZE as u64 - 1) / element);
            let bytes = &event.strings[i][..(count * element) as usize];
            let element_shape = match &shown.shape {
                Some(Shape::Slice(element)) => element.as_deref(),
                _ => None,
            };
            Value::Go(govalue::slice(bytes, event.values[i], cut, element_shape))
        }
        ARG_STRING_SLICE => Value::Go(govalue::string_slice(
            &event.strings[i],
            event.values[i],
            cut,
        )),
        ARG_INTERFACE => {
            let slot = &event.strings[i];
            let mut word = [0u8; 8];
            word.copy_from_slice(&slot[IFACE_TYPE_AT..IFACE_TYPE_AT + 8]);
            let type_address = u64::from_le_bytes(word);
            let resolved = (type_address != 0).then(|| go_type(type_address)).flatten();
            Value::Go(govalue::interface(
                slot,
                type_address,
                event.values[i],
                resolved.as_ref(),
            ))
        }
        _ => Value::Int {
            value: event.values[i],
            size: shown.size,
            signed: shown.signed,
        },
    }
}

/// The event's user stack, symbolized through `binary` (loaded `bias`
/// from its link-time addresses), each frame marked with `module`.
/// `frameless`: the probe sits where its function has no frame yet
/// (entry, stack-check branch, return), so the frame-pointer walk starts
/// at the caller's caller and the caller comes from the return address
/// the probe read (at the stack pointer on x86-64, in the link register on
/// arm64); inside a body (an inlined copy) the walk is complete.
pub fn frames(
    event: &Event,
    bias: u64,
    binary: &Binary,
    module: &str,
    frameless: bool,
) -> Vec<String> {
    let count = (event.stack_bytes as usize / 8).min(event.stack.len());
    let caller = (frameless && event.return_address != 0).then_some(event.return_address);
    // The probe's own address, then the caller, then the frame-pointer
    // walk.
    let addresses: Vec<u64> = event.stack[..count.min(1)]
        .iter()
        .copied()
        .chain(caller)
        .chain(event.stack[count.min(1)..count].iter().copied())
        .collect();
    addresses
        .into_iter()
        .enumerate()
        .flat_map(|(i, address)| {
            let address = address.wrapping_sub(bias);
            // Return addresses point after the call; look up the call.
            let lookup = if i == 0 {
                address
            } else {
                address.wrapping_sub(1)
            };
            let Some(f) = binary.function_at(lookup) else {
                return vec![format!("{address:#x} [unknown]")];
            };
            // Calls the compiler inlined here have no frame of their
            // own: name them before the function that holds the code.
            let frames = binary.frames_at(lookup);
            let inlined = frames.len().saturating_sub(1);
            frames[..inlined]
                .iter()
                .map(|name| format!("{name} (inlined) [{module}]"))
                .chain([format!("{}+{:#x} [{module}]", f.name, address - f.address)])
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gotrace_common::trace::{ARG_WORD, IFACE_DATA_AT};

    fn event() -> Event {
        // SAFETY: Event is plain integers and byte arrays: all-zero is a
        // valid (empty) event.
        unsafe { std::mem::zeroed() }
    }

    const WORD: Shown = Shown {
        size: 8,
        signed: true,
        shape: None,
        missing: false,
    };

    fn arg(kind: u32) -> ArgSpec {
        ArgSpec {
            kind,
            ..ArgSpec::default()
        }
    }

    fn no_types(_: u64) -> Option<GoType> {
        None
    }

    #[test]
    fn words_keep_their_width_and_sign() {
        let mut e = event();
        e.values[1] = 0xffff_fffe;
        let small = Shown {
            size: 4,
            signed: true,
            shape: None,
            missing: false,
        };
        assert_eq!(
            value(&e, 1, &arg(ARG_WORD), &small, 64, no_types),
            Value::Int {
                value: 0xffff_fffe,
                size: 4,
                signed: true
            }
        );
    }

    #[test]
    fn strings_are_cut_where_the_kernel_or_the_user_says() {
        let mut e = event();
        e.values[0] = 5;
        e.strings[0][..5].copy_from_slice(b"hello");
        assert_eq!(
            value(&e, 0, &arg(ARG_GO_STRING), &WORD, 64, no_types),
            Value::Text {
                bytes: b"hello".to_vec(),
                cut: false
            }
        );
        // -Z 4 keeps 3 bytes.
        assert_eq!(
            value(&e, 0, &arg(ARG_GO_STRING), &WORD, 4, no_types),
            Value::Text {
                bytes: b"hel".to_vec(),
                cut: true
            }
        );
        // The kernel cut it (longer than it reads).
        e.cut |= 1;
        assert!(matches!(
            value(&e, 0, &arg(ARG_GO_STRING), &WORD, 64, no_types),
            Value::Text { cut: true, .. }
        ));
        // C strings end at their NUL.
        let mut c = event();
        c.values[2] = 63;
        c.strings[2][..3].copy_from_slice(b"ab\0");
        assert_eq!(
            value(&c, 2, &arg(ARG_C_STRING), &WORD, 64, no_types),
            Value::Text {
                bytes: b"ab".to_vec(),
                cut: false
            }
        );
    }

    #[test]
    fn missing_arguments_read_nothing() {
        let missing = Shown {
            missing: true,
            ..WORD
        };
        assert_eq!(
            value(&event(), 0, &ArgSpec::default(), &missing, 64, no_types),
            Value::Missing
        );
    }

    #[test]
    fn unreadable_arguments_say_so() {
        let mut e = event();
        e.cut = unreadable_bit(3);
        assert_eq!(
            value(&e, 3, &arg(ARG_GO_STRING), &WORD, 64, no_types),
            Value::Unreadable
        );
    }

    #[test]
    fn interfaces_are_named_by_their_type() {
        let mut e = event();
        e.strings[0][IFACE_TYPE_AT..IFACE_TYPE_AT + 8].copy_from_slice(&0x4a10u64.to_le_bytes());
        e.strings[0][IFACE_DATA_AT..IFACE_DATA_AT + 8].copy_from_slice(&42u64.to_le_bytes());
        let int = |address: u64| {
            (address == 0x4a10).then(|| GoType {
                name: "int".into(),
                kind: crate::symbols::types::Kind::Int {
                    size: 8,
                    signed: true,
                },
                direct: false,
                size: 8,
                fields: Vec::new(),
            })
        };
        let shown = value(&e, 0, &arg(ARG_INTERFACE), &WORD, 64, int);
        assert_eq!(shown, Value::Go("int(42)".into()), "{shown:?}");
        // A nil interface has no type word.
        let nil = value(&event(), 0, &arg(ARG_INTERFACE), &WORD, 64, int);
        assert_eq!(nil, Value::Go("<nil>".into()));
    }

    #[test]
    fn load_bias_of_the_site_that_fired() {
        let mut e = event();
        e.site = 1;
        e.ip = 0x5555_0000_1234;
        assert_eq!(load_bias(&e, &[0x1000, 0x1234]), 0x5555_0000_0000);
        e.site = 9;
        assert_eq!(load_bias(&e, &[0x1000]), 0);
    }
}
