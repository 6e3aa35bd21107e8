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

use super::pclntab::{read_uint, Pclntab, Version};

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

/// Every inlined call site of the table's functions, in address order.
/// `gofunc(offset, len)` reads `len` bytes at `offset` from `go:func.*`.
/// Tables older than Go 1.18 give none.
pub fn sites<'a>(
    table: &Pclntab<'a>,
    gofunc: impl Fn(u64, usize) -> Option<&'a [u8]>,
) -> Vec<InlinedSite> {
    let entry_size = match table.version {
        Version::Go118 => 20,
        Version::Go120 => 16,
        Version::Go12 | Version::Go116 => return Vec::new(),
    };
    let mut sites = Vec::new();
    for function in table.functions() {
        let Some(record) = table.record(&function) else {
            continue;
        };
        let (Some(index_table), Some(tree)) = (
            record.pcdata(PCDATA_INL_TREE_INDEX),
            record.funcdata(FUNCDATA_INL_TREE),
        ) else {
            continue;
        };
        let ranges: Vec<(u64, u64, i32)> = table
            .pc_values(index_table, function.entry)
            .into_iter()
            .filter(|&(start, end, _)| start < end && end <= function.end)
            .collect();
        let Some(count) = ranges.iter().map(|r| r.2).max().filter(|&m| m >= 0) else {
            continue;
        };
        let count = count as usize + 1;
        let Some(bytes) = gofunc(u64::from(tree), count * entry_size) else {
            continue;
        };
        let index_at = |pc: u64| {
            ranges
                .iter()
                .find(|&&(start, end, _)| start <= pc && pc < end)
                .map_or(-1, |r| r.2)
        };
        let entries: Vec<(Option<&str>, i32)> = (0..count)
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
        // The first instruction of each inlined call: the lowest pc owned by
        // it or by anything inlined into it.
        let mut first: BTreeMap<usize, u64> = BTreeMap::new();
        for &(start, _, index) in &ranges {
            let mut at = index;
            // Parents precede children in the tree; the bound stops cycles
            // in a corrupt table.
            for _ in 0..count {
                let Ok(i) = usize::try_from(at) else { break };
                let Some(&(_, parent)) = entries.get(i) else {
                    break;
                };
                first
                    .entry(i)
                    .and_modify(|pc| *pc = (*pc).min(start))
                    .or_insert(start);
                at = parent;
            }
        }
        for (i, address) in first {
            if let Some(name) = entries[i].0 {
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
