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
