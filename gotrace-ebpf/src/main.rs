#![no_std]
#![no_main]

mod arch;
mod entry;
mod funccount;
mod funclatency;
mod goroutine;
mod trace;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// The programs call GPL-only helpers (bpf_probe_read_user, ...).
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
