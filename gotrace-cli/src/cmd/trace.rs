//! `gotrace trace`: one line per call, with Go arguments decoded per the
//! function's ABI, like bcc's trace does for C.

use std::{io::Write as _, time::Duration};

use anyhow::{bail, Context as _};
use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use gotrace_common::{
    probe::{FSBASE_OFFSET, GOID_OFFSET},
    trace::{
        Event, ProbeSpec, EVENTS_MAP, G_IN_TLS, LOST_MAP, MAX_PROBES, PROBES_MAP, PROGRAM,
        RING_BYTES, STRING_SIZE, TID_FILTER,
    },
};
use regex::Regex;
use tokio::io::unix::AsyncFd;

use super::{
    event_loop,
    lifetime::Event as LifetimeEvent,
    note_end, select,
    session::{Plan, Session, Target, Tool, Where},
    Overhead, ProbeSite, Selectors,
};
use crate::{
    attach::{self, placement, Attacher},
    ebpf,
    host::FileKey,
    output::{
        events::{self, TimeColumn, Value},
        time::hms_now,
    },
    privilege,
    probe::{format::Format, pattern::Pattern, spec::Spec},
    symbols::{self, inline::InlinedSite, Function},
    trace::{
        decode,
        plan::{self, Planner, Shown},
    },
};

/// Trace calls of Go functions, printing their arguments, like bcc's trace.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "PROBE is [p:|r:][PATH:]FUNC [(FILTER)] [\"FORMAT\"[, ARG, ...]]\n\
    ARG: goargN (Go ABI word N), argN (C ABI), retval[N] (r: probes), or a parameter name\n\
    from DWARF (name, req.Method). FORMAT: %d %u %x %s %c %p, and %v for any Go value\n\
    (slices, interfaces). A PROBE without PATH (and without -p) traces every Go program\n\
    running now or started later. Examples:\n  \
    gotrace trace '/bin/app:main.add \"%d %d\", goarg1, goarg2'\n  \
    gotrace trace 'main.add \"%d %d\", goarg1, goarg2'     in every Go program\n  \
    gotrace trace 'r:/bin/app:main.add \"sum %d\", retval'\n  \
    gotrace trace -p 185 'main.greet (n > 1) \"%s %d\", name, n'\n  \
    gotrace trace '/bin/app:main.handle \"%v %v\", items, err'"
)]
pub struct Args {
    #[command(flatten)]
    selectors: Selectors,
    #[command(flatten)]
    overhead: Overhead,
    /// Trace only this thread.
    #[arg(short = 'L', long = "tid")]
    tid: Option<u32>,
    /// Stop after this many events.
    #[arg(short = 'M', long = "max-events")]
    max_events: Option<u64>,
    /// Print seconds since the first event.
    #[arg(short = 't', long)]
    timestamp: bool,
    /// Print the wall-clock time.
    #[arg(short = 'T', long, conflicts_with = "timestamp")]
    time: bool,
    /// Print the CPU each event happened on.
    #[arg(short = 'C', long = "print-cpu")]
    print_cpu: bool,
    /// Print the user stack (Go frames) of each event.
    #[arg(short = 'U', long = "user-stack")]
    user_stack: bool,
    /// Print only events of processes whose name contains NAME.
    #[arg(short = 'n', long = "name")]
    name: Option<String>,
    /// Print only events whose message matches REGEX.
    #[arg(short = 'f', long = "msg-filter", value_name = "REGEX")]
    msg_filter: Option<String>,
    /// Size of the event buffer shared by all CPUs, in pages (a power of
    /// two; default 4096, 16 MiB): raise it if events are lost.
    #[arg(short = 'b', long = "buffer-pages", value_name = "PAGES",
          default_value_t = RING_BYTES / PAGE_BYTES, value_parser = parse_pages)]
    buffer_pages: u32,
    /// Stop after SECS seconds.
    #[arg(short, long, value_name = "SECS", value_parser = super::parse_seconds)]
    duration: Option<Duration>,
    /// Say how each argument is read, and which programs were passed over.
    #[arg(short, long)]
    verbose: bool,
    /// One JSON object per event.
    #[arg(long)]
    json: bool,
    /// Keep at most N-1 bytes of each string (2..=64, bcc's -Z); longer
    /// strings end in "...". The kernel never reads more than 63 bytes.
    #[arg(short = 'Z', long = "string-size", value_name = "N", default_value_t = STRING_SIZE as u32,
          value_parser = clap::value_parser!(u32).range(2..=STRING_SIZE as i64))]
    string_size: u32,
    /// How to attach (see funccount).
    #[arg(long, value_enum, default_value_t, hide = true)]
    attach: attach::Choice,
    /// Where entry probes go (see funccount).
    #[arg(long, value_enum, default_value_t, hide = true)]
    placement: placement::Policy,
    /// Probes (see below).
    #[arg(required = true)]
    probes: Vec<String>,
}

