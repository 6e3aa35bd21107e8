//! `gotrace trace`: one line per call, with Go arguments decoded per the
//! function's ABI, like bcc's trace does for C.

use std::{collections::HashMap, io::Write as _, path::PathBuf, time::Duration};

use anyhow::{bail, Context as _};
use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use gotrace_common::{
    probe::{Cookie, FSBASE_OFFSET, GOID_OFFSET},
    trace::{
        regs, unreadable_bit, ArgSpec, Condition, Event, ProbeSpec, ARG_C_STRING, ARG_GO_STRING,
        ARG_INTERFACE, ARG_NONE, ARG_SLICE, ARG_STRING_SLICE, ARG_WORD, EVENTS_MAP, G_IN_R14,
        G_IN_TLS, G_UNKNOWN, IFACE_TYPE_AT, JOIN_AND, JOIN_OR, LOCATION_KIND, LOCATION_REGISTER,
        LOCATION_STACK, LOST_MAP, MAX_ARGS, MAX_PROBES, OP_EQ, OP_GE, OP_GT, OP_LE, OP_LT, OP_NE,
        OP_STR_EQ, OP_STR_NE, PROBES_MAP, PROGRAM, RING_BYTES, STRING_SIZE, TID_FILTER,
    },
};
use tokio::io::unix::AsyncFd;

use super::{
    attach_sites, event_loop,
    lifetime::{Event as LifetimeEvent, Lifetime},
    note_end, select, ProbeSite, Target,
};
use crate::{
    abi::{self, named, Convention},
    attach::{
        self,
        placement::{self, RegisterSet},
        Attacher,
    },
    ebpf,
    output::{
        events::{self, TimeColumn, Value},
        govalue,
        time::hms_now,
    },
    privilege,
    probe::{
        filter::{Op, Value as FilterValue},
        format::{Conversion, Format},
        spec::{ArgExpr, Kind, Spec},
    },
    symbols::{dwarf::Shape, types::GoType, Binary, Function},
    target::Process,
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

/// How to show one argument slot of a probe.
#[derive(Clone, Debug)]
struct Shown {
    /// Meaningful bytes of a word.
    size: u64,
    /// `%d` sign-extends it (goargN and friends: yes, as bcc does).
    signed: bool,
    /// Named arguments: the Go shape, which slices' elements need.
    shape: Option<Shape>,
}

/// What a slot is printed or compared as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// A word (`%d %u %x %c %p`, integer filters).
    Word,
    /// Text (`%s`, string filters).
    Text,
    /// Whatever the value is, as Go prints it (`%v`).
    Go,
}

