//! Reading the kernel's hit counters (`HITS_MAP`: per CPU, two per row) at
//! each check. One lookup per counter is a system call each: the 135,000
//! counters of `'*'` on Debian's prometheus took 15% of a CPU of gotrace's
//! own every second that way. `BPF_MAP_LOOKUP_BATCH` (Linux 5.6) reads
//! them all in a few calls; older kernels get the lookups.

use std::{io, os::fd::AsFd as _, os::fd::AsRawFd as _};

use anyhow::Context as _;
use aya::maps::{Map, MapData, PerCpuArray};
use aya_obj::generated::{bpf_attr, bpf_cmd};

/// The kernel's own "not supported" (not in libc), which maps without
/// batch operations answer.
const ENOTSUPP: i32 = 524;

/// The hit counters of a run.
pub struct Hits {
    map: Map,
    /// The kernel's possible CPUs: each counter's values come one per CPU.
    cpus: usize,
    /// Whether batch lookups are refused here (then one lookup each).
    no_batch: bool,
}

impl Hits {
    pub fn new(map: Map) -> anyhow::Result<Hits> {
        anyhow::ensure!(
            matches!(map, Map::PerCpuArray(_)),
            "gotrace's hit counters are not a per-CPU array: {map:?}"
        );
        let cpus =
            aya::util::nr_cpus().map_err(|(what, err)| anyhow::anyhow!("reading {what}: {err}"))?;
        Ok(Hits {
            map,
            cpus,
            no_batch: false,
        })
    }

    /// The first `count` counters, each summed over the CPUs.
    pub fn read(&mut self, count: u32) -> anyhow::Result<Vec<u64>> {
        if !self.no_batch {
            match self.read_batch(count) {
                Ok(sums) => return Ok(sums),
                Err(err)
                    if matches!(
                        err.raw_os_error(),
                        Some(libc::EINVAL | ENOTSUPP | libc::EOPNOTSUPP)
                    ) =>
                {
                    self.no_batch = true;
                }
                Err(err) => return Err(err).context("reading probe hits"),
            }
        }
        let array = PerCpuArray::<&MapData, u64>::try_from(&self.map)?;
        (0..count)
            .map(|i| Ok(array.get(&i, 0)?.iter().sum()))
            .collect::<anyhow::Result<Vec<u64>>>()
            .context("reading probe hits")
    }

    fn read_batch(&self, count: u32) -> io::Result<Vec<u64>> {
        let Map::PerCpuArray(data) = &self.map else {
            unreachable!("checked in Hits::new");
        };
        let fd = data.fd().as_fd().as_raw_fd();
        let total = count as usize;
        let mut keys = vec![0u32; total];
        // A u64 per CPU per counter (values are 8-byte aligned already).
        let mut values = vec![0u64; total * self.cpus];
        let mut sums = Vec::with_capacity(total);
        let (mut next, mut first) = (0u32, true);
        while sums.len() < total {
            let at = sums.len();
            let in_batch = next;
            // SAFETY: bpf_attr is plain integers; all zeros is its empty
            // value.
            let mut attr = unsafe { std::mem::zeroed::<bpf_attr>() };
            // SAFETY: writing the plain-integer fields of a zeroed union's
            // batch member.
            unsafe {
                let batch = &mut attr.batch;
                batch.map_fd = fd as u32;
                batch.count = (total - at) as u32;
                batch.in_batch = if first {
                    0
                } else {
                    &in_batch as *const u32 as u64
                };
                batch.out_batch = &mut next as *mut u32 as u64;
                batch.keys = keys[at..].as_mut_ptr() as u64;
                batch.values = values[at * self.cpus..].as_mut_ptr() as u64;
            }
            // SAFETY: the buffers hold `batch.count` keys and values and
            // outlive the call; the kernel writes no further.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    bpf_cmd::BPF_MAP_LOOKUP_BATCH as libc::c_long,
                    &mut attr as *mut bpf_attr,
                    std::mem::size_of::<bpf_attr>(),
                )
            };
            let end = ret < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT);
            if ret < 0 && !end {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: the kernel wrote how many it read into the same member.
            let read = unsafe { attr.batch.count } as usize;
            sums.extend(
                values[at * self.cpus..(at + read) * self.cpus]
                    .chunks(self.cpus)
                    .map(|per_cpu| per_cpu.iter().sum::<u64>()),
            );
            first = false;
            if end || read == 0 {
                break;
            }
        }
        // A map smaller than asked (it is not: sized for every row) reads
        // as zeros past its end.
        sums.resize(total, 0);
        Ok(sums)
    }
}
