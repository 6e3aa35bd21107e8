#![no_std]
#![no_main]

mod arch;
mod budget;
mod entry;
mod exec;
mod funccount;
mod funclatency;
mod goroutine;
mod scope;
mod trace;

// Set by gotrace-cli before load: `gotrace_common::probe::BY_PROCESS`.
#[unsafe(no_mangle)]
static BY_PROCESS: u64 = 0;

// `gotrace_common::probe::PROCESS_NAMES_MAP`, sized by gotrace-cli.
#[aya_ebpf::macros::map]
static PROCESS_NAMES: aya_ebpf::maps::HashMap<u32, [u8; 16]> =
    aya_ebpf::maps::HashMap::with_max_entries(1, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// Remembers the running process's name for the `comm` label, when it
/// makes its first per-process entry.
#[inline(always)]
fn note_process_name(pid: u32) {
    if let Ok(comm) = aya_ebpf::helpers::bpf_get_current_comm() {
        let _ = PROCESS_NAMES.insert(pid, comm, 0);
    }
}

/// Whether funccount and funclatency keep their figures per process too
/// (`--labels`).
#[inline(always)]
fn by_process() -> bool {
    // SAFETY: a plain constant the loader filled in.
    unsafe { core::ptr::read_volatile(&BY_PROCESS) != 0 }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// The programs call GPL-only helpers (bpf_probe_read_user, ...).
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
