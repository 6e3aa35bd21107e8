//! Log2 latency histograms in bcc's layout (`print_log2_hist` of bcc's
//! `table.py`), with the summary line of bcc's funclatency and the
//! percentiles bcc lacks.

use std::io::{self, Write};

/// Width of the star bar for histograms up to slot 32.
const STARS: usize = 40;

/// One histogram: `slots[s]` counts values in `[2^(s-1), 2^s - 1]` (slot 1
/// also holds 0), as `gotrace_common::funclatency::slot` files them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    pub slots: Vec<u64>,
    /// Sum of the values.
    pub total: u64,
    /// Number of values.
    pub count: u64,
}

impl Histogram {
    /// The calls of `self` that `before` (an earlier reading of the same
    /// totals) had not seen.
    pub fn minus(&self, before: &Histogram) -> Histogram {
        Histogram {
            slots: self
                .slots
                .iter()
                .zip(before.slots.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a - b)
                .collect(),
            total: self.total - before.total,
            count: self.count - before.count,
        }
    }

    /// All of `histograms` in one.
    pub fn sum<'h>(histograms: impl IntoIterator<Item = &'h Histogram>) -> Histogram {
        let mut total = Histogram::default();
        for h in histograms {
            if total.slots.len() < h.slots.len() {
                total.slots.resize(h.slots.len(), 0);
            }
            for (t, n) in total.slots.iter_mut().zip(&h.slots) {
                *t += n;
            }
            total.total += h.total;
            total.count += h.count;
        }
        total
    }

    /// Bounds of slot `s`.
    fn bounds(s: usize) -> (u64, u64) {
        let low = (1u128 << s >> 1) as u64;
        let high = ((1u128 << s) - 1) as u64;
        if low == high {
            (low - 1, high)
        } else {
            (low, high)
        }
    }

    /// The upper bound of the slot holding the `percent`th percentile.
    pub fn percentile(&self, percent: u64) -> Option<u64> {
        let count: u64 = self.slots.iter().sum();
        if count == 0 {
            return None;
        }
        let wanted = (count * percent).div_ceil(100).max(1);
        let mut seen = 0;
        for (s, &n) in self.slots.iter().enumerate() {
            seen += n;
            if seen >= wanted {
                return Some(Self::bounds(s).1);
            }
        }
        None
    }

    fn last_used(&self) -> Option<usize> {
        self.slots.iter().rposition(|&n| n > 0)
    }
}

/// Writes the histogram as bcc does: header, then every slot from 1 to the
/// last non-empty one with a star bar.
pub fn write_log2(w: &mut impl Write, histogram: &Histogram, unit: &str) -> io::Result<()> {
    let Some(last) = histogram.last_used().filter(|&l| l > 0) else {
        return Ok(());
    };
    let max = histogram.slots.iter().copied().max().unwrap_or(0);
    let (wide, stars) = (last > 32, if last > 32 { STARS / 2 } else { STARS });
    if wide {
        writeln!(w, "               {unit:<29} : count     distribution")?;
    } else {
        writeln!(w, "     {unit:<19} : count     distribution")?;
    }
    for s in 1..=last {
        let (low, high) = Histogram::bounds(s);
        let n = histogram.slots[s];
        let bar = bar(n, max, stars);
        if wide {
            writeln!(w, "{low:>20} -> {high:<20} : {n:<8} |{bar:<stars$}|")?;
        } else {
            writeln!(w, "{low:>10} -> {high:<10} : {n:<8} |{bar:<stars$}|")?;
        }
    }
    Ok(())
}

