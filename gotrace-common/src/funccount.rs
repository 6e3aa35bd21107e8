//! `gotrace funccount`: one counter per traced function, counted in the kernel.

/// Name of the uprobe program that counts calls.
///
/// Written by `gotrace-ebpf` (the `#[uprobe]` function name); read by
/// `gotrace-cli` to find the program in the loaded object.
pub const PROGRAM: &str = "funccount";

/// Name of the per-CPU array that holds one `u64` call count per function.
///
/// The index is [`Cookie::function`] of the probe that fired. Written by the
/// `funccount` program; read (summed over CPUs) and cleared by `gotrace-cli`,
/// which also sizes it to the number of traced functions before load.
pub const COUNTS_MAP: &str = "FUNCCOUNT_COUNTS";

/// Capacity the kernel object declares for [`COUNTS_MAP`]; `gotrace-cli`
/// resizes the map to the real number of functions before loading.
pub const DEFAULT_MAX_FUNCTIONS: u32 = 1;

/// Per-CPU hash of `probe::ProcessKey` -> `u64` calls, kept besides
/// [`COUNTS_MAP`] when `probe::BY_PROCESS` is set. Written by the
/// `funccount` program; read by `gotrace-cli`, which sizes it
/// ([`MAX_PROCESS_ROWS`]). Entries are never removed: exported counters
/// must not go backwards.
pub const BY_PROCESS_MAP: &str = "FUNCCOUNT_BY_PROCESS";

/// Capacity of [`BY_PROCESS_MAP`]: (function, process) pairs; calls of
/// pairs beyond it are counted only in [`COUNTS_MAP`].
pub const MAX_PROCESS_ROWS: u32 = 1 << 16;
