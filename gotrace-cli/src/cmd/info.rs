//! `gotrace info`: what gotrace sees in a binary, before tracing it.

use std::io::Write as _;

use super::{capability, select};
use crate::{
    attach::placement::{self, Cost, Policy},
    probe::pattern::Pattern,
    process::Process,
    symbols::{self, Binary, FunctionSource, Toolchain},
};

/// Where probes would go over the whole binary, which decides what
/// tracing costs per call: the kernel emulates a branch (~0.5 us a hit on
/// this project's VMs) and single-steps anything else (~7-14 us).
#[derive(Debug, Default)]
struct ProbeCost {
    /// Entry probes on the stack-check branch (emulated).
    branch_entries: usize,
    /// Entry probes on a first instruction the kernel emulates (`push rbp`).
    emulated_entries: usize,
    /// Entry probes on a first instruction it single-steps.
    single_stepped_entries: usize,
    /// Entry probes moved past a first instruction the kernel refuses or
    /// misruns (included in the counts above).
    moved_entries: usize,
    /// Functions no probe may go into (see `placement::Unprobeable`).
    unprobeable: usize,
    /// Inlined copies whose first instruction the kernel refuses: moved,
    /// or not probed at all.
    inlined_moved: usize,
    inlined_unprobeable: usize,
    /// Exits: returns (single-stepped) and tail jumps (emulated).
    rets: usize,
    tail_jumps: usize,
}

impl ProbeCost {
    fn of(binary: &Binary) -> ProbeCost {
        let arch = binary.arch();
        let mut cost = ProbeCost::default();
        for f in binary.functions() {
            let code = binary.code(f);
            match placement::entry(arch, code, f.address, Policy::Cheapest) {
                Ok(p) => {
                    let at = code.get(p.offset as usize..).unwrap_or_default();
                    match (p.on_stack_check(), placement::cost(arch, at)) {
                        (true, _) => cost.branch_entries += 1,
                        (false, Cost::Emulated) => cost.emulated_entries += 1,
                        (false, Cost::SingleStepped) => cost.single_stepped_entries += 1,
                    }
                    if p.moved_past.is_some() {
                        cost.moved_entries += 1;
                    }
                }
                Err(_) => cost.unprobeable += 1,
            }
            for exit in placement::exits(arch, code, f.address) {
                if exit.tail_call {
                    cost.tail_jumps += 1;
                } else {
                    cost.rets += 1;
                }
            }
        }
        for site in binary.inlined() {
            match binary.place_in_function(site.address) {
                Ok(p) if p.moved_past.is_some() => cost.inlined_moved += 1,
                Ok(_) => {}
                Err(_) => cost.inlined_unprobeable += 1,
            }
        }
        cost
    }
}