/// bcc funclatency's summary, then the percentiles (bucket upper bounds).
pub fn write_summary(w: &mut impl Write, histogram: &Histogram, unit: &str) -> io::Result<()> {
    if histogram.count == 0 {
        return Ok(());
    }
    let avg = histogram.total / histogram.count;
    writeln!(
        w,
        "\navg = {avg} {unit}, total: {} {unit}, count: {}",
        histogram.total, histogram.count
    )?;
    let p = |percent| histogram.percentile(percent).unwrap_or(0);
    writeln!(
        w,
        "p50 <= {} {unit}, p90 <= {} {unit}, p99 <= {} {unit}",
        p(50),
        p(90),
        p(99)
    )?;
    writeln!(w)
}

/// The histogram as JSON: non-empty buckets and the summary.
pub fn to_json(histogram: &Histogram, unit: &str) -> serde_json::Value {
    let buckets: Vec<_> = histogram
        .slots
        .iter()
        .enumerate()
        .filter(|&(s, &n)| s > 0 && n > 0)
        .map(|(s, &n)| {
            let (low, high) = Histogram::bounds(s);
            serde_json::json!({ "low": low, "high": high, "count": n })
        })
        .collect();
    serde_json::json!({
        "unit": unit,
        "buckets": buckets,
        "count": histogram.count,
        "total": histogram.total,
        "avg": histogram.total.checked_div(histogram.count),
        "p50": histogram.percentile(50),
        "p90": histogram.percentile(90),
        "p99": histogram.percentile(99),
    })
}

/// bcc's `_stars`: `width * n / max` stars, `+` when clipped.
fn bar(n: u64, max: u64, width: usize) -> String {
    if max == 0 {
        return String::new();
    }
    let stars = ((width as u128 * n as u128) / max as u128).min(width as u128) as usize;
    "*".repeat(stars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Histogram {
        let mut slots = vec![0; 65];
        slots[1] = 1;
        slots[3] = 4;
        slots[5] = 2;
        Histogram {
            slots,
            total: 1 + 4 * 5 + 2 * 20,
            count: 7,
        }
    }

    /// Byte for byte what bcc 0.26's print_log2_hist prints for these
    /// counts (values 1, 5, 5, 5, 5, 20, 20).
    #[test]
    fn bcc_layout() {
        let mut out = Vec::new();
        write_log2(&mut out, &sample(), "nsecs").unwrap();
        let expected = "     nsecs               : count     distribution\n\
        \x20        0 -> 1          : 1        |**********                              |\n\
        \x20        2 -> 3          : 0        |                                        |\n\
        \x20        4 -> 7          : 4        |****************************************|\n\
        \x20        8 -> 15         : 0        |                                        |\n\
        \x20       16 -> 31         : 2        |********************                    |\n";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn summary_and_percentiles() {
        let mut out = Vec::new();
        write_summary(&mut out, &sample(), "usecs").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\navg = 8 usecs, total: 61 usecs, count: 7\n\
             p50 <= 7 usecs, p90 <= 31 usecs, p99 <= 31 usecs\n\n"
        );
        assert_eq!(sample().percentile(10), Some(1));
    }

    #[test]
    fn empty_prints_nothing() {
        let mut out = Vec::new();
        let empty = Histogram {
            slots: vec![0; 65],
            ..Default::default()
        };
        write_log2(&mut out, &empty, "nsecs").unwrap();
        write_summary(&mut out, &empty, "nsecs").unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn intervals_and_sums() {
        let before = sample();
        let mut now = sample();
        now.slots[3] += 2;
        now.total += 10;
        now.count += 2;
        let interval = now.minus(&before);
        assert_eq!(interval.count, 2);
        assert_eq!(interval.total, 10);
        assert_eq!(interval.slots.iter().sum::<u64>(), 2);
        assert_eq!(interval.slots[3], 2);
        let both = Histogram::sum([&before, &interval]);
        assert_eq!(both, now);
        assert_eq!(Histogram::sum([]), Histogram::default());
    }

    #[test]
    fn top_slot_bounds_do_not_overflow() {
        assert_eq!(Histogram::bounds(64), (1 << 63, u64::MAX));
        assert_eq!(Histogram::bounds(1), (0, 1));
    }
}
