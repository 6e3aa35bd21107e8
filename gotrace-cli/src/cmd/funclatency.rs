//! `gotrace funclatency`: log2 histograms of call latency, timed per
//! goroutine, without uretprobes.
//!
//! Entries are probed like funccount's (the stack-check branch where there
//! is one, so a call whose stack grows is timed once); returns are probed
//! on every `ret` and tail jump of the function, found by decoding it,
//! because the return addresses uretprobes plant crash Go's stack copier.
//! Inlined copies are timed from their first instruction to wherever
//! control leaves them (see `crate::latency::plan`).

use std::{
    cell::{Cell, OnceCell},
    io::Write as _,
    time::Duration,
};

use anyhow::{bail, Context as _};
use gotrace_common::{
    funclatency::{
        BY_PROCESS_MAP, ENTRY_PROGRAM, EVENT_NO_GOID, EVENT_UNPAIRED_RETURN, LATENCY_MAP, LEVEL,
        MAX_LEVEL, MAX_NESTS, MAX_OPEN_CALLS, MAX_PROCESS_ROWS, NESTS_MAP, RETURN_PROGRAM,
        STARTS_MAP, UNIT_DIVISOR,
    },
    probe::{Cookie, FSBASE_OFFSET, GOID_OFFSET},
};

use super::{
    event_loop,
    lifetime::{Event, Lifetime},
    note_end, parse_seconds, print_banner, select,
    session::{self, Plan, Session, Target, Tool, Where},
    Export, Overhead, ProbeSite, Selectors,
};
use crate::{
    attach::{self, Attacher},
    ebpf,
    exporter::{self, Exporter, Labels, ProcessLabel, ProcessNames, Snapshot},
    kernel,
    latency::{
        maps::Maps,
        plan::{self, Timed},
    },
    output::{
        histogram::{self, Histogram},
        time::hms_now,
    },
    privilege,
    probe::pattern::Pattern,
    symbols::Toolchain,
};

/// Time function calls of Go programs, like bcc's funclatency, per goroutine.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Without PATH (and without -p), every Go program running now or \
    started later is timed, its histograms under its binary's name.\n\nExamples:\n  \
    gotrace funclatency '/usr/bin/app:main.handle'    time main.handle in every process of app\n  \
    gotrace funclatency -p 185 -u fmt.Fprintln       in microseconds, for PID 185\n  \
    gotrace funclatency -m 'database/sql.(*DB).QueryContext'  in every Go program\n  \
    gotrace funclatency -F -m 'app:net/http.*'         one histogram per function, in ms"
)]
pub struct Args {
    #[command(flatten)]
    selectors: Selectors,
    #[command(flatten)]
    export: Export,
    #[command(flatten)]
    overhead: Overhead,
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
    #[arg(short = 'u', long, conflicts_with_all = ["milliseconds", "listen"])]
    microseconds: bool,
    /// Millisecond histograms.
    #[arg(short = 'm', long, conflicts_with = "listen")]
    milliseconds: bool,
    /// One histogram per function.
    #[arg(short = 'F', long)]
    function: bool,
    /// Time only calls at this nesting depth in their goroutine: 1 for
    /// calls with no timed call around them (the outermost of a
    /// recursion), 2 for those one timed call deep, and so on.
    #[arg(short = 'l', long, value_name = "LEVEL",
          value_parser = clap::value_parser!(u64).range(1..=MAX_LEVEL as u64))]
    level: Option<u64>,
    /// FUNC is a regular expression instead of a glob, anchored at the start
    /// of names only, as bcc's -r (end it with $ to anchor the end).
    #[arg(short, long)]
    regexp: bool,
    /// Print each report as one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Say where each probe was placed, and which programs were passed over.
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

/// funclatency as a session drives it: rows of timed functions, per
/// binary.
struct Funclatency {
    pattern: Pattern,
    verbose: bool,
    /// `-l`: levels are counted by goroutine, which gccgo code lacks.
    by_level: bool,
    /// The kernel's `thread.fsbase` offset, read from its BTF when first
    /// needed (it is slow): for functions that find g in TLS.
    fsbase_offset: OnceCell<Result<u64, String>>,
    /// Where gc binaries keep the goroutine id in `runtime.g`, as the
    /// first one planned says (one offset serves the whole run).
    goid_offset: OnceCell<u64>,
    /// Functions or copies not timed, for the closing note.
    skipped: Cell<usize>,
    /// Every row: its binary's index and what it times.
    rows: Vec<(usize, Timed)>,
    maps: Option<Maps>,
    /// `--labels`: latencies per (row, process) too.
    keep_by_process: bool,
    names: ProcessNames,
}

