//! `cargo xtask test`: the whole suite, as CI runs it (`.ci/run`).
//!
//! First the code checks (formatting, clippy with warnings denied on the
//! host crates and the eBPF crate, unused dependencies), which fail fast.
//! Unit tests need nothing; the integration tests (crate `tests/`) load
//! eBPF programs, so they need root, and build their Go fixtures with the
//! toolchains named in the environment set here. The fuzz targets run last,
//! 60 s each (`GOTRACE_FUZZ_SECS`).

use std::process::Command;

use anyhow::{bail, Context as _};

use crate::{
    build, fuzz, setup,
    util::{root, run},
};

pub fn run_all(filter: &[String]) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the test suite loads eBPF programs into the kernel: run it as root");
    }
    let go = setup::all()?;
    setup::check_tools()?;
    checks()?;
    let gotrace = build::gotrace()?;
    build::gotrace_arm64()?;
    run(Command::new(env!("CARGO")).current_dir(root()).args([
        "test",
        "--package",
        "gotrace-cli",
        "--package",
        "gotrace-common",
    ]))?;
    // One test at a time: tests check that no gotrace program is left in
    // the kernel, which a concurrent test's live programs would confuse.
    run(Command::new(env!("CARGO"))
        .current_dir(root())
        .env("GOTRACE_BIN", &gotrace)
        .env("GOTRACE_GO119", &go.go119)
        .env("GOTRACE_GO127", &go.go127)
        .env("GOTRACE_GCCGO", &go.gccgo)
        // The arm64 stage boots its machine through this very program
        // (`xtask arm64 --prepared`).
        .env(
            "GOTRACE_ARM64_RUNNER",
            std::env::current_exe().context("finding xtask's own path")?,
        )
        .args([
            "test",
            "--package",
            "integration-tests",
            "--",
            "--test-threads=1",
        ])
        .args(filter))?;
    // A filtered run is someone chasing one test; the fuzzers would only
    // make them wait.
    if filter.is_empty() {
        let seconds = match std::env::var("GOTRACE_FUZZ_SECS") {
            Ok(text) => text
                .parse()
                .with_context(|| format!("GOTRACE_FUZZ_SECS={text:?} is not a number"))?,
            Err(_) => 60,
        };
        fuzz::run_all(seconds)?;
    }
    Ok(())
}

/// rustfmt, clippy (host crates, then the eBPF crate for its own target,
/// as the aya template does) and cargo-machete, each failing the suite.
fn checks() -> anyhow::Result<()> {
    let cargo = || {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(root());
        cmd
    };
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    // The eBPF crate builds only for the BPF target, with nightly's
    // build-std; rustup's cargo proxy picks the toolchain. Its register
    // access differs per architecture (`bpf_target_arch`, which aya-build
    // sets from gotrace-cli's target): both are checked.
    for arch in ["x86_64", "aarch64"] {
        run(Command::new("cargo")
            .current_dir(root().join("gotrace-ebpf"))
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO")
            .env("RUSTFLAGS", format!("--cfg=bpf_target_arch=\"{arch}\""))
            .args([
                "+nightly",
                "clippy",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--target-dir",
            ])
            .arg(root().join(format!("target/ebpf-clippy-{arch}")))
            .args(["--", "-D", "warnings"]))?;
    }
    run(Command::new("cargo-machete").arg(root()))
}
