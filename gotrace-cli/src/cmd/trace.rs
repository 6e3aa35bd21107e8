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
use tokio::io::unix::AsyncFd;

use super::{
    attach_sites, event_loop,
    lifetime::{Event as LifetimeEvent, Lifetime},
    note_end, select, ProbeSite,
};
use crate::{
    attach::{self, placement, Attacher},
    ebpf,
    output::{
        events::{self, TimeColumn, Value},
        time::hms_now,
    },
    privilege,
    probe::{format::Format, pattern::Pattern, spec::Spec},
    symbols::{self, inline::InlinedSite, Binary, Function, Located},
    target::Process,
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
    (slices, interfaces). Examples:\n  \
    gotrace trace '/bin/app:main.add \"%d %d\", goarg1, goarg2'\n  \
    gotrace trace 'r:/bin/app:main.add \"sum %d\", retval'\n  \
    gotrace trace -p 185 'main.greet (n > 1) \"%s %d\", name, n'\n  \
    gotrace trace '/bin/app:main.handle \"%v %v\", items, err'"
)]
pub struct Args {
    /// Trace only this process (PATH may then be left out).
    #[arg(short, long)]
    pid: Option<u32>,
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
    /// Print the user stack (Go frames) of each event.
    #[arg(short = 'U', long = "user-stack")]
    user_stack: bool,
    /// Print only events of processes whose name contains NAME.
    #[arg(short = 'n', long = "name")]
    name: Option<String>,
    /// Stop after SECS seconds.
    #[arg(short, long, value_name = "SECS", value_parser = super::parse_seconds)]
    duration: Option<Duration>,
    /// Say how each argument is read.
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

/// One probe on one function, as user space prints its events.
struct Probe {
    function: String,
    /// Link-time address of each probe site, by `Cookie::site`.
    sites: Vec<u64>,
    format: Option<Format>,
    /// Per argument slot read by the kernel (format arguments first).
    shown: Vec<Shown>,
    spec: ProbeSpec,
    /// Index of its binary.
    binary: usize,
    /// Its sites are inside a function body (an inlined copy's).
    in_body: bool,
}

/// What a probe goes on: a function's own code, or an inlined copy.
enum Traceable<'b> {
    Function(&'b Function),
    Inlined(&'b InlinedSite),
}

/// A binary probes go into, opened once for all the probes in it.
struct Traced {
    located: Located,
    binary: Binary,
    /// Its module name in stack frames.
    module: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let process = args.pid.map(Process::find).transpose()?;
    let specs: Vec<Spec> = args
        .probes
        .iter()
        .map(|p| p.parse::<Spec>())
        .collect::<Result<_, _>>()?;
    // Each binary is located and opened once, however many probes name it.
    let mut traced: Vec<Traced> = Vec::new();
    // (spec, binary index, pattern) in the order given.
    let mut wanted = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let pattern = Pattern::parse(&spec.target, false)?;
        let located = symbols::locate(pattern.path.as_deref(), process)?;
        let index = match traced.iter().position(|t| t.located.path == located.path) {
            Some(index) => index,
            None => {
                let binary = Binary::open(&located.path)?;
                let module = located
                    .display
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                traced.push(Traced {
                    located,
                    binary,
                    module,
                });
                traced.len() - 1
            }
        };
        wanted.push((i, index, pattern));
    }
    // What each probe selects, checked before anything is planned: each
    // out-of-line function, and each inlined copy, is a probe of its own.
    let mut chosen: Vec<(usize, usize, Traceable<'_>)> = Vec::new();
    for (i, index, pattern) in &wanted {
        let t = &traced[*index];
        for s in select::matching(&t.binary, pattern, &t.located.display)? {
            chosen.extend(s.function.map(|f| (*i, *index, Traceable::Function(f))));
            chosen.extend(
                s.inlined
                    .iter()
                    .map(|site| (*i, *index, Traceable::Inlined(site))),
            );
        }
    }
    if chosen.len() > MAX_PROBES as usize {
        bail!(
            "{} functions and inlined copies to trace, more than {MAX_PROBES}: narrow the probes",
            chosen.len()
        );
    }
    let options = plan::Options {
        policy: args.placement,
        stack: args.user_stack,
        pid: args.pid,
        verbose: args.verbose,
    };
    let planners: Vec<Planner<'_>> = traced
        .iter()
        .enumerate()
        .map(|(index, t)| {
            let mine = || chosen.iter().filter(move |(_, b, _)| *b == index);
            let functions = mine()
                .filter_map(|(_, _, c)| match c {
                    Traceable::Function(f) => Some(f.name.as_str()),
                    Traceable::Inlined(_) => None,
                })
                .collect();
            let inlined = mine()
                .filter_map(|(_, _, c)| match c {
                    Traceable::Inlined(site) => Some(*site),
                    Traceable::Function(_) => None,
                })
                .collect();
            Planner::new(&t.binary, &t.located.display, functions, inlined, options)
        })
        .collect();
    let mut probes: Vec<Probe> = Vec::new();
    let mut sites: Vec<Vec<ProbeSite>> = traced.iter().map(|_| Vec::new()).collect();
    for (i, index, traceable) in &chosen {
        let spec = &specs[*i];
        let number = probes.len() as u32;
        let (planned, function) = match traceable {
            Traceable::Function(f) => (planners[*index].plan(f, spec, number)?, f.name.clone()),
            Traceable::Inlined(site) => (
                planners[*index].plan_inlined(site, spec, number)?,
                format!("{}[inlined]", site.name),
            ),
        };
        let t = &traced[*index];
        for site in &planned.sites {
            sites[*index].push(super::probe_site(
                &t.binary,
                &t.located,
                site.address,
                site.cookie,
                site.describe.clone(),
            )?);
        }
        probes.push(Probe {
            function,
            sites: planned.addresses(),
            format: spec.format.clone(),
            shown: planned.shown,
            spec: planned.spec,
            binary: *index,
            in_body: planned.in_body,
        });
    }
    drop(planners);
    privilege::check()?;
    let goid_offset = traced
        .iter()
        .find_map(|t| t.binary.goid_offset())
        .map_or(0, |(o, _)| o);
    let tid = u64::from(args.tid.unwrap_or(0));
    // Only probes that find g in thread-local storage need the kernel's
    // layout, and reading its BTF is the slowest part of start-up.
    let fsbase_offset = if probes.iter().any(|p| p.spec.g_from == G_IN_TLS) {
        crate::kernel::fsbase_offset().unwrap_or_else(|err| {
            eprintln!("gotrace: goroutine ids of assembly (ABI0) functions will read 0: {err:#}");
            0
        })
    } else {
        0
    };

    event_loop()?.block_on(async {
        let mut lifetime = Lifetime::start(None, args.duration, process)?;
        let mut ebpf = ebpf::load(|loader| {
            loader
                .override_global(GOID_OFFSET, &goid_offset, true)
                .override_global(TID_FILTER, &tid, true)
                .override_global(FSBASE_OFFSET, &fsbase_offset, true)
                .map_max_entries(EVENTS_MAP, RING_BYTES)
                .map_max_entries(PROBES_MAP, probes.len() as u32);
        })?;
        let mut attacher = Attacher::new(args.attach, lifetime.stop());
        {
            let map = ebpf.map_mut(PROBES_MAP).context("map TRACE_PROBES missing")?;
            let mut specs: Array<&mut MapData, ProbeSpec> = Array::try_from(map)?;
            for (i, probe) in probes.iter().enumerate() {
                specs.set(i as u32, probe.spec, 0).context("storing probe settings")?;
            }
        }
        let mut attached = Vec::new();
        for (t, sites) in traced.iter().zip(&sites) {
            attached.push(attach_sites(
                &mut attacher,
                &mut ebpf,
                PROGRAM,
                &t.located,
                sites,
                process,
                args.verbose,
            )?);
        }
        let ring = RingBuf::try_from(ebpf.take_map(EVENTS_MAP).context("map TRACE_EVENTS missing")?)?;
        let lost: PerCpuArray<MapData, u64> =
            PerCpuArray::try_from(ebpf.take_map(LOST_MAP).context("map TRACE_LOST missing")?)?;
        // SAFETY: the AsyncFd owns the ring buffer, so its descriptor stays
        // open for as long as it is registered.
        let mut ring = unsafe { AsyncFd::register(ring) }.context("polling the event ring buffer")?;

        let time = if args.timestamp {
            TimeColumn::Relative
        } else if args.time {
            TimeColumn::Wall
        } else {
            TimeColumn::None
        };
        lifetime.begin();
        let banner = format!("Tracing {} functions... Hit Ctrl-C to end.", probes.len());
        eprintln!("{banner}");
        // Stdout flushes at every newline; at hundreds of thousands of
        // events per second that write per line is what loses events.
        // Buffer, and flush each time the ring buffer is drained.
        let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        if !args.json {
            events::write_header(&mut out, time)?;
            out.flush()?;
        }
        let mut printer = Printer {
            probes: &probes,
            traced: &traced,
            args: &args,
            time,
            first: None,
            printed: 0,
        };
        'run: loop {
            tokio::select! {
                end = lifetime.next() => {
                    if let LifetimeEvent::End(end) = end {
                        note_end(end, args.pid);
                    }
                    // Drain what is already in the buffer.
                    while let Some(item) = ring.get_mut().next() {
                        if printer.print(&mut out, &item)? {
                            break;
                        }
                    }
                    break 'run;
                }
                guard = ring.readable_mut() => {
                    let mut guard = guard.context("waiting for events")?;
                    while let Some(item) = guard.get_inner_mut().next() {
                        if printer.print(&mut out, &item)? {
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
            eprintln!("gotrace: {lost} events lost: the ring buffer was full (narrow the probes or add a filter)");
        }
        drop(attached);
        Ok(())
    })
}

/// Prints events, tracking `-M` and the relative clock.
struct Printer<'a> {
    probes: &'a [Probe],
    traced: &'a [Traced],
    args: &'a Args,
    time: TimeColumn,
    first: Option<u64>,
    printed: u64,
}

impl Printer<'_> {
    /// Prints one ring-buffer record; true once `-M` events are printed.
    fn print(&mut self, out: &mut impl std::io::Write, bytes: &[u8]) -> anyhow::Result<bool> {
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
        let traced = &self.traced[probe.binary];
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
                    |address| traced.binary.go_type(address.wrapping_sub(bias)),
                )
            })
            .collect();
        let message = probe
            .format
            .as_ref()
            .map(|f| events::message(f, &values))
            .unwrap_or_default();
        let first = *self.first.get_or_insert(event.timestamp);
        let time = match self.time {
            TimeColumn::None => None,
            TimeColumn::Relative => {
                Some(format!("{:<14.6}", (event.timestamp - first) as f64 / 1e9))
            }
            TimeColumn::Wall => Some(format!("{:<8}", hms_now())),
        };
        let frames = if probe.spec.stack != 0 {
            decode::frames(&event, bias, &traced.binary, &traced.module, !probe.in_body)
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
                "func": probe.function,
                "message": message,
                "stack": frames,
            });
            writeln!(out, "{line}")?;
        } else {
            events::write_event(
                out,
                time.as_deref(),
                (event.pid, event.tid, event.goid),
                &comm,
                &probe.function,
                &message,
            )?;
            for frame in &frames {
                writeln!(out, "        {frame}")?;
            }
        }
        self.printed += 1;
        Ok(self.args.max_events.is_some_and(|max| self.printed >= max))
    }
}
