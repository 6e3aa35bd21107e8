//! `gotrace funccount` against the counter fixture built by real Go
//! toolchains: counts must be exactly what the fixture says it did.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use integration_tests::{
    count_tables, fixture_counts, only_table, residue, Fixture, Go, Tracer, Waiting,
};

/// Counts a run of `counter 100000 2000`: a framed function (work), a leaf
/// (leaf), a recursion that grows the stack (grow), a called-once function
/// (add), on both ends of the register-ABI Go versions.
fn exact_counts(go: Go) {
    let counter = Fixture::build("counter", go);
    let tracer = Tracer::start(&["funccount", &counter.pattern("main.*")]);
    assert!(
        tracer.banner.starts_with("Tracing ") && tracer.banner.ends_with("... Hit Ctrl-C to end."),
        "{}",
        tracer.banner
    );
    let said = fixture_counts(&counter.run(&["100000", "2000"]));
    let out = tracer.stop(libc::SIGINT);
    assert!(out.status.success(), "{out:?}");
    let counts = only_table(&out);
    for (func, n) in &said {
        assert_eq!(counts.get(func), Some(n), "{func} in\n{}", out.stdout);
    }
    assert_eq!(counts.get("main.add"), Some(&1), "{}", out.stdout);
    assert_eq!(counts.get("main.main"), Some(&1), "{}", out.stdout);
    assert!(out.stdout.ends_with("Detaching...\n"), "{}", out.stdout);
    assert_eq!(residue(), Vec::<String>::new());
}

#[test]
fn exact_counts_go119() {
    exact_counts(Go::Go119);
}

#[test]
fn exact_counts_go127() {
    exact_counts(Go::Go127);
}

/// The table is bcc's: header, then rows sorted by ascending count.
#[test]
fn table_is_sorted_like_bcc() {
    let counter = Fixture::build("counter", Go::Go127);
    let tracer = Tracer::start(&["funccount", &counter.pattern("main.*")]);
    counter.run(&["300", "10"]);
    let out = tracer.stop(libc::SIGTERM);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("FUNC"))
        .expect("a header");
    assert_eq!(lines[header], format!("{:<36} {:>8}", "FUNC", "COUNT"));
    let counts: Vec<u64> = lines[header + 1..]
        .iter()
        .take_while(|l| !l.starts_with("Detaching"))
        .map(|l| l.split_whitespace().last().unwrap().parse().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{}", out.stdout);
    assert_eq!(counts.iter().sum::<u64>(), 300 + 300 + 11 + 1 + 1 + 4);
}

/// Without -p, every process running the binary is counted.
#[test]
fn counts_every_process_of_the_binary() {
    let counter = Fixture::build("counter", Go::Go119);
    let tracer = Tracer::start(&["funccount", &counter.pattern("main.work")]);
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(&counter.binary)
                .arg("5000")
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let counts = only_table(&tracer.stop(libc::SIGINT));
    assert_eq!(counts.get("main.work"), Some(&15_000));
}

/// With -p and no path, only that process is counted, through its
/// /proc/PID/exe; when it exits gotrace prints the table and says so.
#[test]
fn pid_scope_counts_one_process_and_ends_with_it() {
    let counter = Fixture::build("counter", Go::Go127);
    let mut target_cmd = Command::new(&counter.binary);
    target_cmd.args(["7000", "0"]);
    let target = Waiting::start(target_cmd);
    let pid = target.pid();

    let tracer = Tracer::start(&["funccount", "-p", &pid, "main.*"]);
    // Another process of the same binary must not be counted.
    counter.run(&["999"]);
    target.finish();

    let out = tracer.wait();
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.contains(&format!("process {pid} exited")),
        "{}",
        out.stderr
    );
    let counts = only_table(&out);
    assert_eq!(counts.get("main.work"), Some(&7000), "{}", out.stdout);
    assert_eq!(counts.get("main.leaf"), Some(&7000), "{}", out.stdout);
}

/// A -p process that execs another program takes the probes' binary with
/// it: gotrace prints what it counted, says so, and exits 0, while the
/// process lives on as `sleep`.
#[test]
fn pid_scope_ends_when_the_process_execs() {
    let counter = Fixture::build("counter", Go::Go127);
    let sleep = Command::new("sh")
        .args(["-c", "command -v sleep"])
        .output()
        .unwrap();
    let sleep = String::from_utf8(sleep.stdout).unwrap().trim().to_owned();
    let mut target_cmd = Command::new(&counter.binary);
    target_cmd.args(["3000", "0"]).env("COUNTER_EXEC", &sleep);
    let mut target = Waiting::start(target_cmd);
    let pid = target.pid();

    let tracer = Tracer::start(&["funccount", "-p", &pid, "main.*"]);
    target.go();
    let out = tracer.wait();
    assert!(
        target.running(),
        "the target should be sleeping after its exec"
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("process {pid} exec'd another program")),
        "{}",
        out.stderr
    );
    assert_eq!(
        only_table(&out).get("main.work"),
        Some(&3000),
        "{}",
        out.stdout
    );
    assert_eq!(residue(), Vec::<String>::new());
}

