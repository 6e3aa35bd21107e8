//! Inlined functions in every tool: funclatency times calls of inlined
//! copies (from a copy's first instruction to wherever control leaves it),
//! trace prints them with their arguments where DWARF locates them. The
//! inlining fixture inlines small helpers (`go build -gcflags=-m` says so)
//! and prints what it did and how long it took by its own clock.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Command, Stdio},
};

use integration_tests::{
    latency_report, residue, run_gotrace, said, trace_events, Fixture, Go, Tracer,
};

/// Calls counted in buckets whose bounds lie within [low, high] ns.
fn calls_between(function: &serde_json::Value, low: u64, high: u64) -> u64 {
    function["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .filter(|b| b["low"].as_u64().unwrap() >= low && b["high"].as_u64().unwrap() <= high)
        .map(|b| b["count"].as_u64().unwrap())
        .sum()
}

/// funclatency --json of `func` while the fixture runs `args`: the report
/// and what the fixture said (which must be what it says untraced).
fn timed(fixture: &Fixture, func: &str, args: &[&str]) -> (serde_json::Value, String) {
    let tracer = Tracer::start(&["funclatency", "--json", &fixture.pattern(func)]);
    let output = fixture.run(args);
    let report = latency_report(&tracer.stop(libc::SIGINT));
    println!("fixture: {output}gotrace: {report}");
    (report, output)
}

/// 4 goroutines call a 1 ms sleep inside an inlined helper, 400 calls in
/// all: every call is timed, in the 1-4 ms buckets, with the mean the
/// fixture measured itself.
fn naps(fixture: &Fixture) {
    let (report, output) = timed(fixture, "main.nap", &["naps", "4", "100"]);
    let nap = &report["functions"][0];
    assert_eq!(nap["func"], "main.nap [inlined x1]", "{report}");
    assert_eq!(nap["inlined"], true);
    assert_eq!(nap["count"].as_u64(), Some(said(&output, "naps:")));
    // 1 ms is below 2^20 ns: a sleep that overslept by under 48 us lands
    // in the bucket below.
    let in_range = calls_between(nap, 1 << 19, (1 << 22) - 1);
    assert!(
        in_range * 100 >= 95 * 400,
        "only {in_range} of 400 in 1-4 ms: {report}"
    );
    let mean_ns = said(&output, "mean_us:") * 1000;
    let avg = nap["avg"].as_u64().unwrap();
    assert!(
        avg.abs_diff(mean_ns) * 10 <= mean_ns,
        "gotrace's mean {avg} ns against the fixture's {mean_ns} ns"
    );
    assert_eq!(report["open_calls"].as_u64(), Some(0));
}

/// A helper with early returns, a loop with break and a switch: every
/// call timed exactly once, whichever way it leaves.
fn exits(fixture: &Fixture) {
    let (report, output) = timed(fixture, "main.classify", &["exits", "200"]);
    assert_eq!(
        report["functions"][0]["count"].as_u64(),
        Some(said(&output, "classify:")),
        "{report}"
    );
    assert_eq!(report["open_calls"].as_u64(), Some(0));
}

fn every_build(check: fn(&Fixture)) {
    for go in [Go::Go119, Go::Go127] {
        check(&Fixture::build("inlining", go));
        check(&Fixture::build_with("inlining", go, &["-ldflags=-s -w"]));
        check(&Fixture::build_with("inlining", go, &["-buildmode=pie"]));
    }
    assert_eq!(residue(), Vec::<String>::new());
}

#[test]
fn naps_timed_per_goroutine() {
    every_build(naps);
}

#[test]
fn helpers_with_many_exits() {
    every_build(exits);
}

/// An inlined copy left by a panic (recovered by its caller) is an open
/// call, and the returning calls are timed.
#[test]
fn panics_out_of_an_inlined_copy() {
    for go in [Go::Go119, Go::Go127] {
        let fixture = Fixture::build("inlining", go);
        let (report, output) = timed(&fixture, "main.mustPositive", &["panic", "100"]);
        let calls = &report["functions"][0];
        assert_eq!(calls["count"].as_u64(), Some(said(&output, "returned:")));
        assert_eq!(
            report["open_calls"].as_u64(),
            Some(said(&output, "panicked:")),
            "{report}"
        );
    }
}

/// The design card's example: `funclatency -p PID fmt.Println`, with
/// fmt.Println inlined into main.main (six copies here).
#[test]
fn println_by_pid() {
    for go in [Go::Go119, Go::Go127] {
        let fixture = Fixture::build("inlining", go);
        let mut child = Command::new(&fixture.binary)
            .args(["println", "300"])
            .env("INLINING_WAIT", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let pid = line
            .trim()
            .strip_prefix("pid: ")
            .expect("a pid line")
            .to_owned();
        let tracer = Tracer::start(&["funclatency", "--json", "-p", &pid, "fmt.Println"]);
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let lines = stdout.lines().count();
        assert!(child.wait().unwrap().success());
        assert_eq!(lines, 300);
        // The process exiting ends the run.
        let out = tracer.wait();
        let report = latency_report(&out);
        let println = &report["functions"][0];
        assert!(
            println["func"]
                .as_str()
                .unwrap()
                .starts_with("fmt.Println [inlined x"),
            "{report}"
        );
        assert_eq!(println["count"].as_u64(), Some(300), "{report}");
    }
}

/// trace prints each inlined call with the arguments DWARF locates at the
/// copy's entry (a string and an int here, equal to what the fixture
/// passed), `?` for those it locates nowhere (clamp's constant bounds),
/// and inlined calls inside inlined calls.
#[test]
fn arguments_of_inlined_calls() {
    for go in [Go::Go119, Go::Go127] {
        let fixture = Fixture::build("inlining", go);
        let probe = |text: &str| format!("{}:{text}", fixture.binary.display());
        let tracer = Tracer::start(&[
            "trace",
            &probe(r#"main.greet "%s %d", name, n"#),
            &probe(r#"main.clamp "%d %d %d", x, lo, hi"#),
            &probe(r#"main.inner "%d", x"#),
        ]);
        let output = fixture.run(&["args", "4"]);
        let out = tracer.stop(libc::SIGINT);
        let of = |f: &str| -> Vec<String> {
            trace_events(&out)
                .into_iter()
                .filter(|(function, _)| function == f)
                .map(|(_, message)| message)
                .collect()
        };
        assert_eq!(
            of("main.greet[inlined]"),
            ["gopher 0", "gc 1", "gopher 2", "gc 3"],
            "{out:?}"
        );
        let clamps = of("main.clamp[inlined]");
        assert_eq!(clamps.len() as u64, said(&output, "clamp:"), "{out:?}");
        assert!(clamps.iter().all(|m| m.ends_with(" ? ?")), "{clamps:?}");
        assert!(
            out.stderr.contains("DWARF gives no location for lo"),
            "{}",
            out.stderr
        );
        // inner is inlined into outer, itself inlined into main.main. Go
        // 1.27 locates its argument there; Go 1.19's DWARF does not.
        let inners = of("main.inner[inlined]");
        let expected: Vec<&str> = match go {
            Go::Go119 => vec!["?"; 4],
            _ => vec!["0", "1", "2", "3"],
        };
        assert_eq!(inners, expected, "{out:?}");
    }
}

/// `r:` on an inlined copy: one line per call, whichever way it leaves.
#[test]
fn returns_of_inlined_calls() {
    let fixture = Fixture::build("inlining", Go::Go127);
    let tracer = Tracer::start(&[
        "trace",
        &format!("r:{}:main.classify", fixture.binary.display()),
    ]);
    let output = fixture.run(&["exits", "30"]);
    let out = tracer.stop(libc::SIGINT);
    assert_eq!(
        trace_events(&out).len() as u64,
        said(&output, "classify:"),
        "{out:?}"
    );
    // Results of inlined calls are not in DWARF: say so.
    let named = run_gotrace(&[
        "trace",
        &format!(r#"r:{}:main.classify "%d", n"#, fixture.binary.display()),
    ]);
    assert!(!named.status.success());
    assert!(
        named
            .stderr
            .contains("DWARF locates no results of inlined calls"),
        "{}",
        named.stderr
    );
    assert_eq!(residue(), Vec::<String>::new());
}

/// info --match says what each tool can do with each copy.
#[test]
fn info_says_what_each_tool_can_do() {
    let fixture = Fixture::build("inlining", Go::Go127);
    let out = run_gotrace(&[
        "info",
        "--json",
        "--match",
        "main.clamp",
        &fixture.binary.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let info: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let copy = &info["matched"][0]["copies"][0];
    assert_eq!(copy["inlined_in"], "main.main", "{info}");
    assert_eq!(copy["funclatency"]["can"], true, "{info}");
    let arguments: Vec<(String, bool)> = copy["trace"]["arguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_owned(),
                a["readable"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        arguments,
        [
            ("x".into(), true),
            ("lo".into(), false),
            ("hi".into(), false)
        ]
    );
}
