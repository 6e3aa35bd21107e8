//! Project chores that need more than `cargo`: installing what a fresh
//! machine lacks, building the eBPF side, the demo, the root test suite, the
//! fuzz targets and the benchmark. Every step says what it does and skips what is done.

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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}