/// -i prints one table per interval, each with what happened in it; -T
/// puts a time before each; -d ends the run.
#[test]
fn intervals_split_the_counts() {
    let counter = Fixture::build("counter", Go::Go119);
    let tracer = Tracer::start(&[
        "funccount",
        "-i",
        "0.5",
        "-d",
        "3",
        "-T",
        &counter.pattern("main.leaf"),
    ]);
    // Ten rounds of 1000 calls, 200 ms apart: about 2 s of activity.
    counter.run(&["1000", "0", "10", "200"]);
    let out = tracer.wait();
    assert!(out.status.success(), "{out:?}");
    let tables = count_tables(&out.stdout);
    assert!(tables.len() >= 5, "{}", out.stdout);
    let per_table: Vec<u64> = tables
        .iter()
        .map(|t| t.get("main.leaf").copied().unwrap_or(0))
        .collect();
    assert_eq!(per_table.iter().sum::<u64>(), 10_000, "{per_table:?}");
    assert!(
        per_table.iter().filter(|&&n| n > 0).count() >= 2,
        "{per_table:?}"
    );
    let times = out
        .stdout
        .lines()
        .filter(|l| l.len() == 8 && l.as_bytes()[2] == b':' && l.as_bytes()[5] == b':')
        .count();
    assert_eq!(times, tables.len(), "{}", out.stdout);
}

/// --json: one object per table, same counts.
#[test]
fn json_output() {
    let counter = Fixture::build("counter", Go::Go127);
    let tracer = Tracer::start(&["funccount", "--json", &counter.pattern("main.*")]);
    let said = fixture_counts(&counter.run(&["2500", "0"]));
    let out = tracer.stop(libc::SIGINT);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    let table: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let count = |name: &str| {
        table["counts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["func"] == name)
            .and_then(|c| c["count"].as_u64())
    };
    assert_eq!(count("main.work"), said.get("main.work").copied());
    assert_eq!(count("main.add"), Some(1));
}

/// -r takes a regular expression instead of a glob.
#[test]
fn regex_pattern() {
    let counter = Fixture::build("counter", Go::Go119);
    let tracer = Tracer::start(&["funccount", "-r", &counter.pattern(r"main\.(leaf|add)$")]);
    assert!(
        tracer.banner.starts_with("Tracing 2 functions"),
        "{}",
        tracer.banner
    );
    counter.run(&["10"]);
    let counts = only_table(&tracer.stop(libc::SIGINT));
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        [("main.add".to_owned(), 1), ("main.leaf".to_owned(), 10)]
    );
}

/// bcc refuses more than 1000 probes; gotrace attaches every runtime
/// function of a Go 1.27 binary and counts runtime.main once per run.
#[test]
fn more_than_a_thousand_probes() {
    let counter = Fixture::build("counter", Go::Go127);
    let tracer = Tracer::start(&["funccount", &counter.pattern("runtime.*")]);
    let n: usize = tracer
        .banner
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(n > 1000, "{}", tracer.banner);
    counter.run(&["10"]);
    counter.run(&["10"]);
    let out = tracer.stop(libc::SIGINT);
    let counts = only_table(&out);
    assert_eq!(counts.get("runtime.main"), Some(&2), "{}", out.stdout);
    assert!(
        counts.len() > 100,
        "only {} runtime functions ran",
        counts.len()
    );
    assert_eq!(residue(), Vec::<String>::new());
}

/// Side by side with bcc's funccount on the same binary, one run each:
/// the two cannot probe one process at once, because bcc 0.26 registers its
/// uprobes with a reference-counter offset of 6 and the kernel refuses a
/// second probe on the same instruction with another offset ("ref_ctr_offset
/// mismatch" in dmesg). The fixture is deterministic, so both must agree
/// exactly, except where bcc counts one call twice: its probe on the entry
/// instruction fires again when runtime.morestack re-runs a function's
/// prologue (grow's deep recursion) or a preemption request lands in it
/// (work). There gotrace must still equal the fixture.
#[test]
fn agrees_with_bcc_funccount() {
    let counter = Fixture::build("counter", Go::Go119);
    let pattern = counter.pattern("main.*");
    let args = ["100000", "2000"];

    let bcc = Tracer::start_program(Path::new("/usr/sbin/funccount-bpfcc"), &[&pattern]);
    let said_to_bcc = fixture_counts(&counter.run(&args));
    let theirs = only_table(&bcc.stop(libc::SIGINT));
    let ours = Tracer::start(&["funccount", &pattern]);
    let said = fixture_counts(&counter.run(&args));
    let ours = only_table(&ours.stop(libc::SIGINT));
    assert_eq!(said, said_to_bcc, "the fixture is not deterministic");

    println!("function       fixture  gotrace      bcc");
    for (func, n) in &ours {
        println!(
            "{func:<14} {:>7} {n:>8} {:>8}",
            said.get(func).map_or("-".to_owned(), u64::to_string),
            theirs.get(func).copied().unwrap_or(0)
        );
    }
    for (func, n) in &said {
        assert_eq!(ours.get(func), Some(n), "gotrace on {func}");
    }
    for func in ["main.leaf", "main.add", "main.arg", "main.main"] {
        assert_eq!(ours.get(func), theirs.get(func), "{func}: gotrace vs bcc");
    }
    for func in ["main.work", "main.grow"] {
        assert!(
            theirs[func] >= ours[func],
            "{func}: bcc counted fewer than gotrace"
        );
    }
}
