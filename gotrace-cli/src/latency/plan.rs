//! What funclatency times, and where its probes go: for each selected
//! function its out-of-line code (entry probe placed as funccount places
//! it, exit probes on every `ret` and tail jump) and its inlined copies
//! (entry on a copy's first instruction, exits on every instruction
//! control reaches when it leaves the copy), each a row of `-F`.

use gotrace_common::{probe::Cookie, trace::G_IN_TLS};

use crate::{
    abi::Convention,
    attach::placement::{self, Placement},
    cmd::select::Selected,
    symbols::{inline::InlinedSite, Binary, Function},
};

/// One probe site: link-time address, cookie flags, and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub address: u64,
    pub flags: u32,
    /// With `Cookie::FLAG_FRAME_ADJUST`: how much higher the stack pointer
    /// is here than at the entry.
    pub adjust: u16,
    pub describe: String,
}

/// One row of funclatency: a function's out-of-line calls, or the calls
/// of its inlined copies; every probe of it carries its index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timed {
    /// The row's name: the function's, marked `[inlined xN]` for copies.
    pub label: String,
    /// The function's own name.
    pub function: String,
    /// Calls of inlined copies (else out-of-line calls).
    pub inlined: bool,
    pub entries: Vec<Site>,
    pub exits: Vec<Site>,
}

/// What can be timed of `selected`, and why the rest cannot (one reason
/// per function or copy). Functions that find g in thread-local storage
/// need the kernel's task layout: `tls()` says whether it is known, or why
/// not.
pub fn timeable(
    binary: &Binary,
    selected: &[Selected<'_>],
    tls: &dyn Fn() -> Result<(), String>,
) -> (Vec<Timed>, Vec<String>) {
    let mut timed = Vec::new();
    let mut skipped = Vec::new();
    for s in selected {
        if let Some(function) = s.function {
            match out_of_line(binary, function, tls) {
                Ok(t) => timed.push(t),
                Err(why) => skipped.push(format!("{} ({why})", function.name)),
            }
        }
        let mut entries = Vec::new();
        let mut exits = Vec::new();
        for site in &s.inlined {
            match inlined_copy(binary, site) {
                Ok((entry, ends)) => {
                    entries.push(entry);
                    exits.extend(ends);
                }
                Err(why) => skipped.push(format!(
                    "{} inlined in {} at {:#x} ({why})",
                    site.name, site.caller, site.address
                )),
            }
        }
        if !entries.is_empty() {
            timed.push(Timed {
                label: format!("{} [inlined x{}]", s.name, entries.len()),
                function: s.name.to_owned(),
                inlined: true,
                entries,
                exits,
            });
        }
    }
    (timed, skipped)
}

/// The out-of-line code of `function`: entry and every way out.
pub(crate) fn out_of_line(
    binary: &Binary,
    function: &Function,
    tls: &dyn Fn() -> Result<(), String>,
) -> Result<Timed, String> {
    // x86-64 ABI0 assembly (and pre-1.17 code) does not keep g in R14;
    // the kernel's task layout says where the thread's g is instead.
    let g_flags = if Convention::of(binary, function).g_from(binary.arch()) == G_IN_TLS {
        tls().map_err(|why| {
            format!("ABI0: its goroutine is found through the thread's FS base, and {why}")
        })?;
        Cookie::FLAG_G_IN_TLS
    } else {
        0
    };
    let arch = binary.arch();
    let code = binary.code(function);
    let entry = placement::entry(arch, code, function.address, placement::Policy::Cheapest)
        .map_err(|why| why.to_string())?;
    keys_intact(binary, &entry)?;
    let exits: Vec<Site> = placement::exits(arch, code, function.address)
        .into_iter()
        .map(|exit| Site {
            address: exit.address,
            flags: g_flags,
            adjust: 0,
            describe: format!(
                "{} (return at +{:#x})",
                function.name,
                exit.address - function.address
            ),
        })
        .collect();
    if exits.is_empty() {
        return Err("never returns: no ret".to_owned());
    }
    Ok(Timed {
        label: function.name.clone(),
        function: function.name.clone(),
        inlined: false,
        entries: vec![Site {
            address: function.address + entry.offset,
            flags: entry.flags | g_flags,
            adjust: 0,
            describe: format!("{} ({})", function.name, entry.describe()),
        }],
        exits,
    })
}

/// An inlined copy: the probe on its first instruction, and one on each
/// instruction control reaches when it leaves the copy.
pub(crate) fn inlined_copy(
    binary: &Binary,
    site: &InlinedSite,
) -> Result<(Site, Vec<Site>), String> {
    let entry = binary
        .place_in_function(site.address)
        .map_err(|why| why.to_string())?;
    keys_intact(binary, &entry)?;
    let exits = binary.inlined_exits(site).map_err(|why| why.to_string())?;
    let describe = format!("{} (inlined in {})", site.name, site.caller);
    // The frame the function has set up where the copy begins; where it
    // ends the stack pointer may be higher (a return from inside the copy).
    let entry_delta = binary.sp_delta(site.address + entry.offset);
    let ends = exits
        .into_iter()
        .map(|exit| {
            let adjust = match (entry_delta, binary.sp_delta(exit.address)) {
                (Some(entry), Some(here)) => entry.checked_sub(here),
                _ => None,
            }
            .ok_or_else(|| format!("the stack pointer at {:#x} is unknown", exit.address))?;
            let adjust = u16::try_from(adjust).map_err(|_| {
                format!("its function's frame is over 64 KiB at {:#x}", exit.address)
            })?;
            Ok(Site {
                address: exit.address,
                flags: if adjust == 0 {
                    0
                } else {
                    Cookie::FLAG_FRAME_ADJUST
                },
                adjust,
                describe: format!("{describe}, left at {:#x}", exit.address),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((
        Site {
            address: site.address + entry.offset,
            flags: entry.flags,
            adjust: 0,
            describe,
        },
        ends,
    ))
}

/// An entry probe names its call by R14's goroutine and the stack pointer
/// (or the stack pointer alone, for gccgo): an instruction it moved past
/// must not have changed them.
fn keys_intact(binary: &Binary, entry: &Placement) -> Result<(), String> {
    let registers = binary.arch().registers();
    if entry.clobbered.contains(registers.g) || entry.clobbered.contains(registers.stack_pointer) {
        return Err(format!(
            "its entry probe had to move past {}, which changes the registers that name the call",
            entry.moved_past.unwrap_or("an instruction")
        ));
    }
    Ok(())
}

/// The cookie of a probe of row `index`, with `flags` of its binary's.
pub fn cookie(index: u32, site: &Site, flags: u32) -> Cookie {
    Cookie::at_site(index, site.flags | flags, site.adjust)
}
