//! x86-64: the kernel's uprobe rules (`uprobes`), where probes go in
//! machine code (`placement`), and the calling conventions' registers
//! (`abi`).

pub mod abi;
pub mod placement;
pub mod uprobes;
