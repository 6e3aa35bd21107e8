//! Whole files as `gotrace` opens them: ELF headers, segments, symbol
//! tables, pclntab and moduledata discovery, build info, DWARF.
#![no_main]

use std::io::Write as _;

use gotrace_cli::symbols::Binary;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Binary maps a path, as gotrace does; a tmpfs file keeps that cheap.
    let dir = std::env::temp_dir();
    let path = dir.join(format!("gotrace-fuzz-elf-{}", std::process::id()));
    let written = std::fs::File::create(&path).and_then(|mut f| f.write_all(data));
    if written.is_err() {
        return;
    }
    if let Ok(binary) = Binary::open(&path) {
        let _ = binary.goid_offset();
        let _ = binary.toolchain();
        let _ = binary.inlined().len();
        for function in binary.functions().iter().take(64) {
            let _ = binary.code(function);
            let _ = binary.parameters(&function.name);
            let _ = binary.function_at(function.address);
            let _ = binary.frames_at(function.address);
            // Interfaces' type pointers come from the traced process: any
            // address at all.
            let _ = binary.go_type(function.address);
        }
    }
    let _ = std::fs::remove_file(&path);
});
