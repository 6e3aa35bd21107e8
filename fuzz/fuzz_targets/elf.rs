//! Whole files as `gotrace` opens them: ELF headers, segments, symbol
//! tables, pclntab and moduledata discovery, build info, DWARF.
#![no_main]

use gotrace_cli::symbols::Binary;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(binary) = Binary::parse(data) {
        let _ = binary.goid_offset();
        let _ = binary.toolchain();
        let _ = binary.inlined().len();
        let names: Vec<&str> = binary
            .functions()
            .iter()
            .take(64)
            .map(|f| f.name.as_str())
            .collect();
        let _ = binary.parameters(&names);
        for function in binary.functions().iter().take(64) {
            let _ = binary.code(function);
            let _ = binary.function_at(function.address);
            let _ = binary.frames_at(function.address);
            // Interfaces' type pointers come from the traced process: any
            // address at all.
            let _ = binary.go_type(function.address);
        }
    }
});
