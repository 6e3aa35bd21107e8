//! `--budget`: gotrace keeps what its probes cost the traced programs
//! under a share of one CPU. Every second it reads each row's hits (by
//! cost kind, counted in the kernel: `gotrace_common::budget`), prices
//! them with this host's calibrated cost of a hit, and when over budget
//! takes the most expensive rows out of the kernel's path (their binary's
//! links are rebuilt without them; `cmd::session` does that).

pub mod calibrate;
pub mod estimate;
pub mod hits;

use std::time::{Duration, Instant};

pub use estimate::{Costs, Rate};

use crate::attach::RunTime;

/// How often the cost is estimated.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// When the cost is first estimated, after the probes are in place: soon,
/// since a hot function under a probe slows its program the most from the
/// first call; a function hot enough to matter has hundreds of hits by
/// then.
pub const FIRST_INTERVAL: Duration = Duration::from_millis(250);

/// The budget when none is given, for runs with at least
/// [`AUTO_ROWS`] functions (a broad pattern): 5% of one CPU.
pub const AUTO_PERCENT: f64 = 5.0;
/// How many rows make a pattern broad (see [`AUTO_PERCENT`]).
pub const AUTO_ROWS: u32 = 100;

/// `--budget PERCENT|off`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Choice {
    Off,
    /// Percent of one CPU.
    Percent(f64),
}

/// Parses `--budget`: `off`, or a percentage of one CPU (`5`, `0.5`,
/// `5%`).
pub fn parse(text: &str) -> Result<Choice, String> {
    if text == "off" {
        return Ok(Choice::Off);
    }
    let number = text.strip_suffix('%').unwrap_or(text);
    match number.parse::<f64>() {
        Ok(p) if p > 0.0 && p.is_finite() => Ok(Choice::Percent(p)),
        _ => Err(format!(
            "{text:?}: give a positive percentage of one CPU (e.g. 5) or `off`"
        )),
    }
}

/// The budget a run gets: the one asked for, or [`AUTO_PERCENT`] when the
/// run has many rows.
pub fn limit(choice: Option<Choice>, rows: u32) -> Option<f64> {
    match choice {
        Some(Choice::Off) => None,
        Some(Choice::Percent(p)) => Some(p / 100.0),
        None if rows >= AUTO_ROWS => Some(AUTO_PERCENT / 100.0),
        None => None,
    }
}

/// A run's budget and what it has seen.
#[derive(Debug)]
pub struct Budget {
    /// Share of one CPU.
    pub limit: f64,
    pub costs: Costs,
    /// Hits per row and kind at the last check (`HITS_MAP`'s layout).
    previous: Vec<u64>,
    /// The run's programs' time at the last check.
    previous_run: RunTime,
    last: Instant,
    /// Time from the last check to the next.
    interval: Duration,
}

impl Budget {
    pub fn new(limit: f64, costs: Costs) -> Self {
        Self {
            limit,
            costs,
            previous: Vec::new(),
            previous_run: RunTime::default(),
            last: Instant::now(),
            interval: FIRST_INTERVAL,
        }
    }

    /// Starts the clock of the first check: the probes are in place.
    pub fn started(&mut self) {
        self.last = Instant::now();
        self.interval = FIRST_INTERVAL;
    }

    /// When the next check is due.
    pub fn due(&self) -> Instant {
        self.last + self.interval
    }

    /// Given the hits so far (`HITS_MAP`'s layout: row * 2 + kind), the
    /// rates since the last check.
    pub fn rates(&mut self, hits: &[u64]) -> Vec<Rate> {
        let seconds = self.last.elapsed().as_secs_f64().max(1e-3);
        self.last = Instant::now();
        self.interval = INTERVAL;
        self.previous.resize(hits.len(), 0);
        let rates = hits
            .chunks(2)
            .zip(self.previous.chunks(2))
            .enumerate()
            .map(|(row, (now, before))| Rate {
                row: row as u32,
                emulated: now[0].saturating_sub(before[0]) as f64 / seconds,
                single_stepped: now
                    .get(1)
                    .zip(before.get(1))
                    .map_or(0.0, |(n, b)| n.saturating_sub(*b) as f64 / seconds),
            })
            .collect();
        self.previous = hits.to_vec();
        rates
    }

    /// The rows to take out now, with their cost, given the hits so far
    /// and the time the run's programs took so far.
    pub fn check(&mut self, hits: &[u64], run: RunTime) -> Vec<(Rate, f64)> {
        let rates = self.rates(hits);
        let program_ns = self.program_ns(run);
        estimate::over_budget(&rates, &self.costs, program_ns, self.limit)
    }

    /// The average time of a program run since the last check.
    fn program_ns(&mut self, run: RunTime) -> f64 {
        let runs = run.runs.saturating_sub(self.previous_run.runs);
        let ns = run
            .nanoseconds
            .saturating_sub(self.previous_run.nanoseconds);
        self.previous_run = run;
        if runs == 0 {
            0.0
        } else {
            ns as f64 / runs as f64
        }
    }
}

/// A row taken out (the tools mark it with its count, which stops there).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detached {
    /// Hits per second when it was taken out, and their cost.
    pub rate: f64,
    pub cost: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_budgets() {
        assert_eq!(parse("5"), Ok(Choice::Percent(5.0)));
        assert_eq!(parse("0.5%"), Ok(Choice::Percent(0.5)));
        assert_eq!(parse("off"), Ok(Choice::Off));
        for bad in ["-1", "0", "x", "", "inf", "NaN"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_budget_for_broad_patterns() {
        assert_eq!(limit(None, 3), None);
        assert_eq!(limit(None, AUTO_ROWS), Some(0.05));
        assert_eq!(limit(Some(Choice::Off), 100_000), None);
        assert_eq!(limit(Some(Choice::Percent(2.0)), 1), Some(0.02));
    }

    #[test]
    fn rates_since_the_last_check() {
        let mut budget = Budget::new(
            0.05,
            Costs {
                emulated_ns: 500.0,
                single_stepped_ns: 10_000.0,
            },
        );
        budget.rates(&[10, 0, 0, 5]);
        budget.last = Instant::now() - Duration::from_secs(2);
        let rates = budget.rates(&[2_010, 0, 0, 205]);
        assert_eq!(rates.len(), 2);
        assert!((rates[0].emulated - 1000.0).abs() < 10.0, "{rates:?}");
        assert!((rates[1].single_stepped - 100.0).abs() < 1.0, "{rates:?}");
    }

    #[test]
    fn program_time_per_run_since_the_last_check() {
        let mut budget = Budget::new(
            0.05,
            Costs {
                emulated_ns: 500.0,
                single_stepped_ns: 1e4,
            },
        );
        let run = |nanoseconds, runs| RunTime { nanoseconds, runs };
        assert_eq!(budget.program_ns(run(1_000, 10)), 100.0);
        assert_eq!(budget.program_ns(run(1_000, 10)), 0.0);
        assert_eq!(budget.program_ns(run(31_000, 110)), 300.0);
    }
}
