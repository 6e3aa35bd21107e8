//! Which Go toolchain built a binary, from marks each toolchain leaves.

use object::{Object as _, ObjectSymbol as _};

/// The two Go compilers, which differ in ABI and in where code lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toolchain {
    /// The standard `gc` toolchain: static runtime, `.gopclntab`, Go ABIs.
    Gc,
    /// gccgo: C calling convention, runtime and standard library in `libgo`.
    Gccgo,
}

impl std::fmt::Display for Toolchain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Toolchain::Gc => "gc",
            Toolchain::Gccgo => "gccgo",
        })
    }
}

/// gc writes `.gopclntab` (kept even by `strip`, since the runtime needs it)
/// and `.go.buildinfo`; gccgo writes `.go_export` in libgo and references
/// `__go_*`/`runtime.*` symbols of libgo from programs.
pub(super) fn detect(object: &object::File<'_>) -> Option<Toolchain> {
    if object.section_by_name(".gopclntab").is_some()
        || object.section_by_name(".go.buildinfo").is_some()
    {
        return Some(Toolchain::Gc);
    }
    let gccgo_symbol = |name: &str| {
        name.starts_with("__go_") || name == "runtime.main" || name.starts_with("runtime_")
    };
    let has_gccgo_symbol = object
        .symbols()
        .chain(object.dynamic_symbols())
        .any(|s| s.name().is_ok_and(gccgo_symbol));
    (object.section_by_name(".go_export").is_some() || has_gccgo_symbol).then_some(Toolchain::Gccgo)
}