impl Tool for Funclatency {
    type Rows = Vec<Timed>;
    const PROGRAMS: &'static [&'static str] = &[RETURN_PROGRAM, ENTRY_PROGRAM];

    fn selects(&self, target: &Target) -> bool {
        select::selects_any(&target.binary, &self.pattern)
    }

    fn plan(&self, target: &Target, first: u32) -> anyhow::Result<Plan<Vec<Timed>>> {
        let display = &target.located.display;
        let selected = select::matching(&target.binary, &self.pattern, display)?;
        let tls = || {
            self.fsbase_offset
                .get_or_init(|| kernel::fsbase_offset().map_err(|err| format!("{err:#}")))
                .as_ref()
                .map(drop)
                .map_err(Clone::clone)
        };
        let (timed, skipped) = plan::timeable(&target.binary, &selected, &tls);
        if timed.is_empty() {
            bail!(
                "none of the functions matching {:?} in {display} can be timed: {}",
                self.pattern.func,
                skipped.join(", ")
            );
        }
        note_skipped(&skipped, self.verbose);
        self.skipped.set(self.skipped.get() + skipped.len());
        // Goroutines are found through R14 in gc code. gccgo keeps g in
        // TLS, but never moves stacks, so there a call is known by its
        // stack pointer.
        let flags = match target.binary.toolchain() {
            Some(Toolchain::Gc) => {
                let (offset, source) = target.binary.goid_offset().with_context(|| {
                    format!(
                        "cannot tell where {display} keeps goroutine ids (no DWARF, unknown Go \
                         version): gotrace funccount still works"
                    )
                })?;
                let run_offset = *self.goid_offset.get_or_init(|| offset);
                if offset != run_offset {
                    bail!(
                        "{display} keeps goroutine ids at offset {offset} of runtime.g, and the \
                         run's other programs at {run_offset}: time it in a run of its own"
                    );
                }
                if self.verbose {
                    eprintln!(
                        "gotrace: {display}: goid at offset {offset} of runtime.g ({source})"
                    );
                }
                0
            }
            _ if self.by_level => bail!(
                "{display} is not gc-compiled: -l counts nesting per goroutine, and gotrace \
                 cannot name the goroutines of gccgo programs"
            ),
            _ => {
                if self.verbose {
                    eprintln!(
                        "gotrace: {display} is not gc-compiled: calls are keyed by stack pointer"
                    );
                }
                Cookie::FLAG_KEY_BY_STACK_POINTER
            }
        };
        let (entries, exits) = probe_sites(target, &timed, first, flags, self.verbose)?;
        Ok(Plan {
            count: timed.len() as u32,
            rows: timed,
            // Returns first: a return seen before its entry probe existed
            // is merely unpaired, while an entry without its return probe
            // would leave a start behind.
            probes: vec![(RETURN_PROGRAM, exits), (ENTRY_PROGRAM, entries)],
        })
    }

    fn loaded(&mut self, ebpf: &mut aya::Ebpf) -> anyhow::Result<()> {
        self.maps = Some(Maps::new(ebpf, self.keep_by_process)?);
        if self.keep_by_process {
            self.names = ProcessNames::new(ebpf)?;
        }
        Ok(())
    }

    fn row_name(&self, row: u32) -> String {
        self.rows
            .get(row as usize)
            .map_or_else(|| format!("row {row}"), |(_, t)| t.label.clone())
    }

    fn accept(&mut self, target: usize, _first: u32, rows: Vec<Timed>) -> anyhow::Result<()> {
        self.rows.extend(rows.into_iter().map(|t| (target, t)));
        Ok(())
    }
}

