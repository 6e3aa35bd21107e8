//! Reading what the funclatency programs keep in the kernel: each row's
//! [`Latency`] summed over CPUs, the calls still open, the anomalies.

use anyhow::Context as _;
use aya::maps::{HashMap, MapData, PerCpuArray};
use gotrace_common::funclatency::{Latency, StartKey, EVENTS, EVENTS_MAP, LATENCY_MAP, STARTS_MAP};

use crate::output::histogram::Histogram;

/// The maps user space reads.
pub struct Maps {
    latency: PerCpuArray<MapData, Latency>,
    events: PerCpuArray<MapData, u64>,
    starts: HashMap<MapData, StartKey, u64>,
}

impl Maps {
    pub fn new(ebpf: &mut aya::Ebpf) -> anyhow::Result<Self> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("map {name} missing from gotrace's object"))
        };
        Ok(Self {
            latency: PerCpuArray::try_from(take(LATENCY_MAP)?)?,
            events: PerCpuArray::try_from(take(EVENTS_MAP)?)?,
            starts: HashMap::try_from(take(STARTS_MAP)?)?,
        })
    }

    /// Each row's calls since tracing began, summed over CPUs: one map
    /// read per row. Totals are kept in nanoseconds and shown in the unit
    /// of `divisor`.
    pub fn read(&self, rows: usize, divisor: u64) -> anyhow::Result<Vec<Histogram>> {
        (0..rows as u32)
            .map(|row| {
                let per_cpu = self
                    .latency
                    .get(&row, 0)
                    .with_context(|| format!("reading the latencies of row {row}"))?;
                let mut slots = vec![0u64; gotrace_common::funclatency::SLOTS];
                let (mut total_ns, mut count) = (0u64, 0u64);
                for cpu in per_cpu.iter() {
                    for (sum, n) in slots.iter_mut().zip(cpu.slots) {
                        *sum += n;
                    }
                    total_ns += cpu.total_ns;
                    count += cpu.calls;
                }
                Ok(Histogram {
                    slots,
                    total: total_ns / divisor.max(1),
                    count,
                })
            })
            .collect()
    }

    /// The `EVENT_*` counters, summed over CPUs.
    pub fn events(&self) -> anyhow::Result<Vec<u64>> {
        (0..EVENTS)
            .map(|e| Ok(self.events.get(&e, 0)?.iter().sum()))
            .collect()
    }

    /// Calls begun and not returned, per row: still open, or abandoned
    /// (a panic) and found so when the next call at the same place began.
    pub fn open_calls(&self, rows: usize) -> anyhow::Result<Vec<u64>> {
        let mut open = vec![0; rows];
        for key in self.starts.keys().filter_map(Result::ok) {
            if let Some(n) = open.get_mut(key.function as usize) {
                *n += 1;
            }
        }
        for (row, n) in open.iter_mut().enumerate() {
            let per_cpu = self
                .latency
                .get(&(row as u32), 0)
                .with_context(|| format!("reading the latencies of row {row}"))?;
            *n += per_cpu.iter().map(|l| l.abandoned).sum::<u64>();
        }
        Ok(open)
    }
}
