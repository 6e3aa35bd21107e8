//! `cargo xtask bench`: gotrace against bcc (`funccount-bpfcc`,
//! `funclatency-bpfcc`) and bpftrace, side by side in one run on the same
//! binaries, as ratios (machines here are shared and noisy: only ratios
//! from one run compare). Writes `bench/results.md`.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::{
    build, setup,
    util::{output, root, run},
};

mod arm64;
mod budget;
mod host;
mod server;

/// Calls of the probed function in the per-call overhead runs. The peers'
/// entry probes cost ~14 us per call on this kind of VM, so 10M calls
/// would take minutes each; 1M gives stable ns-per-call figures.
const CALLS: u32 = 1_000_000;
/// Largest set bpftrace gets by default. With 989 functions it had not
/// attached after 180 s, and the killed bpftrace then spent over 15
/// minutes in the kernel detaching its perf events (one RCU grace period
/// each), blocking gotrace's own attach meanwhile.
/// `GOTRACE_BENCH_BPFTRACE_FUNCTIONS` raises it.
const BPFTRACE_FUNCTIONS_DEFAULT: usize = 100;
/// How long bpftrace may take to attach and detach one set of probes.
const BPFTRACE_PATIENCE: Duration = Duration::from_secs(180);
/// Events for the trace throughput run: about 10 s at the probes' rate.
const EVENTS: u32 = 5_000_000;

