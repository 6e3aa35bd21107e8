//! The overhead budget: every probe hit is counted per row and per cost
//! kind, so that `gotrace-cli` can estimate what its probes cost the
//! traced programs, and rows can be taken out of the kernel's path without
//! a gap or a double count while their binary's links are rebuilt.
//!
//! A binary's probes are replaced by attaching the new link (its cookies
//! carrying the other generation, [`crate::probe::Cookie::FLAG_GENERATION`])
//! before dropping the old one; each row's [`ROW_STATE_MAP`] entry says
//! which generation counts, so for every row exactly one link's hits count
//! at any moment.

/// Per-CPU array of `u64` hits, index `row * 2 + kind` (`kind` 1 for a
/// probe the kernel single-steps, 0 for one it emulates: the cookie's
/// `FLAG_SINGLE_STEPPED`). Written by every uprobe program; read by
/// `gotrace-cli`, which sizes it to twice the rows.
pub const HITS_MAP: &str = "PROBE_HITS";

/// Array of `u32` per row: [`ROW_GENERATION`] and [`ROW_DETACHED`] bits.
/// Written by `gotrace-cli` as it rebuilds links; read by every uprobe
/// program, which ignores hits of the other generation and of detached
/// rows.
pub const ROW_STATE_MAP: &str = "ROW_STATE";

/// Bit of a [`ROW_STATE_MAP`] entry: the generation whose probes count.
pub const ROW_GENERATION: u32 = 1;

/// Bit of a [`ROW_STATE_MAP`] entry: the row was taken out for the budget.
pub const ROW_DETACHED: u32 = 2;
