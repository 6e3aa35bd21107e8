//! Named Go arguments (`name`, `req.Method`) turned into what the `trace`
//! program reads, from DWARF parameter types and the ABI's assignment
//! rules (`src/cmd/compile/abi-internal.md`): each argument takes as many
//! integer registers as it has integer words (string 2, slice 3, interface
//! 2, structs field by field), unless the rest do not fit, in which case
//! the whole argument goes on the stack in order.

use gotrace_common::trace::{
    is_two_words, ArgSpec, ARG_GO_STRING, ARG_INTERFACE, ARG_SLICE, ARG_STRING_SLICE, ARG_WORD,
};

use super::Convention;
use crate::{
    arch::{register, stack, Arch},
    symbols::dwarf::{Param, Shape},
};

/// Offset of `_type` in `runtime.itab` (after `inter`), Go 1.0 to 1.27.
const ITAB_TYPE_AT: u32 = 8;

/// Where a value lives at the probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// Word by word at these locations (registers, or stack slots of an
    /// inlined call's pieces), one per integer word.
    Words(Vec<u32>),
    /// In memory at the stack pointer + offset.
    Stack(u32),
    /// At the pointer found at `pointer` (a location) plus `offset`.
    Behind { pointer: u32, offset: u64 },
}

/// A resolved named argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub spec: ArgSpec,
    /// Bytes of the value that are meaningful (upper bytes of a register
    /// holding a small integer are undefined and get masked).
    pub size: u64,
    /// Printable as text (`%s`).
    pub is_string: bool,
    /// A signed integer (`%d` sign-extends it from its size).
    pub signed: bool,
    /// The value's Go shape, for printing slices and interfaces (`%v`).
    pub shape: Shape,
}

/// Why a named argument cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NamedError {
    #[error("{function} has no parameter {name:?} (it has: {known})")]
    NoParameter {
        function: String,
        name: String,
        known: String,
    },
    #[error("{path}: no field {field:?}")]
    NoField { path: String, field: String },
    #[error("{0}: floats are passed in X registers, which uprobes cannot read")]
    Float(String),
    #[error(
        "{0}: only integers, pointers, strings, slices and interfaces are decoded (name a field)"
    )]
    Unsupported(String),
    #[error("{0}: only one pointer can be followed")]
    TwoPointers(String),
    #[error("{0}: its type is not described in DWARF deeply enough")]
    Unknown(String),
    /// An inlined call's argument DWARF does not locate at the probe.
    #[error("{0}: DWARF gives no location for it here")]
    NoLocation(String),
}

/// Integer words and float words of a shape passed in registers, or
/// `None` if it never is (arrays, unknown types).
pub fn words(shape: &Shape) -> Option<(usize, usize)> {
    Some(match shape {
        Shape::Word { .. } | Shape::Pointer(_) => (1, 0),
        Shape::Float { .. } => (0, 1),
        Shape::String | Shape::Interface { .. } => (2, 0),
        Shape::Slice(_) => (3, 0),
        Shape::Struct { fields, .. } => {
            let mut total = (0, 0);
            for f in fields {
                let (ints, floats) = words(&f.shape)?;
                total = (total.0 + ints, total.1 + floats);
            }
            total
        }
        Shape::Other { size: 0 } => (0, 0),
        Shape::Other { .. } => return None,
    })
}

/// Where each argument (not result) of `params` is at entry.
fn assign(arch: Arch, params: &[Param], convention: Convention) -> Vec<Place> {
    let go = arch.registers();
    let mut ints = 0;
    let mut floats = 0;
    let mut stack_offset: u64 = 8; // above the return address
    params
        .iter()
        .filter(|p| !p.result)
        .map(|p| {
            if convention == Convention::GoRegister {
                if let Some((i, f)) = words(&p.shape) {
                    if ints + i <= go.go_integer.len() && floats + f <= go.go_float_count {
                        let words = go.go_integer[ints..ints + i]
                            .iter()
                            .map(|&r| register(r))
                            .collect();
                        ints += i;
                        floats += f;
                        return Place::Words(words);
                    }
                }
            }
            let size = p.shape.size();
            let align = size.clamp(1, 8).next_power_of_two();
            stack_offset = stack_offset.div_ceil(align) * align;
            let place = Place::Stack(stack_offset as u32);
            stack_offset += size;
            place
        })
        .collect()
}

