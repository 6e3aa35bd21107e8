//! `cargo xtask fuzz [SECONDS]`: every fuzz target in `fuzz/` for a bounded
//! time, starting from the corpus kept in `fuzz/corpus/<target>/`.
//! `cargo xtask test` runs it too (60 s each, `GOTRACE_FUZZ_SECS` to change).

use std::process::Command;

use anyhow::Context as _;

use crate::{
    setup,
    util::{root, run},
};

/// The targets of `fuzz/Cargo.toml`, one per parser of untrusted input.
const TARGETS: [&str; 4] = ["probe_spec", "pclntab", "buildinfo", "elf"];

/// Bigger inputs only slow the search: the seeds are at most 17 KB.
const MAX_INPUT_BYTES: u32 = 65_536;

pub fn run_all(seconds: u32) -> anyhow::Result<()> {
    setup::fuzz_tools()?;
    let fuzz = root().join("fuzz");
    for target in TARGETS {
        // libFuzzer adds what it finds to the first corpus directory: a
        // scratch one, so a run leaves the committed seeds as they are.
        let found = root().join("target/fuzz-corpus").join(target);
        std::fs::create_dir_all(&found).with_context(|| format!("creating {}", found.display()))?;
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        run(Command::new("cargo")
            .current_dir(&fuzz)
            // The fuzz targets reach gotrace's parsers, not its kernel programs.
            .env("AYA_BUILD_SKIP", "1")
            .args(["+nightly", "fuzz", "run", target])
            .arg(&found)
            .arg(fuzz.join("corpus").join(target))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-max_len={MAX_INPUT_BYTES}")))
        .with_context(|| {
            format!("fuzz target {target} failed; the input is under fuzz/artifacts/{target}/")
        })?;
    }
    Ok(())
}
