//! What gotrace exports, and its encoding in the Prometheus text format
//! (0.0.4) or OpenMetrics 1.0, by `prometheus-client`.
//!
//! The names are fixed (dashboards and alerts rely on them):
//! `gotrace_function_calls_total`, `gotrace_function_duration_seconds`,
//! `gotrace_open_calls`, `gotrace_lost_events_total`, `gotrace_probes`,
//! and the exporter's own `process_*` metrics.

use std::collections::BTreeMap;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::{Registry, Unit},
};

use crate::output::histogram::Histogram;

/// Log2 slots exported as histogram buckets: slot `s` holds the calls of
/// `2^(s-1)` to `2^s - 1` ns, so its bucket's `le` is `(2^s - 1)` ns.
/// Slots above this (calls of over 18 minutes) fall in `+Inf`.
const LAST_BUCKET_SLOT: usize = 40;

/// The label set of one series: which binary and function, and, with
/// `--labels`, which process.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels {
    pub binary: String,
    pub function: String,
    /// `("pid", "123")` or `("comm", "app")`, when asked for.
    pub process: Option<(&'static str, String)>,
}

impl Labels {
    fn pairs(&self) -> Vec<(&str, &str)> {
        let mut pairs = vec![
            ("binary", self.binary.as_str()),
            ("function", self.function.as_str()),
        ];
        if let Some((name, value)) = &self.process {
            pairs.push((name, value.as_str()));
        }
        pairs
    }
}

/// Everything one scrape reports, read from the maps at the scrape.
/// Series with the same labels (an inlined copy's row and its function's
/// own, a binary replaced at the same path) are summed.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub calls: BTreeMap<Labels, u64>,
    pub durations: BTreeMap<Labels, Histogram>,
    pub open_calls: BTreeMap<Labels, u64>,
    /// Probe sites in place, by binary.
    pub probes: BTreeMap<String, u64>,
    pub lost_events: u64,
}

impl Snapshot {
    pub fn add_calls(&mut self, labels: Labels, calls: u64) {
        *self.calls.entry(labels).or_default() += calls;
    }

    pub fn add_duration(&mut self, labels: Labels, histogram: &Histogram) {
        let sum = self.durations.entry(labels).or_default();
        *sum = Histogram::sum([&*sum, histogram]);
    }

    pub fn add_open_calls(&mut self, labels: Labels, open: u64) {
        *self.open_calls.entry(labels).or_default() += open;
    }
}

/// The `Content-Type` and body of a scrape in the format asked for.
pub fn encode(snapshot: Snapshot, open_metrics: bool) -> (&'static str, String) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exported(snapshot)));
    registry.register_collector(Box::new(ProcessMetrics));
    let mut body = String::new();
    // Writing to a String cannot fail.
    if open_metrics {
        let _ = prometheus_client::encoding::text::encode(&mut body, &registry);
        (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body,
        )
    } else {
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut body, &registry);
        (
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            body,
        )
    }
}

#[derive(Debug)]
struct Exported(Snapshot);