/// The ring buffer's unit for `-b`.
const PAGE_BYTES: u32 = 4096;

/// `-b PAGES`: a power of two (what the kernel's ring buffers need), from
/// one page to 1 GiB.
fn parse_pages(text: &str) -> Result<u32, String> {
    let pages: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of pages"))?;
    if !pages.is_power_of_two() || pages > (1 << 30) / PAGE_BYTES {
        return Err(format!(
            "{pages} pages: give a power of two from 1 to {} (the kernel's ring buffers need one)",
            (1 << 30) / PAGE_BYTES
        ));
    }
    Ok(pages)
}

/// One probe on one function, as user space prints its events.
struct Probe {
    function: String,
    /// Link-time address of each probe site, by `Cookie::site`.
    sites: Vec<u64>,
    format: Option<Format>,
    /// Per argument slot read by the kernel (format arguments first).
    shown: Vec<Shown>,
    spec: ProbeSpec,
    /// Index of its binary among the session's.
    binary: usize,
    /// Its sites are inside a function body (an inlined copy's).
    in_body: bool,
}

/// What a probe goes on: a function's own code, or an inlined copy.
enum Traceable<'b> {
    Function(&'b Function),
    Inlined(&'b InlinedSite),
}

/// One PROBE argument: the spec, its pattern, and the binary its PATH
/// names (`None`: every binary of the run).
struct Wanted {
    spec: Spec,
    pattern: Pattern,
    binary: Option<FileKey>,
}

/// trace as a session drives it: each PROBE on each binary it names (or
/// all, without PATH), one row per function or inlined copy.
struct Trace {
    wanted: Vec<Wanted>,
    options: plan::Options,
    probes: Vec<Probe>,
    settings: Option<Array<MapData, ProbeSpec>>,
    /// The event ring buffer and lost-event counters, until the run
    /// takes them.
    events: Option<(RingBuf<MapData>, PerCpuArray<MapData, u64>)>,
}

impl Trace {
    /// The PROBEs that apply to `target`.
    fn wanted_in<'w>(&'w self, target: &'w Target) -> impl Iterator<Item = &'w Wanted> {
        self.wanted
            .iter()
            .filter(move |w| w.binary.is_none() || w.binary == target.key)
    }
}

impl Tool for Trace {
    type Rows = Vec<Probe>;
    const PROGRAMS: &'static [&'static str] = &[PROGRAM];

    fn selects(&self, target: &Target) -> bool {
        self.wanted_in(target)
            .any(|w| select::selects_any(&target.binary, &w.pattern))
    }

    fn plan(&self, target: &Target, first: u32) -> anyhow::Result<Plan<Vec<Probe>>> {
        let binary = &target.binary;
        let display = &target.located.display;
        // What each probe selects, checked before anything is planned:
        // each out-of-line function, and each inlined copy, is a probe of
        // its own. A PROBE without PATH may match nothing here.
        let mut chosen: Vec<(&Spec, Traceable<'_>)> = Vec::new();
        for w in self.wanted_in(target) {
            if w.binary.is_none() && !select::selects_any(binary, &w.pattern) {
                continue;
            }
            for s in select::matching(binary, &w.pattern, display)? {
                chosen.extend(s.function.map(|f| (&w.spec, Traceable::Function(f))));
                chosen.extend(
                    s.inlined
                        .iter()
                        .map(|site| (&w.spec, Traceable::Inlined(site))),
                );
            }
        }
        let total = first as usize + chosen.len();
        if total > MAX_PROBES as usize {
            bail!(
                "{total} functions and inlined copies to trace, more than {MAX_PROBES}: narrow the probes"
            );
        }
        let functions = chosen
            .iter()
            .filter_map(|(_, c)| match c {
                Traceable::Function(f) => Some(f.name.as_str()),
                Traceable::Inlined(_) => None,
            })
            .collect();
        let inlined = chosen
            .iter()
            .filter_map(|(_, c)| match c {
                Traceable::Inlined(site) => Some(*site),
                Traceable::Function(_) => None,
            })
            .collect();
        let planner = Planner::new(binary, display, functions, inlined, self.options);
        let mut probes = Vec::new();
        let mut sites: Vec<ProbeSite> = Vec::new();
        for (spec, traceable) in &chosen {
            let number = first + probes.len() as u32;
            let (planned, function) = match traceable {
                Traceable::Function(f) => (planner.plan(f, spec, number)?, f.name.clone()),
                Traceable::Inlined(site) => (
                    planner.plan_inlined(site, spec, number)?,
                    format!("{}[inlined]", site.name),
                ),
            };
            for site in &planned.sites {
                sites.push(target.site(site.address, site.cookie, site.describe.clone())?);
            }
            probes.push(Probe {
                function,
                sites: planned.addresses(),
                format: spec.format.clone(),
                shown: planned.shown,
                spec: planned.spec,
                binary: usize::MAX,
                in_body: planned.in_body,
            });
        }
        Ok(Plan {
            count: probes.len() as u32,
            rows: probes,
            probes: vec![(PROGRAM, sites)],
        })
    }

    fn loaded(&mut self, ebpf: &mut aya::Ebpf) -> anyhow::Result<()> {
        let map = ebpf
            .take_map(PROBES_MAP)
            .with_context(|| format!("map {PROBES_MAP} missing from gotrace's object"))?;
        self.settings = Some(Array::try_from(map)?);
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("map {name} missing from gotrace's object"))
        };
        self.events = Some((
            RingBuf::try_from(take(EVENTS_MAP)?)?,
            PerCpuArray::try_from(take(LOST_MAP)?)?,
        ));
        Ok(())
    }

    fn row_name(&self, row: u32) -> String {
        self.probes
            .get(row as usize)
            .map_or_else(|| format!("probe {row}"), |p| p.function.clone())
    }

    fn accept(&mut self, target: usize, first: u32, rows: Vec<Probe>) -> anyhow::Result<()> {
        let settings = self
            .settings
            .as_mut()
            .context("probes stored before load")?;
        for (i, mut probe) in rows.into_iter().enumerate() {
            settings
                .set(first + i as u32, probe.spec, 0)
                .context("storing probe settings")?;
            probe.binary = target;
            self.probes.push(probe);
        }
        Ok(())
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let scope = args.selectors.scope()?;
    let msg_filter = args
        .msg_filter
        .as_deref()
        .map(|re| {
            Regex::new(re).map_err(|e| {
                anyhow::anyhow!(
                    "-f {re:?} is not a regular expression: {}",
                    crate::probe::pattern::regex_error(&e)
                )
            })
        })
        .transpose()?;
    let mut wanted = Vec::new();
    let mut at = Where {
        binaries: Vec::new(),
        host: false,
    };
    for text in &args.probes {
        let spec: Spec = text.parse()?;
        let pattern = Pattern::parse(&spec.target, false)?;
        let binary = match pattern.path.as_deref() {
            Some(path) => {
                let located = symbols::locate(Some(path), scope.single_process())?;
                let key = FileKey::of(&located.path)
                    .with_context(|| format!("reading {}", located.display))?;
                if !at
                    .binaries
                    .iter()
                    .any(|l| FileKey::of(&l.path).ok() == Some(key))
                {
                    at.binaries.push(located);
                }
                Some(key)
            }
            None => {
                at.host = true;
                None
            }
        };
        wanted.push(Wanted {
            spec,
            pattern,
            binary,
        });
    }
    if at.host {
        // Looking at other users' processes needs it.
        privilege::check()?;
    }
    let tool = Trace {
        wanted,
        options: plan::Options {
            policy: args.placement,
            stack: args.user_stack,
            pid: scope.single_process().map(|p| p.pid().get()),
            verbose: args.verbose,
        },
        probes: Vec::new(),
        settings: None,
        events: None,
    };
    let mut session = Session::open(tool, at, scope, args.verbose)?;
    privilege::check()?;
    session.set_budget(args.overhead.budget)?;
    let goid_offset = session
        .targets()
        .iter()
        .find_map(|t| t.binary.goid_offset())
        .map_or(symbols::DEFAULT_GOID_OFFSET, |(o, _)| o);
    let tid = u64::from(args.tid.unwrap_or(0));
    // Only probes that find g in thread-local storage need the kernel's
    // layout, and reading its BTF is the slowest part of start-up.
    let needs_tls =
        session.any_planned(|probes: &Vec<Probe>| probes.iter().any(|p| p.spec.g_from == G_IN_TLS));
    let fsbase_offset = if needs_tls {
        crate::kernel::fsbase_offset().unwrap_or_else(|err| {
            eprintln!("gotrace: goroutine ids of assembly (ABI0) functions will read 0: {err:#}");
            0
        })
    } else {
        0
    };

    event_loop()?.block_on(async {
        let mut lifetime =
            super::lifetime::Lifetime::start(None, args.duration, session.scope().processes())?;
        let rows = session.capacity(MAX_PROBES);
        let ring_bytes = args.buffer_pages * PAGE_BYTES;
        let ebpf = ebpf::load(|loader| {
            loader
                .override_global(GOID_OFFSET, &goid_offset, true)
                .override_global(TID_FILTER, &tid, true)
                .override_global(FSBASE_OFFSET, &fsbase_offset, true)
                .map_max_entries(EVENTS_MAP, ring_bytes)
                .map_max_entries(PROBES_MAP, rows);
            session.configure(loader);
        })?;
        session.start(ebpf, Attacher::new(args.attach, lifetime.stop()))?;
        let (ring, lost) = session
            .tool
            .events
            .take()
            .context("events read before load")?;
        // SAFETY: the AsyncFd owns the ring buffer, so its descriptor stays
        // open for as long as it is registered.
        let mut ring =
            unsafe { AsyncFd::register(ring) }.context("polling the event ring buffer")?;

        let time = if args.timestamp {
            TimeColumn::Relative
        } else if args.time {
            TimeColumn::Wall
        } else {
            TimeColumn::None
        };
        lifetime.begin();
        if let Some(summary) = session.summary() {
            eprintln!("{summary}");
        }
        let banner = if session.is_empty() {
            "Tracing no program yet: waiting for a Go program with a matching function... \
             Hit Ctrl-C to end."
                .to_owned()
        } else {
            format!(
                "Tracing {} functions... Hit Ctrl-C to end.",
                session.tool.probes.len()
            )
        };
        eprintln!("{banner}");
        // Stdout flushes at every newline; at hundreds of thousands of
        // events per second that write per line is what loses events.
        // Buffer, and flush each time the ring buffer is drained.
        let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        if !args.json {
            events::write_header(&mut out, time, args.print_cpu)?;
            out.flush()?;
        }
        let mut clock = Clock {
            first: None,
            printed: 0,
        };
        'run: loop {
            tokio::select! {
                end = session.wait(&mut lifetime) => {
                    if let LifetimeEvent::End(end) = end? {
                        note_end(end, session.scope());
                    }
                    // Drain what is already in the buffer.
                    let printer = Printer::new(&session, &args, time, msg_filter.as_ref());
                    while let Some(item) = ring.get_mut().next() {
                        if printer.print(&mut out, &item, &mut clock)? {
                            break;
                        }
                    }
                    break 'run;
                }
                guard = ring.readable_mut() => {
                    let mut guard = guard.context("waiting for events")?;
                    let printer = Printer::new(&session, &args, time, msg_filter.as_ref());
                    while let Some(item) = guard.get_inner_mut().next() {
                        if printer.print(&mut out, &item, &mut clock)? {
                            break 'run;
                        }
                    }
                    out.flush()?;
                    guard.clear_ready();
                }
            }
        }
        out.flush()?;
        let lost: u64 = lost.get(&0, 0)?.iter().sum();
        if lost > 0 {
            eprintln!(
                "gotrace: {lost} events lost: the ring buffer was full (raise -b, narrow the \
                 probes or add a filter)"
            );
        }
        session.finish(&args.probes.join(" "))
    })
}