impl Want {
    fn of(conversion: Conversion) -> Want {
        match conversion {
            Conversion::String => Want::Text,
            Conversion::Go => Want::Go,
            _ => Want::Word,
        }
    }
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
    binary: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let process = args.pid.map(Process::find).transpose()?;
    let specs: Vec<Spec> = args
        .probes
        .iter()
        .map(|p| p.parse::<Spec>())
        .collect::<Result<_, _>>()?;
    let mut targets: Vec<Target> = Vec::new();
    let mut by_path: HashMap<PathBuf, usize> = HashMap::new();
    let mut probes: Vec<Probe> = Vec::new();
    let mut sites: Vec<Vec<ProbeSite>> = Vec::new();
    for spec in &specs {
        let target = Target::open(&spec.target, false, args.pid)?;
        let index = *by_path
            .entry(target.located.path.clone())
            .or_insert_with(|| {
                targets.push(target);
                sites.push(Vec::new());
                targets.len() - 1
            });
        let target = &targets[index];
        // The stored target may come from an earlier probe on the same
        // binary: match this probe's own function pattern.
        let pattern = crate::probe::pattern::Pattern::parse(&spec.target, false)?;
        let selected = select::matching(&target.binary, &pattern, &target.located.display)?;
        for s in &selected {
            let Some(function) = s.function else {
                bail!(
                    "{} was inlined into {}: its calls have no arguments to read; \
                     gotrace funccount counts them",
                    s.name,
                    s.callers().join(", ")
                );
            };
            let probe_index = probes.len() as u32;
            if probe_index >= MAX_PROBES {
                bail!("more than {MAX_PROBES} functions to trace: narrow the probes");
            }
            let (mut probe_spec, shown) = compile(target, function, spec, args.verbose)?;
            probe_spec.stack = u32::from(args.user_stack);
            probe_spec.pid = args.pid.unwrap_or(0);
            probe_spec.g_from = g_from(&target.binary, function);
            let Placed {
                addresses,
                sites: probe_sites,
                moved,
            } = probe_sites(target, function, spec.kind, args.placement, probe_index)?;
            if let Some((clobbered, what)) = moved {
                check_clobbered(&probe_spec, &spec.args, clobbered, what, &function.name)?;
                if clobbered.contains(regs::R14) && probe_spec.g_from == G_IN_R14 {
                    probe_spec.g_from = G_UNKNOWN;
                }
            }
            sites[index].extend(probe_sites);
            probes.push(Probe {
                function: function.name.clone(),
                sites: addresses,
                format: spec.format.clone(),
                shown,
                spec: probe_spec,
                binary: index,
            });
        }
    }
    privilege::check()?;
    let goid_offset = targets
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
                .map_max_entries(EVENTS_MAP, RING_BYTES);
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
        for (target, sites) in targets.iter().zip(&sites) {
            attached.push(attach_sites(
                &mut attacher,
                &mut ebpf,
                PROGRAM,
                &target.located,
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
            targets: &targets,
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

/// Where the current g is when the probe fires: R14 in register-ABI code;
/// thread-local storage in ABI0 assembly and pre-1.17 code (gc's own
/// convention for them); nowhere gotrace knows for gccgo and C.
fn g_from(binary: &Binary, function: &Function) -> u32 {
    match Convention::of(binary, function) {
        Convention::GoRegister => G_IN_R14,
        Convention::GoStack => G_IN_TLS,
        Convention::SystemV => G_UNKNOWN,
    }
}

/// Turns a probe's arguments and filter into what the kernel reads.
fn compile(
    target: &Target,
    function: &Function,
    spec: &Spec,
    verbose: bool,
) -> anyhow::Result<(ProbeSpec, Vec<Shown>)> {
    let convention = Convention::of(&target.binary, function);
    let conversions: Vec<Conversion> = spec
        .format
        .as_ref()
        .map(|f| f.values().collect())
        .unwrap_or_default();
    // Arguments printed, then filter operands not printed.
    let mut slots: Vec<(ArgExpr, Want)> = spec
        .args
        .iter()
        .zip(&conversions)
        .map(|(a, c)| (a.clone(), Want::of(*c)))
        .collect();
    let mut conditions = Vec::new();
    if let Some(filter) = &spec.filter {
        for c in &filter.comparisons {
            let want = match c.value {
                FilterValue::Str(_) => Want::Text,
                FilterValue::Int(_) => Want::Word,
            };
            let slot = match slots.iter().position(|(a, w)| *a == c.arg && *w == want) {
                Some(i) => i,
                None => {
                    slots.push((c.arg.clone(), want));
                    slots.len() - 1
                }
            };
            conditions.push((slot, c.op, c.value.clone()));
        }
    }
    if slots.len() > MAX_ARGS {
        bail!(
            "probe {:?} reads {} values (arguments and filter operands); at most {MAX_ARGS}",
            spec.target,
            slots.len()
        );
    }
    let mut probe = ProbeSpec::default();
    let mut shown = Vec::new();
    let mut params = None;
    for (i, (expr, want)) in slots.iter().enumerate() {
        let (arg, shown_as) = read_plan(
            target,
            function,
            convention,
            spec.kind,
            expr,
            *want,
            &mut params,
        )?;
        if verbose {
            eprintln!("gotrace: {} {expr}: {arg:?} ({convention})", function.name);
        }
        probe.args[i] = arg;
        shown.push(shown_as);
    }
    for (i, (slot, op, value)) in conditions.into_iter().enumerate() {
        let mut condition = Condition {
            arg: slot as u32,
            ..Condition::default()
        };
        match value {
            FilterValue::Int(v) => {
                condition.value = v;
                condition.op = match op {
                    Op::Eq => OP_EQ,
                    Op::Ne => OP_NE,
                    Op::Lt => OP_LT,
                    Op::Le => OP_LE,
                    Op::Gt => OP_GT,
                    Op::Ge => OP_GE,
                };
                // Compare small integers as their own width would.
                let size = shown[slot].size;
                if size < 8 && probe.args[slot].kind == ARG_WORD {
                    bail!(
                        "filter on {}: a {size}-byte value; gotrace filters compare 8-byte values",
                        slots[slot].0
                    );
                }
            }
            FilterValue::Str(s) => {
                if s.len() >= STRING_SIZE {
                    bail!(
                        "filter string {s:?} is longer than {} bytes",
                        STRING_SIZE - 1
                    );
                }
                condition.op = if op == Op::Eq { OP_STR_EQ } else { OP_STR_NE };
                condition.string_len = s.len() as u32;
                condition.string[..s.len()].copy_from_slice(s.as_bytes());
            }
        }
        probe.conditions[i] = condition;
    }
    probe.join = if spec.filter.as_ref().is_some_and(|f| f.any) {
        JOIN_OR
    } else {
        JOIN_AND
    };
    Ok((probe, shown))
}

/// How to read one argument expression, and how to show what was read.
fn read_plan(
    target: &Target,
    function: &Function,
    convention: Convention,
    kind: Kind,
    expr: &ArgExpr,
    want: Want,
    params: &mut Option<Option<Vec<crate::symbols::dwarf::Param>>>,
) -> anyhow::Result<(ArgSpec, Shown)> {
    if want == Want::Go && !matches!(expr, ArgExpr::Named { .. }) {
        bail!(
            "{expr} is a bare machine word with no Go type, which %v needs: print it with \
             %d, %x or %s, or name the parameter (with DWARF) to print it with %v"
        );
    }
    let text = want == Want::Text;
    // Unnamed words: 8 bytes, signed for %d as bcc has them.
    let word_shown = Shown {
        size: 8,
        signed: true,
        shape: None,
    };
    let word = |first: u32| ArgSpec {
        kind: ARG_WORD,
        first,
        ..ArgSpec::default()
    };
    // A Go string is two words: pointer, then length.
    let go_string = |first: u32, second: u32| ArgSpec {
        kind: ARG_GO_STRING,
        first,
        second,
        ..ArgSpec::default()
    };
    let go_word = |n: u32| {
        abi::go_argument_word(target.binary.arch(), convention, n).with_context(|| {
            format!(
                "goarg{n}: {} uses the C ABI (gccgo or C): use arg{n}",
                function.name
            )
        })
    };
    Ok(match expr {
        ArgExpr::GoArg(n) => {
            // An ABI0 frame keeps arguments and results in one area above
            // the return address, where `ret` finds RSP as the entry did.
            if kind == Kind::Return && convention != Convention::GoStack {
                bail!("goarg{n}: arguments are gone at return; use a p: probe");
            }
            if text {
                (go_string(go_word(*n)?, go_word(n + 1)?), word_shown)
            } else {
                (word(go_word(*n)?), word_shown)
            }
        }
        ArgExpr::CArg(n) => {
            if kind == Kind::Return {
                bail!("arg{n}: arguments are gone at return; use a p: probe");
            }
            let first = abi::c_argument(target.binary.arch(), *n);
            if text {
                let c_string = ArgSpec {
                    kind: ARG_C_STRING,
                    first,
                    ..ArgSpec::default()
                };
                (c_string, word_shown)
            } else {
                (word(first), word_shown)
            }
        }
        ArgExpr::Retval(n) => {
            if kind != Kind::Return {
                bail!("retval needs a return probe: write r:{}", function.name);
            }
            let result = |n: u32| {
                abi::result_word(target.binary.arch(), convention, n).with_context(|| {
                    format!(
                        "retval{n}: {} returns on the stack (ABI0), after its arguments: \
                         read the result's word of that area with goargN on this r: probe",
                        function.name
                    )
                })
            };
            if text {
                (go_string(result(*n)?, result(n + 1)?), word_shown)
            } else {
                (word(result(*n)?), word_shown)
            }
        }
        ArgExpr::Named { name, fields } => {
            if kind == Kind::Return {
                bail!("{expr}: named arguments are read at entry; use a p: probe");
            }
            let params = params
                .get_or_insert_with(|| target.binary.parameters(&function.name))
                .as_ref()
                .with_context(|| {
                    format!(
                        "{expr}: named arguments need DWARF, and {} has none for {} (stripped?): use goargN",
                        target.located.display, function.name
                    )
                })?;
            let resolved = named::resolve(
                target.binary.arch(),
                &function.name,
                params,
                convention,
                name,
                fields,
            )?;
            let only_go = match resolved.shape {
                Shape::Slice(_) => Some("a slice"),
                Shape::Interface { .. } => Some("an interface"),
                _ => None,
            };
            match (want, only_go) {
                (Want::Go, _) => {}
                (_, Some(what)) => bail!("{expr} is {what}: print it with %v"),
                (Want::Text, None) if !resolved.is_string => {
                    bail!("{expr} is not a string: print it with %d, %x or %p")
                }
                (Want::Word, None) if resolved.is_string => {
                    bail!("{expr} is a string: print it with %s")
                }
                _ => {}
            }
            let shown = Shown {
                size: resolved.size,
                signed: resolved.signed,
                shape: Some(resolved.shape),
            };
            (resolved.spec, shown)
        }
    })
}

/// Refuses arguments read from a register (or the stack, through the stack
/// pointer) that the instruction the entry probe moved past overwrote.
fn check_clobbered(
    probe: &ProbeSpec,
    exprs: &[ArgExpr],
    clobbered: RegisterSet,
    what: &str,
    function: &str,
) -> anyhow::Result<()> {
    for (i, arg) in probe.args.iter().enumerate() {
        let spoiled =
            [arg.first, arg.second]
                .into_iter()
                .any(|location| match location & LOCATION_KIND {
                    LOCATION_REGISTER => clobbered.contains(location & !LOCATION_KIND),
                    LOCATION_STACK => clobbered.contains(regs::RSP),
                    _ => false,
                });
        if arg.kind != ARG_NONE && spoiled {
            let shown = exprs
                .get(i)
                .map_or_else(|| "a filter operand".to_owned(), ToString::to_string);
            bail!(
                "cannot read {shown} of {function}: the kernel cannot probe its first \
                 instruction ({what}), and the probe after it sees that argument overwritten"
            );
        }
    }
    Ok(())
}

/// Entry probe (at the stack-check branch where there is one: same
/// registers, counted once), or one probe per `ret` for `r:`; with the
/// link-time address of each, numbered in the cookies.
fn probe_sites(
    target: &Target,
    function: &Function,
    kind: Kind,
    policy: placement::Policy,
    index: u32,
) -> anyhow::Result<Placed> {
    let code = target.binary.code(function);
    let arch = target.binary.arch();
    let (addresses, flags, clobbered) = match kind {
        Kind::Entry => {
            let placement = placement::entry(arch, code, function.address, policy)
                .with_context(|| format!("cannot trace {}", function.name))?;
            let clobbered = placement.moved_past.map(|what| (placement.clobbered, what));
            (
                vec![function.address + placement.offset],
                placement.flags,
                clobbered,
            )
        }
        Kind::Return => {
            let exits: Vec<u64> = placement::exits(arch, code, function.address)
                .into_iter()
                .map(|exit| exit.address)
                .collect();
            if exits.is_empty() {
                bail!(
                    "{} has no ret instruction to probe (it never returns)",
                    function.name
                );
            }
            (exits, 0, None)
        }
    };
    if addresses.len() > usize::from(u16::MAX) {
        bail!("{} has too many returns to trace", function.name);
    }
    let sites = addresses
        .iter()
        .enumerate()
        .map(|(site, &address)| {
            let describe = match kind {
                Kind::Entry => function.name.clone(),
                Kind::Return => format!(
                    "{} (return at +{:#x})",
                    function.name,
                    address - function.address
                ),
            };
            target.site(
                address,
                Cookie::at_site(index, flags, site as u16),
                describe,
            )
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Placed {
        addresses,
        sites,
        moved: clobbered,
    })
}

/// Where a probe's sites went.
struct Placed {
    /// Link-time address of each site.
    addresses: Vec<u64>,
    sites: Vec<ProbeSite>,
    /// What an entry probe moved past had overwritten, and what it was.
    moved: Option<(RegisterSet, &'static str)>,
}

/// Prints events, tracking `-M` and the relative clock.
struct Printer<'a> {
    probes: &'a [Probe],
    targets: &'a [Target],
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
        let bias = load_bias(&event, probe);
        let binary = &self.targets[probe.binary].binary;
        let values: Vec<Value> = probe
            .shown
            .iter()
            .enumerate()
            .map(|(i, shown)| {
                decode(
                    &event,
                    i,
                    &probe.spec.args[i],
                    shown,
                    self.args.string_size as usize,
                    |address| binary.go_type(address.wrapping_sub(bias)),
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
            self.frames(&event, probe)
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

    /// The event's user stack, symbolized through the binary's functions.
    fn frames(&self, event: &Event, probe: &Probe) -> Vec<String> {
        let bias = load_bias(event, probe);
        let target = &self.targets[probe.binary];
        let count = (event.stack_bytes as usize / 8).min(event.stack.len());
        let module = target
            .located
            .display
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        // The probe's own address, then the caller (read at RSP), then the
        // frame-pointer walk, which starts at the caller's caller.
        let addresses: Vec<u64> = event.stack[..count.min(1)]
            .iter()
            .copied()
            .chain((event.return_address != 0).then_some(event.return_address))
            .chain(event.stack[count.min(1)..count].iter().copied())
            .collect();
        addresses
            .into_iter()
            .enumerate()
            .flat_map(|(i, address)| {
                let address = address.wrapping_sub(bias);
                // Return addresses point after the call; look up the call.
                let lookup = if i == 0 {
                    address
                } else {
                    address.wrapping_sub(1)
                };
                let Some(f) = target.binary.function_at(lookup) else {
                    return vec![format!("{address:#x} [unknown]")];
                };
                // Calls the compiler inlined here have no frame of their
                // own: name them before the function that holds the code.
                let frames = target.binary.frames_at(lookup);
                let inlined = frames.len().saturating_sub(1);
                frames[..inlined]
                    .iter()
                    .map(|name| format!("{name} (inlined) [{module}]"))
                    .chain([format!("{}+{:#x} [{module}]", f.name, address - f.address)])
                    .collect()
            })
            .collect()
    }
}

/// How far the process loaded the probe's binary from its link-time
/// addresses (0 unless PIE): where the probe fired against where its site
/// is in the file.
fn load_bias(event: &Event, probe: &Probe) -> u64 {
    probe
        .sites
        .get(event.site as usize)
        .map_or(0, |&site| event.ip.wrapping_sub(site))
}

/// The value of argument slot `i` of `event`, read as `arg` says;
/// `go_type(address)` names the type descriptor at a run-time address.
fn decode(
    event: &Event,
    i: usize,
    arg: &ArgSpec,
    shown: &Shown,
    string_size: usize,
    go_type: impl Fn(u64) -> Option<GoType>,
) -> Value {
    if event.cut & unreadable_bit(i) != 0 {
        return Value::Unreadable;
    }
    let cut = event.cut & (1 << i) != 0;
    match arg.kind {
        ARG_GO_STRING | ARG_C_STRING => {
            let length = (event.values[i] as usize).min(STRING_SIZE - 1);
            let bytes = &event.strings[i][..length];
            let bytes = if arg.kind == ARG_C_STRING {
                bytes.split(|&b| b == 0).next().unwrap_or_default()
            } else {
                bytes
            };
            let keep = string_size.saturating_sub(1);
            Value::Text {
                bytes: bytes[..bytes.len().min(keep)].to_vec(),
                cut: cut || bytes.len() > keep,
            }
        }
        ARG_SLICE => {
            // The whole elements the program copied (see `read_slice`).
            let element = u64::from(arg.element.max(1));
            let count = event.values[i].min((STRING_SIZE as u64 - 1) / element);
            let bytes = &event.strings[i][..(count * element) as usize];
            let element_shape = match &shown.shape {
                Some(Shape::Slice(element)) => element.as_deref(),
                _ => None,
            };
            Value::Go(govalue::slice(bytes, event.values[i], cut, element_shape))
        }
        ARG_STRING_SLICE => Value::Go(govalue::string_slice(
            &event.strings[i],
            event.values[i],
            cut,
        )),
        ARG_INTERFACE => {
            let slot = &event.strings[i];
            let mut word = [0u8; 8];
            word.copy_from_slice(&slot[IFACE_TYPE_AT..IFACE_TYPE_AT + 8]);
            let type_address = u64::from_le_bytes(word);
            let resolved = (type_address != 0).then(|| go_type(type_address)).flatten();
            Value::Go(govalue::interface(
                slot,
                type_address,
                event.values[i],
                resolved.as_ref(),
            ))
        }
        _ => Value::Int {
            value: event.values[i],
            size: shown.size,
            signed: shown.signed,
        },
    }
}
