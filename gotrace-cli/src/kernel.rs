//! What gotrace needs to know about the running kernel's own layout, read
//! from its BTF (`/sys/kernel/btf/vmlinux`) instead of assumed.

use anyhow::{bail, Context as _};
use btf_rs::{Btf, Struct, Type};

const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Byte offset of `thread.fsbase` in `struct task_struct`: where the
/// kernel keeps a thread's FS base, below which Go keeps `g`.
pub fn fsbase_offset() -> anyhow::Result<u64> {
    // One read and a parse from memory: Btf::from_file reads the file in
    // small pieces and takes half as long again (150 ms against 100 ms here).
    let bytes = std::fs::read(VMLINUX_BTF)
        .with_context(|| format!("reading the kernel's BTF ({VMLINUX_BTF})"))?;
    let btf = Btf::from_bytes(&bytes)
        .with_context(|| format!("parsing the kernel's BTF ({VMLINUX_BTF})"))?;
    let task = structure(&btf, "task_struct")?;
    let (thread_bits, thread) = member(&btf, &task, "thread")?;
    let Type::Struct(thread) = thread else {
        bail!("task_struct.thread is not a struct in {VMLINUX_BTF}");
    };
    let (fsbase_bits, _) = member(&btf, &thread, "fsbase")?;
    Ok((thread_bits + fsbase_bits) / 8)
}

fn structure(btf: &Btf, name: &str) -> anyhow::Result<Struct> {
    btf.resolve_types_by_name(name)
        .with_context(|| format!("looking up {name} in {VMLINUX_BTF}"))?
        .into_iter()
        .find_map(|t| match t {
            Type::Struct(s) => Some(s),
            _ => None,
        })
        .with_context(|| format!("no struct {name} in {VMLINUX_BTF}"))
}

/// The bit offset and type of member `name` of `structure`.
fn member(btf: &Btf, structure: &Struct, name: &str) -> anyhow::Result<(u64, Type)> {
    for m in &structure.members {
        if btf.resolve_name(m).is_ok_and(|n| n == name) {
            let ty = btf
                .resolve_chained_type(m)
                .with_context(|| format!("resolving the type of {name}"))?;
            return Ok((u64::from(m.bit_offset()), ty));
        }
    }
    bail!("no member {name} in the kernel's {VMLINUX_BTF}")
}
