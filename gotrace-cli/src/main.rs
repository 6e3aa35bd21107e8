//! The `gotrace` command line: parses it, runs one tool, turns errors into
//! one line and an exit status.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gotrace_cli::{attach, cmd, privilege};

#[derive(Parser, Debug)]
#[command(
    name = "gotrace",
    version,
    about = "Trace Go programs with eBPF uprobes, without restarting them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Count calls of every function matching a pattern.
    Funccount(cmd::funccount::Args),
    /// Time calls of every function matching a pattern, per goroutine.
    Funclatency(cmd::funclatency::Args),
    /// Print one line per call, with Go arguments decoded.
    Trace(cmd::trace::Args),
    /// Show the compiler, Go version, ABI and symbols of a binary.
    Info(cmd::info::Args),
    /// The helper process `--budget` measures probe costs with.
    #[command(hide = true)]
    CalibrationTarget { calls: u64 },
}

/// Exit status of a command line clap cannot parse (its own convention).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help and --version: clap prints them and exits 0.
            err.exit();
        }
        Err(err) => {
            eprintln!(
                "gotrace: {} (see --help)",
                one_line(&err.render().to_string())
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let result = match cli.command {
        Command::Funccount(args) => cmd::funccount::run(args),
        Command::Funclatency(args) => cmd::funclatency::run(args),
        Command::Info(args) => cmd::info::run(args),
        Command::Trace(args) => cmd::trace::run(args),
        Command::CalibrationTarget { calls } => gotrace_cli::budget::calibrate::target(calls),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        // Ctrl-C or -d while attaching: a normal way to stop, said plainly.
        Err(err) if err.is::<attach::Interrupted>() => {
            eprintln!("gotrace: {err}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("gotrace: {err:#}");
            if err.chain().any(|e| e.is::<privilege::NotPrivileged>()) {
                ExitCode::from(privilege::EXIT_NOT_PRIVILEGED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// clap's first paragraph ("error: ... not provided:\n  <PATTERN>") joined
/// into one line, without the usage and hint that follow it.
fn one_line(rendered: &str) -> String {
    rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_owned()
}

/// `gotrace ... | head` closing the pipe early is a normal way to stop.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
