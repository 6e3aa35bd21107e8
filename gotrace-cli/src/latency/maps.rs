//! Reading what the funclatency programs keep in the kernel: each row's
//! [`Latency`] summed over CPUs, the calls still open, the anomalies.

use anyhow::Context as _;
use aya::maps::{HashMap, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues};
use gotrace_common::{
    funclatency::{Latency, StartKey, BY_PROCESS_MAP, EVENTS, EVENTS_MAP, LATENCY_MAP, STARTS_MAP},
    probe::ProcessKey,
};

use crate::output::histogram::Histogram;

/// The maps user space reads.
pub struct Maps {
    latency: PerCpuArray<MapData, Latency>,
    events: PerCpuArray<MapData, u64>,
    starts: HashMap<MapData, StartKey, u64>,
    /// With `--labels`.
    by_process: Option<PerCpuHashMap<MapData, ProcessKey, Latency>>,
}

impl Maps {
    /// Takes the maps out of `ebpf`; the per-process one too if
    /// `by_process`.
    pub fn new(ebpf: &mut aya::Ebpf, by_process: bool) -> anyhow::Result<Self> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("map {name} missing from gotrace's object"))
        };
        Ok(Self {
            latency: PerCpuArray::try_from(take(LATENCY_MAP)?)?,
            events: PerCpuArray::try_from(take(EVENTS_MAP)?)?,
            starts: HashMap::try_from(take(STARTS_MAP)?)?,
            by_process: if by_process {
                Some(PerCpuHashMap::try_from(take(BY_PROCESS_MAP)?)?)
            } else {
                None
            },
        })
    }

    /// Each (row, process) pair's calls since tracing began, with
    /// `--labels` (else none).
    pub fn read_by_process(&self, divisor: u64) -> anyhow::Result<Vec<(ProcessKey, Histogram)>> {
        let Some(map) = &self.by_process else {
            return Ok(Vec::new());
        };
        map.iter()
            .map(|entry| {
                let (key, per_cpu) = entry.context("reading per-process latencies")?;
                Ok((key, summed(&per_cpu, divisor)))
            })
            .collect()
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
                Ok(summed(&per_cpu, divisor))
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

/// One [`Latency`] summed over CPUs, its total in the unit of `divisor`.
fn summed(per_cpu: &PerCpuValues<Latency>, divisor: u64) -> Histogram {
    let mut slots = vec![0u64; gotrace_common::funclatency::SLOTS];
    let (mut total_ns, mut count) = (0u64, 0u64);
    for cpu in per_cpu.iter() {
        for (sum, n) in slots.iter_mut().zip(cpu.slots) {
            *sum += n;
        }
        total_ns += cpu.total_ns;
        count += cpu.calls;
    }
    Histogram {
        slots,
        total: total_ns / divisor.max(1),
        count,
    }
}
