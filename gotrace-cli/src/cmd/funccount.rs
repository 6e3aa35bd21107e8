//! `gotrace funccount`: count calls of every matching function, in the kernel.

use std::{io::Write as _, time::Duration};

use anyhow::Context as _;
use aya::maps::PerCpuArray;
use gotrace_common::funccount::{Cookie, COUNTS_MAP, PROGRAM};

use super::{
    lifetime::{End, Event, Lifetime},
    parse_seconds, select,
};
use crate::{
    attach::{self, placement, Scope, Site},
    ebpf,
    output::{counts, time::hms_now},
    privilege,
    probe::pattern::Pattern,
    symbols::{self, Binary, Function},
    target::Process,
};

/// Count function calls of Go programs, like bcc's funccount.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    gotrace funccount '/usr/bin/app:fmt.*'      count fmt calls of every process running app\n  \
    gotrace funccount -p 185 'main.*'           count main package calls of PID 185\n  \
    gotrace funccount -i 1 -d 10 'app:net/http.*'  print counts every second for 10 s")]
pub struct Args {
    /// Trace only this process (PATH may then be left out).
    #[arg(short, long)]
    pid: Option<u32>,
    /// Print counts every SECS seconds (and start counting anew).
    #[arg(short, long, value_name = "SECS", value_parser = parse_seconds)]
    interval: Option<Duration>,
    /// Stop after SECS seconds.
    #[arg(short, long, value_name = "SECS", value_parser = parse_seconds)]
    duration: Option<Duration>,
    /// Print a timestamp before each table.
    #[arg(short = 'T', long)]
    timestamp: bool,
    /// FUNC is a regular expression instead of a glob.
    #[arg(short, long)]
    regexp: bool,
    /// Print each table as one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Say where each probe was placed.
    #[arg(short, long)]
    verbose: bool,
    /// How to attach: one uprobe_multi link, or one perf event per function
    /// (for benchmarks and tests; auto falls back from the first to the second).
    #[arg(long, value_enum, default_value_t, hide = true)]
    attach: attach::Choice,
    /// [PATH:]FUNC, FUNC a glob over Go symbol names (`*`, `?`), e.g. '/usr/bin/app:fmt.*'.
    pattern: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let pattern = Pattern::parse(&args.pattern, args.regexp)?;
    let process = args.pid.map(Process::find).transpose()?;
    let located = symbols::locate(pattern.path.as_deref(), process)?;
    let binary = Binary::open(&located.path)?;
    let functions = select::matching(&binary, &pattern, &located.display)?;
    let sites = probe_sites(&binary, &functions, args.verbose)?;
    privilege::check()?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    runtime.block_on(async {
        let mut lifetime = Lifetime::start(args.interval, args.duration, process)?;
        let mut ebpf = ebpf::load(|loader| {
            loader.map_max_entries(COUNTS_MAP, functions.len() as u32);
        })?;
        let scope = process.map_or(Scope::AllProcesses, |p| Scope::Process(p.pid()));
        let request = attach::Request {
            object: ebpf::object(),
            program: PROGRAM,
            target: &located.path,
            sites: &sites,
            scope,
            choice: args.attach,
        };
        let attached = attach::uprobes(&mut ebpf, &request, |i| functions[i].name.clone())?;
        if args.verbose {
            eprintln!("gotrace: attached with {}", attached.method);
            if let Some(reason) = &attached.fallback_reason {
                eprintln!("gotrace: uprobe_multi not used: {reason}");
            }
        }
        let banner = format!(
            "Tracing {} functions for \"{}\"... Hit Ctrl-C to end.",
            functions.len(),
            args.pattern
        );
        if args.json {
            eprintln!("{banner}");
        } else {
            println!("{banner}");
        }

        let map = ebpf
            .map(COUNTS_MAP)
            .with_context(|| format!("map {COUNTS_MAP} missing"))?;
        let counts: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        // Totals only grow; each table shows the growth since the last one,
        // so nothing is lost between a read and a clear.
        let mut previous = vec![0u64; functions.len()];
        loop {
            let event = lifetime.next().await;
            let totals = (0..functions.len() as u32)
                .map(|i| counts.get(&i, 0).map(|per_cpu| per_cpu.iter().sum::<u64>()))
                .collect::<Result<Vec<_>, _>>()
                .context("reading counts")?;
            let rows: Vec<counts::Row<'_>> = functions
                .iter()
                .zip(totals.iter().zip(&previous))
                .map(|(f, (now, before))| counts::Row {
                    function: &f.name,
                    count: now - before,
                })
                .collect();
            let timestamp = args.timestamp.then(hms_now);
            let mut out = std::io::stdout().lock();
            if args.json {
                counts::write_json(&mut out, &rows, timestamp.as_deref())?;
            } else {
                counts::write_table(&mut out, &rows, timestamp.as_deref())?;
            }
            previous = totals;
            if let Event::End(end) = event {
                if end == End::TargetExited {
                    eprintln!("gotrace: process {} exited", args.pid.unwrap_or_default());
                }
                if !args.json {
                    writeln!(out, "Detaching...")?;
                }
                out.flush()?;
                return Ok(());
            }
        }
    })
}

/// One probe per function, each placed where it is cheapest and exact.
fn probe_sites(
    binary: &Binary,
    functions: &[&Function],
    verbose: bool,
) -> anyhow::Result<Vec<Site>> {
    functions
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let placement = placement::entry(binary.code(f), f.address);
            let address = f.address + placement.offset;
            let file_offset = binary.file_offset(address).with_context(|| {
                format!(
                    "{} at {address:#x} lies in no loadable segment of {}",
                    f.name,
                    binary.path().display()
                )
            })?;
            if verbose {
                eprintln!(
                    "gotrace: {} {:#x}+{} ({})",
                    f.name,
                    f.address,
                    placement.offset,
                    if placement.flags & Cookie::FLAG_STACK_CHECK_BRANCH != 0 {
                        "stack-check branch"
                    } else {
                        "entry"
                    }
                );
            }
            Ok(Site {
                file_offset,
                cookie: Cookie::new(i as u32, placement.flags).0,
            })
        })
        .collect()
}