pub fn bench() -> anyhow::Result<()> {
    let go = setup::all()?;
    let gotrace = build::gotrace()?;
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let counter = go_build(
        &go.go127,
        &root().join("tests/fixtures/counter"),
        &dir.join("counter"),
    )?;
    let big = go_build(&go.go127, &root().join("bench/big"), &dir.join("big"))?;

    // Sections that stand alone (the server's, the host's, the budget's) can be run by
    // themselves while working on them; the report is then only printed.
    if let Ok(only) = std::env::var("GOTRACE_BENCH_SECTIONS") {
        let mut report = String::new();
        for section in only.split(',') {
            report += &match section {
                "server" => server::section(&gotrace, &dir)?,
                "host" => host::section(&gotrace, &go, &dir)?,
                "budget" => budget::section(&gotrace, &go, &dir)?,
                "arm64" => arm64::section(&gotrace, &counter, &go, &dir)?,
                other => bail!(
                    "GOTRACE_BENCH_SECTIONS: no section {other:?} (server, host, budget, arm64)"
                ),
            };
        }
        println!("{report}");
        return Ok(());
    }

    let mut report = String::new();
    let machine = format!(
        "kernel {}, {} CPUs, {}",
        output(Command::new("uname").arg("-r"))
            .unwrap_or_default()
            .trim(),
        thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    writeln!(
        report,
        "# gotrace benchmark\n\nMachine: {machine}. Go 1.27 binaries built by the bench.\n"
    )?;

    // 1. Attach time.
    writeln!(report, "## Attach and detach\n\nTime from start to the \"Tracing\" banner (gotrace, bcc: probes attached), then from SIGINT to exit. bpftrace prints nothing once attached, so it is timed over a whole `-c /bin/true` run (start, attach, detach), against gotrace's attach + detach. `{}` has {} functions; gotrace also probes their inlined copies, so it attaches more probes than functions asked.\n", shown(&big), function_count(&gotrace, &big)?)?;
    writeln!(report, "| functions asked | gotrace probes | gotrace attach | gotrace detach | bcc attach | bpftrace start+attach+detach | gotrace / bcc (attach) | gotrace / bpftrace (total) |")?;
    writeln!(report, "|---|---|---|---|---|---|---|---|")?;
    let packages = packages(&gotrace, &big)?;
    let mut bpftrace_gave_up = false;
    let bpftrace_functions = match std::env::var("GOTRACE_BENCH_BPFTRACE_FUNCTIONS") {
        Ok(n) => n
            .parse()
            .with_context(|| format!("GOTRACE_BENCH_BPFTRACE_FUNCTIONS={n:?}"))?,
        Err(_) => BPFTRACE_FUNCTIONS_DEFAULT,
    };
    for wanted in [100usize, 1000, 10000, usize::MAX] {
        let chosen = choose(&packages, wanted);
        let asked: usize = chosen.iter().map(|(_, n)| n).sum();
        let names: Vec<&str> = chosen.iter().map(|(p, _)| p.as_str()).collect();
        let regex = format!(
            "({})\\..*",
            names
                .iter()
                .map(|n| regex_escape(n))
                .collect::<Vec<_>>()
                .join("|")
        );
        let ours = timed(
            // Peers attach everything at once: so does gotrace without a budget
            // (a budget attaches in chunks; its own section measures that).
            Command::new(&gotrace).args([
                "funccount",
                "--budget",
                "off",
                "-r",
                &format!("{}:{regex}", big.display()),
            ]),
            "Tracing ",
        )?;
        let bcc = timed(
            Command::new("funccount-bpfcc").args(["-r", &format!("{}:^{regex}$", big.display())]),
            "Tracing ",
        )?;
        let probes: Vec<String> = names
            .iter()
            // Quoted: bpftrace does not parse every Go package path bare.
            .map(|n| format!("uprobe:{}:\"{n}.*\"", big.display()))
            .collect();
        let program = format!("{} {{ @[probe] = count(); }}", probes.join(","));
        // A bigger set would only take longer than the smaller one that
        // already ran out of patience.
        let bpftrace = if bpftrace_gave_up {
            Err("skipped (a smaller set was stopped)".to_owned())
        } else if wanted > bpftrace_functions {
            Err(format!(
                "not run (over {BPFTRACE_FUNCTIONS_DEFAULT} functions: see below)"
            ))
        } else {
            bpftrace_total(&program)?
        };
        bpftrace_gave_up |= bpftrace.is_err() && wanted <= bpftrace_functions;
        let probes_attached = ours
            .banner
            .split_whitespace()
            .nth(1)
            .unwrap_or("?")
            .to_owned();
        writeln!(
            report,
            "| {asked} | {probes_attached} | {} | {} | {} | {} | {} | {} |",
            ours.show_attach(),
            ours.show_detach(),
            bcc.show_attach(),
            match &bpftrace {
                Ok(d) => format!("{:.3} s", d.as_secs_f64()),
                Err(why) => why.clone(),
            },
            ratio(ours.attach, bcc.attach),
            ratio(ours.total(), bpftrace.ok())
        )?;
        println!("{report}");
    }

    if bpftrace_functions == BPFTRACE_FUNCTIONS_DEFAULT {
        writeln!(report, "\nbpftrace gets only the smallest set: with 989 functions it had not attached after {} s, and once killed it spent over 15 minutes in the kernel detaching its perf events one RCU grace period at a time, which blocks other tracers' attaching meanwhile (`GOTRACE_BENCH_BPFTRACE_FUNCTIONS=N` to try more). gotrace detaches all its probes with one link.", BPFTRACE_PATIENCE.as_secs())?;
    }

    // A large Go binary built by someone else: Debian's hugo (stripped,
    // cgo, linked by the C linker).
    match debian_hugo(&dir) {
        Ok(hugo) => {
            let size_mb = std::fs::metadata(&hugo)?.len() as f64 / 1e6;
            let begun = Instant::now();
            output(Command::new(&gotrace).arg("info").arg(&hugo)).context("gotrace info hugo")?;
            let resolved = begun.elapsed();
            let all = timed(
                Command::new(&gotrace).args([
                    "funccount",
                    "--budget",
                    "off",
                    &format!("{}:*", hugo.display()),
                ]),
                "Tracing ",
            )?;
            let functions = all
                .banner
                .split_whitespace()
                .nth(1)
                .unwrap_or("?")
                .to_owned();
            writeln!(report, "\nDebian's `hugo` ({size_mb:.0} MB, stripped, cgo, linked by the C linker): symbols resolved from its pclntab in {:.3} s (`gotrace info`); all {functions} functions (inlined-only ones included) attached in {} and detached in {} (bcc refuses more than 1000).", resolved.as_secs_f64(), all.show_attach(), all.show_detach())?;
        }
        Err(err) => writeln!(report, "\nDebian's `hugo` not measured: {err:#}")?,
    }

    // 2. Per-call overhead, 3. start-up and memory.
    let untraced = (0..3)
        .map(|_| run_counter(&counter, CALLS))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .min()
        .context("timing the untraced run")?;
    writeln!(report, "\n## Per-call overhead and exactness\n\n`main.work` (a function with a stack check) called {CALLS} times in a loop; untraced the loop takes {:.3} s. Overhead = (traced - untraced) / calls. Start-up: from exec to the banner for this one function. Memory: the tracer's peak RSS (VmHWM; for bpftrace and bcc the whole process, Python included).\n", untraced.as_secs_f64())?;
    writeln!(
        report,
        "| tool | ns per call | count (want {CALLS}) | start-up | peak RSS |"
    )?;
    writeln!(report, "|---|---|---|---|---|")?;
    let pattern = format!("{}:main.work", counter.display());
    let cases: Vec<(&str, Command, &str)> = vec![
        (
            "gotrace funccount",
            command(&gotrace, &["funccount", &pattern]),
            "Tracing ",
        ),
        (
            "bcc funccount-bpfcc",
            command(Path::new("funccount-bpfcc"), &[&pattern]),
            "Tracing ",
        ),
        (
            "bpftrace uprobe count()",
            command(
                Path::new("bpftrace"),
                &["-e", &format!("uprobe:{pattern} {{ @calls = count(); }}")],
            ),
            // Printed just before attaching one probe; see the settle below.
            "Attaching 1 probe",
        ),
        (
            "gotrace funclatency",
            command(&gotrace, &["funclatency", &pattern]),
            "Tracing ",
        ),
        (
            "bcc funclatency-bpfcc",
            command(Path::new("funclatency-bpfcc"), &[&pattern]),
            "Tracing ",
        ),
    ];
    let mut per_call = BTreeMap::new();
    for (name, mut cmd, banner) in cases {
        let session = Session::start(&mut cmd, banner)?;
        let started = session.attach;
        let rss = session.peak_rss_kib();
        if name.starts_with("bpftrace") {
            // bpftrace announces before attaching: give it time to finish.
            thread::sleep(Duration::from_secs(2));
        }
        // bcc's funclatency uses uretprobes, which can kill Go programs
        // (SIGILL/SIGSEGV at the trampoline address): record that.
        let took = run_counter(&counter, CALLS);
        let out = session.stop()?;
        let Ok(took) = took else {
            writeln!(
                report,
                "| {name} | target crashed: {} | - | - | - |",
                took.unwrap_err()
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
            )?;
            println!("{name}: target crashed");
            continue;
        };
        let overhead = (took.saturating_sub(untraced)).as_nanos() as f64 / f64::from(CALLS);
        per_call.insert(name, overhead);
        let count = count_in(&out, name);
        writeln!(
            report,
            "| {name} | {overhead:.0} | {} | {} | {} |",
            count.map_or("-".into(), |c| c.to_string()),
            started.map_or("failed".into(), |d| format!(
                "{:.0} ms",
                d.as_secs_f64() * 1e3
            )),
            rss.map_or("?".into(), |kib| format!("{:.1} MiB", kib as f64 / 1024.0)),
        )?;
        println!("{name}: {overhead:.0} ns/call, count {count:?}");
    }
    writeln!(
        report,
        "\nRatios of ns per call: gotrace funccount / bcc = {}, / bpftrace = {}; gotrace funclatency / bcc = {}. gotrace funclatency pays for a `ret` probe, which the kernel single-steps (no x86 exit instruction is emulated); bcc's funclatency uses uretprobes, which crash Go programs.",
        pair(&per_call, "gotrace funccount", "bcc funccount-bpfcc"),
        pair(&per_call, "gotrace funccount", "bpftrace uprobe count()"),
        pair(&per_call, "gotrace funclatency", "bcc funclatency-bpfcc"),
    )?;

    // 4. Probe placement: the same function probed at the stack-check
    // branch and at its first instruction, by funccount and by trace.
    writeln!(report, "\n## Probe placement\n\nThe same {CALLS} calls of `main.work`, its entry probe on the stack-check `JBE` (which the kernel emulates; gotrace's choice) or on the first instruction (single-stepped; where bcc and bpftrace put it). trace writes its lines to a file.\n")?;
    writeln!(
        report,
        "| tool | probe on | ns per call | events or count | start-up |"
    )?;
    writeln!(report, "|---|---|---|---|---|")?;
    let events_file = dir.join("trace-events.txt");
    let mut placement_costs = BTreeMap::new();
    for tool in ["funccount", "trace"] {
        for placement in ["cheapest", "entry"] {
            let mut cmd = Command::new(&gotrace);
            cmd.args([tool, "--placement", placement]);
            let session = if tool == "trace" {
                cmd.arg(format!("{}:main.work \"%d\", goarg1", counter.display()))
                    .stdout(std::fs::File::create(&events_file)?);
                Session::start_stderr(&mut cmd, "Tracing ")?
            } else {
                cmd.arg(&pattern);
                Session::start(&mut cmd, "Tracing ")?
            };
            let started = session.attach;
            let took = run_counter(&counter, CALLS)?;
            let out = session.stop()?;
            let seen = if tool == "trace" {
                event_lines(&events_file)?
            } else {
                count_in(&out, tool).unwrap_or(0)
            };
            let overhead = (took.saturating_sub(untraced)).as_nanos() as f64 / f64::from(CALLS);
            placement_costs.insert((tool, placement), overhead);
            let site = if placement == "entry" {
                "first instruction"
            } else {
                "stack-check branch"
            };
            let started = started.map_or("failed".into(), |d| {
                format!("{:.0} ms", d.as_secs_f64() * 1e3)
            });
            writeln!(
                report,
                "| gotrace {tool} | {site} | {overhead:.0} | {seen} | {started} |"
            )?;
            println!("{tool} at {site}: {overhead:.0} ns/call, {seen}");
        }
    }
    let cost = |tool, placement| {
        placement_costs
            .get(&(tool, placement))
            .copied()
            .unwrap_or(0.0)
    };
    let census: serde_json::Value = serde_json::from_str(
        &output(
            Command::new(&gotrace)
                .args(["info", "--json", "--probe-cost"])
                .arg(&big),
        )
        .context("gotrace info --probe-cost")?,
    )?;
    let c = &census["probe_cost"];
    writeln!(
        report,
        "\nAt the branch a call costs {} (funccount) and {} (trace) of what it costs at the first instruction. Over `{}`: {} functions have a stack check and take the cheap entry probe, {} without one begin with a `push` the kernel also emulates, {} (small leaves) keep a single-stepped one. The return side has no such instruction: of {} exits, {} are `ret` and only {} tail `jmp`s, and the instructions before a `ret` (`pop rbp`, `add rsp`) are single-stepped too, so every funclatency call pays one single-step (see above).",
        ratio_f(cost("funccount", "cheapest"), cost("funccount", "entry")),
        ratio_f(cost("trace", "cheapest"), cost("trace", "entry")),
        shown(&big),
        c["entries_on_stack_check_branch"],
        c["entries_emulated"],
        c["entries_single_stepped"],
        c["exits_ret"].as_u64().unwrap_or(0) + c["exits_tail_jump"].as_u64().unwrap_or(0),
        c["exits_ret"],
        c["exits_tail_jump"],
    )?;

    // 5. trace throughput at the highest rate the probes allow: the
    // cheapest placement, the target calling as fast as it can.
    let mut cmd = Command::new(&gotrace);
    cmd.args([
        "trace",
        &format!("{}:main.work \"%d\", goarg1", counter.display()),
    ])
    .stdout(std::fs::File::create(&events_file)?);
    let session = Session::start_stderr(&mut cmd, "Tracing ")?;
    let took = run_counter(&counter, EVENTS)?;
    let rss = session.peak_rss_kib();
    let out = session.stop()?;
    let lines = event_lines(&events_file)?;
    let lost = out
        .lines()
        .find(|l| l.contains("events lost"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "0".into());
    writeln!(
        report,
        "\n## trace throughput\n\n`gotrace trace` on `main.work` (stack-check branch probe, one Go argument), the target calling it {EVENTS} times as fast as the probe lets it, lines written to a file: {:.2} s = {:.0} events/s; {lines} lines written, {lost} events reported lost; trace's peak RSS {}.\n",
        took.as_secs_f64(),
        f64::from(EVENTS) / took.as_secs_f64(),
        rss.map_or("?".into(), |kib| format!("{:.1} MiB", kib as f64 / 1024.0)),
    )?;

    // 6. A real server's latency under gotrace.
    report += &server::section(&gotrace, &dir)?;

    // 7. Every Go program of the host.
    report += &host::section(&gotrace, &go, &dir)?;

    // 8. The overhead budget.
    report += &budget::section(&gotrace, &go, &dir)?;

    // 9. arm64, emulated.
    report += &arm64::section(&gotrace, &counter, &go, &dir)?;

    std::fs::create_dir_all(root().join("bench"))?;
    std::fs::write(root().join("bench/results.md"), &report)?;
    println!("{report}\nxtask: wrote bench/results.md");
    Ok(())
}

/// Debian's hugo binary, unpacked from its package (not installed) into
/// `dir`.
fn debian_hugo(dir: &Path) -> anyhow::Result<PathBuf> {
    let unpacked = dir.join("hugo-deb");
    let binary = unpacked.join("usr/bin/hugo");
    if !binary.exists() {
        std::fs::create_dir_all(&unpacked)?;
        run(Command::new("apt-get")
            .current_dir(dir)
            .args(["download", "hugo"]))?;
        let deb = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("hugo_"))
            })
            .context("apt-get download hugo left no .deb")?;
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    }
    Ok(binary)
}

