//! Whole-host tracing: a FUNC without PATH traces every Go program running
//! now and started later, each binary's rows apart; `-p` lists, `--comm`
//! and `--cgroup` narrow it, the cgroup in the kernel.
//!
//! Other tests' programs run meanwhile on the same machine and are traced
//! too; every assertion is about this test's own binaries (each built in
//! a directory of its own), found by path.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use integration_tests::{
    counts_by_binary, fixture_counts, latency_report, residue, run_gotrace, Fixture, Go, Output,
    Tracer, Waiting,
};

/// A counter run with COUNTER_WAIT: 2,000 calls of main.work in 2 rounds.
fn waiting(binary: &Path) -> Waiting {
    let mut cmd = Command::new(binary);
    cmd.args(["1000", "0", "2"]);
    Waiting::start(cmd)
}

/// Starts a counter after gotrace and waits until gotrace says its probes
/// are in place (it prints the PID when it attaches to a new binary).
fn started_later(tracer: &Tracer, binary: &Path) -> Waiting {
    let process = waiting(binary);
    tracer.wait_for(&format!("(PID {})", process.pid()));
    process
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// Three gc binaries (Go 1.19, Go 1.27, a Go 1.27 PIE) and a gccgo one,
/// two running before gotrace starts and two started after: each counted
/// exactly, under its own binary, and nothing left in the kernel.
#[test]
fn every_go_program_now_and_later() {
    let go119 = Fixture::build("counter", Go::Go119);
    let go127 = Fixture::build("counter", Go::Go127);
    let pie = Fixture::build_with("counter", Go::Go127, &["-buildmode=pie"]);
    let gccgo = Fixture::build("counter", Go::Gccgo);
    let before = [waiting(&go119.binary), waiting(&gccgo.binary)];
    let tracer = Tracer::start(&["funccount", "--json", "main.work"]);
    let after = [
        started_later(&tracer, &go127.binary),
        started_later(&tracer, &pie.binary),
    ];
    let mut said = BTreeMap::new();
    for (process, fixture) in before
        .into_iter()
        .chain(after)
        .zip([&go119, &gccgo, &go127, &pie])
    {
        let counts = fixture_counts(&process.finish());
        said.insert(shown(&fixture.binary), counts["main.work"]);
    }
    let out = tracer.stop(libc::SIGINT);
    let counts = counts_by_binary(&out);
    for (binary, n) in &said {
        assert_eq!(
            counts.get(binary).and_then(|c| c.get("main.work")),
            Some(n),
            "{binary}: {counts:?}\n{}",
            out.stderr
        );
    }
    assert!(out.stderr.contains("process(es) running"), "{}", out.stderr);
    assert_eq!(residue(), Vec::<String>::new(), "programs left loaded");
}

/// The design card's example: `trace 'main.add "%d %d" goarg1, goarg2'`
/// with no path and no PID prints the arguments of main.add of a program
/// already running and of one started afterwards (each calls add(42, 13)
/// once).
#[test]
fn design_card_trace_example() {
    let running = Fixture::build("counter", Go::Go127);
    let later = Fixture::build("counter", Go::Go119);
    let first = waiting(&running.binary);
    let tracer = Tracer::start(&["trace", "--json", "main.add \"%d %d\", goarg1, goarg2"]);
    let second = started_later(&tracer, &later.binary);
    let pids = [first.pid(), second.pid()];
    first.finish();
    second.finish();
    let out = tracer.stop(libc::SIGINT);
    for pid in &pids {
        let events: Vec<serde_json::Value> = out
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["pid"].as_u64().map(|p| p.to_string()).as_ref() == Some(pid))
            .collect();
        assert_eq!(events.len(), 1, "PID {pid}: {out:?}");
        assert_eq!(events[0]["func"], "main.add");
        assert_eq!(events[0]["message"], "42 13", "{out:?}");
    }
}

