//! Where the compiler inlined functions: the pclntab's inline trees.
//!
//! A gc function with inlined calls has a pc-value table
//! (`PCDATA_InlTreeIndex`) saying, for each range of its code, which entry
//! of its inline tree (`FUNCDATA_InlTree`, in `go:func.*`) the code belongs
//! to: -1 for the function's own code, else the innermost inlined call.
//! Each tree entry names the inlined function and a pc of its caller
//! (`parentPc`), whose own tree index gives the entry's parent.
//!
//! An inlined call's first instruction is the lowest pc of the ranges that
//! belong to it or to calls inlined into it; a probe there counts the call.
//! Layouts (`runtime/symtabinl.go`, `runtime/symtab.go` of Go 1.19):
//! Go 1.20+: `{funcID u8, _ [3]u8, nameOff i32, parentPc i32, startLine i32}`;
//! Go 1.18-1.19: `{parent i16, funcID u8, _ u8, file i32, line i32,
//! nameOff i32, parentPc i32}`.

use std::collections::BTreeMap;

use super::{
    image::Image,
    pclntab::{read_uint, PcFunc, Pclntab, Version},
};

const PCDATA_INL_TREE_INDEX: usize = 2;
const FUNCDATA_INL_TREE: usize = 3;

/// One inlined call site with code of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InlinedSite {
    /// The function that was inlined (`fmt.Println`).
    pub name: String,
    /// The function its code now lives in (`main.main`).
    pub caller: String,
    /// Address of the first instruction of the inlined body.
    pub address: u64,
}

/// One function's inline tree: its code ranges with their tree index,
/// and each tree entry's inlined function name and parent index.
struct Tree<'a> {
    ranges: Vec<(u64, u64, i32)>,
    entries: Vec<(Option<&'a str>, i32)>,
}

impl<'a> Tree<'a> {
    /// The tree of `function`, if it has inlined calls (Go 1.18+ tables),
    /// whose entries are in `image` at `gofunc` (`go:func.*`) plus the
    /// funcdata's offset.
    fn of(
        table: &Pclntab<'a>,
        function: &PcFunc<'a>,
        image: &Image<'_>,
        gofunc: u64,
    ) -> Option<Tree<'a>> {
        let entry_size = match table.version {
            Version::Go118 => 20,
            Version::Go120 => 16,
            Version::Go12 | Version::Go116 => return None,
        };
        let record = table.record(function)?;
        let index_table = record.pcdata(PCDATA_INL_TREE_INDEX)?;
        let tree = record.funcdata(FUNCDATA_INL_TREE)?;
        let ranges: Vec<(u64, u64, i32)> = table
            .pc_values(index_table, function.entry)
            .into_iter()
            .filter(|&(start, end, _)| start < end && end <= function.end)
            .collect();
        let count = ranges.iter().map(|r| r.2).max().filter(|&m| m >= 0)? as usize + 1;
        let bytes = image.bytes_at(gofunc.checked_add(u64::from(tree))?, count * entry_size)?;
        let index_at = |pc: u64| {
            ranges
                .iter()
                .find(|&&(start, end, _)| start <= pc && pc < end)
                .map_or(-1, |r| r.2)
        };
        let entries = (0..count)
            .map(|i| {
                let e = &bytes[i * entry_size..(i + 1) * entry_size];
                let int = |at: usize| read_uint(e, at, 4).map_or(-1, |v| v as u32 as i32);
                match table.version {
                    Version::Go118 => {
                        let parent = i16::from_le_bytes([e[0], e[1]]);
                        (table.name(int(12)), i32::from(parent))
                    }
                    _ => {
                        let parent_pc = int(8);
                        let parent = u64::try_from(parent_pc)
                            .ok()
                            .and_then(|d| function.entry.checked_add(d))
                            .map_or(-1, index_at);
                        (table.name(int(4)), parent)
                    }
                }
            })
            .collect();
        Some(Tree { ranges, entries })
    }

    /// Tree index `at` and its ancestors, innermost first. Parents precede
    /// children in a tree; the bound stops cycles in a corrupt table.
    fn chain(&self, mut at: i32) -> impl Iterator<Item = usize> + '_ {
        std::iter::from_fn(move || {
            let i = usize::try_from(at).ok()?;
            at = self.entries.get(i)?.1;
            Some(i)
        })
        .take(self.entries.len())
    }
}

/// Every inlined call site of the table's functions, in address order;
/// the trees are in `image` at `gofunc` (`go:func.*`). Tables older than
/// Go 1.18 give none.
pub fn sites(table: &Pclntab<'_>, image: &Image<'_>, gofunc: u64) -> Vec<InlinedSite> {
    let mut sites = Vec::new();
    for function in table.functions() {
        let Some(tree) = Tree::of(table, &function, image, gofunc) else {
            continue;
        };
        // The first instruction of each inlined call: the lowest pc owned by
        // it or by anything inlined into it.
        let mut first: BTreeMap<usize, u64> = BTreeMap::new();
        for &(start, _, index) in &tree.ranges {
            for i in tree.chain(index) {
                first
                    .entry(i)
                    .and_modify(|pc| *pc = (*pc).min(start))
                    .or_insert(start);
            }
        }
        for (i, address) in first {
            if let Some(name) = tree.entries[i].0 {
                sites.push(InlinedSite {
                    name: name.to_owned(),
                    caller: function.name.to_owned(),
                    address,
                });
            }
        }
    }
    sites.sort_by_key(|s| s.address);
    sites
}

/// The code of the inlined call `site` (its ranges, and those of calls
/// inlined into it), sorted and merged; `None` if `site` is not found.
pub fn body(
    table: &Pclntab<'_>,
    image: &Image<'_>,
    gofunc: u64,
    site: &InlinedSite,
) -> Option<Vec<(u64, u64)>> {
    let function = table.function_containing(site.address)?;
    let tree = Tree::of(table, &function, image, gofunc)?;
    let owns = |index: i32, i: usize| tree.chain(index).any(|j| j == i);
    let i = (0..tree.entries.len()).find(|&i| {
        tree.entries[i].0 == Some(site.name.as_str())
            && tree
                .ranges
                .iter()
                .filter(|r| owns(r.2, i))
                .map(|r| r.0)
                .min()
                == Some(site.address)
    })?;
    let mut ranges: Vec<(u64, u64)> = tree
        .ranges
        .iter()
        .filter(|r| owns(r.2, i))
        .map(|r| (r.0, r.1))
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    Some(merged)
}

/// The calls inlined at `pc`, innermost first, then the function that
/// holds the code: the frames a stack walk sees as one.
pub fn frames_at<'a>(table: &Pclntab<'a>, image: &Image<'_>, gofunc: u64, pc: u64) -> Vec<&'a str> {
    let Some(function) = table.function_containing(pc) else {
        return Vec::new();
    };
    let mut frames = Vec::new();
    if let Some(tree) = Tree::of(table, &function, image, gofunc) {
        let index = tree
            .ranges
            .iter()
            .find(|&&(start, end, _)| start <= pc && pc < end)
            .map_or(-1, |r| r.2);
        frames.extend(tree.chain(index).filter_map(|i| tree.entries[i].0));
    }
    frames.push(function.name);
    frames
}
