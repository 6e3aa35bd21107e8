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