impl Funclatency {
    /// What a scrape reports: every function's completed calls since
    /// tracing began (its inlined copies' rows summed in; per process
    /// with `--labels`), and the calls open now.
    fn snapshot(
        &self,
        targets: &[Target],
        label: Option<ProcessLabel>,
    ) -> anyhow::Result<Snapshot> {
        let maps = self.maps.as_ref().context("maps read before load")?;
        let mut snapshot = Snapshot::default();
        let labels = |row: usize, process: Option<(&'static str, String)>| {
            let (binary, timed) = &self.rows[row];
            Labels {
                binary: targets[*binary].located.display.clone(),
                function: timed.function.clone(),
                process,
            }
        };
        let rows = self.rows.len();
        match label {
            Some(label) => {
                for (key, histogram) in maps.read_by_process(1)? {
                    if (key.function as usize) < rows {
                        let process = self.names.label(label, key.pid);
                        snapshot
                            .add_duration(labels(key.function as usize, Some(process)), &histogram);
                    }
                }
            }
            None => {
                for (row, histogram) in maps.read(rows, 1)?.iter().enumerate() {
                    snapshot.add_duration(labels(row, None), histogram);
                }
            }
        }
        for (row, open) in maps.open_calls(rows)?.into_iter().enumerate() {
            snapshot.add_open_calls(labels(row, None), open);
        }
        snapshot.lost_events = maps.events()?[EVENT_NO_GOID as usize];
        for target in targets {
            snapshot
                .probes
                .insert(target.located.display.clone(), target.probes);
        }
        Ok(snapshot)
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let pattern = Pattern::parse(&args.pattern, args.regexp)?;
    let scope = args.selectors.scope()?;
    let listener = args.export.bind()?;
    let at = Where {
        binaries: session::located(pattern.path.as_deref(), &scope)?
            .into_iter()
            .collect(),
        host: pattern.path.is_none(),
    };
    if at.host {
        // Looking at other users' processes needs it.
        privilege::check()?;
    }
    let tool = Funclatency {
        pattern,
        verbose: args.verbose,
        by_level: args.level.is_some(),
        fsbase_offset: OnceCell::new(),
        goid_offset: OnceCell::new(),
        skipped: Cell::new(0),
        rows: Vec::new(),
        maps: None,
        keep_by_process: args.export.labels.is_some(),
        names: ProcessNames::none(),
    };
    let mut session = Session::open(tool, at, scope, args.verbose)?;
    privilege::check()?;
    session.set_budget(args.overhead.budget)?;
    let fsbase_offset = match session.tool.fsbase_offset.get() {
        Some(Ok(offset)) => *offset,
        _ => 0,
    };
    // Every Go version gotrace knows keeps it at the same place: a run
    // that starts with no gc program uses that.
    let goid_offset = *session
        .tool
        .goid_offset
        .get_or_init(|| crate::symbols::DEFAULT_GOID_OFFSET);

    let (unit, divisor) = args.unit();
    let level = args.level.unwrap_or(0);
    event_loop()?.block_on(async {
        let mut lifetime =
            Lifetime::start(args.interval, args.duration, session.scope().processes())?;
        let rows = session.capacity(u32::MAX);
        let ebpf = ebpf::load(|loader| {
            loader
                .map_max_entries(LATENCY_MAP, rows)
                .map_max_entries(STARTS_MAP, MAX_OPEN_CALLS)
                .override_global(GOID_OFFSET, &goid_offset, true)
                .override_global(FSBASE_OFFSET, &fsbase_offset, true)
                .override_global(UNIT_DIVISOR, &divisor, true)
                .override_global(LEVEL, &level, true);
            if level != 0 {
                loader.map_max_entries(NESTS_MAP, MAX_NESTS);
            }
            args.export
                .configure(loader, BY_PROCESS_MAP, MAX_PROCESS_ROWS);
            session.configure(loader);
        })?;
        session.start(ebpf, Attacher::new(args.attach, lifetime.stop()))?;
        lifetime.begin();
        if let Some(summary) = session.summary() {
            eprintln!("{summary}");
        }
        let banner = if session.is_empty() {
            format!(
                "Tracing \"{}\" in no program yet: waiting for a Go program with a matching \
                 function... Hit Ctrl-C to end.",
                args.pattern
            )
        } else {
            format!(
                "Tracing {} functions for \"{}\"... Hit Ctrl-C to end.",
                session.tool.rows.len(),
                args.pattern
            )
        };
        print_banner(&banner, args.json);
        let mut exporter = listener.map(Exporter::start).transpose()?;
        let prints = args.export.prints(args.interval);

        let mut previous: Vec<Histogram> = Vec::new();
        loop {
            let event = tokio::select! {
                event = session.wait(&mut lifetime) => event?,
                scrape = exporter::next(&mut exporter) => {
                    scrape.answer(session.tool.snapshot(session.targets(), args.export.labels)?);
                    continue;
                }
            };
            if !prints {
                if let Event::End(end) = event {
                    note_end(end, session.scope());
                    return session.finish(&args.pattern);
                }
                continue;
            }
            let tool = &session.tool;
            let maps = tool.maps.as_ref().context("maps read before load")?;
            let rows = tool.rows.len();
            let now = maps.read(rows, divisor)?;
            previous.resize(rows, Histogram::default());
            let interval: Vec<Histogram> =
                now.iter().zip(&previous).map(|(a, b)| a.minus(b)).collect();
            let open: u64 = maps.open_calls(rows)?.iter().sum();
            let reported: Vec<Reported<'_>> = tool
                .rows
                .iter()
                .zip(interval.iter().zip(&now))
                .enumerate()
                .map(|(i, ((binary, timed), (histogram, total)))| Reported {
                    binary: &session.targets()[*binary].located.display,
                    timed,
                    histogram,
                    // Nothing is timed once it is detached: its total is
                    // what it timed until then.
                    detached_after: session.detached(i as u32).map(|_| total.count),
                })
                .collect();
            let mut out = std::io::stdout().lock();
            let timestamp = args.timestamp.then(hms_now);
            if args.json {
                write_json(&mut out, &reported, unit, open, timestamp.as_deref())?;
            } else {
                writeln!(out)?;
                if let Some(t) = &timestamp {
                    writeln!(out, "{t:<8}")?;
                }
                write_histograms(
                    &mut out,
                    &reported,
                    unit,
                    args.function,
                    session.sectioned(),
                )?;
            }
            previous = now;
            if let Event::End(end) = event {
                note_end(end, session.scope());
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
                return session.finish(&args.pattern);
            }
        }
    })
}

/// One row of a report: what it times, where, and its calls.
struct Reported<'a> {
    binary: &'a str,
    timed: &'a Timed,
    histogram: &'a Histogram,
    /// Its calls until it was taken out for the overhead budget.
    detached_after: Option<u64>,
}

