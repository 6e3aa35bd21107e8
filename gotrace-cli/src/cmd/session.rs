//! The binaries of a tracing run, and attaching a tool to each.
//!
//! A run traces the binary its PATH names, or (no PATH) every Go binary
//! the processes of its scope run: found at start by looking at `/proc`,
//! and, while it runs, as processes exec them. Each binary is opened,
//! planned by the tool and attached once, however many processes run it;
//! the tool numbers its rows (the slots of its maps, carried in every
//! probe's cookie) across binaries, so two binaries' rows never merge.
//!
//! Every tool goes through the same steps: [`Session::open`] finds and
//! plans what exists (before anything needs privilege, so that a typo is
//! reported first), the tool loads the object sized by
//! [`Session::capacity`], [`Session::start`] attaches, and
//! [`Session::wait`] attaches to new programs until the run ends.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs::File,
    num::NonZeroU32,
    ops::Range,
    os::fd::AsRawFd as _,
    path::PathBuf,
};

use anyhow::{bail, Context as _};
use aya::{
    maps::{Array, HashMap as BpfHashMap, MapData},
    Ebpf,
};
use gotrace_common::{
    budget::{HITS_MAP, ROW_DETACHED, ROW_GENERATION, ROW_STATE_MAP},
    host::{ExecEvent, MAX_PIDS, PIDS_MAP},
    probe::Cookie,
};
use tokio::time::Instant;

use super::{
    attach_sites,
    lifetime::{Event, Lifetime},
    ProbeSite,
};
use crate::{
    attach::{Attacher, Link, RunTime},
    budget::{self, Budget, Detached},
    host::{
        discover::{self, Found, Skip, Sniffed},
        exec::{monotonic_ns, Execs},
        FileKey, Scope,
    },
    process::Process,
    symbols::{Binary, Located, SymbolError},
};

/// Rows kept free at load time for programs that start later (the maps
/// cannot grow once loaded).
const FOLLOW_HEADROOM: u32 = 4096;

/// A binary of the run, opened once.
pub struct Target {
    /// Its path for output; its `path` is gotrace's own descriptor of it
    /// (`/proc/self/fd/N`), which probes are attached through: a process
    /// found running it may exit (taking `/proc/PID/exe` with it) before
    /// they are.
    pub located: Located,
    pub binary: Binary,
    /// Its device and inode (`None` if it could not be asked).
    pub key: Option<FileKey>,
    /// Processes found running it (empty for a PATH, which any may run).
    pub pids: BTreeSet<NonZeroU32>,
    /// Probe sites in place in it.
    pub probes: u64,
    _file: File,
}

impl Target {
    /// Opens `located`.
    pub fn open(located: Located) -> anyhow::Result<Self> {
        let file = File::open(&located.path).map_err(|source| SymbolError::Io {
            path: located.path.clone(),
            source,
        })?;
        let held = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        let binary = Binary::open_file(&file, &located.path)?;
        let key = FileKey::of(&held).ok();
        Ok(Self {
            located: Located {
                path: held,
                display: located.display,
            },
            binary,
            key,
            pids: BTreeSet::new(),
            probes: 0,
            _file: file,
        })
    }

    /// A probe at `address` with `cookie`, described for error messages.
    pub fn site(
        &self,
        address: u64,
        cookie: gotrace_common::probe::Cookie,
        describe: String,
    ) -> anyhow::Result<ProbeSite> {
        super::probe_site(&self.binary, &self.located, address, cookie, describe)
    }
}

/// What a tool attaches to one binary.
pub struct Plan<R> {
    /// The tool's record of the rows, kept once attached.
    pub rows: R,
    /// How many rows (map slots) it numbers, from the `first` it was
    /// planned with.
    pub count: u32,
    /// Probe sites of each program, attached in this order.
    pub probes: SitesByProgram,
}

/// A tool as a session drives it.
pub trait Tool {
    type Rows;
    /// The programs its plans attach.
    const PROGRAMS: &'static [&'static str];
    /// Whether anything in `binary` is for this tool: a cheap look, so
    /// that a host's other Go programs are passed over quickly.
    fn selects(&self, target: &Target) -> bool;
    /// Plans the probes of `target`, its rows numbered from `first`; an
    /// error says why what it selects cannot be traced.
    fn plan(&self, target: &Target, first: u32) -> anyhow::Result<Plan<Self::Rows>>;
    /// Takes the maps it reads from the loaded object.
    fn loaded(&mut self, ebpf: &mut Ebpf) -> anyhow::Result<()>;
    /// The name of row `row`, for messages.
    fn row_name(&self, row: u32) -> String;
    /// Keeps the rows of the run's `target`th binary (numbered from
    /// `first`), before their probes attach.
    fn accept(&mut self, target: usize, first: u32, rows: Self::Rows) -> anyhow::Result<()>;
}

