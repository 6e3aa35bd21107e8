//! The bench's whole-host section: gotrace with no PATH on a host running
//! 50 Go processes of 5 binaries (start to banner, uprobe_multi links made),
//! and how long programs started afterwards run before their probes are in
//! place (exec to attached, as gotrace measures it from the kernel's exec
//! timestamp), against bcc's funccount started for one such binary (what
//! following a new program costs a bcc user: a new tracer).

use std::{
    fmt::Write as _,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::Context as _;

use super::{go_build_with, timed, Session};
use crate::{setup::GoToolchains, util::output};

/// Processes per binary, and binaries.
const PROCESSES: usize = 10;
const BINARIES: usize = 5;

/// Programs started while gotrace runs, each a binary of its own.
const LATER: usize = 20;

/// Counters waiting on stdin (COUNTER_WAIT): idle Go processes that are
/// killed when dropped.
struct Idle(Vec<Child>);

impl Drop for Idle {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Idle {
    fn start(binary: &Path) -> anyhow::Result<Child> {
        let mut child = Command::new(binary)
            .env("COUNTER_WAIT", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        // Its pid line: it runs (and waits) from here on.
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().context("piped")?).read_line(&mut line)?;
        Ok(child)
    }
}

pub fn section(gotrace: &Path, go: &GoToolchains, dir: &Path) -> anyhow::Result<String> {
    let source = crate::util::root().join("tests/fixtures/counter");
    let builds: [(&Path, &[&str]); BINARIES] = [
        (&go.go119, &[]),
        (&go.go127, &[]),
        (&go.go127, &["-buildmode=pie"]),
        (&go.go119, &["-ldflags=-s -w"]),
        (&go.go127, &["-ldflags=-s -w"]),
    ];
    let mut binaries = Vec::new();
    for (i, (compiler, flags)) in builds.iter().enumerate() {
        binaries.push(go_build_with(
            compiler,
            &source,
            &dir.join(format!("host-{i}")),
            flags,
        )?);
    }
    let mut idle = Idle(Vec::new());
    for binary in &binaries {
        for _ in 0..PROCESSES {
            idle.0.push(Idle::start(binary)?);
        }
    }

    let mut text = String::new();
    writeln!(
        text,
        "\n## Whole host\n\n`gotrace funccount main.work` with no PATH while {} counter processes of {BINARIES} binaries (Go 1.19, 1.27, PIE, stripped) wait, and every other process of the machine runs: start to banner, and the uprobe_multi links it made (one per binary).\n",
        idle.0.len()
    )?;
    let session = Session::start(
        Command::new(gotrace).args(["funccount", "main.work"]),
        "Tracing ",
    )?;
    let links = uprobe_multi_links();
    let summary = session.banner.clone();
    let attach = session.attach;
    let said = session.stop()?;
    writeln!(
        text,
        "| processes | binaries | start to banner | uprobe_multi links |\n|---|---|---|---|\n| {} | {BINARIES} | {} | {} |\n",
        idle.0.len(),
        attach.map_or("-".into(), |d| format!("{:.3} s", d.as_secs_f64())),
        links.map_or("?".into(), |n| n.to_string()),
    )?;
    let found = said
        .lines()
        .find(|l| l.contains("process(es) running"))
        .unwrap_or(&summary)
        .to_owned();
    writeln!(text, "gotrace said: `{found}`\n")?;
    drop(idle);

    // Programs started later, each a new binary.
    let mut later: Vec<PathBuf> = Vec::new();
    for i in 0..LATER {
        let copy = dir.join(format!("later-{i}"));
        std::fs::copy(&binaries[1], &copy)?;
        later.push(copy);
    }
    let session = Session::start(
        Command::new(gotrace).args(["funccount", "main.work"]),
        "Tracing ",
    )?;
    for binary in &later {
        let mut child = Idle::start(binary)?;
        // Let the line come before the next exec.
        std::thread::sleep(Duration::from_millis(100));
        let _ = child.kill();
        let _ = child.wait();
    }
    let said = session.stop()?;
    let mut delays: Vec<f64> = said
        .lines()
        .filter(|l| l.contains("in place") && l.contains("after its exec"))
        .filter_map(|l| {
            l.split("in place ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    let bcc = timed(
        Command::new("funccount-bpfcc").arg(format!("{}:main.work", later[0].display())),
        "Tracing ",
    )?;
    let bcc_ms = bcc.attach.map(|d| d.as_secs_f64() * 1e3);
    let median = delays.get(delays.len() / 2).copied();
    writeln!(
        text,
        "Exec to probes in place, {} programs started one by one while gotrace runs (each its own binary): min {}, median {}, max {} ms; bcc's funccount started for one such binary takes {} ms to attach (gotrace median / bcc: {}).\n",
        delays.len(),
        show(delays.first().copied()),
        show(median),
        show(delays.last().copied()),
        show(bcc_ms),
        match (median, bcc_ms) {
            (Some(ours), Some(theirs)) => format!("{:.3}x", ours / theirs),
            _ => "-".into(),
        }
    )?;
    Ok(text)
}

fn show(ms: Option<f64>) -> String {
    ms.map_or("-".into(), |ms| format!("{ms:.1}"))
}

/// uprobe_multi links in the kernel now (bpftool's `link show`).
fn uprobe_multi_links() -> Option<usize> {
    let out = output(Command::new("bpftool").args(["--json", "link", "show"]))?;
    let links: serde_json::Value = serde_json::from_str(&out).ok()?;
    Some(
        links
            .as_array()?
            .iter()
            .filter(|l| l["type"] == "uprobe_multi")
            .count(),
    )
}
