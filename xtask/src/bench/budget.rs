//! The bench's overhead-budget section: a program that calls one function
//! as fast as it can (tests/fixtures/budget), untraced, traced without a
//! budget, under `--budget 5` and under `'*'`'s default budget; its
//! throughput second by second, and gotrace's estimate of the hot
//! function's cost against the slowdown measured.
//!
//! The hot loop is one goroutine on a CPU of its own, so the share of that
//! CPU the probe takes is `1 - traced / untraced` calls per second: what
//! gotrace's estimate (`~Y% of a CPU`) should say.

use std::{
    fmt::Write as _,
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::Context as _;

use super::go_build;
use crate::{setup::GoToolchains, util::root};

/// How long the fixture runs; gotrace is attached before it starts.
const SECONDS: usize = 6;

/// A run of the fixture: its hot calls in each second, and what gotrace
/// said on stderr.
struct Run {
    per_second: Vec<f64>,
    stderr: String,
}

impl Run {
    /// Calls per second from the `from`th second (0-based) on: the median,
    /// which a slow second (attaching, detaching) does not move.
    fn rate(&self, from: usize) -> f64 {
        let mut rates: Vec<f64> = self.per_second.iter().skip(from).copied().collect();
        rates.sort_by(f64::total_cmp);
        rates.get(rates.len() / 2).copied().unwrap_or(0.0)
    }

    /// gotrace's estimate of `function`'s share of a CPU when it detached
    /// it, if it did.
    fn estimate(&self, function: &str) -> Option<f64> {
        let line = self
            .stderr
            .lines()
            .find(|l| l.starts_with(&format!("gotrace: {function}:")) && l.ends_with("detached"))?;
        let percent = line.split('~').nth(1)?.split('%').next()?;
        Some(percent.parse::<f64>().ok()? / 100.0)
    }

    fn detached(&self) -> usize {
        self.stderr
            .lines()
            .filter(|l| l.ends_with("of a CPU: detached"))
            .count()
    }
}

/// Runs the fixture for [`SECONDS`], under `gotrace funccount -p PID
/// ARGS...` when `args` are given.
fn run(fixture: &Path, gotrace: &Path, args: Option<&[&str]>) -> anyhow::Result<Run> {
    let mut program = Command::new(fixture)
        .arg(SECONDS.to_string())
        .env("COUNTER_WAIT", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", fixture.display()))?;
    let mut lines = BufReader::new(program.stdout.take().context("piped")?).lines();
    let pid = program.id().to_string();
    lines.next().context("no pid line from the fixture")??;
    let tracer = match args {
        Some(args) => {
            let mut tracer = Command::new(gotrace)
                .args(["funccount", "-p", &pid])
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting gotrace")?;
            // Its banner: the probes are in place.
            let mut banner = String::new();
            BufReader::new(tracer.stdout.as_mut().context("piped")?).read_line(&mut banner)?;
            anyhow::ensure!(banner.starts_with("Tracing"), "gotrace said {banner:?}");
            Some(tracer)
        }
        None => None,
    };
    writeln!(program.stdin.as_mut().context("piped")?)?;
    let mut per_second = Vec::new();
    for line in lines {
        let line = line?;
        if let Some(hot) = line
            .strip_prefix("second ")
            .and_then(|l| l.split("hot ").nth(1))
        {
            per_second.push(hot.trim().parse()?);
        }
    }
    program.wait()?;
    let stderr = match tracer {
        // It ends with the process it traced.
        Some(tracer) => String::from_utf8_lossy(&tracer.wait_with_output()?.stderr).into_owned(),
        None => String::new(),
    };
    Ok(Run { per_second, stderr })
}

pub fn section(gotrace: &Path, go: &GoToolchains, dir: &Path) -> anyhow::Result<String> {
    let fixture = go_build(
        &go.go127,
        &root().join("tests/fixtures/budget"),
        &dir.join("budget"),
    )?;
    let untraced = run(&fixture, gotrace, None)?;
    let off = run(&fixture, gotrace, Some(&["--budget", "off", "main.*"]))?;
    let five = run(&fixture, gotrace, Some(&["--budget", "5", "main.*"]))?;
    let broad = run(&fixture, gotrace, Some(&["*"]))?;
    let base = untraced.rate(1);
    let mut text = String::new();
    writeln!(
        text,
        "\n## Overhead budget\n\nThe budget fixture (Go 1.27) calls `main.hot` from one goroutine as fast as it can for {SECONDS} s, under `gotrace funccount -p PID` attached before it starts; hot calls per second (median of seconds 2 to {SECONDS}, and the first second alone), and rows the budget took out.\n"
    )?;
    writeln!(
        text,
        "| run | first second | from the second on | vs untraced | rows detached |"
    )?;
    writeln!(text, "|---|---|---|---|---|")?;
    for (label, run) in [
        ("untraced", &untraced),
        ("`--budget off 'main.*'`", &off),
        ("`--budget 5 'main.*'`", &five),
        ("`'*'` (default budget, 5%)", &broad),
    ] {
        let first = run.per_second.first().copied().unwrap_or(0.0);
        writeln!(
            text,
            "| {label} | {:.1}M | {:.1}M | {:.2}x | {} |",
            first / 1e6,
            run.rate(1) / 1e6,
            run.rate(1) / base,
            run.detached()
        )?;
    }
    let measured = 1.0 - off.rate(1) / base;
    writeln!(
        text,
        "\nThe probe on `main.hot` took {:.0}% of the loop's CPU (from the untraced and `--budget off` rates); gotrace estimated {} when it detached it under `--budget 5`.",
        measured * 100.0,
        five.estimate("main.hot")
            .map_or("nothing (it did not detach it)".into(), |e| format!("{:.0}%", e * 100.0)),
    )?;
    Ok(text)
}
