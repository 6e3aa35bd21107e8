//! The bench's arm64 section: what a probe costs on each kind of
//! instruction in the emulated arm64 machine (`cargo xtask arm64`),
//! against the same measures on this x86-64 host in the same run.
//!
//! Under TCG everything is slow and only ratios mean anything: the
//! counter fixture's `main.work` is probed on its stack-check `b.ls`
//! (funccount's choice), on its first instruction (`--placement entry`,
//! single-stepped), and with funclatency (the `b.ls` plus a probe on its
//! `ret`). The `ret` probe's cost is funclatency's minus funccount's at
//! the branch; x86-64 single-steps `ret`, the arm64 kernel simulates it.
//! The fixture times its own calls (`work_ns`): the guest's shell has no
//! finer clock than 10 ms.

use std::{collections::BTreeMap, fmt::Write as _, path::Path, process::Command};

use anyhow::{bail, Context as _};

use super::Session;
use crate::{
    arm64::{boot, Machine},
    setup::GoToolchains,
    util::run,
};

/// Calls per run, and runs per mode (the median is kept).
const CALLS: u32 = 20_000;
const REPEATS: usize = 3;

/// The ways `main.work` is traced, as gotrace arguments (`PATTERN` is
/// replaced by the counter's `PATH:main.work`).
const MODES: [(&str, &[&str]); 4] = [
    ("untraced", &[]),
    ("branch", &["funccount", "PATTERN"]),
    ("entry", &["funccount", "--placement", "entry", "PATTERN"]),
    ("latency", &["funclatency", "PATTERN"]),
];

pub fn section(
    gotrace: &Path,
    counter: &Path,
    go: &GoToolchains,
    dir: &Path,
) -> anyhow::Result<String> {
    let machine = Machine::prepare()?;
    let files = dir.join("arm64-files");
    std::fs::create_dir_all(&files)?;
    run(Command::new(&go.go127)
        .current_dir(crate::util::root().join("tests/fixtures/counter"))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .env("GOARCH", "arm64")
        .env("CGO_ENABLED", "0")
        .args(["build", "-o"])
        .arg(files.join("counter"))
        .arg("."))?;

    let arm = arm64_costs(&machine, &files)?;
    let x86 = host_costs(gotrace, counter)?;

    let mut report = String::new();
    writeln!(report, "\n## arm64\n\nThe counter's {CALLS} calls of `main.work` in the emulated arm64 machine (`cargo xtask arm64`: qemu TCG, Go 1.27 arm64 build) and on this x86-64 host, in the same run; ns per call over the untraced run, medians of {REPEATS}. Under emulation only the ratios mean anything.\n")?;
    writeln!(
        report,
        "| machine | probe on the b.ls / JBE | on the first instruction | funclatency (branch + ret) | ret alone | branch / first instruction | ret / first instruction |"
    )?;
    writeln!(report, "|---|---|---|---|---|---|---|")?;
    for (name, costs) in [("arm64 (TCG)", &arm), ("x86-64", &x86)] {
        let ret = costs.latency - costs.branch;
        writeln!(
            report,
            "| {name} | {:.0} | {:.0} | {:.0} | {ret:.0} | {:.2} | {:.2} |",
            costs.branch,
            costs.entry,
            costs.latency,
            costs.branch / costs.entry,
            ret / costs.entry,
        )?;
    }
    writeln!(
        report,
        "\nThe kernel simulates `b.ls` and `ret` on arm64, as it emulates `JBE` on x86-64; x86-64 single-steps `ret`, which makes funclatency's exit probe the expensive one there and not on arm64."
    )?;
    Ok(report)
}

/// ns per call each mode adds.
struct Costs {
    branch: f64,
    entry: f64,
    latency: f64,
}

impl Costs {
    /// From each mode's `work_ns` runs.
    fn from(runs: &BTreeMap<String, Vec<u64>>) -> anyhow::Result<Costs> {
        let median = |mode: &str| -> anyhow::Result<f64> {
            let mut times = runs
                .get(mode)
                .filter(|t| !t.is_empty())
                .with_context(|| format!("no {mode} runs"))?
                .clone();
            times.sort_unstable();
            Ok(times[times.len() / 2] as f64)
        };
        let untraced = median("untraced")?;
        let per_call = |mode| median(mode).map(|t| (t - untraced) / f64::from(CALLS));
        Ok(Costs {
            branch: per_call("branch")?,
            entry: per_call("entry")?,
            latency: per_call("latency")?,
        })
    }
}

/// `work_ns` of the counter's output.
fn work_ns(output: &str) -> Option<u64> {
    let words: Vec<&str> = output.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "work_ns:")?;
    words.get(at + 1)?.parse().ok()
}

fn arm64_costs(machine: &Machine, files: &Path) -> anyhow::Result<Costs> {
    let mut script = String::from(
        "measure() {\n\
         mode=$1; shift\n\
         if [ $# -gt 0 ]; then\n\
         gotrace \"$@\" > /tmp/t 2>&1 & pid=$!\n\
         until grep -q '^Tracing ' /tmp/t; do kill -0 $pid || { cat /tmp/t; return 1; }; sleep 0.1; done\n\
         fi\n\
         echo \"$mode $(/files/counter CALLS 0)\"\n\
         if [ $# -gt 0 ]; then kill -INT $pid; wait $pid; fi\n\
         }\n",
    )
    .replace("CALLS", &CALLS.to_string());
    for _ in 0..REPEATS {
        for (mode, args) in MODES {
            let args: Vec<String> = args
                .iter()
                .map(|a| {
                    if *a == "PATTERN" {
                        "'/files/counter:main.work'".to_owned()
                    } else {
                        (*a).to_owned()
                    }
                })
                .collect();
            script += &format!("measure {mode} {} || exit 1\n", args.join(" "));
        }
    }
    let outcome = boot(
        machine,
        Some(files),
        &script,
        std::time::Duration::from_secs(900),
    )?;
    if outcome.status != 0 {
        bail!(
            "the arm64 measurements failed ({}):\n{}{}",
            outcome.status,
            outcome.stdout,
            outcome.stderr
        );
    }
    let mut runs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for line in outcome.stdout.lines() {
        if let Some((mode, said)) = line.split_once(' ') {
            if let Some(ns) = work_ns(said) {
                runs.entry(mode.to_owned()).or_default().push(ns);
            }
        }
    }
    Costs::from(&runs)
}

fn host_costs(gotrace: &Path, counter: &Path) -> anyhow::Result<Costs> {
    let pattern = format!("{}:main.work", counter.display());
    let mut runs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for _ in 0..REPEATS {
        for (mode, args) in MODES {
            let session = if args.is_empty() {
                None
            } else {
                let mut cmd = Command::new(gotrace);
                cmd.args(
                    args.iter()
                        .map(|a| if *a == "PATTERN" { &pattern } else { *a }),
                );
                Some(Session::start(&mut cmd, "Tracing ")?)
            };
            let out = Command::new(counter)
                .args([&CALLS.to_string(), "0"])
                .output()
                .context("running the counter")?;
            if let Some(session) = session {
                session.stop()?;
            }
            let said = String::from_utf8_lossy(&out.stdout);
            let ns = work_ns(&said).with_context(|| format!("no work_ns in {said:?}"))?;
            runs.entry(mode.to_owned()).or_default().push(ns);
        }
    }
    Costs::from(&runs)
}