/// Where a run's probes go.
pub struct Where {
    /// Binaries named by a PATH.
    pub binaries: Vec<Located>,
    /// No PATH (for some probe): every Go binary of the scope's processes.
    pub host: bool,
}

/// One target's probes in the kernel, in chunks of rows: taking a row out
/// for the budget re-attaches only its chunk. Rebuilding all of a
/// binary's links took ~3 s for the ~9,000 sites of `'*'` in a small, busy
/// Go program (while its hot function kept trapping); a chunk's new link
/// takes well under a millisecond.
#[derive(Default)]
struct Attached {
    chunks: Vec<Chunk>,
    /// Its rows.
    rows: Range<u32>,
}

/// Rows of a target attached together.
struct Chunk {
    rows: Range<u32>,
    /// The sites its links hold, by program (refused sites left out).
    probes: SitesByProgram,
    links: Vec<Link>,
    /// Whether its cookies carry `Cookie::FLAG_GENERATION`.
    generation: bool,
}

impl Chunk {
    /// How many sites its links hold.
    fn sites(&self) -> u64 {
        self.probes.iter().map(|(_, s)| s.len() as u64).sum()
    }
}

/// Probe sites by the name of the program they run.
type SitesByProgram = Vec<(&'static str, Vec<ProbeSite>)>;

/// Splits the sites of `rows` (by program) into chunks of `size` rows.
fn chunked(
    rows: Range<u32>,
    size: u32,
    probes: SitesByProgram,
) -> Vec<(Range<u32>, SitesByProgram)> {
    let size = size.max(1);
    let mut chunks: Vec<_> = (rows.start..rows.end.max(rows.start + 1))
        .step_by(size as usize)
        .map(|start| {
            let range = start..(start + size).min(rows.end).max(start + 1);
            let programs = probes.iter().map(|(p, _)| (*p, Vec::new())).collect();
            (range, programs)
        })
        .collect::<Vec<(Range<u32>, SitesByProgram)>>();
    for (at, (_, sites)) in probes.into_iter().enumerate() {
        for site in sites {
            let row = Cookie(site.site.cookie).function();
            let chunk = (row.saturating_sub(rows.start) / size) as usize;
            let last = chunks.len() - 1;
            chunks[chunk.min(last)].1[at].1.push(site);
        }
    }
    chunks
}

/// Rows per chunk when a budget may detach some. Chunks bound the work of
/// a detach; more of them only cost a link each (a descriptor, and a
/// syscall at attach).
const BUDGET_CHUNK_ROWS: u32 = 32;

/// What became of a binary looked at.
#[derive(Clone, Debug)]
enum Known {
    /// The run's `usize`th target.
    Traced(usize),
    /// Nothing in it for the tool, or it cannot be traced.
    Passed,
}

/// A binary passed over, for `-v` and the start-up summary.
struct Passed {
    display: String,
    why: String,
}

pub struct Session<T: Tool> {
    pub tool: T,
    targets: Vec<Target>,
    known: HashMap<FileKey, Known>,
    /// Plans made before the object was loaded, by target.
    pending: Vec<(usize, u32, Plan<T::Rows>)>,
    /// Rows numbered so far.
    rows: u32,
    /// Rows the maps hold (known once loaded).
    capacity: u32,
    scope: Scope,
    host: bool,
    verbose: bool,
    sniffed: Sniffed,
    passed: Vec<Passed>,
    /// Processes looked at at start and not traced, by reason.
    skipped_summary: String,
    live: Option<Live>,
    budget: Option<Budget>,
    /// Keeps the kernel timing BPF programs while the budget needs it.
    _run_time_stats: Option<std::os::fd::OwnedFd>,
    /// Rows taken out for the budget.
    detached: BTreeMap<u32, Detached>,
}

/// What exists once the object is loaded.
struct Live {
    ebpf: Ebpf,
    attacher: Attacher,
    /// Each target's probes as attached now, and their links.
    attached: Vec<Attached>,
    /// Hits by row and cost kind, and which generation of each row counts
    /// (see `gotrace_common::budget`).
    hits: budget::hits::Hits,
    row_state: Array<MapData, u32>,
    pids: Option<BpfHashMap<MapData, u32, u8>>,
    execs: Option<Execs>,
}

impl Drop for Live {
    fn drop(&mut self) {
        let links = self
            .attached
            .iter_mut()
            .flat_map(|a| &mut a.chunks)
            .flat_map(|c| std::mem::take(&mut c.links))
            .collect();
        crate::attach::release(links);
    }
}

impl<T: Tool> Session<T> {
    /// Opens and plans every binary that exists now: the PATHs' (whose
    /// errors end the run) and, host-wide, every Go binary the scope's
    /// processes run (each one that cannot be traced is passed over, and
    /// said why).
    pub fn open(tool: T, at: Where, scope: Scope, verbose: bool) -> anyhow::Result<Self> {
        let mut session = Self {
            tool,
            targets: Vec::new(),
            known: HashMap::new(),
            pending: Vec::new(),
            rows: 0,
            capacity: 0,
            host: at.host,
            scope,
            verbose,
            sniffed: Sniffed::default(),
            passed: Vec::new(),
            skipped_summary: String::new(),
            live: None,
            budget: None,
            _run_time_stats: None,
            detached: BTreeMap::new(),
        };
        for located in at.binaries {
            let target = Target::open(located)?;
            if let Some(key) = target.key {
                if session.known.contains_key(&key) {
                    continue;
                }
            }
            let first = session.rows;
            let plan = session.tool.plan(&target, first)?;
            session.keep(target, first, plan);
        }
        if session.host {
            session.discover()?;
        }
        Ok(session)
    }

    /// Looks at the scope's processes now running.
    fn discover(&mut self) -> anyhow::Result<()> {
        let scan = discover::scan(&self.scope, &mut self.sniffed)?;
        self.skipped_summary = scan.skipped_summary();
        if self.verbose {
            for s in &scan.skipped {
                if s.why != Skip::KernelThread {
                    eprintln!("gotrace: not tracing PID {} ({}): {}", s.pid, s.comm, s.why);
                }
            }
        }
        let mut unmatched = None;
        for found in scan.found {
            if let Some(Known::Traced(index)) = self.known.get(&found.key) {
                self.targets[*index].pids.extend(found.pids);
                continue;
            }
            match self.consider(found)? {
                Considered::Planned(target, first, plan) => self.keep(target, first, plan),
                Considered::Unmatched(target) => {
                    unmatched.get_or_insert(target);
                }
                Considered::Passed => {}
            }
        }
        // `-p` alone: a process whose program has nothing matching is an
        // error, said as for a PATH (with the closest names).
        if !self.follows() && self.pending.is_empty() {
            match unmatched {
                Some(target) if self.passed.len() == 1 => {
                    self.tool.plan(&target, 0)?;
                }
                _ => {}
            }
            let looked: Vec<String> = self
                .passed
                .iter()
                .map(|p| format!("{} ({})", p.display, p.why))
                .collect();
            if looked.is_empty() {
                bail!(
                    "none of {} runs a Go program ({}): give the PID of a Go program",
                    self.scope.describe(),
                    self.skipped_summary
                );
            }
            bail!(
                "nothing to trace in {}: {}",
                self.scope.describe(),
                looked.join("; ")
            );
        }
        Ok(())
    }

    /// Opens and plans a binary found running; `Unmatched` when nothing in
    /// it is for the tool.
    fn consider(&mut self, found: Found) -> anyhow::Result<Considered<T::Rows>> {
        let pass = |session: &mut Self, why: String| {
            if session.verbose {
                eprintln!("gotrace: not tracing {}: {why}", found.display);
            }
            session.known.insert(found.key, Known::Passed);
            session.passed.push(Passed {
                display: found.display.clone(),
                why,
            });
        };
        let located = Located {
            path: found.path.clone(),
            display: found.display.clone(),
        };
        let mut target = match Target::open(located) {
            Ok(target) => target,
            Err(err) => {
                pass(self, format!("{err:#}"));
                return Ok(Considered::Passed);
            }
        };
        target.key = Some(found.key);
        target.pids.extend(found.pids.iter().copied());
        if !self.tool.selects(&target) {
            pass(self, "no match".to_owned());
            return Ok(Considered::Unmatched(target));
        }
        let first = self.rows;
        match self.tool.plan(&target, first) {
            Ok(plan) if first + plan.count <= self.capacity || self.live.is_none() => {
                Ok(Considered::Planned(target, first, plan))
            }
            Ok(_) => {
                pass(
                    self,
                    format!(
                        "the run's maps are full ({} rows): restart gotrace to include it",
                        self.capacity
                    ),
                );
                Ok(Considered::Passed)
            }
            Err(err) => {
                // Said even without -v: the user asked for what it has.
                eprintln!("gotrace: not tracing {}: {err:#}", found.display);
                self.known.insert(found.key, Known::Passed);
                Ok(Considered::Passed)
            }
        }
    }

    /// Records `target` and its plan, to attach at start.
    fn keep(&mut self, target: Target, first: u32, plan: Plan<T::Rows>) {
        let index = self.add(target, first, &plan);
        self.pending.push((index, first, plan));
    }

    /// Makes `target`, planned with rows from `first`, the run's next
    /// binary; returns its index.
    fn add(&mut self, target: Target, first: u32, plan: &Plan<T::Rows>) -> usize {
        let index = self.targets.len();
        if let Some(key) = target.key {
            self.known.insert(key, Known::Traced(index));
        }
        self.rows = first + plan.count;
        self.targets.push(target);
        index
    }

    /// Whether the rows of any plan not attached yet pass `test`.
    pub fn any_planned(&self, test: impl Fn(&T::Rows) -> bool) -> bool {
        self.pending.iter().any(|(_, _, plan)| test(&plan.rows))
    }

    /// Whether programs that start later join the run.
    pub fn follows(&self) -> bool {
        self.host && self.scope.follows_new_processes()
    }

    /// Whether exec events must be watched: to attach to new programs, or
    /// to keep `--comm`'s set of processes current.
    fn watches_execs(&self) -> bool {
        self.follows() || (self.scope.follows_new_processes() && self.scope.filters_by_pid())
    }

    /// The rows the maps must hold: what is planned, and room for later
    /// programs when the run follows them, at most `max`.
    pub fn capacity(&mut self, max: u32) -> u32 {
        let wanted = if self.follows() {
            self.rows.saturating_add(FOLLOW_HEADROOM)
        } else {
            self.rows
        };
        self.capacity = wanted.min(max).max(self.rows).max(1);
        self.capacity
    }

    /// Sets the scope's globals and sizes its maps before loading.
    pub fn configure<'a>(&'a self, loader: &mut aya::EbpfLoader<'a>) {
        self.scope.configure(loader);
        loader
            .map_max_entries(HITS_MAP, self.capacity.saturating_mul(2))
            .map_max_entries(ROW_STATE_MAP, self.capacity);
        if self.watches_execs() {
            loader.map_max_entries(
                gotrace_common::host::EXEC_EVENTS_MAP,
                gotrace_common::host::EXEC_RING_BYTES,
            );
        }
    }

    /// Attaches everything planned, with the loaded `ebpf`, and starts
    /// watching executions if the run follows them.
    pub fn start(&mut self, mut ebpf: Ebpf, mut attacher: Attacher) -> anyhow::Result<()> {
        for program in T::PROGRAMS {
            attacher.load(&mut ebpf, program)?;
        }
        self.tool.loaded(&mut ebpf)?;
        let pids = if self.scope.filters_by_pid() {
            let map = ebpf
                .take_map(PIDS_MAP)
                .with_context(|| format!("map {PIDS_MAP} missing from gotrace's object"))?;
            Some(BpfHashMap::try_from(map)?)
        } else {
            None
        };
        // Watch before attaching: a program started while attaching is
        // then not missed.
        let execs = if self.watches_execs() {
            Some(Execs::start(&mut ebpf)?)
        } else {
            None
        };
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("map {name} missing from gotrace's object"))
        };
        let hits = budget::hits::Hits::new(take(HITS_MAP)?)?;
        let row_state = Array::try_from(take(ROW_STATE_MAP)?)?;
        self.live = Some(Live {
            ebpf,
            attacher,
            attached: Vec::new(),
            hits,
            row_state,
            pids,
            execs,
        });
        let initial: Vec<u32> = match self.scope.processes() {
            [] => self
                .targets
                .iter()
                .flat_map(|t| t.pids.iter().map(|p| p.get()))
                .collect(),
            given => given.iter().map(|p| p.pid().get()).collect(),
        };
        for pid in initial {
            self.keep_pid(pid)?;
        }
        for (index, first, plan) in std::mem::take(&mut self.pending) {
            self.attach(index, first, plan)?;
        }
        if let Some(budget) = &mut self.budget {
            budget.started();
        }
        Ok(())
    }

    /// Lets the kernel count `pid` (a no-op unless it filters by PID).
    fn keep_pid(&mut self, pid: u32) -> anyhow::Result<()> {
        if let Some(map) = self.live.as_mut().and_then(|l| l.pids.as_mut()) {
            if let Err(err) = map.insert(pid, 1, 0) {
                // A full set (MAX_PIDS) only leaves this process out.
                eprintln!("gotrace: not tracing PID {pid}: {err} ({MAX_PIDS} processes at most)");
            }
        }
        Ok(())
    }

    fn forget_pid(&mut self, pid: u32) {
        if let Some(map) = self.live.as_mut().and_then(|l| l.pids.as_mut()) {
            let _ = map.remove(&pid);
        }
    }

    /// Hands `plan`'s rows to the tool and attaches its probes.
    fn attach(&mut self, index: usize, first: u32, plan: Plan<T::Rows>) -> anyhow::Result<()> {
        self.tool.accept(index, first, plan.rows)?;
        let rows = first..first + plan.count;
        // Without a budget no row is ever taken out: one chunk.
        let size = if self.budget.is_some() {
            BUDGET_CHUNK_ROWS
        } else {
            plan.count.max(1)
        };
        let chunks = chunked(rows.clone(), size, plan.probes);
        if chunks.len() > 1 {
            crate::attach::raise_fd_limit(chunks.len() * T::PROGRAMS.len());
        }
        let mut attached = Attached {
            chunks: Vec::new(),
            rows,
        };
        let sites = chunks
            .iter()
            .flat_map(|(_, probes)| probes.iter().map(|(_, s)| s.len()))
            .sum();
        self.live
            .as_mut()
            .context("attaching before load")?
            .attacher
            .expect(sites);
        let mut count = 0;
        let mut method = None;
        for (rows, probes) in chunks {
            let chunk = self.link(index, rows, probes, false)?;
            count += chunk.sites();
            method = method.or(chunk.links.first().map(|l| l.method));
            attached.chunks.push(chunk);
        }
        if self.verbose {
            if let Some(method) = method {
                eprintln!(
                    "gotrace: {count} probes in {}, {method}",
                    self.targets[index].located.display,
                );
            }
            let live = self.live.as_ref().context("attaching before load")?;
            if let Some(reason) = live.attacher.fallback_reason() {
                eprintln!("gotrace: uprobe_multi not used: {reason}");
            }
        }
        let live = self.live.as_mut().context("attaching before load")?;
        if live.attached.len() <= index {
            live.attached.resize_with(index + 1, Attached::default);
        }
        live.attached[index] = attached;
        self.targets[index].probes = count;
        Ok(())
    }

    /// Attaches `probes`, the sites of `rows` in the `index`th target, each
    /// cookie marked with `generation`.
    fn link(
        &mut self,
        index: usize,
        rows: Range<u32>,
        mut probes: SitesByProgram,
        generation: bool,
    ) -> anyhow::Result<Chunk> {
        let live = self.live.as_mut().context("attaching before load")?;
        let scope = self.scope.single_process();
        let target = &self.targets[index];
        let flag = u64::from(Cookie::FLAG_GENERATION) << 32;
        let mut links = Vec::new();
        for (program, sites) in &mut probes {
            if sites.is_empty() {
                continue;
            }
            for site in sites.iter_mut() {
                site.site.cookie = if generation {
                    site.site.cookie | flag
                } else {
                    site.site.cookie & !flag
                };
            }
            let link = attach_sites(
                &mut live.attacher,
                &mut live.ebpf,
                program,
                &target.located,
                sites,
                scope,
            )?;
            // A site refused once is not tried (and reported) again.
            let dropped: BTreeSet<usize> = link.dropped.iter().map(|d| d.index).collect();
            let mut at = 0;
            sites.retain(|_| {
                at += 1;
                !dropped.contains(&(at - 1))
            });
            links.push(link);
        }
        Ok(Chunk {
            rows,
            probes,
            links,
            generation,
        })
    }

    /// Gives the run a budget (see `crate::budget`): `choice` as asked,
    /// or the default for a run of this many rows. Measures this host's
    /// cost of a hit if it is not cached yet.
    pub fn set_budget(&mut self, choice: Option<budget::Choice>) -> anyhow::Result<()> {
        let Some(limit) = budget::limit(choice, self.rows) else {
            return Ok(());
        };
        let (costs, source) = budget::calibrate::costs()?;
        if self.verbose || choice.is_none() {
            eprintln!(
                "gotrace: overhead budget {:.1}% of a CPU{} (a hit costs {:.1} us emulated, \
                 {:.1} us single-stepped here, {source}); --budget off disables it",
                limit * 100.0,
                if choice.is_none() {
                    ", the default for broad patterns"
                } else {
                    ""
                },
                costs.emulated_ns / 1e3,
                costs.single_stepped_ns / 1e3,
            );
        }
        // The kernel times each run of gotrace's programs only while asked
        // to (as bpftop does); without it (before 5.8) hits are priced by
        // the kernel's part alone.
        match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
            Ok(fd) => self._run_time_stats = Some(fd),
            Err(err) => eprintln!(
                "gotrace: the kernel will not time BPF programs ({err}); the budget prices \
                 probe hits without gotrace's own program"
            ),
        }
        self.budget = Some(Budget::new(limit, costs));
        Ok(())
    }

    /// The row's state if it was taken out for the budget.
    pub fn detached(&self, row: u32) -> Option<&Detached> {
        self.detached.get(&row)
    }

    /// Estimates what the probes cost and takes the most expensive rows
    /// out while over budget.
    fn check_budget(&mut self) -> anyhow::Result<()> {
        let sectioned = self.sectioned();
        let (Some(budget), Some(live)) = (self.budget.as_mut(), self.live.as_mut()) else {
            return Ok(());
        };
        let hits = live.hits.read(self.rows * 2)?;
        let programs: BTreeSet<&'static str> = live
            .attached
            .iter()
            .flat_map(|a| &a.chunks)
            .flat_map(|c| c.probes.iter().map(|(program, _)| *program))
            .collect();
        let mut run = RunTime::default();
        for program in programs {
            let one = live.attacher.run_time(&mut live.ebpf, program)?;
            run.nanoseconds += one.nanoseconds;
            run.runs += one.runs;
        }
        let removals = budget.check(&hits, run);
        if removals.is_empty() {
            return Ok(());
        }
        // The chunks to rebuild, the most expensive row's first; each row
        // with the binary it is in.
        let mut chunks: Vec<(usize, usize)> = Vec::new();
        let mut rows: Vec<(u32, usize)> = Vec::new();
        for (rate, cost) in &removals {
            let row = rate.row;
            let Some(target) = live.attached.iter().position(|a| a.rows.contains(&row)) else {
                continue;
            };
            let Some(chunk) = live.attached[target]
                .chunks
                .iter()
                .position(|c| c.rows.contains(&row))
            else {
                continue;
            };
            if !chunks.contains(&(target, chunk)) {
                chunks.push((target, chunk));
            }
            rows.push((row, target));
            let detached = Detached {
                rate: rate.hits(),
                cost: *cost,
            };
            self.detached.insert(row, detached);
        }
        let detaching = rows.iter().map(|&(row, _)| row).collect();
        let kept = self.relink(&chunks, &detaching)?;
        for (row, target) in rows {
            if kept.contains(&row) {
                self.detached.remove(&row);
                continue;
            }
            let Some(detached) = self.detached.get(&row) else {
                continue;
            };
            let binary = if sectioned {
                format!(" in {}", self.targets[target].located.display)
            } else {
                String::new()
            };
            eprintln!(
                "gotrace: {}{binary}: {} calls/s, ~{:.0}% of a CPU: detached",
                self.tool.row_name(row),
                budget::estimate::short(detached.rate),
                detached.cost * 100.0
            );
        }
        Ok(())
    }

    /// Rebuilds `chunks` (target, chunk) without the detached rows: a
    /// chunk's new links (the other generation) are attached first, then
    /// its rows' state flips to them; the old links go last, all at once
    /// (each close waits for a grace period). Every hit of a row that
    /// stays counts exactly once. Stopped by the end of the run, or by the
    /// end of the process a chunk's links were for, it leaves the chunks
    /// it has not rebuilt as they were and returns the rows of `detaching`
    /// they keep.
    fn relink(
        &mut self,
        chunks: &[(usize, usize)],
        detaching: &BTreeSet<u32>,
    ) -> anyhow::Result<BTreeSet<u32>> {
        let mut old = Vec::new();
        let mut kept = BTreeSet::new();
        // A few chunks, each far below what is worth reporting progress on.
        self.live
            .as_mut()
            .context("relinking before load")?
            .attacher
            .expect(0);
        for (done, &(target, at)) in chunks.iter().enumerate() {
            let live = self.live.as_mut().context("relinking before load")?;
            let chunk = &live.attached[target].chunks[at];
            let probes = chunk
                .probes
                .iter()
                .map(|(program, sites)| {
                    let stay = sites
                        .iter()
                        .filter(|s| {
                            !self
                                .detached
                                .contains_key(&Cookie(s.site.cookie).function())
                        })
                        .cloned()
                        .collect();
                    (*program, stay)
                })
                .collect();
            let (range, generation) = (chunk.rows.clone(), !chunk.generation);
            let chunk = match self.link(target, range.clone(), probes, generation) {
                Ok(chunk) => chunk,
                Err(err)
                    if err.is::<crate::attach::Interrupted>()
                        || crate::attach::process_gone(&err) =>
                {
                    let live = self.live.as_ref().context("relinking before load")?;
                    for &(target, at) in &chunks[done..] {
                        let rows = &live.attached[target].chunks[at].rows;
                        kept.extend(detaching.iter().filter(|r| rows.contains(r)));
                    }
                    break;
                }
                Err(err) => return Err(err),
            };
            let live = self.live.as_mut().context("relinking before load")?;
            for row in range {
                let mut state = if generation { ROW_GENERATION } else { 0 };
                if self.detached.contains_key(&row) {
                    state |= ROW_DETACHED;
                }
                live.row_state
                    .set(row, state, 0)
                    .context("switching the rows to the new links")?;
            }
            let attached = &mut live.attached[target];
            self.targets[target].probes -= attached.chunks[at].sites();
            self.targets[target].probes += chunk.sites();
            old.extend(std::mem::replace(&mut attached.chunks[at], chunk).links);
        }
        crate::attach::release(old);
        Ok(kept)
    }

    /// The binaries traced so far, in the order their rows were numbered.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Whether output must say which binary each row is from: host-wide
    /// runs, and runs with rows in several binaries.
    pub fn sectioned(&self) -> bool {
        self.follows() || self.targets.len() > 1
    }

    /// The start-up line: what is traced, how many processes and
    /// binaries, and what was passed over.
    pub fn summary(&self) -> Option<String> {
        if !self.host {
            return None;
        }
        let processes: BTreeSet<NonZeroU32> = self
            .targets
            .iter()
            .flat_map(|t| t.pids.iter().copied())
            .collect();
        let mut line = format!(
            "gotrace: {} process(es) running {} binar{}",
            processes.len(),
            self.targets.len(),
            if self.targets.len() == 1 { "y" } else { "ies" }
        );
        if !self.passed.is_empty() {
            let unmatched = self.passed.iter().filter(|p| p.why == "no match").count();
            line += &format!(
                "; passed over {} Go binar{} ({unmatched} with no match)",
                self.passed.len(),
                if self.passed.len() == 1 { "y" } else { "ies" }
            );
        }
        if !self.skipped_summary.is_empty() {
            line += &format!("; other processes: {}", self.skipped_summary);
        }
        if !self.verbose && (!self.passed.is_empty() || !self.skipped_summary.is_empty()) {
            line += " (-v lists them)";
        }
        Some(line)
    }

    /// The processes the run keeps.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Ends the run (detaching as it drops): an error if it never found
    /// anything to trace, matching `what`.
    pub fn finish(self, what: &str) -> anyhow::Result<()> {
        if self.targets.is_empty() {
            let within = match self.scope.describe() {
                scope if scope.is_empty() => String::new(),
                scope => format!(" among {scope}"),
            };
            bail!(
                "no Go program with a function matching {what:?} ran{within} while gotrace waited"
            );
        }
        Ok(())
    }

    /// Whether nothing is traced yet (a host-wide run waiting).
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Waits for the run's next tick or end, attaching to programs that
    /// start meanwhile.
    pub async fn wait(&mut self, lifetime: &mut Lifetime) -> anyhow::Result<Event> {
        loop {
            // Kept in the budget, not here: the tools drop this future
            // whenever something else of theirs is ready.
            let due = self.budget.as_ref().map(|b| Instant::from_std(b.due()));
            let execs = self.live.as_mut().and_then(|l| l.execs.as_mut());
            let next_exec = async {
                match execs {
                    Some(execs) => execs.next().await,
                    None => std::future::pending().await,
                }
            };
            let next_check = async {
                match due {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                event = lifetime.next() => return Ok(event),
                events = next_exec => {
                    for event in events? {
                        self.on_exec(event)?;
                    }
                }
                () = next_check => self.check_budget()?,
            }
        }
    }

    /// A process exec'd: keep it or let it go (`--comm`), and attach to
    /// its program if that is new to the run.
    fn on_exec(&mut self, event: ExecEvent) -> anyhow::Result<()> {
        let Some(pid) = NonZeroU32::new(event.pid) else {
            return Ok(());
        };
        let process = Process::seen(pid);
        if self.scope.excludes(process).is_some() {
            self.forget_pid(event.pid);
            return Ok(());
        }
        self.keep_pid(event.pid)?;
        if self.verbose && self.scope.filters_by_pid() {
            let comm = process.comm().unwrap_or_default();
            eprintln!("gotrace: keeping PID {pid} ({comm}), which exec'd");
        }
        if !self.follows() {
            return Ok(());
        }
        let Ok(found) = discover::binaries_of(process, &mut self.sniffed) else {
            return Ok(());
        };
        for binary in found {
            match self.known.get(&binary.key) {
                Some(Known::Traced(index)) => {
                    self.targets[*index].pids.insert(pid);
                    continue;
                }
                Some(Known::Passed) => continue,
                None => {}
            }
            let display = binary.display.clone();
            if let Considered::Planned(target, first, plan) = self.consider(binary)? {
                let index = self.add(target, first, &plan);
                let probes: usize = plan.probes.iter().map(|(_, s)| s.len()).sum();
                match self.attach(index, first, plan) {
                    Ok(()) => eprintln!(
                        "gotrace: tracing {display} (PID {pid}): {probes} probes, in place {:.1} ms after its exec",
                        monotonic_ns().saturating_sub(event.timestamp) as f64 / 1e6
                    ),
                    Err(err) => eprintln!("gotrace: not tracing {display} (PID {pid}): {err:#}"),
                }
            }
        }
        Ok(())
    }
}