/// funclatency host-wide: each binary's calls in its own rows, with the
/// binary named in JSON.
#[test]
fn latency_rows_per_binary() {
    let a = Fixture::build("counter", Go::Go119);
    let b = Fixture::build("counter", Go::Go127);
    let processes = [waiting(&a.binary), waiting(&b.binary)];
    let tracer = Tracer::start(&["funclatency", "--json", "main.work"]);
    let said: Vec<u64> = processes
        .into_iter()
        .map(|p| fixture_counts(&p.finish())["main.work"])
        .collect();
    let report = latency_report(&tracer.stop(libc::SIGINT));
    for (fixture, n) in [&a, &b].into_iter().zip(said) {
        let row = report["functions"]
            .as_array()
            .expect("functions")
            .iter()
            .find(|f| f["binary"] == shown(&fixture.binary) && f["func"] == "main.work")
            .unwrap_or_else(|| panic!("no row of {}: {report}", fixture.binary.display()));
        assert_eq!(row["count"], n, "{report}");
    }
}

/// A program whose binary exists only in its own mount namespace (a
/// container) is found through /proc/PID/exe, and named as such.
#[test]
fn program_in_another_mount_namespace() {
    let counter = Fixture::build("counter", Go::Go127);
    let hidden = counter.dir.path().join("ns");
    std::fs::create_dir(&hidden).unwrap();
    let script = format!(
        "mount -t tmpfs none {dir} && cp {bin} {dir}/counter && exec {dir}/counter 1000 0 3",
        dir = hidden.display(),
        bin = counter.binary.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    let target = Waiting::start(cmd);
    assert!(
        !hidden.join("counter").exists(),
        "visible outside its namespace"
    );
    let tracer = Tracer::start(&["funccount", "--json", "main.work"]);
    let pid = target.pid();
    let said = fixture_counts(&target.finish());
    let out = tracer.stop(libc::SIGINT);
    let counts = counts_by_binary(&out);
    let name = format!(
        "{} (in the mount namespace of PID {pid})",
        hidden.join("counter").display()
    );
    assert_eq!(
        counts.get(&name).and_then(|c| c.get("main.work")),
        said.get("main.work"),
        "{counts:?}"
    );
}

/// A cgroup v2 directory made for a test, removed at the end.
struct Cgroup(PathBuf);

impl Cgroup {
    fn new(name: &str) -> Cgroup {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mount = mountinfo
            .lines()
            .find(|l| {
                l.split(" - ")
                    .nth(1)
                    .is_some_and(|f| f.starts_with("cgroup2 "))
            })
            .and_then(|l| l.split_whitespace().nth(4))
            .expect("a cgroup v2 mount");
        let path = Path::new(mount).join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir(&path).expect("creating a cgroup");
        Cgroup(path)
    }

    /// `binary` started with COUNTER_WAIT inside this cgroup.
    fn run(&self, binary: &Path) -> Waiting {
        let script = format!(
            "echo $$ > {}/cgroup.procs && exec {} 1000 0 3",
            self.0.display(),
            binary.display()
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script]);
        Waiting::start(cmd)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Empty once its processes are gone (reaped by the test).
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// `--cgroup`: one binary run inside a cgroup and outside it; only the
/// calls made inside are counted, by the kernel's check of the cgroup (the
/// binary's probes fire in both processes).
#[test]
fn cgroup_counts_only_its_processes() {
    let counter = Fixture::build("counter", Go::Go119);
    let cgroup = Cgroup::new("gotrace-test");
    let inside = cgroup.run(&counter.binary);
    let outside = waiting(&counter.binary);
    let cgroup_arg = cgroup.0.display().to_string();
    let tracer = Tracer::start(&["funccount", "--json", "-c", &cgroup_arg, "main.work"]);
    let said_inside = fixture_counts(&inside.finish());
    let said_outside = fixture_counts(&outside.finish());
    assert_ne!(said_inside["main.work"], said_outside["main.work"]);
    let out = tracer.stop(libc::SIGINT);
    let counts = counts_by_binary(&out);
    assert_eq!(
        counts
            .get(&shown(&counter.binary))
            .and_then(|c| c.get("main.work")),
        said_inside.get("main.work"),
        "{counts:?}"
    );
    // Other programs of the host are outside the cgroup: not even looked at.
    assert_eq!(counts.len(), 1, "{counts:?}");
}

/// `--comm`: one binary under two names (hard links, one inode, so one set
/// of probes): only processes named like the glob count, also ones that
/// start later.
#[test]
fn comm_keeps_processes_by_name() {
    let counter = Fixture::build("counter", Go::Go127);
    let alpha = counter.dir.path().join("alpha-ctr");
    let beta = counter.dir.path().join("beta-ctr");
    std::fs::hard_link(&counter.binary, &alpha).unwrap();
    std::fs::hard_link(&counter.binary, &beta).unwrap();
    let early = [waiting(&alpha), waiting(&beta)];
    let tracer = Tracer::start(&["funccount", "-v", "--json", "--comm", "alpha*", "main.work"]);
    let late_alpha = waiting(&alpha);
    tracer.wait_for(&format!("keeping PID {}", late_alpha.pid()));
    let late_beta = waiting(&beta);
    let [early_alpha, early_beta] = early;
    let kept = fixture_counts(&early_alpha.finish())["main.work"]
        + fixture_counts(&late_alpha.finish())["main.work"];
    early_beta.finish();
    late_beta.finish();
    let out = tracer.stop(libc::SIGINT);
    let counts = counts_by_binary(&out);
    let total: u64 = counts
        .iter()
        .filter(|(binary, _)| binary.contains(&counter.dir.path().display().to_string()))
        .filter_map(|(_, c)| c.get("main.work"))
        .sum();
    assert_eq!(total, kept, "{counts:?}\n{}", out.stderr);
}

/// `-p` with several PIDs, without PATH: their binaries only, another
/// process of one of them not counted, and the run ends when they have.
#[test]
fn pid_list_without_path() {
    let a = Fixture::build("counter", Go::Go119);
    let b = Fixture::build("counter", Go::Go127);
    let first = waiting(&a.binary);
    let second = waiting(&b.binary);
    let list = format!("{},{}", first.pid(), second.pid());
    let tracer = Tracer::start(&["funccount", "--json", "-p", &list, "main.work"]);
    a.run(&["500"]); // not in the list
    let said_a = fixture_counts(&first.finish())["main.work"];
    let said_b = fixture_counts(&second.finish())["main.work"];
    let out = tracer.wait();
    let counts = counts_by_binary(&out);
    assert_eq!(counts[&shown(&a.binary)]["main.work"], said_a, "{counts:?}");
    assert_eq!(counts[&shown(&b.binary)]["main.work"], said_b, "{counts:?}");
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(out.stderr.contains("exited"), "{}", out.stderr);
}

/// The table layout of a host-wide run: one `binary = PATH` section per
/// binary with calls, the same function in two binaries never merged.
#[test]
fn table_sections_per_binary() {
    let a = Fixture::build("counter", Go::Go119);
    let b = Fixture::build("counter", Go::Go127);
    let processes = [waiting(&a.binary), waiting(&b.binary)];
    let tracer = Tracer::start(&["funccount", "main.work"]);
    for p in processes {
        p.finish();
    }
    let out = tracer.stop(libc::SIGINT);
    for fixture in [&a, &b] {
        let header = format!("binary = {}", fixture.binary.display());
        let lines: Vec<&str> = out.stdout.lines().collect();
        let at = lines
            .iter()
            .position(|l| *l == header)
            .unwrap_or_else(|| panic!("no {header:?} in\n{}", out.stdout));
        assert!(lines[at + 1].starts_with("FUNC "), "{}", out.stdout);
        let row: Vec<&str> = lines[at + 2].split_whitespace().collect();
        assert_eq!(row, ["main.work", "2000"], "{}", out.stdout);
    }
}

/// A `--comm` no process matches: the run says it waits, and when `-d`
/// ends it, fails saying nothing was traced; nothing left in the kernel.
#[test]
fn comm_matching_nothing() {
    let out: Output = run_gotrace(&[
        "funccount",
        "--comm",
        "no-such-program-*",
        "-d",
        "1",
        "main.work",
    ]);
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stdout.contains("waiting for a Go program"), "{out:?}");
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("no Go program with a function matching")
            && last.contains("no-such-program-*"),
        "{out:?}"
    );
    assert_eq!(residue(), Vec::<String>::new(), "programs left loaded");
}