/// Say which compiler, Go version and ABI built a binary, and what symbols
/// it has.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Describe the executable of this process (BINARY may then be left out).
    #[arg(short, long)]
    pid: Option<u32>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// List every function found (name, address, size).
    #[arg(long)]
    functions: bool,
    /// Count where entry and exit probes would go (what the kernel emulates
    /// cheaply and what it single-steps).
    #[arg(long)]
    probe_cost: bool,
    /// For every function matching this glob, each of its copies (its own
    /// code, its inlined copies) and whether funccount can count it,
    /// funclatency time it and trace read its arguments, or why not.
    #[arg(long = "match", value_name = "FUNC")]
    matching: Option<String>,
    /// A path, or a library name such as `go` for libgo.
    binary: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let process = args.pid.map(Process::find).transpose()?;
    let located = symbols::locate(args.binary.as_deref(), process)?;
    let binary = Binary::open(&located.path)?;
    let facts = binary.facts();
    let go_version = facts.build_info.as_ref().map(|b| b.go_version.as_str());
    let compiler = match binary.toolchain() {
        Some(Toolchain::Gc) => "gc".to_owned(),
        Some(Toolchain::Gccgo) => format!(
            "gccgo ({})",
            facts
                .compiler_comment
                .as_deref()
                .unwrap_or("version unknown")
        ),
        None => "not Go".to_owned(),
    };
    let abi = binary
        .toolchain()
        .and_then(|t| symbols::abi(binary.arch(), t, go_version))
        .map_or("unknown".to_owned(), |a| a.to_string());
    let symbols = match (binary.function_source(), facts.symbol_table) {
        (FunctionSource::Pclntab, _) => "stripped; names from .gopclntab",
        (FunctionSource::SymbolTable, true) => ".symtab (not stripped)",
        (FunctionSource::SymbolTable, false) => ".dynsym only (stripped)",
    };
    let reports = match &args.matching {
        Some(func) => {
            let pattern = Pattern::parse(func, false)?;
            let selected = select::matching(&binary, &pattern, &located.display)?;
            capability::report(&binary, &selected)
        }
        None => Vec::new(),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let functions: Vec<_> = binary
            .functions()
            .iter()
            .filter(|_| args.functions)
            .map(|f| serde_json::json!({"name": f.name, "address": f.address, "size": f.size}))
            .collect();
        let mut info = serde_json::json!({
            "path": located.display,
            "compiler": compiler,
            "go_version": go_version,
            "module": facts.build_info.as_ref().and_then(|b| b.main_path.as_deref()),
            "cgo": facts.build_info.as_ref().and_then(|b| b.cgo),
            "abi": abi,
            "stripped": !facts.symbol_table,
            "symbols": symbols,
            "dwarf": facts.dwarf,
            "pie": facts.position_independent,
            "function_count": binary.functions().len(),
            "inlined_site_count": binary.inlined().len(),
            "goid_offset": binary.goid_offset().map(|(offset, _)| offset),
        });
        if args.probe_cost {
            let cost = ProbeCost::of(&binary);
            let per_hit = match hit_costs() {
                Ok((costs, source)) => serde_json::json!({
                    "emulated_ns": costs.emulated_ns.round(),
                    "single_stepped_ns": costs.single_stepped_ns.round(),
                    "source": source,
                }),
                Err(err) => serde_json::json!({ "error": format!("{err:#}") }),
            };
            info["probe_cost"] = serde_json::json!({
                "per_hit": per_hit,
                "entries_on_stack_check_branch": cost.branch_entries,
                "entries_emulated": cost.emulated_entries,
                "entries_single_stepped": cost.single_stepped_entries,
                "entries_moved": cost.moved_entries,
                "unprobeable": cost.unprobeable,
                "inlined_moved": cost.inlined_moved,
                "inlined_unprobeable": cost.inlined_unprobeable,
                "exits_ret": cost.rets,
                "exits_tail_jump": cost.tail_jumps,
            });
        }
        if args.matching.is_some() {
            info["matched"] = reports
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "function": r.function,
                        "copies": r.copies.iter().map(capability::Copy::to_json).collect::<Vec<_>>(),
                    })
                })
                .collect();
        }
        if args.functions {
            info["functions"] = functions.into();
            info["inlined"] = binary
                .inlined()
                .iter()
                .map(|s| serde_json::json!({"name": s.name, "caller": s.caller, "address": s.address}))
                .collect();
        }
        writeln!(out, "{info}")?;
        return Ok(());
    }
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    writeln!(out, "path:        {}", located.display)?;
    writeln!(out, "compiler:    {compiler}")?;
    writeln!(out, "go version:  {}", go_version.unwrap_or("unknown"))?;
    if let Some(module) = facts
        .build_info
        .as_ref()
        .and_then(|b| b.main_path.as_deref())
    {
        writeln!(out, "module:      {module}")?;
    }
    if let Some(cgo) = facts.build_info.as_ref().and_then(|b| b.cgo) {
        writeln!(out, "cgo:         {}", yes_no(cgo))?;
    }
    writeln!(out, "abi:         {abi}")?;
    writeln!(out, "symbols:     {symbols}")?;
    writeln!(out, "dwarf:       {}", yes_no(facts.dwarf))?;
    writeln!(out, "pie:         {}", yes_no(facts.position_independent))?;
    if let Some((offset, source)) = binary.goid_offset() {
        writeln!(out, "goid offset: {offset} in runtime.g ({source})")?;
    }
    writeln!(out, "functions:   {}", binary.functions().len())?;
    writeln!(out, "inlined:     {} call sites", binary.inlined().len())?;
    if args.probe_cost {
        let cost = ProbeCost::of(&binary);
        writeln!(
            out,
            "entries:     {} on the stack-check branch (emulated), {} on an emulated first instruction (push or branch), {} single-stepped, {} unprobeable",
            cost.branch_entries, cost.emulated_entries, cost.single_stepped_entries, cost.unprobeable
        )?;
        writeln!(
            out,
            "moved:       {} entries and {} inlined copies moved past a first instruction the kernel cannot probe; {} inlined copies unprobeable",
            cost.moved_entries, cost.inlined_moved, cost.inlined_unprobeable
        )?;
        writeln!(
            out,
            "exits:       {} ret (single-stepped), {} tail jmp (emulated)",
            cost.rets, cost.tail_jumps
        )?;
        match hit_costs() {
            Ok((costs, source)) => writeln!(
                out,
                "per hit:     {:.1} us emulated, {:.1} us single-stepped on this host ({source})",
                costs.emulated_ns / 1e3,
                costs.single_stepped_ns / 1e3
            )?,
            Err(err) => writeln!(out, "per hit:     not measured: {err:#}")?,
        }
    }
    for report in &reports {
        let inlined = report
            .copies
            .iter()
            .filter(|c| c.inlined_in.is_some())
            .count();
        let own = if report.copies.len() > inlined {
            "out-of-line code"
        } else {
            "no out-of-line code"
        };
        writeln!(out, "{}: {own}, {inlined} inlined copies", report.function)?;
        for copy in &report.copies {
            writeln!(out, "  {}", copy.describe())?;
        }
    }
    if args.functions {
        for f in binary.functions() {
            writeln!(out, "{:#x} {:>6} {}", f.address, f.size, f.name)?;
        }
        for s in binary.inlined() {
            writeln!(out, "{:#x} inlined {} in {}", s.address, s.name, s.caller)?;
        }
    }
    Ok(())
}

/// This host's cost of a probe hit of each kind (cached, or measured now:
/// that needs the privilege to load BPF programs).
fn hit_costs() -> anyhow::Result<(crate::budget::Costs, String)> {
    crate::privilege::check()?;
    crate::budget::calibrate::costs()
}
