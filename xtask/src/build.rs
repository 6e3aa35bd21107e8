//! Building gotrace. gotrace-cli's build.rs compiles the eBPF crate (nightly,
//! build-std=core, bpfel-unknown-none, bpf-linker) and embeds the object.

use std::{path::PathBuf, process::Command};

use crate::util::{root, run};

/// Builds target/release/gotrace and returns its path.
pub fn gotrace() -> anyhow::Result<PathBuf> {
    run(Command::new(env!("CARGO")).current_dir(root()).args([
        "build",
        "--release",
        "--package",
        "gotrace-cli",
    ]))?;
    Ok(root().join("target/release/gotrace"))
}

/// Builds gotrace for arm64 (static, musl, linked by rustc's own lld, so
/// no C cross toolchain is needed) and returns its path.
pub fn gotrace_arm64() -> anyhow::Result<PathBuf> {
    run(Command::new(env!("CARGO"))
        .current_dir(root())
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER", "rust-lld")
        .args(["build", "--release", "--package", "gotrace-cli", "--target"])
        .arg(crate::setup::ARM64_TARGET))?;
    Ok(gotrace_arm64_path())
}

/// Where `gotrace_arm64` leaves the binary.
pub fn gotrace_arm64_path() -> PathBuf {
    root().join(format!(
        "target/{}/release/gotrace",
        crate::setup::ARM64_TARGET
    ))
}
