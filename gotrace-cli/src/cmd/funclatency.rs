//! `gotrace funclatency`: log2 histograms of call latency, timed per
//! goroutine, without uretprobes.
//!
//! Entries are probed like funccount's (the stack-check branch where there
//! is one, so a call whose stack grows is timed once); returns are probed
//! on every `ret` and tail jump of the function, found by decoding it,
//! because the return addresses uretprobes plant crash Go's stack copier.
//! Inlined copies are timed from their first instruction to wherever
//! control leaves them (see `crate::latency::plan`).

use std::{cell::OnceCell, io::Write as _, time::Duration};

use anyhow::{bail, Context as _};
use gotrace_common::{
    funclatency::{
        ENTRY_PROGRAM, EVENT_NO_GOID, EVENT_UNPAIRED_RETURN, KEY_BY_STACK_POINTER, LATENCY_MAP,
        MAX_OPEN_CALLS, RETURN_PROGRAM, STARTS_MAP, UNIT_DIVISOR,
    },
    probe::{FSBASE_OFFSET, GOID_OFFSET},
};

use super::{
    attach_sites, event_loop,
    lifetime::{Event, Lifetime},
    note_end, parse_seconds, print_banner, select, ProbeSite, Target,
};
use crate::{
    attach::{self, Attacher},
    ebpf, kernel,
    latency::{
        maps::Maps,
        plan::{self, Timed},
    },
    output::{
        histogram::{self, Histogram},
        time::hms_now,
    },
    privilege,
    symbols::Toolchain,
};

/// Time function calls of Go programs, like bcc's funclatency, per goroutine.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    gotrace funclatency '/usr/bin/app:main.handle'    time main.handle in every process of app\n  \
    gotrace funclatency -p 185 -u fmt.Fprintln       in microseconds, for PID 185\n  \
    gotrace funclatency -F -m 'app:net/http.*'         one histogram per function, in ms")]
pub struct Args {
    /// Trace only this process (PATH may then be left out).
    #[arg(short, long)]
    pid: Option<u32>,
    /// Print histograms every SECS seconds (each with that interval's calls).
    #[arg(short, long, value_name = "SECS", value_parser = parse_seconds)]
    interval: Option<Duration>,
    /// Stop after SECS seconds.
    #[arg(short, long, value_name = "SECS", value_parser = parse_seconds)]
    duration: Option<Duration>,
    /// Print a timestamp before each histogram.
    #[arg(short = 'T', long)]
    timestamp: bool,
    /// Microsecond histograms.
    #[arg(short = 'u', long, conflicts_with = "milliseconds")]
    microseconds: bool,
    /// Millisecond histograms.
    #[arg(short = 'm', long)]
    milliseconds: bool,
    /// One histogram per function.
    #[arg(short = 'F', long)]
    function: bool,
    /// FUNC is a regular expression instead of a glob, anchored at the start
    /// of names only, as bcc's -r (end it with $ to anchor the end).
    #[arg(short, long)]
    regexp: bool,
    /// Print each report as one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Say where each probe was placed.
    #[arg(short, long)]
    verbose: bool,
    /// How to attach (see funccount).
    #[arg(long, value_enum, default_value_t, hide = true)]
    attach: attach::Choice,
    /// [PATH:]FUNC, FUNC a glob over whole Go symbol names (see funccount
    /// --help), e.g. '/usr/bin/app:main.work'.
    pattern: String,
}

