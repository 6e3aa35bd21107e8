//! Project chores that need more than `cargo`: installing what a fresh
//! machine lacks, building the eBPF side, the demo, the root test suite, the
//! fuzz targets and the benchmark. Every step says what it does and skips what is done.

mod arm64;
mod bench;
mod build;
mod demo;
mod fuzz;
mod setup;
mod test;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install everything the build, the tests and the peers need.
    Setup,
    /// Build target/release/gotrace with its eBPF programs embedded.
    Build,
    /// Set up, build, and run gotrace funccount on the bundled demo program.
    Demo,
    /// Set up, build, and benchmark gotrace against bcc and bpftrace on the
    /// same Go binaries; writes bench/results.md.
    Bench,
    /// Set up, build, and run every test: unit tests and root tests against
    /// Go programs built by Go 1.19, Go 1.27 and gccgo.
    Test {
        /// Extra arguments for the integration-test harness (a test-name filter).
        #[arg(trailing_var_arg = true)]
        filter: Vec<String>,
    },
    /// Run COMMAND as root in an emulated arm64 machine with the arm64
    /// gotrace on PATH and DIR's files under /files; prints its output and
    /// exits with its status. One argument is a shell script, several are
    /// one command's words.
    Arm64 {
        /// A directory whose files the guest sees under /files.
        #[arg(long, value_name = "DIR")]
        files: Option<std::path::PathBuf>,
        /// Seconds before the machine is stopped and the run fails.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Use the machine and the arm64 gotrace as an earlier run left
        /// them, without installing or building (for the tests).
        #[arg(long, hide = true)]
        prepared: bool,
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Run every fuzz target (probe specs, pclntab, build info, ELF) for
    /// SECONDS each, from the corpus in fuzz/corpus/.
    Fuzz {
        #[arg(default_value_t = 60)]
        seconds: u32,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Setup => setup::all().map(drop),
        Command::Build => setup::build_tools().and_then(|()| build::gotrace().map(drop)),
        Command::Demo => demo::demo(),
        Command::Bench => bench::bench(),
        Command::Test { filter } => test::run_all(&filter),
        Command::Fuzz { seconds } => fuzz::run_all(seconds),
        Command::Arm64 {
            files,
            timeout,
            prepared,
            command,
        } => {
            let timeout = std::time::Duration::from_secs(timeout);
            return match arm64::command(files.as_deref(), &command, timeout, prepared) {
                Ok(status) => ExitCode::from(u8::try_from(status).unwrap_or(1)),
                Err(err) => {
                    eprintln!("xtask: {err:#}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}
