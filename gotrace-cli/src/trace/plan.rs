//! What the `trace` program reads for a probe, planned in user space: the
//! argument slots (printed arguments, then filter operands not printed),
//! where each lives under the function's calling convention, the filter's
//! conditions, and where the probe's sites go.
//!
//! A [`Planner`] serves one binary: it reads the DWARF parameters of every
//! function traced in it at most once, whatever the number of probes.

use std::{
    cell::OnceCell,
    collections::{HashMap, HashSet},
};

use anyhow::{bail, Context as _};
use gotrace_common::{
    probe::Cookie,
    trace::{
        ArgSpec, Condition, ProbeSpec, ARG_C_STRING, ARG_GO_STRING, ARG_NONE, ARG_WORD,
        G_IN_REGISTER, G_UNKNOWN, JOIN_AND, JOIN_OR, LOCATION_KIND, LOCATION_REGISTER,
        LOCATION_STACK, MAX_ARGS, OP_EQ, OP_GE, OP_GT, OP_LE, OP_LT, OP_NE, OP_STR_EQ, OP_STR_NE,
        STRING_SIZE,
    },
};

use crate::{
    abi::{self, named, Convention},
    arch::Registers,
    arch::{register, stack},
    attach::placement::{self, RegisterSet},
    probe::{
        filter::{Op, Value as FilterValue},
        format::Conversion,
        spec::{ArgExpr, Kind, Spec},
    },
    symbols::{
        dwarf::{InlinedCall, InlinedParam, Param, Piece, Place as DwarfPlace, Shape},
        inline::InlinedSite,
        Binary, Function,
    },
};

/// What a slot is printed or compared as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
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

/// How to show one argument slot of a probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shown {
    /// Meaningful bytes of a word.
    pub size: u64,
    /// `%d` sign-extends it (goargN and friends: yes, as bcc does).
    pub signed: bool,
    /// Named arguments: the Go shape, which slices' elements need.
    pub shape: Option<Shape>,
    /// Nothing is read: an inlined call's argument DWARF does not locate
    /// at the probe, printed as `?`.
    pub missing: bool,
}

impl Shown {
    /// Unnamed words: 8 bytes, signed for `%d` as bcc has them.
    const WORD: Shown = Shown {
        size: 8,
        signed: true,
        shape: None,
        missing: false,
    };

    /// A slot with nothing to read (see [`Shown::missing`]).
    const MISSING: Shown = Shown {
        size: 8,
        signed: false,
        shape: None,
        missing: true,
    };
}

/// The slots of a probe and its filter's comparisons, before anything is
/// located: `exprs[i]` is read into slot `i`; each condition compares a
/// slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slots {
    pub exprs: Vec<(ArgExpr, Want)>,
    pub conditions: Vec<(usize, Op, FilterValue)>,
}

/// The slots `spec` reads: its format's arguments in order, then each
/// filter operand that is not already read the same way.
pub fn slots(spec: &Spec) -> anyhow::Result<Slots> {
    let conversions: Vec<Conversion> = spec
        .format
        .as_ref()
        .map(|f| f.values().collect())
        .unwrap_or_default();
    let mut exprs: Vec<(ArgExpr, Want)> = spec
        .args
        .iter()
        .zip(&conversions)
        .map(|(a, c)| (a.clone(), Want::of(*c)))
        .collect();
    let mut conditions = Vec::new();
    for c in spec.filter.iter().flat_map(|f| &f.comparisons) {
        let want = match c.value {
            FilterValue::Str(_) => Want::Text,
            FilterValue::Int(_) => Want::Word,
        };
        let slot = match exprs.iter().position(|(a, w)| *a == c.arg && *w == want) {
            Some(i) => i,
            None => {
                exprs.push((c.arg.clone(), want));
                exprs.len() - 1
            }
        };
        conditions.push((slot, c.op, c.value.clone()));
    }
    if exprs.len() > MAX_ARGS {
        bail!(
            "probe {:?} reads {} values (arguments and filter operands); at most {MAX_ARGS}",
            spec.target,
            exprs.len()
        );
    }
    Ok(Slots { exprs, conditions })
}

