//! One `BPF_TRACE_UPROBE_MULTI` link for every probe site of a binary.
//!
//! aya 0.14 loads uprobe programs without an expected attach type and has no
//! uprobe_multi link, so this module does both with two raw `bpf(2)` calls.
//! It reuses aya for everything else: aya has created the maps; the object is
//! parsed, its BTF fixed up and its map references relocated by `aya-obj`,
//! exactly as aya does it, only with the program loaded as
//! `BPF_TRACE_UPROBE_MULTI`. The BTF and the function/line info go along
//! because the kernel requires them for the `bpf_loop` callback of trace.
//!
//! Why bother: a perf-event uprobe per site costs a syscall pair to attach
//! and an RCU grace period to detach (1,300 probes took minutes to detach),
//! where one multi link attaches all sites in one call and detaches them in
//! one synchronisation.

use std::{
    collections::HashSet,
    ffi::CString,
    io,
    os::{
        fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd, RawFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

use anyhow::{anyhow, Context as _};
use aya::{maps::Map, Ebpf};
use aya_obj::btf::BtfFeatures;
use aya_obj::generated::{
    bpf_attach_type::BPF_TRACE_UPROBE_MULTI, bpf_attr, bpf_cmd, bpf_prog_type::BPF_PROG_TYPE_KPROBE,
};

use super::Site;

/// Attaches `program` (loaded by [`load`]) to all `sites` of `target`
/// through one link, which detaches every site at once when dropped. The
/// error is the kernel's, for the caller to tell a refused site from
/// anything else.
pub fn link(
    program: BorrowedFd<'_>,
    target: &Path,
    sites: &[Site],
    pid: Option<u32>,
) -> io::Result<OwnedFd> {
    let path = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let offsets: Vec<u64> = sites.iter().map(|s| s.file_offset).collect();
    let cookies: Vec<u64> = sites.iter().map(|s| s.cookie).collect();
    let count =
        u32::try_from(sites.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    create_link(program, &path, &offsets, &cookies, count, pid.unwrap_or(0))
}

/// `BPF_LINK_CREATE` of a uprobe_multi link; the slices outlive the call.
fn create_link(
    program: BorrowedFd<'_>,
    path: &CString,
    offsets: &[u64],
    cookies: &[u64],
    count: u32,
    pid: u32,
) -> io::Result<OwnedFd> {
    // SAFETY: bpf_attr is a plain C union; all-zero is its documented default.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing the link_create member of a zeroed union; the pointers
    // stay valid for the duration of the syscall.
    unsafe {
        let create = &mut attr.link_create;
        create.__bindgen_anon_1.prog_fd = program.as_raw_fd() as u32;
        create.attach_type = BPF_TRACE_UPROBE_MULTI as u32;
        let multi = &mut create.__bindgen_anon_3.uprobe_multi;
        multi.path = path.as_ptr() as u64;
        multi.offsets = offsets.as_ptr() as u64;
        multi.cookies = if cookies.is_empty() {
            0
        } else {
            cookies.as_ptr() as u64
        };
        multi.cnt = count;
        multi.pid = pid;
    }
    bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr)
}

/// Whether this kernel has uprobe_multi links (6.6+), asked once per run
/// as libbpf and bpftrace do: a trivial program loaded for them, then a
/// link on `/`, which a kernel that has them refuses with EBADF (not a
/// regular file) and one that has not with EINVAL.
pub fn supported() -> Result<(), String> {
    // r0 = 0; exit
    let instructions: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    // SAFETY: as above, a zeroed plain C union.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing the prog-load member; pointers outlive the syscall.
    unsafe {
        let load = &mut attr.__bindgen_anon_3;
        load.prog_type = BPF_PROG_TYPE_KPROBE as u32;
        load.expected_attach_type = BPF_TRACE_UPROBE_MULTI as u32;
        load.insns = instructions.as_ptr() as u64;
        load.insn_cnt = instructions.len() as u32;
        load.license = license.as_ptr() as u64;
    }
    let program = bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr)
        .map_err(|err| format!("the kernel cannot load uprobe_multi programs ({err})"))?;
    let root = CString::new("/").expect("no NUL");
    match create_link(program.as_fd(), &root, &[0], &[], 1, 0) {
        Err(err) if err.raw_os_error() == Some(libc::EBADF) => Ok(()),
        Err(err) => Err(format!("the kernel has no uprobe_multi links ({err})")),
        Ok(_) => Err("the kernel accepted a uprobe_multi link on / (unexpected)".to_owned()),
    }
}

/// Relocates and loads `name` as a `BPF_TRACE_UPROBE_MULTI` program, with
/// the maps `ebpf` created from the same `object`.
pub fn load(ebpf: &Ebpf, object: &[u8], name: &str) -> anyhow::Result<OwnedFd> {
    let mut obj = aya_obj::Object::parse(object).context("parsing gotrace's eBPF object")?;
    let text_sections: HashSet<usize> = obj.functions.keys().map(|(section, _)| *section).collect();
    let map_objects = obj.maps.clone();
    let map_fds = ebpf
        .maps()
        .map(|(map_name, map)| {
            let object = map_objects
                .get(map_name)
                .ok_or_else(|| anyhow!("map {map_name} missing from the object"))?;
            Ok((map_name, map_fd(map)?, object))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // A map taken out of `ebpf` would leave its references unrelocated,
    // pointing the program at another map.
    if let Some(taken) = map_objects
        .keys()
        .find(|name| !map_fds.iter().any(|(n, _, _)| n == name))
    {
        anyhow::bail!("map {taken} was taken out of the object before {name} was loaded");
    }
    // The kernel wants the object's BTF and per-function info for programs
    // with callbacks (bpf_loop). Every kernel with uprobe_multi (6.6+) has
    // all the BTF features aya would otherwise probe for.
    let features = BtfFeatures::new(true, true, true, true, true, true, true, true);
    let btf = match obj
        .fixup_and_sanitize_btf(&features)
        .context("preparing the object's BTF")?
    {
        Some(btf) => Some(load_btf(&btf.to_bytes())?),
        None => None,
    };
    obj.relocate_maps(map_fds.into_iter(), &text_sections)
        .context("relocating map references")?;
    obj.relocate_calls(&text_sections)
        .context("relocating calls")?;
    let program = obj
        .programs
        .get(name)
        .with_context(|| format!("eBPF program {name} missing from gotrace's object"))?;
    let function = &obj.functions[&program.function_key()];
    let license = program.license.clone();
    let mut prog_name = [0 as std::ffi::c_char; 16];
    for (dst, src) in prog_name.iter_mut().zip(name.bytes().take(15)) {
        *dst = src as std::ffi::c_char;
    }

    // SAFETY: as above, a zeroed plain C union.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing the prog-load member; pointers outlive the syscall.
    unsafe {
        let load = &mut attr.__bindgen_anon_3;
        load.prog_type = BPF_PROG_TYPE_KPROBE as u32;
        load.expected_attach_type = BPF_TRACE_UPROBE_MULTI as u32;
        load.insns = function.instructions.as_ptr() as u64;
        load.insn_cnt = function.instructions.len() as u32;
        load.license = license.as_ptr() as u64;
        load.prog_name = prog_name;
        if let Some(btf) = &btf {
            load.prog_btf_fd = btf.as_raw_fd() as u32;
            load.func_info_rec_size = function.func_info_rec_size as u32;
            load.func_info = function.func_info.func_info.as_ptr() as u64;
            load.func_info_cnt = function.func_info.func_info.len() as u32;
            load.line_info_rec_size = function.line_info_rec_size as u32;
            load.line_info = function.line_info.line_info.as_ptr() as u64;
            load.line_info_cnt = function.line_info.line_info.len() as u32;
        }
    }
    // Verifier logging slows verification down a lot (seconds for the
    // trace program): load without it, and only retry with it to explain
    // a failure.
    let err = match bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr) {
        Ok(program) => return Ok(program),
        Err(err) => err,
    };
    let mut log = vec![0u8; 1 << 20];
    // SAFETY: as above; the log buffer outlives the syscall.
    unsafe {
        let load = &mut attr.__bindgen_anon_3;
        load.log_level = 1;
        load.log_buf = log.as_mut_ptr() as u64;
        load.log_size = log.len() as u32;
    }
    let retry = bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr);
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let verifier = String::from_utf8_lossy(&log[..end]);
    Err(anyhow!(retry.err().unwrap_or(err)).context(format!(
        "loading eBPF program {name} for uprobe_multi (verifier: {})",
        verifier.trim()
    )))
}

/// Loads BTF into the kernel (`BPF_BTF_LOAD`).
fn load_btf(bytes: &[u8]) -> anyhow::Result<OwnedFd> {
    // SAFETY: a zeroed plain C union, then its BTF-load member; `bytes`
    // outlives the syscall.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing the BTF-load member of the zeroed union.
    unsafe {
        let load = &mut attr.__bindgen_anon_7;
        load.btf = bytes.as_ptr() as u64;
        load.btf_size = bytes.len() as u32;
    }
    bpf(bpf_cmd::BPF_BTF_LOAD, &mut attr).context("loading gotrace's BTF into the kernel")
}

/// The descriptor of a map aya created. aya 0.14 exposes it only per map
/// type, so this lists the types gotrace's programs use.
fn map_fd(map: &Map) -> anyhow::Result<RawFd> {
    let data = match map {
        Map::Array(data)
        | Map::PerCpuArray(data)
        | Map::HashMap(data)
        | Map::PerCpuHashMap(data)
        | Map::LruHashMap(data)
        | Map::PerCpuLruHashMap(data)
        | Map::RingBuf(data)
        | Map::PerfEventArray(data)
        | Map::StackTraceMap(data) => data,
        _ => {
            return Err(anyhow!(
                "gotrace's uprobe_multi loader does not handle {map:?}"
            ))
        }
    };
    Ok(data.fd().as_fd().as_raw_fd())
}

/// The `bpf(2)` system call, for commands that return a new descriptor.
pub(super) fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<OwnedFd> {
    // SAFETY: attr is a valid bpf_attr for `cmd`, and the call returns a new
    // descriptor that nothing else owns.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            std::mem::size_of::<bpf_attr>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a non-negative return of these commands is an fd we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}
