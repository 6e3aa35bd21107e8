//! What the kernel's part of a probe hit costs on this host, measured: a
//! helper process (gotrace itself, `gotrace calibration-target N`) calls a
//! tiny function of known machine code N times, untraced, with funccount's
//! program on an instruction the kernel emulates, and on one it
//! single-steps; the difference per call, less the program's own time (the
//! kernel times it), is the cost of a hit of that kind. Takes about two
//! seconds; the result is cached per kernel release and CPU model.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _};
use gotrace_common::{
    funccount::{COUNTS_MAP, PROGRAM},
    probe::Cookie,
};

use super::estimate::Costs;
use crate::{
    attach::{self, Attacher, Scope, Site},
    symbols::Binary,
};

// The probed function and its layout: a single-stepped instruction at
// `SINGLE_STEPPED_AT`, a never-taken conditional branch (emulated) at
// `EMULATED_AT`, returns after.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".globl gotrace_calibration_probe",
    ".type gotrace_calibration_probe,@function",
    "gotrace_calibration_probe:",
    "mov rax, rdi", // 48 89 f8: single-stepped
    "cmp rax, 1",   // 48 83 f8 01
    "jb 2f",        // 72 xx: emulated (a conditional branch)
    "ret",
    "2:",
    "ret",
    ".size gotrace_calibration_probe, .-gotrace_calibration_probe",
);
#[cfg(target_arch = "x86_64")]
const EMULATED_AT: u64 = 7;

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".globl gotrace_calibration_probe",
    ".type gotrace_calibration_probe,%function",
    "gotrace_calibration_probe:",
    "mov x1, x0", // single-stepped
    "cmp x1, #1",
    "b.lo 2f", // simulated (a conditional branch)
    "mov x0, x1",
    "ret",
    "2:",
    "ret",
    ".size gotrace_calibration_probe, .-gotrace_calibration_probe",
);
#[cfg(target_arch = "aarch64")]
const EMULATED_AT: u64 = 8;

extern "C" {
    fn gotrace_calibration_probe(value: u64) -> u64;
}

/// Its symbol, and the offset of its single-stepped instruction.
const SYMBOL: &str = "gotrace_calibration_probe";
const SINGLE_STEPPED_AT: u64 = 0;

/// Calls for each measurement: a hit costs 0.5-15 us here, so these take
/// 0.1-0.3 s each.
const CALLS_EMULATED: u64 = 200_000;
const CALLS_SINGLE_STEPPED: u64 = 20_000;

/// `gotrace calibration-target N`: waits for a line on stdin, calls the
/// probed function N times, prints the nanoseconds it took.
pub fn target(calls: u64) -> anyhow::Result<()> {
    println!("ready");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let begun = std::time::Instant::now();
    let mut sum = 0u64;
    for i in 1..=calls {
        // SAFETY: the function reads one register and returns it.
        sum = sum.wrapping_add(unsafe { gotrace_calibration_probe(std::hint::black_box(i)) });
    }
    std::hint::black_box(sum);
    println!("{}", begun.elapsed().as_nanos());
    Ok(())
}

/// Where the costs are cached: root's cache (gotrace runs as root).
fn cache_path() -> PathBuf {
    std::env::var_os("GOTRACE_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/gotrace"))
        .join("probe-cost.json")
}

/// What the cache is valid for: this kernel on this CPU, measured the way
/// this gotrace measures.
fn host_key() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    format!("{} on {cpu} (v2)", release.trim())
}

/// The cached costs for this host, or measures them (saying so) and
/// caches them.
pub fn costs() -> anyhow::Result<(Costs, String)> {
    let path = cache_path();
    let key = host_key();
    if let Some(costs) = cached(&path, &key) {
        return Ok((costs, format!("cached in {}", path.display())));
    }
    eprintln!(
        "gotrace: measuring what a probe hit costs on this host (once, about two seconds; cached in {})",
        path.display()
    );
    let costs = measure()?;
    let saved = serde_json::json!({
        "host": key,
        "emulated_ns": costs.emulated_ns,
        "single_stepped_ns": costs.single_stepped_ns,
    });
    let written = std::fs::create_dir_all(path.parent().unwrap_or(&path))
        .and_then(|()| std::fs::write(&path, format!("{saved}\n")));
    let source = match written {
        Ok(()) => format!("measured now, cached in {}", path.display()),
        Err(err) => format!("measured now, not cached ({}: {err})", path.display()),
    };
    Ok((costs, source))
}

