//! `gotrace funclatency`: log2 histograms of call latency, timed per
//! goroutine, without uretprobes.
//!
//! Entries are probed like funccount's (the stack-check branch where there
//! is one, so a call whose stack grows is timed once); returns are probed
//! on every `ret` and tail jump of the function, found by decoding it,
//! because the return addresses uretprobes plant crash Go's stack copier.

use std::{cell::OnceCell, io::Write as _, time::Duration};

use anyhow::{bail, Context as _};
use aya::maps::{HashMap, MapData, PerCpuArray};
use gotrace_common::{
    funclatency::{
        StartKey, DEPTHS_MAP, ENTRY_PROGRAM, EVENTS, EVENTS_MAP, EVENT_LOST_START, EVENT_NO_GOID,
        EVENT_UNPAIRED_RETURN, HISTOGRAM_MAP, KEY_BY_STACK_POINTER, MAX_OPEN_CALLS, RETURN_PROGRAM,
        SLOTS, STARTS_MAP, STATS_MAP, STATS_PER_FUNCTION, UNIT_DIVISOR,
    },
    probe::{Cookie, FSBASE_OFFSET, GOID_OFFSET},
    trace::regs,
};

use super::{
    attach_sites, event_loop,
    lifetime::{Event, Lifetime},
    note_end, parse_seconds, print_banner,
    select::{self, Selected},
    ProbeSite, Target,
};
use crate::{
    abi::Convention,
    attach::{
        self,
        placement::{self, Placement},
        Attacher,
    },
    ebpf, kernel,
    output::{
        histogram::{self, Histogram},
        time::hms_now,
    },
    privilege,
    symbols::{Function, Toolchain},
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

/// A function that can be timed, with where its calls begin and end.
struct Timed<'b> {
    function: &'b Function,
    entry: Placement,
    exits: Vec<u64>,
    /// Cookie flags of all its probes: how to find its goroutine.
    g_flags: u32,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let target = Target::open(&args.pattern, args.regexp, args.pid)?;
    let selected = select::matching(&target.binary, &target.pattern, &target.located.display)?;
    let (timed, fsbase_offset) = timeable(&target, &selected)?;
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
    let n = timed.len() as u32;
    event_loop()?.block_on(async {
        let mut lifetime = Lifetime::start(args.interval, args.duration, target.process)?;
        let mut ebpf = ebpf::load(|loader| {
            loader
                .map_max_entries(HISTOGRAM_MAP, n * SLOTS)
                .map_max_entries(STATS_MAP, n * STATS_PER_FUNCTION)
                .map_max_entries(STARTS_MAP, MAX_OPEN_CALLS)
                .map_max_entries(DEPTHS_MAP, MAX_OPEN_CALLS)
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
        let mut previous = vec![Histogram::default(); timed.len()];
        loop {
            let event = lifetime.next().await;
            let now = maps.read(n, divisor)?;
            let interval: Vec<Histogram> = now
                .iter()
                .zip(&previous)
                .map(|(a, b)| minus(a, b))
                .collect();
            let open = maps.open_calls();
            let mut out = std::io::stdout().lock();
            let timestamp = args.timestamp.then(hms_now);
            if args.json {
                let functions: Vec<_> = timed
                    .iter()
                    .zip(&interval)
                    .map(|(t, h)| {
                        let mut value = histogram::to_json(h, unit);
                        value["func"] = t.function.name.clone().into();
                        value
                    })
                    .collect();
                let mut report = serde_json::json!({
                    "functions": functions,
                    "total": histogram::to_json(&sum(&interval), unit),
                    "open_calls": open,
                });
                if let Some(t) = &timestamp {
                    report["time"] = t.clone().into();
                }
                writeln!(out, "{report}")?;
            } else {
                writeln!(out)?;
                if let Some(t) = &timestamp {
                    writeln!(out, "{t:<8}")?;
                }
                if args.function {
                    for (t, h) in timed.iter().zip(&interval).filter(|(_, h)| h.count > 0) {
                        writeln!(out, "\nFunction = {}", t.function.name)?;
                        histogram::write_log2(&mut out, h, unit)?;
                        histogram::write_summary(&mut out, h, unit)?;
                    }
                } else {
                    let total = sum(&interval);
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
                        "gotrace: {} returns of calls begun before tracing, {} starts evicted, \
                         {} hits without a goroutine",
                        events[EVENT_UNPAIRED_RETURN as usize],
                        events[EVENT_LOST_START as usize],
                        events[EVENT_NO_GOID as usize]
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

/// The selected functions that can be timed, and the offset of the FS base
/// in the kernel's task_struct if one of them needs it (else 0); says why
/// the others cannot be timed.
fn timeable<'b>(
    target: &Target,
    selected: &[Selected<'b>],
) -> anyhow::Result<(Vec<Timed<'b>>, u64)> {
    let mut timed = Vec::new();
    let mut skipped = Vec::new();
    // Read from the kernel's BTF only when needed: it is slow.
    let fsbase_offset = OnceCell::new();
    for s in selected {
        let Some(function) = s.function else {
            skipped.push(format!(
                "{} (only inlined, into {})",
                s.name,
                s.callers().join(", ")
            ));
            continue;
        };
        // ABI0 assembly (and pre-1.17 code) does not keep g in R14; the
        // kernel's task layout says where the thread's g is instead.
        let g_flags = if Convention::of(&target.binary, function) == Convention::GoStack {
            if let Err(err) = fsbase_offset.get_or_init(kernel::fsbase_offset) {
                skipped.push(format!(
                    "{} (ABI0: its goroutine is found through the thread's FS base, and {err:#})",
                    function.name
                ));
                continue;
            }
            Cookie::FLAG_G_IN_TLS
        } else {
            0
        };
        let code = target.binary.code(function);
        let arch = target.binary.arch();
        let entry =
            match placement::entry(arch, code, function.address, placement::Policy::Cheapest) {
                Ok(entry) => entry,
                Err(why) => {
                    skipped.push(format!("{} ({why})", function.name));
                    continue;
                }
            };
        // The entry probe names the call by R14's goroutine (or, for
        // gccgo, by the stack pointer): an instruction it moved past must
        // not have changed them.
        if entry.clobbered.contains(regs::R14) || entry.clobbered.contains(regs::RSP) {
            skipped.push(format!(
                "{} (its entry probe had to move past {}, which changes the register \
                 that names the goroutine)",
                function.name,
                entry.moved_past.unwrap_or("an instruction")
            ));
            continue;
        }
        let exits: Vec<u64> = placement::exits(arch, code, function.address)
            .into_iter()
            .map(|exit| exit.address)
            .collect();
        if exits.is_empty() {
            skipped.push(format!("{} (never returns: no ret)", function.name));
            continue;
        }
        timed.push(Timed {
            function,
            entry,
            exits,
            g_flags,
        });
    }
    if timed.is_empty() {
        bail!(
            "none of the functions matching {:?} in {} can be timed: {}",
            target.pattern.func,
            target.located.display,
            skipped.join(", ")
        );
    }
    if !skipped.is_empty() {
        eprintln!("gotrace: not timed: {}", skipped.join(", "));
    }
    let fsbase_offset = match fsbase_offset.get() {
        Some(Ok(offset)) => *offset,
        _ => 0,
    };
    Ok((timed, fsbase_offset))
}

/// Entry probes (placed as funccount places them) and exit probes.
fn probe_sites(
    target: &Target,
    timed: &[Timed<'_>],
    verbose: bool,
) -> anyhow::Result<(Vec<ProbeSite>, Vec<ProbeSite>)> {
    let mut entries = Vec::new();
    let mut exits = Vec::new();
    for (i, t) in timed.iter().enumerate() {
        let f = t.function;
        let cookie = Cookie::new(i as u32, t.entry.flags | t.g_flags);
        entries.push(target.site(f.address + t.entry.offset, cookie, f.name.clone())?);
        for &exit in &t.exits {
            let describe = format!("{} (return at +{:#x})", f.name, exit - f.address);
            exits.push(target.site(exit, Cookie::new(i as u32, t.g_flags), describe)?);
        }
        if verbose {
            eprintln!(
                "gotrace: {} entry +{} ({}), returns at {:x?}",
                f.name,
                t.entry.offset,
                t.entry.describe(),
                t.exits.iter().map(|e| e - f.address).collect::<Vec<_>>()
            );
        }
    }
    Ok((entries, exits))
}

/// The maps user space reads.
struct Maps {
    histogram: PerCpuArray<MapData, u64>,
    stats: PerCpuArray<MapData, u64>,
    events: PerCpuArray<MapData, u64>,
    starts: HashMap<MapData, StartKey, u64>,
}

impl Maps {
    fn new(ebpf: &mut aya::Ebpf) -> anyhow::Result<Self> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("map {name} missing from gotrace's object"))
        };
        Ok(Self {
            histogram: PerCpuArray::try_from(take(HISTOGRAM_MAP)?)?,
            stats: PerCpuArray::try_from(take(STATS_MAP)?)?,
            events: PerCpuArray::try_from(take(EVENTS_MAP)?)?,
            starts: HashMap::try_from(take(STARTS_MAP)?)?,
        })
    }

    /// Each function's histogram since tracing began, summed over CPUs.
    /// Totals are kept in nanoseconds and shown in the unit of `divisor`.
    fn read(&self, functions: u32, divisor: u64) -> anyhow::Result<Vec<Histogram>> {
        let total = |array: &PerCpuArray<MapData, u64>, index: u32| -> anyhow::Result<u64> {
            Ok(array
                .get(&index, 0)
                .with_context(|| format!("reading latency map slot {index}"))?
                .iter()
                .sum())
        };
        (0..functions)
            .map(|f| {
                Ok(Histogram {
                    slots: (0..SLOTS)
                        .map(|s| total(&self.histogram, f * SLOTS + s))
                        .collect::<anyhow::Result<_>>()?,
                    total: total(&self.stats, f * STATS_PER_FUNCTION)? / divisor,
                    count: total(&self.stats, f * STATS_PER_FUNCTION + 1)?,
                })
            })
            .collect()
    }

    fn events(&self) -> anyhow::Result<Vec<u64>> {
        (0..EVENTS)
            .map(|e| Ok(self.events.get(&e, 0)?.iter().sum()))
            .collect()
    }

    /// Calls begun and not yet returned.
    fn open_calls(&self) -> usize {
        self.starts.keys().filter(Result::is_ok).count()
    }
}

fn minus(now: &Histogram, before: &Histogram) -> Histogram {
    Histogram {
        slots: now
            .slots
            .iter()
            .zip(before.slots.iter().chain(std::iter::repeat(&0)))
            .map(|(a, b)| a - b)
            .collect(),
        total: now.total - before.total,
        count: now.count - before.count,
    }
}

fn sum(histograms: &[Histogram]) -> Histogram {
    let mut total = Histogram {
        slots: vec![0; SLOTS as usize],
        ..Histogram::default()
    };
    for h in histograms {
        for (t, n) in total.slots.iter_mut().zip(&h.slots) {
            *t += n;
        }
        total.total += h.total;
        total.count += h.count;
    }
    total
}
