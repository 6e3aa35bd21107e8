//! What each tool can do with each copy of a function (its out-of-line
//! code, and every copy the compiler inlined): count it (funccount), time
//! it (funclatency), trace it with its arguments (trace), and why not.
//! `gotrace info --match FUNC` prints it.

use std::collections::HashMap;

use crate::{
    attach::placement::{self, Policy},
    cmd::select::Selected,
    latency::plan as latency,
    symbols::{
        dwarf::{InlinedCall, InlinedParam},
        inline::InlinedSite,
        Binary, Function,
    },
};

/// One copy of a function.
#[derive(Debug)]
pub struct Copy {
    /// Its first instruction.
    pub address: u64,
    /// The function it is inlined into (`None`: the out-of-line code).
    pub inlined_in: Option<String>,
    /// Whether funccount can count it, or why not.
    pub count: Result<(), String>,
    /// Whether funclatency can time it, or why not.
    pub time: Result<(), String>,
    /// Whether trace can probe it, or why not; with its arguments and
    /// whether trace can read each (from DWARF; bare words otherwise).
    pub trace: Result<Vec<(String, bool)>, String>,
}

/// Every copy of one function.
#[derive(Debug)]
pub struct Report {
    pub function: String,
    pub copies: Vec<Copy>,
}

/// The reports of `selected` in `binary`.
pub fn report(binary: &Binary, selected: &[Selected<'_>]) -> Vec<Report> {
    let functions: Vec<&str> = selected
        .iter()
        .filter_map(|s| s.function.map(|f| f.name.as_str()))
        .collect();
    let params = binary.parameters(&functions);
    let calls: Vec<InlinedCall<'_>> = selected
        .iter()
        .flat_map(|s| &s.inlined)
        .map(|site| InlinedCall {
            first: site.address,
            name: &site.name,
            pc: binary
                .place_in_function(site.address)
                .map_or(site.address, |p| site.address + p.offset),
        })
        .collect();
    let inlined_params = if binary.facts().dwarf {
        binary.inlined_parameters(&calls)
    } else {
        HashMap::new()
    };
    // Assembly functions need the kernel's layout to be timed: assume it
    // is known, as it is on every kernel with BTF.
    let tls = || Ok(());
    selected
        .iter()
        .map(|s| Report {
            function: s.name.to_owned(),
            copies: s
                .function
                .map(|f| out_of_line(binary, f, params.get(&f.name), &tls))
                .into_iter()
                .chain(
                    s.inlined
                        .iter()
                        .map(|site| inlined(binary, site, inlined_params.get(&site.address))),
                )
                .collect(),
        })
        .collect()
}

fn out_of_line(
    binary: &Binary,
    f: &Function,
    params: Option<&Vec<crate::symbols::dwarf::Param>>,
    tls: &dyn Fn() -> Result<(), String>,
) -> Copy {
    let entry = placement::entry(binary.arch(), binary.code(f), f.address, Policy::Cheapest)
        .map(drop)
        .map_err(|why| why.to_string());
    Copy {
        address: f.address,
        inlined_in: None,
        count: entry.clone(),
        time: latency::out_of_line(binary, f, tls).map(drop),
        trace: entry.map(|()| {
            params
                .map(|ps| {
                    ps.iter()
                        .filter(|p| !p.result)
                        .map(|p| (p.name.clone(), true))
                        .collect()
                })
                .unwrap_or_default()
        }),
    }
}

fn inlined(binary: &Binary, site: &InlinedSite, params: Option<&Vec<InlinedParam>>) -> Copy {
    let placed = binary.place_in_function(site.address);
    let pc = placed
        .as_ref()
        .map_or(site.address, |p| site.address + p.offset);
    let entry = placed.map(drop).map_err(|why| why.to_string());
    Copy {
        address: site.address,
        inlined_in: Some(site.caller.clone()),
        count: entry.clone(),
        time: latency::inlined_copy(binary, site).map(drop),
        trace: entry.map(|()| {
            params
                .map(|ps| {
                    ps.iter()
                        .filter(|p| !p.param.result)
                        .map(|p| {
                            let readable = crate::trace::plan::locate(binary, p, pc).is_some();
                            (p.param.name.clone(), readable)
                        })
                        .collect()
                })
                .unwrap_or_default()
        }),
    }
}

impl Copy {
    /// One line: where it is, then each tool's answer.
    pub fn describe(&self) -> String {
        let place = match &self.inlined_in {
            None => format!("out-of-line at {:#x}", self.address),
            Some(caller) => format!("inlined in {caller} at {:#x}", self.address),
        };
        let answer = |r: &Result<(), String>| match r {
            Ok(()) => "yes".to_owned(),
            Err(why) => format!("no ({why})"),
        };
        let trace = match &self.trace {
            Ok(args) if args.is_empty() => "yes".to_owned(),
            Ok(args) => format!(
                "yes, arguments {}",
                args.iter()
                    .map(|(name, read)| if *read {
                        name.clone()
                    } else {
                        format!("{name} (?)")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Err(why) => format!("no ({why})"),
        };
        format!(
            "{place}: funccount {}; funclatency {}; trace {trace}",
            answer(&self.count),
            answer(&self.time)
        )
    }

    /// The same as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let answer = |r: &Result<(), String>| match r {
            Ok(()) => serde_json::json!({"can": true}),
            Err(why) => serde_json::json!({"can": false, "why": why}),
        };
        serde_json::json!({
            "address": self.address,
            "inlined_in": self.inlined_in,
            "funccount": answer(&self.count),
            "funclatency": answer(&self.time),
            "trace": match &self.trace {
                Ok(args) => serde_json::json!({
                    "can": true,
                    "arguments": args
                        .iter()
                        .map(|(name, read)| serde_json::json!({"name": name, "readable": read}))
                        .collect::<Vec<_>>(),
                }),
                Err(why) => serde_json::json!({"can": false, "why": why}),
            },
        })
    }
}
