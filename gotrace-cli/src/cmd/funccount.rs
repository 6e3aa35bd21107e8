//! `gotrace funccount`: count calls of every matching function, in the kernel.

use std::{io::Write as _, time::Duration};

use anyhow::{bail, Context as _};
use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};
use gotrace_common::{
    funccount::{BY_PROCESS_MAP, COUNTS_MAP, MAX_PROCESS_ROWS, PROGRAM},
    probe::{Cookie, ProcessKey},
};

use super::{
    event_loop,
    lifetime::{Event, Lifetime},
    note_end, parse_seconds, print_banner,
    select::{self, Selected},
    session::{self, Plan, Session, Target, Tool, Where},
    Export, Overhead, ProbeSite, Selectors,
};
use crate::{
    attach::{self, placement, Attacher},
    ebpf,
    exporter::{self, Exporter, Labels, ProcessLabel, ProcessNames, Snapshot},
    output::{counts, time::hms_now},
    privilege,
    probe::pattern::Pattern,
};

/// Count function calls of Go programs, like bcc's funccount.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Without PATH (and without -p), every Go program running now or \
    started later is traced, its counts under its binary's name.\n\nExamples:\n  \
    gotrace funccount '/usr/bin/app:fmt.*'      count fmt calls of every process running app\n  \
    gotrace funccount -p 185 'main.*'           count main package calls of PID 185\n  \
    gotrace funccount 'crypto/tls.*Handshake*'  in every Go program of the host\n  \
    gotrace funccount -c /sys/fs/cgroup/unified/app 'main.*'  in one container\n  \
    gotrace funccount -i 1 -d 10 'app:net/http.*'  print counts every second for 10 s"
)]
pub struct Args {
    #[command(flatten)]
    selectors: Selectors,
    #[command(flatten)]
    export: Export,
    #[command(flatten)]
    overhead: Overhead,
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
    /// Say where each probe was placed, and which programs were passed over.
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

/// funccount as a session drives it: a counter per matching function of
/// each binary.
struct Funccount {
    pattern: Pattern,
    policy: placement::Policy,
    verbose: bool,
    /// Every row: its binary's index, its label and its function.
    rows: Vec<Row>,
    /// Functions with a probe (refused ones have none).
    probed: usize,
    counts: Option<PerCpuArray<MapData, u64>>,
    /// `--labels`: counts per (row, process) too.
    by_process: Option<PerCpuHashMap<MapData, ProcessKey, u64>>,
    keep_by_process: bool,
    names: ProcessNames,
}

/// One function of one binary.
struct Row {
    binary: usize,
    /// As the table shows it (inlined copies marked).
    label: String,
    function: String,
}

/// A binary's rows: (label, function), and how many functions have a
/// probe.
struct Rows {
    labels: Vec<(String, String)>,
    probed: usize,
}

impl Tool for Funccount {
    type Rows = Rows;
    const PROGRAMS: &'static [&'static str] = &[PROGRAM];

    fn selects(&self, target: &Target) -> bool {
        select::selects_any(&target.binary, &self.pattern)
    }

    fn plan(&self, target: &Target, first: u32) -> anyhow::Result<Plan<Rows>> {
        let functions = select::matching(&target.binary, &self.pattern, &target.located.display)?;
        let sites = probe_sites(target, &functions, first, self.policy, self.verbose)?;
        note_inlined_only(&functions, self.verbose);
        let probed: std::collections::BTreeSet<u32> = sites
            .iter()
            .map(|s| Cookie(s.site.cookie).function())
            .collect();
        Ok(Plan {
            rows: Rows {
                labels: functions
                    .iter()
                    .map(|f| (f.label(), f.name.to_owned()))
                    .collect(),
                probed: probed.len(),
            },
            count: functions.len() as u32,
            probes: vec![(PROGRAM, sites)],
        })
    }

    fn loaded(&mut self, ebpf: &mut aya::Ebpf) -> anyhow::Result<()> {
        let map = ebpf
            .take_map(COUNTS_MAP)
            .with_context(|| format!("map {COUNTS_MAP} missing from gotrace's object"))?;
        self.counts = Some(PerCpuArray::try_from(map)?);
        if self.keep_by_process {
            let map = ebpf
                .take_map(BY_PROCESS_MAP)
                .with_context(|| format!("map {BY_PROCESS_MAP} missing from gotrace's object"))?;
            self.by_process = Some(PerCpuHashMap::try_from(map)?);
            self.names = ProcessNames::new(ebpf)?;
        }
        Ok(())
    }

    fn row_name(&self, row: u32) -> String {
        self.rows
            .get(row as usize)
            .map_or_else(|| format!("row {row}"), |r| r.label.clone())
    }

    fn accept(&mut self, target: usize, _first: u32, rows: Rows) -> anyhow::Result<()> {
        self.rows
            .extend(rows.labels.into_iter().map(|(label, function)| Row {
                binary: target,
                label,
                function,
            }));
        self.probed += rows.probed;
        Ok(())
    }
}

