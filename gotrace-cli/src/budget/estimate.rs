//! What the probes cost the traced programs, from each row's hit rates and
//! the host's cost of a hit of each kind, and which rows to take out to
//! stay within a budget.

/// What the kernel's part of one probe hit costs on this host (the trap
/// and the uprobe's handling, not gotrace's program, which the kernel
/// times itself while a budget runs), by how the kernel runs the probed
/// instruction (see `attach::placement::Cost`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Costs {
    /// Nanoseconds per hit of an emulated probe (a branch, a `push`).
    pub emulated_ns: f64,
    /// Nanoseconds per hit of a single-stepped probe.
    pub single_stepped_ns: f64,
}

/// One row's hits per second, by kind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub row: u32,
    pub emulated: f64,
    pub single_stepped: f64,
}

impl Rate {
    /// Hits per second of both kinds.
    pub fn hits(&self) -> f64 {
        self.emulated + self.single_stepped
    }
}

impl Costs {
    /// The share of one CPU `rate` costs (1.0: a whole CPU), when
    /// gotrace's program takes `program_ns` a hit.
    pub fn of(&self, rate: &Rate, program_ns: f64) -> f64 {
        (rate.emulated * (self.emulated_ns + program_ns)
            + rate.single_stepped * (self.single_stepped_ns + program_ns))
            / 1e9
    }
}

/// The rows to take out, most expensive first, each with its cost, so
/// that the others cost at most `limit` (a share of one CPU); none when
/// all of them do.
pub fn over_budget(rates: &[Rate], costs: &Costs, program_ns: f64, limit: f64) -> Vec<(Rate, f64)> {
    let mut priced: Vec<(Rate, f64)> = rates
        .iter()
        .map(|r| (*r, costs.of(r, program_ns)))
        .collect();
    let mut total: f64 = priced.iter().map(|(_, c)| c).sum();
    if total <= limit {
        return Vec::new();
    }
    priced.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.row.cmp(&b.0.row)));
    let mut out = Vec::new();
    for (rate, cost) in priced {
        if total <= limit || cost <= 0.0 {
            break;
        }
        total -= cost;
        out.push((rate, cost));
    }
    out
}

/// `2.1M`, `35k`, `120`: a rate for a one-line message.
pub fn short(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.1}M", rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.0}k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COSTS: Costs = Costs {
        emulated_ns: 500.0,
        single_stepped_ns: 10_000.0,
    };

    fn rate(row: u32, emulated: f64, single_stepped: f64) -> Rate {
        Rate {
            row,
            emulated,
            single_stepped,
        }
    }

    #[test]
    fn cost_of_a_rate() {
        // 1M emulated hits/s at 0.5 us: half a CPU; 100k single-stepped
        // at 10 us: a whole one.
        assert!((COSTS.of(&rate(0, 1e6, 0.0), 0.0) - 0.5).abs() < 1e-9);
        assert!((COSTS.of(&rate(0, 0.0, 1e5), 0.0) - 1.0).abs() < 1e-9);
        // gotrace's program adds its time to every hit of both kinds.
        assert!((COSTS.of(&rate(0, 1e6, 1e5), 500.0) - 2.05).abs() < 1e-9);
    }

    #[test]
    fn within_budget_takes_nothing_out() {
        let rates = [rate(0, 1000.0, 0.0), rate(1, 0.0, 100.0)];
        // 0.05% + 0.1% of a CPU.
        assert!(over_budget(&rates, &COSTS, 0.0, 0.05).is_empty());
    }

    #[test]
    fn takes_out_the_hottest_until_within() {
        let rates = [
            rate(0, 10.0, 0.0),     // 5 us/s
            rate(1, 2e6, 0.0),      // 1.0 CPU
            rate(2, 0.0, 50_000.0), // 0.5 CPU
            rate(3, 0.0, 1_000.0),  // 1% of a CPU
            rate(4, 40_000.0, 0.0), // 2% of a CPU
        ];
        let out = over_budget(&rates, &COSTS, 0.0, 0.05);
        let rows: Vec<u32> = out.iter().map(|(r, _)| r.row).collect();
        // The two expensive ones go; the 3% left is within 5%.
        assert_eq!(rows, [1, 2]);
        assert!((out[0].1 - 1.0).abs() < 1e-9);
        // A tighter budget takes the next most expensive too.
        let rows: Vec<u32> = over_budget(&rates, &COSTS, 0.0, 0.015)
            .iter()
            .map(|(r, _)| r.row)
            .collect();
        assert_eq!(rows, [1, 2, 4]);
        // gotrace's program prices every hit higher: at 1 us more a hit,
        // the 3% left after rows 1 and 2 is 7%, so row 4 goes too.
        let rows: Vec<u32> = over_budget(&rates, &COSTS, 1000.0, 0.05)
            .iter()
            .map(|(r, _)| r.row)
            .collect();
        assert_eq!(rows, [1, 2, 4]);
        // Nothing idle is ever taken out, even at a zero budget.
        let rows: Vec<u32> = over_budget(&[rate(0, 0.0, 0.0), rate(1, 5.0, 0.0)], &COSTS, 0.0, 0.0)
            .iter()
            .map(|(r, _)| r.row)
            .collect();
        assert_eq!(rows, [1]);
    }

    #[test]
    fn short_rates() {
        assert_eq!(short(2_100_000.0), "2.1M");
        assert_eq!(short(35_400.0), "35k");
        assert_eq!(short(120.4), "120");
    }
}
