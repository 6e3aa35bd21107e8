//! `gotrace funccount`: count calls of every matching function, in the kernel.

use std::{io::Write as _, time::Duration};

use anyhow::{bail, Context as _};
use aya::maps::PerCpuArray;
use gotrace_common::{
    funccount::{COUNTS_MAP, PROGRAM},
    probe::Cookie,
};

use super::{
    attach_sites, event_loop,
    lifetime::{Event, Lifetime},
    note_end, parse_seconds, print_banner,
    select::{self, Selected},
    ProbeSite, Target,
};
use crate::{
    attach::{self, placement, Attacher},
    ebpf,
    output::{counts, time::hms_now},
    privilege,
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
    /// FUNC is a regular expression instead of a glob, anchored at the start
    /// of names only, as bcc's -r (end it with $ to anchor the end).
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
    /// Where entry probes go: the cheapest exact site, or always the first
    /// instruction (for the benchmark's placement study).
    #[arg(long, value_enum, default_value_t, hide = true)]
    placement: placement::Policy,
    /// [PATH:]FUNC, FUNC a glob over whole Go symbol names: `*` and `?` are
    /// wildcards, everything else (brackets too) is literal; a name without
    /// brackets also matches every instance of a generic function
    /// (`main.Map` matches `main.Map[go.shape.int]`). E.g. '/usr/bin/app:fmt.*'.
    pattern: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let target = Target::open(&args.pattern, args.regexp, args.pid)?;
    let Target {
        process, located, ..
    } = &target;
    let process = *process;
    let functions = select::matching(&target.binary, &target.pattern, &located.display)?;
    let sites = probe_sites(&target, &functions, args.placement, args.verbose)?;
    privilege::check()?;

    event_loop()?.block_on(async {
        let mut lifetime = Lifetime::start(args.interval, args.duration, process)?;
        let mut ebpf = ebpf::load(|loader| {
            loader.map_max_entries(COUNTS_MAP, functions.len() as u32);
        })?;
        let mut attacher = Attacher::new(args.attach, lifetime.stop());
        let _attached = attach_sites(
            &mut attacher,
            &mut ebpf,
            PROGRAM,
            located,
            &sites,
            process,
            args.verbose,
        )?;
        note_inlined_only(&functions, args.verbose);
        lifetime.begin();
        // Functions with no probe at all (refused) are not traced.
        let probed: std::collections::BTreeSet<u32> = sites
            .iter()
            .map(|s| Cookie(s.site.cookie).function())
            .collect();
        let banner = format!(
            "Tracing {} functions for \"{}\"... Hit Ctrl-C to end.",
            probed.len(),
            args.pattern
        );
        print_banner(&banner, args.json);

        let map = ebpf
            .map(COUNTS_MAP)
            .with_context(|| format!("map {COUNTS_MAP} missing"))?;
        let counts: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        // Totals only grow; each table shows the growth since the last one,
        // so nothing is lost between a read and a clear.
        let labels: Vec<String> = functions.iter().map(select::Selected::label).collect();
        let mut previous = vec![0u64; functions.len()];
        loop {
            let event = lifetime.next().await;
            let totals = (0..functions.len() as u32)
                .map(|i| counts.get(&i, 0).map(|per_cpu| per_cpu.iter().sum::<u64>()))
                .collect::<Result<Vec<_>, _>>()
                .context("reading counts")?;
            let rows: Vec<counts::Row<'_>> = labels
                .iter()
                .zip(totals.iter().zip(&previous))
                .map(|(label, (now, before))| counts::Row {
                    function: label,
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
                note_end(end, args.pid);
                if !args.json {
                    writeln!(out, "Detaching...")?;
                }
                out.flush()?;
                return Ok(());
            }
        }
    })
}

/// Says which selected functions exist only as inlined copies, which
/// would otherwise surprise a user looking for their symbols: by name for
/// one (or with -v), as a count for many.
fn note_inlined_only(functions: &[Selected<'_>], verbose: bool) {
    let only_inlined: Vec<&Selected<'_>> =
        functions.iter().filter(|f| f.function.is_none()).collect();
    match only_inlined.as_slice() {
        [] => {}
        [f] => eprintln!(
            "gotrace: {} was inlined by the compiler into {}; counting its {} inlined call site(s)",
            f.name,
            f.callers().join(", "),
            f.inlined.len()
        ),
        many => {
            let sites: usize = many.iter().map(|f| f.inlined.len()).sum();
            eprintln!(
                "gotrace: {} of the matching functions were inlined everywhere by the compiler; \
                 counting their {sites} inlined call sites{}",
                many.len(),
                if verbose { "" } else { " (-v lists them)" }
            );
        }
    }
}

/// Says what takes no probe because the kernel cannot probe it there: by
/// name and reason for one (or with -v), as a count for many.
fn note_refused(refused: &[String], verbose: bool) {
    match refused {
        [] => {}
        [one] => eprintln!("gotrace: not counting {one}"),
        many if verbose => {
            for one in many {
                eprintln!("gotrace: not counting {one}");
            }
        }
        many => eprintln!(
            "gotrace: not counting {} functions or inlined copies whose first instructions the \
             kernel cannot probe (-v names them)",
            many.len()
        ),
    }
}

/// One probe per out-of-line function, placed where it is cheapest and
/// exact, and one at the first instruction of each inlined copy; all
/// probes of one function share its counter (the cookie's index).
fn probe_sites(
    target: &Target,
    functions: &[Selected<'_>],
    policy: placement::Policy,
    verbose: bool,
) -> anyhow::Result<Vec<ProbeSite>> {
    let arch = target.binary.arch();
    let mut sites = Vec::new();
    let mut refused = Vec::new();
    for (i, selected) in functions.iter().enumerate() {
        let mut add = |address: u64, flags: u32, describe: String| -> anyhow::Result<()> {
            sites.push(target.site(address, Cookie::new(i as u32, flags), describe)?);
            Ok(())
        };
        if let Some(f) = selected.function {
            match placement::entry(arch, target.binary.code(f), f.address, policy) {
                Ok(placement) => {
                    if verbose {
                        eprintln!(
                            "gotrace: {} {:#x}+{} ({})",
                            f.name,
                            f.address,
                            placement.offset,
                            placement.describe()
                        );
                    }
                    add(
                        f.address + placement.offset,
                        placement.flags,
                        f.name.clone(),
                    )?;
                }
                Err(why) => refused.push(format!("{}: {why}", f.name)),
            }
        }
        for site in &selected.inlined {
            let describe = format!("{} (inlined in {})", site.name, site.caller);
            let placed = target.binary.place_in_function(site.address);
            let placement = match placed {
                Ok(placement) => placement,
                Err(why) => {
                    refused.push(format!("{describe} at {:#x}: {why}", site.address));
                    continue;
                }
            };
            if verbose {
                eprintln!(
                    "gotrace: {describe} at {:#x}+{} ({})",
                    site.address,
                    placement.offset,
                    placement.describe()
                );
            }
            add(site.address + placement.offset, placement.flags, describe)?;
        }
    }
    note_refused(&refused, verbose);
    if sites.is_empty() {
        bail!(
            "none of the functions matching {:?} can be probed",
            target.pattern.func
        );
    }
    Ok(sites)
}
