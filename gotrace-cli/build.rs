//! Builds the kernel programs (`gotrace-ebpf`) for the BPF target and leaves
//! the object in `OUT_DIR`, where `src/ebpf.rs` embeds it.
//!
//! This needs nightly with rust-src and bpf-linker on PATH; `cargo xtask
//! setup` installs them. `AYA_BUILD_SKIP=1` skips it for metadata-only work
//! (the binary then refuses to run: the embedded object is empty).

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let ebpf_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../gotrace-ebpf");
    let package = aya_build::Package {
        name: "gotrace-ebpf",
        root_dir: ebpf_dir,
        ..Default::default()
    };
    // An empty placeholder keeps `include_bytes!` valid when the build is skipped.
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let object = out.join("gotrace");
    if !object.exists() {
        std::fs::write(&object, []).with_context(|| format!("writing {}", object.display()))?;
    }
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
