//! The funclatency tool's user side, apart from its command line: what is
//! timed and where its probes go (`plan`), and reading the kernel's
//! histograms back (`maps`).

pub mod maps;
pub mod plan;
