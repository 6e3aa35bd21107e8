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
