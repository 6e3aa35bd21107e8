//! Sets `bpf_target_arch` when nothing else did (clippy on this crate
//! alone); gotrace-cli's aya-build passes it for the architecture gotrace
//! is built for.

fn main() -> anyhow::Result<()> {
    aya_build::emit_bpf_target_arch_cfg()
}