impl Args {
    /// The unit's name and its size in nanoseconds.
    fn unit(&self) -> (&'static str, u64) {
        if self.milliseconds {
            ("msecs", 1_000_000)
        } else if self.microseconds {
            ("usecs", 1_000)
        } else {
            ("nsecs", 1)
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let target = Target::open(&args.pattern, args.regexp, args.pid)?;
    let selected = select::matching(&target.binary, &target.pattern, &target.located.display)?;
    // Read from the kernel's BTF only when needed: it is slow.
    let fsbase_offset = OnceCell::new();
    let tls = || {
        fsbase_offset
            .get_or_init(kernel::fsbase_offset)
            .as_ref()
            .map(drop)
            .map_err(|err| format!("{err:#}"))
    };
    let (timed, skipped) = plan::timeable(&target.binary, &selected, &tls);
    if timed.is_empty() {
        bail!(
            "none of the functions matching {:?} in {} can be timed: {}",
            target.pattern.func,
            target.located.display,
            skipped.join(", ")
        );
    }
    note_skipped(&skipped, args.verbose);
    let fsbase_offset = match fsbase_offset.get() {
        Some(Ok(offset)) => *offset,
        _ => 0,
    };
    // Goroutines are found through R14 in gc code. gccgo keeps g in TLS,
    // but never moves stacks, so there a call is known by its stack pointer.
    let (goid_offset, by_stack_pointer) = match target.binary.toolchain() {
        Some(Toolchain::Gc) => {
            let (offset, source) = target.binary.goid_offset().with_context(|| {
                format!(
                    "cannot tell where {} keeps goroutine ids (no DWARF, unknown Go version): \
                     gotrace funccount still works",
                    target.located.display
                )
            })?;
            if args.verbose {
                eprintln!("gotrace: goid at offset {offset} of runtime.g ({source})");
            }
            (offset, 0u64)
        }
        _ => {
            if args.verbose {
                eprintln!("gotrace: not gc-compiled: calls are keyed by stack pointer");
            }
            (0, 1u64)
        }
    };
    let (entries, exits) = probe_sites(&target, &timed, args.verbose)?;
    privilege::check()?;

    let (unit, divisor) = args.unit();
    let rows = timed.len();
    event_loop()?.block_on(async {
        let mut lifetime = Lifetime::start(args.interval, args.duration, target.process)?;
        let mut ebpf = ebpf::load(|loader| {
            loader
                .map_max_entries(LATENCY_MAP, rows as u32)
                .map_max_entries(STARTS_MAP, MAX_OPEN_CALLS)
                .override_global(GOID_OFFSET, &goid_offset, true)
                .override_global(FSBASE_OFFSET, &fsbase_offset, true)
                .override_global(UNIT_DIVISOR, &divisor, true)
                .override_global(KEY_BY_STACK_POINTER, &by_stack_pointer, true);
        })?;
        let mut attacher = Attacher::new(args.attach, lifetime.stop());
        let mut attached = Vec::new();
        // Returns first: a return seen before its entry probe existed is
        // merely unpaired, while an entry without its return probe would
        // leave a start behind.
        for (program, sites) in [(RETURN_PROGRAM, &exits), (ENTRY_PROGRAM, &entries)] {
            attached.push(attach_sites(
                &mut attacher,
                &mut ebpf,
                program,
                &target.located,
                sites,
                target.process,
                args.verbose,
            )?);
        }
        lifetime.begin();
        let banner = format!(
            "Tracing {} functions for \"{}\"... Hit Ctrl-C to end.",
            timed.len(),
            args.pattern
        );
        print_banner(&banner, args.json);

        let maps = Maps::new(&mut ebpf)?;
        let mut previous = vec![Histogram::default(); rows];
        loop {
            let event = lifetime.next().await;
            let now = maps.read(rows, divisor)?;
            let interval: Vec<Histogram> =
                now.iter().zip(&previous).map(|(a, b)| a.minus(b)).collect();
            let open: u64 = maps.open_calls(rows)?.iter().sum();
            let mut out = std::io::stdout().lock();
            let timestamp = args.timestamp.then(hms_now);
            if args.json {
                write_json(
                    &mut out,
                    &timed,
                    &interval,
                    unit,
                    open,
                    timestamp.as_deref(),
                )?;
            } else {
                writeln!(out)?;
                if let Some(t) = &timestamp {
                    writeln!(out, "{t:<8}")?;
                }
                if args.function {
                    for (t, h) in timed.iter().zip(&interval).filter(|(_, h)| h.count > 0) {
                        writeln!(out, "\nFunction = {}", t.label)?;
                        histogram::write_log2(&mut out, h, unit)?;
                        histogram::write_summary(&mut out, h, unit)?;
                    }
                } else {
                    let total = Histogram::sum(&interval);
                    histogram::write_log2(&mut out, &total, unit)?;
                    histogram::write_summary(&mut out, &total, unit)?;
                }
            }
            previous = now;
            if let Event::End(end) = event {
                note_end(end, args.pid);
                let events = maps.events()?;
                if open > 0 {
                    eprintln!(
                        "gotrace: {open} call(s) began but did not return while traced \
                         (still running, or left by panic or runtime.Goexit); not in the histogram"
                    );
                }
                if args.verbose {
                    eprintln!(
                        "gotrace: {} ways out passed with no call open (begun before tracing, \
                         or an inlined copy's parent passing there), {} hits without a goroutine",
                        events[EVENT_UNPAIRED_RETURN as usize], events[EVENT_NO_GOID as usize]
                    );
                }
                if !args.json {
                    writeln!(out, "Detaching...")?;
                }
                out.flush()?;
                drop(attached);
                return Ok(());
            }
        }
    })
}

/// One report as a JSON object on one line.
fn write_json(
    out: &mut impl std::io::Write,
    timed: &[Timed],
    interval: &[Histogram],
    unit: &str,
    open: u64,
    timestamp: Option<&str>,
) -> anyhow::Result<()> {
    let functions: Vec<_> = timed
        .iter()
        .zip(interval)
        .map(|(t, h)| {
            let mut value = histogram::to_json(h, unit);
            value["func"] = t.label.clone().into();
            value["function"] = t.function.clone().into();
            value["inlined"] = t.inlined.into();
            value
        })
        .collect();
    let mut report = serde_json::json!({
        "functions": functions,
        "total": histogram::to_json(&Histogram::sum(interval), unit),
        "open_calls": open,
    });
    if let Some(t) = timestamp {
        report["time"] = t.into();
    }
    writeln!(out, "{report}")?;
    Ok(())
}

/// Says what cannot be timed: all of it for a few, a count for many (all
/// with -v).
fn note_skipped(skipped: &[String], verbose: bool) {
    const NAMED: usize = 3;
    match skipped.len() {
        0 => {}
        n if n <= NAMED || verbose => eprintln!("gotrace: not timed: {}", skipped.join(", ")),
        n => eprintln!(
            "gotrace: not timed: {}, and {} more (-v lists them)",
            skipped[..NAMED].join(", "),
            n - NAMED
        ),
    }
}

/// Entry and exit probes of every row, numbered by the row.
fn probe_sites(
    target: &Target,
    timed: &[Timed],
    verbose: bool,
) -> anyhow::Result<(Vec<ProbeSite>, Vec<ProbeSite>)> {
    let mut entries = Vec::new();
    let mut exits = Vec::new();
    for (i, t) in timed.iter().enumerate() {
        for (sites, probes) in [(&t.entries, &mut entries), (&t.exits, &mut exits)] {
            for site in sites {
                probes.push(target.site(
                    site.address,
                    plan::cookie(i, site),
                    site.describe.clone(),
                )?);
            }
        }
        if verbose {
            let show = |sites: &[plan::Site]| {
                sites
                    .iter()
                    .map(|s| format!("{:#x}", s.address))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            eprintln!(
                "gotrace: {}: entries {}, ways out {}",
                t.label,
                show(&t.entries),
                show(&t.exits)
            );
        }
    }
    Ok((entries, exits))
}