/// A path as the report shows it: relative to the repository, never the
/// machine's own layout.
fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn command(program: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd
}

fn go_build(go: &Path, source: &Path, output: &Path) -> anyhow::Result<PathBuf> {
    go_build_with(go, source, output, &[])
}

/// `go build` with `flags` (`-buildmode=pie`, `-ldflags=-s -w`).
fn go_build_with(
    go: &Path,
    source: &Path,
    output: &Path,
    flags: &[&str],
) -> anyhow::Result<PathBuf> {
    run(Command::new(go)
        .current_dir(source)
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .arg("build")
        .args(flags)
        .arg("-o")
        .arg(output)
        .arg("."))?;
    Ok(output.to_owned())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default()
}

fn function_count(gotrace: &Path, binary: &Path) -> anyhow::Result<usize> {
    Ok(packages(gotrace, binary)?.iter().map(|(_, n)| n).sum())
}

/// Go packages of `binary` with their function counts, largest first.
fn packages(gotrace: &Path, binary: &Path) -> anyhow::Result<Vec<(String, usize)>> {
    let listing = output(
        Command::new(gotrace)
            .arg("info")
            .arg("--functions")
            .arg(binary),
    )
    .context("gotrace info --functions")?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in listing
        .lines()
        .filter(|l| l.starts_with("0x") && !l.contains(" inlined "))
    {
        let Some(name) = line.split_whitespace().nth(2) else {
            continue;
        };
        let base = name.rfind('/').map_or(0, |s| s + 1);
        let Some(dot) = name[base..].find('.') else {
            continue;
        };
        let package = &name[..base + dot];
        if package.contains(':') || package.is_empty() {
            continue;
        }
        *counts.entry(package.to_owned()).or_default() += 1;
    }
    let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    Ok(counts)
}

