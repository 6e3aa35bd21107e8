//! gotrace: bcc-style tracing tools for Go programs, built on eBPF uprobes.
//!
//! The `gotrace` binary (`main.rs`) only parses its command line and runs
//! one of [`cmd`]; everything else lives here so that the fuzz targets
//! (`fuzz/`) can reach the parsers of untrusted input: probe specs, format
//! strings, filters, ELF files, pclntab and build info.

pub mod abi;
pub mod arch;
pub mod attach;
pub mod budget;
pub mod cmd;
pub mod ebpf;
pub mod exporter;
pub mod host;
pub mod kernel;
pub mod latency;
pub mod output;
pub mod privilege;
pub mod probe;
pub mod process;
pub mod stop;
pub mod symbols;
pub mod trace;