/// How to read `name.fields...` of `function` with `params` (from DWARF),
/// its arguments placed by `convention`.
pub fn resolve(
    arch: Arch,
    function: &str,
    params: &[Param],
    convention: Convention,
    name: &str,
    fields: &[String],
) -> Result<Resolved, NamedError> {
    let arguments: Vec<&Param> = params.iter().filter(|p| !p.result).collect();
    let places = assign(arch, params, convention);
    let placed: Vec<(&Param, Option<Place>)> = arguments
        .into_iter()
        .zip(places.into_iter().map(Some))
        .collect();
    resolve_placed(function, &placed, name, fields)
}

/// How to read `name.fields...` of `function` whose arguments are at the
/// given places (`None`: nowhere gotrace can read, an inlined call's
/// argument DWARF does not locate).
pub fn resolve_placed(
    function: &str,
    arguments: &[(&Param, Option<Place>)],
    name: &str,
    fields: &[String],
) -> Result<Resolved, NamedError> {
    let Some((param, place)) = arguments.iter().find(|(p, _)| p.name == name) else {
        return Err(NamedError::NoParameter {
            function: function.to_owned(),
            name: name.to_owned(),
            known: arguments
                .iter()
                .map(|(p, _)| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let Some(place) = place.clone() else {
        return Err(NamedError::NoLocation(name.to_owned()));
    };
    let mut shape = param.shape.clone();
    let mut place = place;
    let mut path = name.to_owned();
    for field in fields {
        let shown = format!("{path}.{field}");
        match shape {
            Shape::Struct {
                fields: members, ..
            } => {
                let at = members
                    .iter()
                    .position(|m| &m.name == field)
                    .ok_or_else(|| NamedError::NoField {
                        path: path.clone(),
                        field: field.clone(),
                    })?;
                let member = &members[at];
                place = match place {
                    Place::Words(locations) => {
                        // The words hold the fields' words in order.
                        let before: usize = members[..at]
                            .iter()
                            .map(|m| words(&m.shape).map_or(0, |w| w.0))
                            .sum();
                        let own = words(&member.shape).map_or(0, |w| w.0);
                        Place::Words(
                            locations
                                .get(before..before + own)
                                .ok_or_else(|| NamedError::Unknown(shown.clone()))?
                                .to_vec(),
                        )
                    }
                    Place::Stack(offset) => Place::Stack(offset + member.offset as u32),
                    Place::Behind { pointer, offset } => Place::Behind {
                        pointer,
                        offset: offset + member.offset,
                    },
                };
                shape = member.shape.clone();
            }
            Shape::Pointer(Some(pointee)) => {
                let Shape::Struct {
                    fields: members, ..
                } = *pointee
                else {
                    return Err(NamedError::NoField {
                        path,
                        field: field.clone(),
                    });
                };
                let member = members.iter().find(|m| &m.name == field).ok_or_else(|| {
                    NamedError::NoField {
                        path: path.clone(),
                        field: field.clone(),
                    }
                })?;
                let pointer = match place {
                    Place::Words(w) if w.len() == 1 => w[0],
                    Place::Stack(offset) => stack(offset),
                    _ => return Err(NamedError::TwoPointers(shown)),
                };
                place = Place::Behind {
                    pointer,
                    offset: member.offset,
                };
                shape = member.shape.clone();
            }
            Shape::Pointer(None) => return Err(NamedError::Unknown(shown)),
            _ => {
                return Err(NamedError::NoField {
                    path,
                    field: field.clone(),
                })
            }
        }
        path = shown;
    }
    // `element`: see `ArgSpec::element`. Elements DWARF does not describe
    // are copied as words and shown only as a count.
    let (kind, size, signed, element) = match &shape {
        Shape::Word { size, signed } => (ARG_WORD, *size, *signed, 0),
        Shape::Pointer(_) => (ARG_WORD, 8, false, 0),
        Shape::String => (ARG_GO_STRING, 16, false, 0),
        Shape::Slice(Some(element)) if **element == Shape::String => {
            (ARG_STRING_SLICE, 24, false, 16)
        }
        Shape::Slice(element) => {
            let bytes = element.as_ref().map_or(8, |e| e.size()).clamp(1, 63);
            (ARG_SLICE, 24, false, bytes as u32)
        }
        Shape::Interface { empty } => (
            ARG_INTERFACE,
            16,
            false,
            if *empty { 0 } else { ITAB_TYPE_AT },
        ),
        Shape::Float { .. } => return Err(NamedError::Float(path)),
        _ => return Err(NamedError::Unsupported(path)),
    };
    let mut spec = ArgSpec {
        kind,
        element,
        ..ArgSpec::default()
    };
    let two_words = is_two_words(kind);
    match place {
        Place::Words(w) => {
            spec.first = *w.first().ok_or_else(|| NamedError::Unknown(path.clone()))?;
            if two_words {
                spec.second = *w.get(1).ok_or_else(|| NamedError::Unknown(path.clone()))?;
            }
        }
        Place::Stack(offset) => {
            spec.first = stack(offset);
            spec.second = stack(offset + 8);
        }
        Place::Behind { pointer, offset } => {
            spec.indirect = 1;
            spec.first = pointer;
            spec.offset = offset;
        }
    }
    Ok(Resolved {
        spec,
        size: size.clamp(1, 8),
        is_string: kind == ARG_GO_STRING,
        signed,
        shape,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::dwarf::Field;
    use gotrace_common::arch::x86_64::regs;

    fn param(name: &str, shape: Shape) -> Param {
        Param {
            name: name.into(),
            shape,
            result: false,
        }
    }

    fn request() -> Shape {
        Shape::Pointer(Some(Box::new(Shape::Struct {
            size: 24,
            fields: vec![
                Field {
                    name: "Method".into(),
                    offset: 0,
                    shape: Shape::String,
                },
                Field {
                    name: "Code".into(),
                    offset: 16,
                    shape: Shape::Word {
                        size: 4,
                        signed: true,
                    },
                },
            ],
        })))
    }

    #[test]
    fn registers_in_order() {
        // func greet(name string, n int, req *Request)
        let params = [
            param("name", Shape::String),
            param(
                "n",
                Shape::Word {
                    size: 8,
                    signed: true,
                },
            ),
            param("req", request()),
        ];
        let name = resolve(
            Arch::X86_64,
            "main.greet",
            &params,
            Convention::GoRegister,
            "name",
            &[],
        )
        .unwrap();
        assert_eq!(
            (name.spec.first, name.spec.second),
            (register(regs::RAX), register(regs::RBX))
        );
        assert!(name.is_string);
        let n = resolve(
            Arch::X86_64,
            "main.greet",
            &params,
            Convention::GoRegister,
            "n",
            &[],
        )
        .unwrap();
        assert_eq!(n.spec.first, register(regs::RCX));
        let code = resolve(
            Arch::X86_64,
            "main.greet",
            &params,
            Convention::GoRegister,
            "req",
            &["Code".into()],
        )
        .unwrap();
        assert_eq!(
            (
                code.spec.indirect,
                code.spec.first,
                code.spec.offset,
                code.size
            ),
            (1, register(regs::RDI), 16, 4)
        );
    }

    #[test]
    fn what_does_not_fit_goes_on_the_stack() {
        // Four strings need 8 registers; a fifth does not fit in the 9th.
        let mut params: Vec<Param> = (0..5)
            .map(|i| param(&format!("s{i}"), Shape::String))
            .collect();
        params.push(param(
            "n",
            Shape::Word {
                size: 8,
                signed: true,
            },
        ));
        let s4 = resolve(
            Arch::X86_64,
            "f",
            &params,
            Convention::GoRegister,
            "s4",
            &[],
        )
        .unwrap();
        assert_eq!((s4.spec.first, s4.spec.second), (stack(8), stack(16)));
        // The following int still gets the 9th register.
        let n = resolve(Arch::X86_64, "f", &params, Convention::GoRegister, "n", &[]).unwrap();
        assert_eq!(n.spec.first, register(regs::R11));
    }

    #[test]
    fn stack_abi_aligns_each_argument() {
        let params = [
            param(
                "ok",
                Shape::Word {
                    size: 1,
                    signed: false,
                },
            ),
            param(
                "n",
                Shape::Word {
                    size: 8,
                    signed: true,
                },
            ),
        ];
        let ok = resolve(Arch::X86_64, "f", &params, Convention::GoStack, "ok", &[]).unwrap();
        let n = resolve(Arch::X86_64, "f", &params, Convention::GoStack, "n", &[]).unwrap();
        assert_eq!(
            (ok.spec.first, ok.size, n.spec.first),
            (stack(8), 1, stack(16))
        );
    }

    #[test]
    fn errors_name_what_is_missing() {
        let params = [
            param("x", Shape::Float { size: 8 }),
            param("req", request()),
        ];
        assert!(matches!(
            resolve(Arch::X86_64, "f", &params, Convention::GoRegister, "y", &[]),
            Err(NamedError::NoParameter { .. })
        ));
        assert!(matches!(
            resolve(Arch::X86_64, "f", &params, Convention::GoRegister, "x", &[]),
            Err(NamedError::Float(_))
        ));
        assert!(matches!(
            resolve(
                Arch::X86_64,
                "f",
                &params,
                Convention::GoRegister,
                "req",
                &["Nope".into()]
            ),
            Err(NamedError::NoField { .. })
        ));
    }
}