/// Packages whose functions add up to about `wanted` (all for MAX).
fn choose(packages: &[(String, usize)], wanted: usize) -> Vec<(String, usize)> {
    let mut chosen = Vec::new();
    let mut total = 0;
    // Smallest packages first, to land close to the target.
    for (package, n) in packages.iter().rev() {
        if total + n <= wanted.max(1) || wanted == usize::MAX {
            chosen.push((package.clone(), *n));
            total += n;
        }
    }
    chosen
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

/// A tracer started and waited for until its banner.
struct Session {
    child: Child,
    attach: Option<Duration>,
    /// The line that said the tracer was ready.
    banner: String,
    lines: mpsc::Receiver<String>,
}

impl Session {
    fn start(cmd: &mut Command, banner: &str) -> anyhow::Result<Session> {
        Self::spawn(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()), banner)
    }

    /// For tracers whose stdout goes elsewhere: the banner comes on stderr.
    fn start_stderr(cmd: &mut Command, banner: &str) -> anyhow::Result<Session> {
        Self::spawn(cmd.stderr(Stdio::piped()), banner)
    }

    fn spawn(cmd: &mut Command, banner: &str) -> anyhow::Result<Session> {
        let begun = Instant::now();
        let mut child = cmd
            .env("PYTHONUNBUFFERED", "1")
            .env("BPFTRACE_MAX_PROBES", "100000")
            .env("BPFTRACE_MAX_BPF_PROGS", "100000")
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let (tx, lines) = mpsc::channel();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let mut attach = None;
        let mut banner_line = String::new();
        let deadline = begun + Duration::from_secs(300);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    if line.contains(banner) {
                        attach = Some(begun.elapsed());
                        banner_line = line;
                        break;
                    }
                    seen.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if child.try_wait()?.is_some() {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        if attach.is_none() {
            eprintln!("xtask: {cmd:?} did not start: {}", seen.join(" | "));
        }
        Ok(Session {
            child,
            attach,
            banner: banner_line,
            lines,
        })
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// SIGINT, then everything it printed.
    fn stop(mut self) -> anyhow::Result<String> {
        if self.child.try_wait()?.is_none() {
            run(Command::new("kill").args(["-INT", &self.child.id().to_string()]))?;
        }
        let deadline = Instant::now() + Duration::from_secs(300);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child.kill()?;
                bail!("tracer did not exit after SIGINT");
            }
            thread::sleep(Duration::from_millis(20));
        }
        thread::sleep(Duration::from_millis(100));
        Ok(self.lines.try_iter().collect::<Vec<_>>().join("\n"))
    }
}