impl Reported<'_> {
    /// `fmt.Println [inlined x1]`, marked if it was taken out.
    fn label(&self) -> String {
        crate::output::row_label(&self.timed.label, self.detached_after)
    }
}

/// bcc's histograms: one for all calls, or (`-F`) one per function with
/// calls; with `sections`, those of each binary with calls under its
/// `binary = PATH` line.
fn write_histograms(
    out: &mut impl std::io::Write,
    reported: &[Reported<'_>],
    unit: &str,
    per_function: bool,
    sections: bool,
) -> anyhow::Result<()> {
    let mut groups: Vec<(&str, Vec<&Reported<'_>>)> = Vec::new();
    for r in reported {
        let key = if sections { r.binary } else { "" };
        match groups.iter_mut().find(|(b, _)| *b == key) {
            Some((_, rows)) => rows.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    if sections {
        groups.retain(|(_, rows)| rows.iter().any(|r| r.histogram.count > 0));
    }
    for (binary, rows) in &groups {
        if sections {
            writeln!(out, "\nbinary = {binary}")?;
        }
        if per_function {
            for r in rows.iter().filter(|r| r.histogram.count > 0) {
                writeln!(out, "\nFunction = {}", r.label())?;
                histogram::write_log2(out, r.histogram, unit)?;
                histogram::write_summary(out, r.histogram, unit)?;
            }
        } else {
            let all: Vec<Histogram> = rows.iter().map(|r| r.histogram.clone()).collect();
            let total = Histogram::sum(&all);
            histogram::write_log2(out, &total, unit)?;
            histogram::write_summary(out, &total, unit)?;
            for r in rows {
                if r.detached_after.is_some() {
                    writeln!(out, "{}", r.label())?;
                }
            }
        }
    }
    if groups.is_empty() && !per_function {
        let total = Histogram::default();
        histogram::write_log2(out, &total, unit)?;
        histogram::write_summary(out, &total, unit)?;
    }
    Ok(())
}

/// One report as a JSON object on one line.
fn write_json(
    out: &mut impl std::io::Write,
    reported: &[Reported<'_>],
    unit: &str,
    open: u64,
    timestamp: Option<&str>,
) -> anyhow::Result<()> {
    let functions: Vec<_> = reported
        .iter()
        .map(|r| {
            let mut value = histogram::to_json(r.histogram, unit);
            value["func"] = r.timed.label.clone().into();
            value["function"] = r.timed.function.clone().into();
            value["inlined"] = r.timed.inlined.into();
            value["binary"] = r.binary.into();
            if let Some(after) = r.detached_after {
                value["detached_after"] = after.into();
            }
            value
        })
        .collect();
    let all: Vec<Histogram> = reported.iter().map(|r| r.histogram.clone()).collect();
    let mut report = serde_json::json!({
        "functions": functions,
        "total": histogram::to_json(&Histogram::sum(&all), unit),
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

/// Entry and exit probes of every row, numbered by the row from `first`,
/// each with `flags` besides its own.
fn probe_sites(
    target: &Target,
    timed: &[Timed],
    first: u32,
    flags: u32,
    verbose: bool,
) -> anyhow::Result<(Vec<ProbeSite>, Vec<ProbeSite>)> {
    let mut entries = Vec::new();
    let mut exits = Vec::new();
    for (i, t) in timed.iter().enumerate() {
        for (sites, probes) in [(&t.entries, &mut entries), (&t.exits, &mut exits)] {
            for site in sites {
                probes.push(target.site(
                    site.address,
                    plan::cookie(first + i as u32, site, flags),
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