/// What looking at one binary came to.
enum Considered<R> {
    Planned(Target, u32, Plan<R>),
    Unmatched(Target),
    Passed,
}

/// The binary a PATH names, as the one `-p` process (if one) sees it.
pub fn located(path: Option<&str>, scope: &Scope) -> anyhow::Result<Option<Located>> {
    path.map(|path| crate::symbols::locate(Some(path), scope.single_process()))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attach::Site;

    fn site(row: u32, file_offset: u64) -> ProbeSite {
        ProbeSite {
            site: Site {
                file_offset,
                cookie: u64::from(Cookie::FLAG_STACK_CHECK_BRANCH) << 32 | u64::from(row),
            },
            describe: format!("row {row}"),
        }
    }

    #[test]
    fn chunks_split_sites_by_row() {
        let probes = vec![
            (
                "entry",
                vec![site(10, 0x100), site(14, 0x200), site(11, 0x300)],
            ),
            ("exit", vec![site(14, 0x210)]),
        ];
        let chunks = chunked(10..15, 2, probes);
        let rows: Vec<Range<u32>> = chunks.iter().map(|(r, _)| r.clone()).collect();
        assert_eq!(rows, [10..12, 12..14, 14..15]);
        let offsets = |chunk: usize, program: usize| -> Vec<u64> {
            chunks[chunk].1[program]
                .1
                .iter()
                .map(|s| s.site.file_offset)
                .collect()
        };
        assert_eq!(offsets(0, 0), [0x100, 0x300]);
        assert!(offsets(1, 0).is_empty() && offsets(1, 1).is_empty());
        assert_eq!((offsets(2, 0), offsets(2, 1)), (vec![0x200], vec![0x210]));
        // Every program is in every chunk, empty or not.
        assert!(chunks
            .iter()
            .all(|(_, p)| p[0].0 == "entry" && p[1].0 == "exit"));
        // One chunk for all rows without a budget.
        let one = chunked(10..15, 5, vec![("entry", vec![site(14, 0x200)])]);
        assert_eq!(one.len(), 1);
    }
}
