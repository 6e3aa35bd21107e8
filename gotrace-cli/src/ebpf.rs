//! The kernel programs, compiled by `build.rs` and embedded in the binary so
//! that gotrace needs no compiler at run time.

use anyhow::{bail, Context as _};
use aya::{Ebpf, EbpfLoader};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gotrace"));

/// The embedded object, for loaders other than aya's (see `attach::multi`).
pub fn object() -> &'static [u8] {
    OBJECT
}

/// Loads the embedded object after `configure` has set map sizes and globals.
pub fn load<'a>(configure: impl FnOnce(&mut EbpfLoader<'a>)) -> anyhow::Result<Ebpf> {
    if OBJECT.is_empty() {
        bail!("this gotrace was built with AYA_BUILD_SKIP and has no kernel programs: rebuild with `cargo xtask build`");
    }
    let mut loader = EbpfLoader::new();
    configure(&mut loader);
    loader
        .load(OBJECT)
        .context("loading gotrace's eBPF object into the kernel")
}

#[cfg(test)]
mod tests {
    use object::{Object as _, ObjectSymbol as _};

    use super::OBJECT;

    /// The built object holds every program, map and global the user side
    /// names (as aya's own integration tests check theirs), without root.
    #[test]
    fn object_holds_every_name() {
        assert!(
            !OBJECT.is_empty(),
            "built with AYA_BUILD_SKIP: no eBPF object to check (build with `cargo xtask build`)"
        );
        let parsed = aya_obj::Object::parse(OBJECT).expect("gotrace's eBPF object parses");
        for program in gotrace_common::names::PROGRAMS {
            assert!(
                parsed.programs.contains_key(program),
                "program {program} missing"
            );
        }
        for map in gotrace_common::names::MAPS {
            assert!(parsed.maps.contains_key(map), "map {map} missing");
        }
        let elf = object::File::parse(OBJECT).expect("an ELF object");
        let symbols: Vec<&str> = elf.symbols().filter_map(|s| s.name().ok()).collect();
        for global in gotrace_common::names::GLOBALS {
            assert!(symbols.contains(&global), "global {global} missing");
        }
    }
}
