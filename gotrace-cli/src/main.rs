//! gotrace: bcc-style tracing tools for Go programs, built on eBPF uprobes.

mod attach;
mod cmd;
mod ebpf;
mod output;
mod privilege;
mod probe;
mod symbols;
mod target;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Funccount(args) => cmd::funccount::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
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

/// `gotrace ... | head` closing the pipe early is a normal way to stop.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