fn cached(path: &std::path::Path, key: &str) -> Option<Costs> {
    let text = std::fs::read_to_string(path).ok()?;
    let saved: serde_json::Value = serde_json::from_str(&text).ok()?;
    if saved["host"] != key {
        return None;
    }
    Some(Costs {
        emulated_ns: saved["emulated_ns"].as_f64()?,
        single_stepped_ns: saved["single_stepped_ns"].as_f64()?,
    })
}

/// Runs the helper untraced and with each kind of probe.
fn measure() -> anyhow::Result<Costs> {
    let exe = std::env::current_exe().context("finding gotrace's own executable")?;
    let binary = Binary::open(&exe)?;
    let function = binary
        .functions()
        .iter()
        .find(|f| f.name == SYMBOL)
        .with_context(|| format!("{SYMBOL} missing from {} (stripped?)", exe.display()))?;
    let file_offset = |at: u64| {
        binary
            .file_offset(function.address + at)
            .with_context(|| format!("{SYMBOL} lies in no segment"))
    };
    let mut ebpf = crate::ebpf::load(|loader| {
        loader.map_max_entries(COUNTS_MAP, 1);
    })?;
    let mut attacher = Attacher::new(attach::Choice::Auto, crate::stop::Stop::never());
    attacher.load(&mut ebpf, PROGRAM)?;
    let shown = exe.display().to_string();
    // The kernel times the program too, so that its part can be taken out:
    // the tools' programs differ, and each is timed while it runs.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("asking the kernel to time BPF programs (BPF_ENABLE_STATS, Linux 5.8)")?;
    let mut per_call = |calls: u64, site: Option<(u64, u32)>| -> anyhow::Result<f64> {
        let mut best = f64::MAX;
        // The best of three: the machine is shared and noisy.
        for _ in 0..3 {
            let mut child = Command::new(&exe)
                .args(["calibration-target", &calls.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .context("starting the calibration helper")?;
            let mut out = BufReader::new(child.stdout.take().context("piped")?);
            let mut line = String::new();
            out.read_line(&mut line)?;
            let before = attacher.run_time(&mut ebpf, PROGRAM)?;
            let _link = match site {
                Some((file_offset, flags)) => Some(attacher.attach(
                    &mut ebpf,
                    &attach::Request {
                        program: PROGRAM,
                        target: &exe,
                        shown: &shown,
                        sites: &[Site {
                            file_offset,
                            cookie: Cookie::new(0, flags).0,
                        }],
                        scope: Scope::Process(
                            std::num::NonZeroU32::new(child.id()).context("helper pid")?,
                        ),
                    },
                )?),
                None => None,
            };
            child.stdin.take().context("piped")?.write_all(b"go\n")?;
            line.clear();
            out.read_line(&mut line)?;
            child.wait()?;
            let ns: f64 = line
                .trim()
                .parse()
                .with_context(|| format!("calibration helper said {line:?}"))?;
            let after = attacher.run_time(&mut ebpf, PROGRAM)?;
            let program = after.nanoseconds.saturating_sub(before.nanoseconds) as f64;
            best = best.min((ns - program) / calls as f64);
        }
        Ok(best)
    };
    let emulated = file_offset(EMULATED_AT)?;
    let single_stepped = file_offset(SINGLE_STEPPED_AT)?;
    let bare = per_call(CALLS_EMULATED, None)?;
    let emulated_ns = per_call(CALLS_EMULATED, Some((emulated, 0)))? - bare;
    let single_stepped_ns = per_call(
        CALLS_SINGLE_STEPPED,
        Some((single_stepped, Cookie::FLAG_SINGLE_STEPPED)),
    )? - bare;
    if !(emulated_ns > 0.0 && single_stepped_ns > 0.0) {
        bail!(
            "calibration gave no cost ({emulated_ns:.0} ns emulated, {single_stepped_ns:.0} ns \
             single-stepped): are the probes firing?"
        );
    }
    Ok(Costs {
        emulated_ns,
        single_stepped_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attach::placement::{cost, Cost};

    /// The helper's instructions are of the kinds measured, as the
    /// kernel's rules (`arch::x86_64::uprobes`) class them.
    #[test]
    fn probed_instructions_are_of_each_kind() {
        let exe = std::env::current_exe().unwrap();
        let binary = Binary::open(&exe).unwrap();
        let f = binary
            .functions()
            .iter()
            .find(|f| f.name == SYMBOL)
            .expect("the calibration function in the test binary");
        let code = binary.code(f);
        let arch = binary.arch();
        assert_eq!(
            cost(arch, &code[SINGLE_STEPPED_AT as usize..]),
            Cost::SingleStepped
        );
        assert_eq!(cost(arch, &code[EMULATED_AT as usize..]), Cost::Emulated);
        // SAFETY: reads one register.
        assert_eq!(unsafe { gotrace_calibration_probe(5) }, 5);
    }
}