impl Collector for Exported {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        if !s.calls.is_empty() {
            let mut metric = encoder.encode_descriptor(
                "gotrace_function_calls",
                "Calls of the function (its inlined copies included), counted in the kernel",
                None,
                MetricType::Counter,
            )?;
            for (labels, calls) in &s.calls {
                ConstCounter::new(*calls).encode(metric.encode_family(&labels.pairs())?)?;
            }
        }
        if !s.durations.is_empty() {
            let mut metric = encoder.encode_descriptor(
                "gotrace_function_duration",
                "Duration of completed calls, timed per goroutine from entry to return",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for (labels, histogram) in &s.durations {
                let (sum, count, buckets) = buckets(histogram);
                metric
                    .encode_family(&labels.pairs())?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        if !s.open_calls.is_empty() {
            let mut metric = encoder.encode_descriptor(
                "gotrace_open_calls",
                "Calls entered and not returned (running, or left by a panic)",
                None,
                MetricType::Gauge,
            )?;
            for (labels, open) in &s.open_calls {
                ConstGauge::new(*open as i64).encode(metric.encode_family(&labels.pairs())?)?;
            }
        }
        ConstCounter::new(s.lost_events).encode(encoder.encode_descriptor(
            "gotrace_lost_events",
            "Hits the kernel could not record (no goroutine, full maps)",
            None,
            MetricType::Counter,
        )?)?;
        let mut metric = encoder.encode_descriptor(
            "gotrace_probes",
            "Probe sites in place in the binary",
            None,
            MetricType::Gauge,
        )?;
        for (binary, probes) in &s.probes {
            ConstGauge::new(*probes as i64)
                .encode(metric.encode_family(&[("binary", binary.as_str())])?)?;
        }
        Ok(())
    }
}

/// A histogram's sum (seconds), count and buckets (upper bound in seconds,
/// calls in it: the encoder makes them cumulative). Exact: a call of `v`
/// ns is in slot `s` with `2^(s-1) <= v <= 2^s - 1`, so it lands in the
/// bucket of the smallest bound at or above it.
fn buckets(histogram: &Histogram) -> (f64, u64, Vec<(f64, u64)>) {
    let mut buckets: Vec<(f64, u64)> = (1..=LAST_BUCKET_SLOT)
        .map(|s| {
            let le = ((1u64 << s) - 1) as f64 / 1e9;
            (le, histogram.slots.get(s).copied().unwrap_or(0))
        })
        .collect();
    let beyond: u64 = histogram.slots.iter().skip(LAST_BUCKET_SLOT + 1).sum();
    buckets.push((f64::INFINITY, beyond));
    (histogram.total as f64 / 1e9, histogram.count, buckets)
}

/// The exporter's own process metrics, from `/proc/self` at each scrape.
#[derive(Debug)]
struct ProcessMetrics;

impl Collector for ProcessMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stat) = SelfStat::read() else {
            return Ok(());
        };
        ConstCounter::new(stat.cpu_seconds).encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent in seconds",
            None,
            MetricType::Counter,
        )?)?;
        ConstGauge::new(stat.resident_bytes as i64).encode(encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            None,
            MetricType::Gauge,
        )?)?;
        ConstGauge::new(stat.start_time_seconds).encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            None,
            MetricType::Gauge,
        )?)?;
        ConstGauge::new(stat.open_fds as i64).encode(encoder.encode_descriptor(
            "process_open_fds",
            "Number of open file descriptors",
            None,
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}

/// What `/proc/self/stat` and friends say of gotrace.
struct SelfStat {
    cpu_seconds: f64,
    resident_bytes: u64,
    start_time_seconds: f64,
    open_fds: usize,
}

impl SelfStat {
    fn read() -> Option<SelfStat> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which may hold spaces: state is 3.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        // SAFETY: sysconf only reads a system constant.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK) as f64,
                libc::sysconf(libc::_SC_PAGESIZE) as u64,
            )
        };
        let boot: f64 = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        Some(SelfStat {
            cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
            resident_bytes: field(24)? * page,
            start_time_seconds: boot + field(22)? as f64 / ticks,
            open_fds: std::fs::read_dir("/proc/self/fd").ok()?.count(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(function: &str) -> Labels {
        Labels {
            binary: "/bin/app".into(),
            function: function.into(),
            process: None,
        }
    }

    #[test]
    fn buckets_are_exact() {
        // 3 calls of 1000 ns (slot 10: 512-1023), 1 of 1024 ns (slot 11).
        let mut slots = vec![0; 65];
        slots[10] = 3;
        slots[11] = 1;
        slots[64] = 2;
        let (sum, count, buckets) = buckets(&Histogram {
            slots,
            total: 4024,
            count: 6,
        });
        assert_eq!(count, 6);
        assert!((sum - 4.024e-6).abs() < 1e-15);
        let le_of = |slot: usize| buckets[slot - 1];
        assert_eq!(le_of(10), (1023e-9, 3));
        assert_eq!(le_of(11), (2047e-9, 1));
        assert_eq!(le_of(1), (1e-9, 0));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 2)));
        assert_eq!(buckets.len(), LAST_BUCKET_SLOT + 1);
    }

    #[test]
    fn text_format() {
        let mut snapshot = Snapshot::default();
        snapshot.add_calls(labels("main.add"), 3);
        snapshot.add_calls(labels("main.add"), 2);
        snapshot.probes.insert("/bin/app".into(), 7);
        let (content_type, body) = encode(snapshot, false);
        assert!(content_type.starts_with("text/plain; version=0.0.4"));
        assert!(
            body.contains("# TYPE gotrace_function_calls_total counter\n"),
            "{body}"
        );
        assert!(
            body.contains(
                "gotrace_function_calls_total{binary=\"/bin/app\",function=\"main.add\"} 5\n"
            ),
            "{body}"
        );
        assert!(
            body.contains("gotrace_probes{binary=\"/bin/app\"} 7\n"),
            "{body}"
        );
        assert!(!body.contains("# EOF"), "{body}");
    }

    #[test]
    fn open_metrics_format() {
        let mut snapshot = Snapshot::default();
        let mut slots = vec![0; 65];
        slots[21] = 4;
        snapshot.add_duration(
            labels("main.work"),
            &Histogram {
                slots,
                total: 8_000_000,
                count: 4,
            },
        );
        let (content_type, body) = encode(snapshot, true);
        assert!(content_type.starts_with("application/openmetrics-text"));
        assert!(body.ends_with("# EOF\n"), "{body}");
        assert!(
            body.contains("# UNIT gotrace_function_duration_seconds seconds"),
            "{body}"
        );
        assert!(
            body.contains(
                "gotrace_function_duration_seconds_bucket{le=\"0.002097151\",binary=\"/bin/app\",function=\"main.work\"} 4\n"
            ),
            "{body}"
        );
        assert!(
            body.contains("gotrace_function_duration_seconds_count{binary=\"/bin/app\",function=\"main.work\"} 4"),
            "{body}"
        );
    }
}