/// Start-to-banner and SIGINT-to-exit times of one tracer.
struct Timed {
    attach: Option<Duration>,
    detach: Option<Duration>,
    banner: String,
}

impl Timed {
    fn show_attach(&self) -> String {
        self.attach.map_or("refused/failed".into(), |d| {
            format!("{:.3} s", d.as_secs_f64())
        })
    }

    fn total(&self) -> Option<Duration> {
        Some(self.attach? + self.detach?)
    }

    fn show_detach(&self) -> String {
        self.detach
            .map_or("-".into(), |d| format!("{:.3} s", d.as_secs_f64()))
    }
}

fn timed(cmd: &mut Command, banner: &str) -> anyhow::Result<Timed> {
    let session = Session::start(cmd, banner)?;
    let attach = session.attach;
    let banner = session.banner.clone();
    let stopping = Instant::now();
    session.stop()?;
    Ok(Timed {
        attach,
        detach: attach.map(|_| stopping.elapsed()),
        banner,
    })
}

/// bpftrace says nothing once attached; `-c /bin/true` makes it attach,
/// run a command that exits at once, and detach: its whole run. It takes
/// minutes per thousand probes here, so it gets [`BPFTRACE_PATIENCE`].
fn bpftrace_total(program: &str) -> anyhow::Result<Result<Duration, String>> {
    let begun = Instant::now();
    let mut child = Command::new("bpftrace")
        .env("BPFTRACE_MAX_PROBES", "100000")
        .env("BPFTRACE_MAX_BPF_PROGS", "100000")
        .args(["-e", program, "-c", "/bin/true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("running bpftrace")?;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(if status.success() {
                Ok(begun.elapsed())
            } else {
                Err(format!("failed ({status})"))
            });
        }
        if begun.elapsed() > BPFTRACE_PATIENCE {
            child.kill()?;
            child.wait()?;
            return Ok(Err(format!("> {} s, stopped", BPFTRACE_PATIENCE.as_secs())));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn run_counter(counter: &Path, calls: u32) -> anyhow::Result<Duration> {
    let begun = Instant::now();
    let out = Command::new(counter)
        .args([&calls.to_string(), "0"])
        .output()
        .context("running the counter")?;
    if !out.status.success() {
        bail!("counter failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(begun.elapsed())
}

/// Event lines trace wrote to `file` (all but its header).
fn event_lines(file: &Path) -> anyhow::Result<u64> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(text.lines().count().saturating_sub(1) as u64)
}

/// The call count a tool printed for main.work.
fn count_in(output: &str, tool: &str) -> Option<u64> {
    if tool.contains("funclatency") {
        // "avg = ..., total: ..., count: N"
        return output
            .lines()
            .find_map(|l| l.split("count: ").nth(1))
            .and_then(|n| n.trim().parse().ok());
    }
    output.lines().find_map(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        match fields.as_slice() {
            ["main.work", n] | ["@calls:", n] => n.parse().ok(),
            _ => None,
        }
    })
}

fn ratio(ours: Option<Duration>, theirs: Option<Duration>) -> String {
    match (ours, theirs) {
        (Some(a), Some(b)) => ratio_f(a.as_secs_f64(), b.as_secs_f64()),
        (Some(_), None) => "peer refused".into(),
        _ => "-".into(),
    }
}

fn pair(per_call: &BTreeMap<&str, f64>, ours: &str, theirs: &str) -> String {
    match (per_call.get(ours), per_call.get(theirs)) {
        (Some(&a), Some(&b)) => ratio_f(a, b),
        _ => "- (a run failed)".into(),
    }
}

fn ratio_f(ours: f64, theirs: f64) -> String {
    if theirs <= 0.0 {
        return "-".into();
    }
    format!("{:.3}x", ours / theirs)
}