/// The kernel's form of comparing `slot` (read as `arg`, shown as `shown`,
/// written `expr`) with `value` by `op`.
pub fn condition(
    slot: usize,
    op: Op,
    value: &FilterValue,
    arg: &ArgSpec,
    shown: &Shown,
    expr: &ArgExpr,
) -> anyhow::Result<Condition> {
    let mut condition = Condition {
        arg: slot as u32,
        ..Condition::default()
    };
    match value {
        FilterValue::Int(v) => {
            condition.value = *v;
            condition.op = match op {
                Op::Eq => OP_EQ,
                Op::Ne => OP_NE,
                Op::Lt => OP_LT,
                Op::Le => OP_LE,
                Op::Gt => OP_GT,
                Op::Ge => OP_GE,
            };
            // Compare small integers as their own width would.
            if shown.size < 8 && arg.kind == ARG_WORD {
                bail!(
                    "filter on {expr}: a {}-byte value; gotrace filters compare 8-byte values",
                    shown.size
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
    Ok(condition)
}

/// Settings every probe of a run shares.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub policy: placement::Policy,
    /// `-U`: record the user stack.
    pub stack: bool,
    /// `-p`: only this process.
    pub pid: Option<u32>,
    pub verbose: bool,
}

/// One probe on one function, planned.
#[derive(Debug)]
pub struct Planned {
    /// What the kernel reads, stored in its probe map.
    pub spec: ProbeSpec,
    /// How to show each slot read.
    pub shown: Vec<Shown>,
    /// The probe's sites, numbered by `Cookie::site`.
    pub sites: Vec<Site>,
    /// Whether the sites are inside a function body, whose frame is set
    /// up (an inlined copy's), rather than at a function's entry or return.
    pub in_body: bool,
}

/// One site of a probe.
#[derive(Debug)]
pub struct Site {
    /// Link-time address.
    pub address: u64,
    pub cookie: Cookie,
    /// What it is, for messages.
    pub describe: String,
}

/// An entry probe moved past an instruction the kernel cannot probe.
#[derive(Clone, Copy, Debug)]
struct Moved {
    /// The registers that instruction wrote.
    clobbered: RegisterSet,
    /// What it was.
    what: &'static str,
}

impl Planned {
    /// The link-time address of each site, by `Cookie::site`.
    pub fn addresses(&self) -> Vec<u64> {
        self.sites.iter().map(|site| site.address).collect()
    }
}

/// Plans probes on the functions of one binary.
pub struct Planner<'b> {
    binary: &'b Binary,
    /// The binary as the user named it, for messages.
    shown_as: &'b str,
    /// Functions that may need their DWARF parameters.
    functions: Vec<&'b str>,
    /// Their parameters, read once on first need.
    params: OnceCell<HashMap<String, Vec<Param>>>,
    /// Inlined copies that may need their DWARF parameters.
    inlined: Vec<&'b InlinedSite>,
    /// Their parameters at their entry probes, read once on first need,
    /// by the copy's first instruction.
    inlined_params: OnceCell<HashMap<u64, Vec<InlinedParam>>>,
    options: Options,
}

impl<'b> Planner<'b> {
    /// A planner for probes on `functions` of `binary`.
    pub fn new(
        binary: &'b Binary,
        shown_as: &'b str,
        functions: Vec<&'b str>,
        inlined: Vec<&'b InlinedSite>,
        options: Options,
    ) -> Self {
        Self {
            binary,
            shown_as,
            functions,
            params: OnceCell::new(),
            inlined,
            inlined_params: OnceCell::new(),
            options,
        }
    }

    /// Plans `spec` on `function`, as probe number `index` of the run.
    pub fn plan(&self, function: &Function, spec: &Spec, index: u32) -> anyhow::Result<Planned> {
        let convention = Convention::of(self.binary, function);
        let slots = slots(spec)?;
        let mut probe = ProbeSpec::default();
        let mut shown = Vec::new();
        for (i, (expr, want)) in slots.exprs.iter().enumerate() {
            let (arg, shown_as) = self.read(function, convention, spec.kind, expr, *want)?;
            if self.options.verbose {
                eprintln!("gotrace: {} {expr}: {arg:?} ({convention})", function.name);
            }
            probe.args[i] = arg;
            shown.push(shown_as);
        }
        for (i, (slot, op, value)) in slots.conditions.iter().enumerate() {
            probe.conditions[i] = condition(
                *slot,
                *op,
                value,
                &probe.args[*slot],
                &shown[*slot],
                &slots.exprs[*slot].0,
            )?;
        }
        probe.join = if spec.filter.as_ref().is_some_and(|f| f.any) {
            JOIN_OR
        } else {
            JOIN_AND
        };
        probe.stack = u32::from(self.options.stack);
        probe.pid = self.options.pid.unwrap_or(0);
        probe.g_from = convention.g_from(self.binary.arch());
        let (sites, moved) = self.sites(function, spec.kind, index)?;
        if let Some(Moved { clobbered, what }) = moved {
            let registers = self.binary.arch().registers();
            check_clobbered(
                &probe,
                &spec.args,
                clobbered,
                what,
                &function.name,
                registers,
            )?;
            if clobbered.contains(registers.g) && probe.g_from == G_IN_REGISTER {
                probe.g_from = G_UNKNOWN;
            }
        }
        Ok(Planned {
            spec: probe,
            shown,
            sites,
            in_body: false,
        })
    }

    /// Plans `spec` on the inlined copy `site`, as probe number `index`:
    /// its entry (or, with `r:`, every instruction control reaches when it
    /// leaves the copy), its named arguments from DWARF at the probe.
    pub fn plan_inlined(
        &self,
        site: &InlinedSite,
        spec: &Spec,
        index: u32,
    ) -> anyhow::Result<Planned> {
        let parent = self.binary.function_at(site.address).with_context(|| {
            format!(
                "{} inlined at {:#x} lies in no function",
                site.name, site.address
            )
        })?;
        let arch = self.binary.arch();
        let code = self.binary.code(parent);
        let shown_as = format!(
            "{} inlined in {} at {:#x}",
            site.name, site.caller, site.address
        );
        let (addresses, flags) = match spec.kind {
            Kind::Entry => {
                let placement = placement::site(arch, code, parent.address, site.address)
                    .with_context(|| format!("cannot trace {shown_as}"))?;
                (vec![site.address + placement.offset], placement.flags)
            }
            Kind::Return => {
                let exits = self
                    .binary
                    .inlined_exits(site)
                    .with_context(|| format!("cannot trace the returns of {shown_as}"))?;
                (exits.into_iter().map(|e| e.address).collect(), 0)
            }
        };
        let slots = slots(spec)?;
        let mut probe = ProbeSpec::default();
        let mut shown = Vec::new();
        let mut said = HashSet::new();
        for (i, (expr, want)) in slots.exprs.iter().enumerate() {
            let (arg, shown_as_slot) =
                self.read_inlined(site, addresses[0], spec.kind, expr, *want)?;
            if shown_as_slot.missing && said.insert(expr.to_string()) {
                eprintln!(
                    "gotrace: {shown_as}: DWARF gives no location for {expr} at {:#x} \
                     (the compiler kept it nowhere, or only as a constant): printed as ?",
                    addresses[0]
                );
            }
            probe.args[i] = arg;
            shown.push(shown_as_slot);
        }
        for (i, (slot, op, value)) in slots.conditions.iter().enumerate() {
            if shown[*slot].missing {
                bail!(
                    "filter on {} of {shown_as}: DWARF gives no location for it there",
                    slots.exprs[*slot].0
                );
            }
            probe.conditions[i] = condition(
                *slot,
                *op,
                value,
                &probe.args[*slot],
                &shown[*slot],
                &slots.exprs[*slot].0,
            )?;
        }
        probe.join = if spec.filter.as_ref().is_some_and(|f| f.any) {
            JOIN_OR
        } else {
            JOIN_AND
        };
        probe.stack = u32::from(self.options.stack);
        probe.pid = self.options.pid.unwrap_or(0);
        probe.g_from = Convention::of(self.binary, parent).g_from(self.binary.arch());
        if addresses.len() > usize::from(u16::MAX) {
            bail!("{shown_as} has too many ways out to trace");
        }
        let sites = addresses
            .iter()
            .enumerate()
            .map(|(n, &address)| Site {
                address,
                cookie: Cookie::at_site(index, flags, n as u16),
                describe: shown_as.clone(),
            })
            .collect();
        Ok(Planned {
            spec: probe,
            shown,
            sites,
            in_body: true,
        })
    }

    /// How to read one argument of an inlined copy at `pc`: only named
    /// arguments, located by DWARF there.
    fn read_inlined(
        &self,
        site: &InlinedSite,
        pc: u64,
        kind: Kind,
        expr: &ArgExpr,
        want: Want,
    ) -> anyhow::Result<(ArgSpec, Shown)> {
        let (name, fields) = match expr {
            ArgExpr::Named { name, fields } => (name, fields),
            ArgExpr::GoArg(_) | ArgExpr::CArg(_) => bail!(
                "{expr} has no meaning in an inlined copy of {} (its arguments are where the \
                 compiler left them, not in the ABI's places): name the parameter (DWARF)",
                site.name
            ),
            ArgExpr::Retval(_) => bail!(
                "retval has no meaning in an inlined copy of {} (nothing returns): print what \
                 the caller does with it, or trace the function where it is not inlined",
                site.name
            ),
        };
        if kind == Kind::Return {
            bail!(
                "{expr}: DWARF locates no results of inlined calls ({} inlined in {}): drop the \
                 arguments of this r: probe to see each return",
                site.name,
                site.caller
            );
        }
        if !self.binary.facts().dwarf {
            bail!(
                "{expr}: named arguments need DWARF, and {} has none (stripped?); an inlined \
                 copy has no other way to its arguments",
                self.shown_as
            );
        }
        let params = self
            .inlined_params
            .get_or_init(|| self.inlined_parameters())
            .get(&site.address)
            .with_context(|| {
                format!(
                    "{expr}: DWARF does not describe the call of {} inlined in {} at {:#x}",
                    site.name, site.caller, site.address
                )
            })?;
        let placed: Vec<(&Param, Option<named::Place>)> = params
            .iter()
            .filter(|p| !p.param.result)
            .map(|p| (&p.param, locate(self.binary, p, pc)))
            .collect();
        match named::resolve_placed(&site.name, &placed, name, fields) {
            Ok(resolved) => Ok((resolved.spec, shown_of(expr, want, resolved)?)),
            Err(named::NamedError::NoLocation(_)) => Ok((ArgSpec::default(), Shown::MISSING)),
            Err(err) => Err(err.into()),
        }
    }

    /// The parameters of every inlined copy this planner serves, at the
    /// pc of its entry probe: one pass over the DWARF.
    fn inlined_parameters(&self) -> HashMap<u64, Vec<InlinedParam>> {
        let calls: Vec<InlinedCall<'_>> = self
            .inlined
            .iter()
            .map(|site| {
                let pc = self
                    .binary
                    .place_in_function(site.address)
                    .map_or(site.address, |p| site.address + p.offset);
                InlinedCall {
                    first: site.address,
                    name: &site.name,
                    pc,
                }
            })
            .collect();
        self.binary.inlined_parameters(&calls)
    }

    /// How to read one argument expression, and how to show what was read.
    fn read(
        &self,
        function: &Function,
        convention: Convention,
        kind: Kind,
        expr: &ArgExpr,
        want: Want,
    ) -> anyhow::Result<(ArgSpec, Shown)> {
        if want == Want::Go && !matches!(expr, ArgExpr::Named { .. }) {
            bail!(
                "{expr} is a bare machine word with no Go type, which %v needs: print it with \
                 %d, %x or %s, or name the parameter (with DWARF) to print it with %v"
            );
        }
        let arch = self.binary.arch();
        let text = want == Want::Text;
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
            abi::go_argument_word(arch, convention, n).with_context(|| {
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
                    (go_string(go_word(*n)?, go_word(n + 1)?), Shown::WORD)
                } else {
                    (word(go_word(*n)?), Shown::WORD)
                }
            }
            ArgExpr::CArg(n) => {
                if kind == Kind::Return {
                    bail!("arg{n}: arguments are gone at return; use a p: probe");
                }
                let first = abi::c_argument(arch, *n);
                if text {
                    let c_string = ArgSpec {
                        kind: ARG_C_STRING,
                        first,
                        ..ArgSpec::default()
                    };
                    (c_string, Shown::WORD)
                } else {
                    (word(first), Shown::WORD)
                }
            }
            ArgExpr::Retval(n) => {
                if kind != Kind::Return {
                    bail!("retval needs a return probe: write r:{}", function.name);
                }
                let result = |n: u32| {
                    abi::result_word(arch, convention, n).with_context(|| {
                        format!(
                            "retval{n}: {} returns on the stack (ABI0), after its arguments: \
                             read the result's word of that area with goargN on this r: probe",
                            function.name
                        )
                    })
                };
                if text {
                    (go_string(result(*n)?, result(n + 1)?), Shown::WORD)
                } else {
                    (word(result(*n)?), Shown::WORD)
                }
            }
            ArgExpr::Named { name, fields } => {
                if kind == Kind::Return {
                    bail!("{expr}: named arguments are read at entry; use a p: probe");
                }
                let params = self
                    .params
                    .get_or_init(|| self.binary.parameters(&self.functions))
                    .get(&function.name)
                    .with_context(|| {
                        format!(
                            "{expr}: named arguments need DWARF, and {} has none for {} \
                             (stripped?): use goargN",
                            self.shown_as, function.name
                        )
                    })?;
                let resolved =
                    named::resolve(arch, &function.name, params, convention, name, fields)?;
                let spec = resolved.spec;
                (spec, shown_of(expr, want, resolved)?)
            }
        })
    }

    /// Entry probe (at the stack-check branch where there is one: same
    /// registers, counted once), or one probe per return for `r:`, each
    /// numbered in its cookie; and what an entry probe moved past
    /// overwrote.
    fn sites(
        &self,
        function: &Function,
        kind: Kind,
        index: u32,
    ) -> anyhow::Result<(Vec<Site>, Option<Moved>)> {
        let code = self.binary.code(function);
        let arch = self.binary.arch();
        let (addresses, flags, moved) = match kind {
            Kind::Entry => {
                let placement = placement::entry(arch, code, function.address, self.options.policy)
                    .with_context(|| format!("cannot trace {}", function.name))?;
                let moved = placement.moved_past.map(|what| Moved {
                    clobbered: placement.clobbered,
                    what,
                });
                (
                    vec![function.address + placement.offset],
                    placement.flags,
                    moved,
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
                Site {
                    address,
                    cookie: Cookie::at_site(index, flags, site as u16),
                    describe,
                }
            })
            .collect();
        Ok((sites, moved))
    }
}

/// How a named argument is shown, checking that `want` (the format's
/// conversion) suits what it is.
fn shown_of(expr: &ArgExpr, want: Want, resolved: named::Resolved) -> anyhow::Result<Shown> {
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
    Ok(Shown {
        size: resolved.size,
        signed: resolved.signed,
        shape: Some(resolved.shape),
        missing: false,
    })
}

/// Where the inlined call's argument `param` is at `pc` of `binary`, if
/// every word of it is somewhere trace can read.
pub(crate) fn locate(binary: &Binary, param: &InlinedParam, pc: u64) -> Option<named::Place> {
    // The CFA is the stack pointer before the call (above the return
    // address on x86-64).
    let registers = binary.arch().registers();
    let cfa = binary
        .sp_delta(pc)
        .map(|delta| delta + registers.call_pushes);
    let pieces = param.pieces.as_deref()?;
    place_of(pieces, &param.param.shape, cfa, registers.dwarf)
}

/// Where an inlined call's argument of `shape` is, from its DWARF pieces
/// at a pc whose canonical frame address is `cfa` bytes above the stack
/// pointer; `None` unless every word of it is in a register or the frame
/// (Go sometimes locates only the first word of a string in a register).
fn place_of(
    pieces: &[Piece],
    shape: &Shape,
    cfa: Option<u64>,
    dwarf: &[u32],
) -> Option<named::Place> {
    let location = |place: DwarfPlace| match place {
        DwarfPlace::Register(r) => dwarf.get(usize::from(r)).map(|&r| register(r)),
        DwarfPlace::Cfa(k) => {
            let offset = i64::try_from(cfa?).ok()?.checked_add(k)?;
            u32::try_from(offset).ok().map(stack)
        }
    };
    match pieces {
        [Piece {
            size: 0,
            place: Some(DwarfPlace::Cfa(k)),
        }] => {
            let offset = i64::try_from(cfa?).ok()?.checked_add(*k)?;
            Some(named::Place::Stack(u32::try_from(offset).ok()?))
        }
        _ => {
            let (words, _) = named::words(shape)?;
            if words != pieces.len() {
                return None;
            }
            pieces
                .iter()
                .map(|piece| {
                    (piece.size <= 8)
                        .then_some(piece.place)
                        .flatten()
                        .and_then(location)
                })
                .collect::<Option<Vec<u32>>>()
                .map(named::Place::Words)
        }
    }
}

/// Refuses arguments read from a register (or the stack, through the stack
/// pointer) that the instruction the entry probe moved past overwrote.
fn check_clobbered(
    probe: &ProbeSpec,
    exprs: &[ArgExpr],
    clobbered: RegisterSet,
    what: &str,
    function: &str,
    registers: &Registers,
) -> anyhow::Result<()> {
    for (i, arg) in probe.args.iter().enumerate() {
        let spoiled =
            [arg.first, arg.second]
                .into_iter()
                .any(|location| match location & LOCATION_KIND {
                    LOCATION_REGISTER => clobbered.contains(location & !LOCATION_KIND),
                    LOCATION_STACK => clobbered.contains(registers.stack_pointer),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{register, Arch};
    use gotrace_common::arch::x86_64::regs;

    fn spec(text: &str) -> Spec {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn printed_arguments_then_filter_operands() {
        let slots = slots(&spec(
            r#"main.f (goarg2 > 3 && name == "bob" && goarg1 != 0) "%d %s", goarg1, name"#,
        ))
        .unwrap();
        assert_eq!(
            slots.exprs,
            [
                (ArgExpr::GoArg(1), Want::Word),
                (
                    ArgExpr::Named {
                        name: "name".into(),
                        fields: vec![]
                    },
                    Want::Text
                ),
                (ArgExpr::GoArg(2), Want::Word),
            ]
        );
        // goarg1 and name are compared in the slots that print them.
        let compared: Vec<(usize, Op)> = slots.conditions.iter().map(|c| (c.0, c.1)).collect();
        assert_eq!(compared, [(2, Op::Gt), (1, Op::Eq), (0, Op::Ne)]);
    }

    #[test]
    fn an_operand_read_differently_gets_a_slot_of_its_own() {
        // Printed as text, compared as a number: two reads.
        let slots = slots(&spec(r#"main.f (goarg1 == 0) "%s", goarg1"#)).unwrap();
        assert_eq!(
            slots.exprs,
            [
                (ArgExpr::GoArg(1), Want::Text),
                (ArgExpr::GoArg(1), Want::Word)
            ]
        );
        assert_eq!(slots.conditions[0].0, 1);
    }

    #[test]
    fn at_most_max_args_slots() {
        let too_many = spec(
            r#"main.f (goarg7 == 1) "%d %d %d %d %d %d", goarg1, goarg2, goarg3, goarg4, goarg5, goarg6"#,
        );
        let err = slots(&too_many).unwrap_err().to_string();
        assert!(err.contains("reads 7 values"), "{err}");
    }

    #[test]
    fn conditions() {
        let word = ArgSpec {
            kind: ARG_WORD,
            first: register(regs::RAX),
            ..ArgSpec::default()
        };
        let expr = ArgExpr::GoArg(1);
        let c = condition(2, Op::Le, &FilterValue::Int(-5), &word, &Shown::WORD, &expr).unwrap();
        assert_eq!((c.arg, c.op, c.value), (2, OP_LE, -5));
        let s = condition(
            0,
            Op::Ne,
            &FilterValue::Str("GET".into()),
            &word,
            &Shown::WORD,
            &expr,
        )
        .unwrap();
        assert_eq!(
            (s.op, s.string_len, &s.string[..3]),
            (OP_STR_NE, 3, &b"GET"[..])
        );
        let small = Shown {
            size: 2,
            ..Shown::WORD
        };
        assert!(condition(0, Op::Eq, &FilterValue::Int(1), &word, &small, &expr).is_err());
        let long = FilterValue::Str("x".repeat(STRING_SIZE));
        assert!(condition(0, Op::Eq, &long, &word, &Shown::WORD, &expr).is_err());
    }

    #[test]
    fn clobbered_arguments_are_refused() {
        let mut probe = ProbeSpec::default();
        probe.args[0] = ArgSpec {
            kind: ARG_WORD,
            first: register(regs::RAX),
            ..ArgSpec::default()
        };
        probe.args[1] = ArgSpec {
            kind: ARG_WORD,
            first: register(regs::RCX),
            ..ArgSpec::default()
        };
        let exprs = [ArgExpr::GoArg(1), ArgExpr::GoArg(3)];
        let mut rax = RegisterSet::EMPTY;
        rax.insert(regs::RAX);
        let x86 = Arch::X86_64.registers();
        let err =
            check_clobbered(&probe, &exprs, rax, "`lock cmpxchg`", "main.f", x86).unwrap_err();
        assert!(err.to_string().contains("cannot read goarg1"), "{err}");
        let mut rdx = RegisterSet::EMPTY;
        rdx.insert(regs::RDX);
        assert!(check_clobbered(&probe, &exprs, rdx, "x", "main.f", x86).is_ok());
    }
}