impl Funccount {
    /// What a scrape reports: every function's calls since tracing began
    /// (per process with `--labels`).
    fn snapshot(
        &self,
        targets: &[Target],
        label: Option<ProcessLabel>,
    ) -> anyhow::Result<Snapshot> {
        let mut snapshot = Snapshot::default();
        let labels = |row: &Row, process: Option<(&'static str, String)>| Labels {
            binary: targets[row.binary].located.display.clone(),
            function: row.function.clone(),
            process,
        };
        match (label, &self.by_process) {
            (Some(label), Some(map)) => {
                for entry in map.iter() {
                    let (key, per_cpu) = entry.context("reading per-process counts")?;
                    let Some(row) = self.rows.get(key.function as usize) else {
                        continue;
                    };
                    let process = self.names.label(label, key.pid);
                    snapshot.add_calls(labels(row, Some(process)), per_cpu.iter().sum());
                }
            }
            _ => {
                for (row, calls) in self.rows.iter().zip(self.totals()?) {
                    snapshot.add_calls(labels(row, None), calls);
                }
            }
        }
        for target in targets {
            snapshot
                .probes
                .insert(target.located.display.clone(), target.probes);
        }
        Ok(snapshot)
    }

    /// Every row's calls since tracing began, summed over CPUs.
    fn totals(&self) -> anyhow::Result<Vec<u64>> {
        let counts = self.counts.as_ref().context("counts read before load")?;
        (0..self.rows.len() as u32)
            .map(|i| {
                counts
                    .get(&i, 0)
                    .map(|per_cpu| per_cpu.iter().sum::<u64>())
                    .context("reading counts")
            })
            .collect()
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
    let tool = Funccount {
        pattern,
        policy: args.placement,
        verbose: args.verbose,
        rows: Vec::new(),
        probed: 0,
        counts: None,
        by_process: None,
        keep_by_process: args.export.labels.is_some(),
        names: ProcessNames::none(),
    };
    let mut session = Session::open(tool, at, scope, args.verbose)?;
    privilege::check()?;
    session.set_budget(args.overhead.budget)?;

    event_loop()?.block_on(async {
        let mut lifetime =
            Lifetime::start(args.interval, args.duration, session.scope().processes())?;
        let rows = session.capacity(u32::MAX);
        let ebpf = ebpf::load(|loader| {
            loader.map_max_entries(COUNTS_MAP, rows);
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
                session.tool.probed, args.pattern
            )
        };
        print_banner(&banner, args.json);
        let mut exporter = listener.map(Exporter::start).transpose()?;
        let prints = args.export.prints(args.interval);

        // Totals only grow; each table shows the growth since the last one,
        // so nothing is lost between a read and a clear (and the exported
        // counters never go back).
        let mut previous: Vec<u64> = Vec::new();
        loop {
            let event = tokio::select! {
                event = session.wait(&mut lifetime) => event?,
                scrape = exporter::next(&mut exporter) => {
                    let snapshot =
                        session.tool.snapshot(session.targets(), args.export.labels)?;
                    scrape.answer(snapshot);
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
            let totals = session.tool.totals()?;
            previous.resize(totals.len(), 0);
            let targets = session.targets();
            let rows: Vec<counts::Row<'_>> = session
                .tool
                .rows
                .iter()
                .zip(totals.iter().zip(&previous))
                .enumerate()
                .map(|(i, (row, (now, before)))| counts::Row {
                    function: &row.label,
                    binary: &targets[row.binary].located.display,
                    count: now - before,
                    // Nothing counts once it is detached: its total is
                    // what it counted until then.
                    detached_after: session.detached(i as u32).map(|_| *now),
                })
                .collect();
            let timestamp = args.timestamp.then(hms_now);
            let mut out = std::io::stdout().lock();
            if args.json {
                counts::write_json(&mut out, &rows, timestamp.as_deref())?;
            } else {
                counts::write_table(&mut out, &rows, timestamp.as_deref(), session.sectioned())?;
            }
            previous = totals;
            if let Event::End(end) = event {
                note_end(end, session.scope());
                if !args.json {
                    writeln!(out, "Detaching...")?;
                }
                out.flush()?;
                return session.finish(&args.pattern);
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
/// probes of one function share its counter (the cookie's index, from
/// `first`).
fn probe_sites(
    target: &Target,
    functions: &[Selected<'_>],
    first: u32,
    policy: placement::Policy,
    verbose: bool,
) -> anyhow::Result<Vec<ProbeSite>> {
    let arch = target.binary.arch();
    let mut sites = Vec::new();
    let mut refused = Vec::new();
    for (i, selected) in functions.iter().enumerate() {
        let mut add = |address: u64, flags: u32, describe: String| -> anyhow::Result<()> {
            sites.push(target.site(address, Cookie::new(first + i as u32, flags), describe)?);
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
            "none of the functions matching in {} can be probed",
            target.located.display
        );
    }
    Ok(sites)
}