/// The relative clock and `-M`'s count, across batches of events.
struct Clock {
    first: Option<u64>,
    printed: u64,
}

/// Prints events as the run's probes and binaries say.
struct Printer<'a> {
    probes: &'a [Probe],
    targets: &'a [Target],
    args: &'a Args,
    time: TimeColumn,
    msg_filter: Option<&'a Regex>,
}

impl<'a> Printer<'a> {
    fn new(
        session: &'a Session<Trace>,
        args: &'a Args,
        time: TimeColumn,
        msg_filter: Option<&'a Regex>,
    ) -> Self {
        Self {
            probes: &session.tool.probes,
            targets: session.targets(),
            args,
            time,
            msg_filter,
        }
    }

    /// Prints one ring-buffer record; true once `-M` events are printed.
    fn print(
        &self,
        out: &mut impl std::io::Write,
        bytes: &[u8],
        clock: &mut Clock,
    ) -> anyhow::Result<bool> {
        if bytes.len() < std::mem::size_of::<Event>() {
            return Ok(false);
        }
        // SAFETY: the kernel wrote a whole `Event` (checked length above);
        // read_unaligned copes with the ring buffer's 8-byte alignment.
        let event: Event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let Some(probe) = self.probes.get(event.probe as usize) else {
            return Ok(false);
        };
        let comm =
            String::from_utf8_lossy(event.comm.split(|&b| b == 0).next().unwrap_or_default())
                .into_owned();
        if let Some(name) = &self.args.name {
            if !comm.contains(name.as_str()) {
                return Ok(false);
            }
        }
        let bias = decode::load_bias(&event, &probe.sites);
        let target = &self.targets[probe.binary];
        let values: Vec<Value> = probe
            .shown
            .iter()
            .enumerate()
            .map(|(i, shown)| {
                decode::value(
                    &event,
                    i,
                    &probe.spec.args[i],
                    shown,
                    self.args.string_size as usize,
                    |address| target.binary.go_type(address.wrapping_sub(bias)),
                )
            })
            .collect();
        let message = probe
            .format
            .as_ref()
            .map(|f| events::message(f, &values))
            .unwrap_or_default();
        if let Some(filter) = self.msg_filter {
            if !filter.is_match(&message) {
                return Ok(false);
            }
        }
        let first = *clock.first.get_or_insert(event.timestamp);
        let time = match self.time {
            TimeColumn::None => None,
            TimeColumn::Relative => {
                Some(format!("{:<14.6}", (event.timestamp - first) as f64 / 1e9))
            }
            TimeColumn::Wall => Some(format!("{:<8}", hms_now())),
        };
        let frames = if probe.spec.stack != 0 {
            let module = target
                .located
                .display
                .rsplit('/')
                .next()
                .unwrap_or_default();
            decode::frames(&event, bias, &target.binary, module, !probe.in_body)
        } else {
            Vec::new()
        };
        if self.args.json {
            let line = serde_json::json!({
                "time_ns": event.timestamp,
                "pid": event.pid,
                "tid": event.tid,
                "goid": event.goid,
                "comm": comm,
                "cpu": event.cpu,
                "binary": target.located.display,
                "func": probe.function,
                "message": message,
                "stack": frames,
            });
            writeln!(out, "{line}")?;
        } else {
            events::write_event(
                out,
                time.as_deref(),
                self.args.print_cpu.then_some(event.cpu),
                (event.pid, event.tid, event.goid),
                &comm,
                &probe.function,
                &message,
            )?;
            for frame in &frames {
                writeln!(out, "        {frame}")?;
            }
        }
        clock.printed += 1;
        Ok(self.args.max_events.is_some_and(|max| clock.printed >= max))
    }
}
