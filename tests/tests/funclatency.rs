//! `gotrace funclatency` against the latency fixture, which measures its
//! own calls with time.Now(): both are printed, and the histograms must
//! hold every call the fixture made, in the right buckets.

use integration_tests::{latency_report as report, said as field, Fixture, Go, Tracer, Waiting};

/// Calls counted in buckets whose bounds lie within [low, high] ns.
fn calls_between(function: &serde_json::Value, low: u64, high: u64) -> u64 {
    function["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["low"].as_u64().unwrap() >= low && b["high"].as_u64().unwrap() <= high)
        .map(|b| b["count"].as_u64().unwrap())
        .sum()
}

/// Traces `func` of the latency fixture built by `go` while it runs `args`.
fn trace(go: Go, func: &str, args: &[&str]) -> (String, serde_json::Value) {
    let latency = Fixture::build("latency", go);
    let tracer = Tracer::start(&["funclatency", "--json", &latency.pattern(func)]);
    let said = latency.run(args);
    let out = tracer.stop(libc::SIGINT);
    let report = report(&out);
    println!("fixture: {said}gotrace: {report}");
    (said, report)
}

/// 8 goroutines call a function that sleeps 2 ms, 800 calls in all: the
/// goroutines park and resume on other threads, and every call is timed.
/// `mode` is the fixture's (`sleep`: main.work; `asm`: main.asmSleep),
/// `func` what is traced, `said` the fixture's name for its calls.
fn sleeping_goroutines(go: Go, mode: &str, func: &str, said_as: &str) {
    let (said, report) = trace(go, func, &[mode, "8", "800", "2"]);
    let work = &report["functions"][0];
    assert_eq!(work["count"].as_u64(), Some(field(&said, said_as)));
    assert_eq!(report["open_calls"].as_u64(), Some(0));
    let in_range = calls_between(work, 1 << 20, (1 << 22) - 1); // 1.05-4.19 ms
    assert!(
        in_range * 100 >= 95 * 800,
        "only {in_range} of 800 calls in 1-4 ms"
    );
    let avg = work["avg"].as_u64().unwrap();
    let fixture_avg = field(&said, "avg_ns:");
    assert!(
        avg.abs_diff(fixture_avg) * 10 < fixture_avg,
        "avg {avg} vs fixture {fixture_avg}"
    );
}

#[test]
fn sleeping_goroutines_go119() {
    sleeping_goroutines(Go::Go119, "sleep", "main.work", "work:");
}

#[test]
fn sleeping_goroutines_go127() {
    sleeping_goroutines(Go::Go127, "sleep", "main.work", "work:");
}

/// An assembly (ABI0) function has no g in R14: its goroutine is read
/// through the thread's FS base. Thread-keyed timing would mismatch the
/// calls of goroutines that resume on another thread.
#[test]
fn assembly_functions_go119() {
    sleeping_goroutines(Go::Go119, "asm", "main.asmSleep.abi0", "asmSleep:");
}

#[test]
fn assembly_functions_go127() {
    sleeping_goroutines(Go::Go127, "asm", "main.asmSleep.abi0", "asmSleep:");
}

/// 64 goroutines recurse 1001 calls deep with 512-byte frames, so their
/// stacks are copied while probed: the program exits normally (no
/// uretprobe return addresses on its stacks) and every call is timed.
fn growing_stacks(go: Go) {
    let (said, report) = trace(go, "main.deep", &["recurse", "64", "1000"]);
    assert_eq!(said.trim(), "deep: 64064");
    assert_eq!(report["functions"][0]["count"].as_u64(), Some(64064));
    assert_eq!(report["open_calls"].as_u64(), Some(0));
}

#[test]
fn growing_stacks_go119() {
    growing_stacks(Go::Go119);
}

#[test]
fn growing_stacks_go127() {
    growing_stacks(Go::Go127);
}

/// Recursion: each level sleeps 1 ms, so outer calls are slow and the
/// innermost fast; each return must pair with its own call.
fn recursion_pairs_each_level(go: Go) {
    let (said, report) = trace(go, "main.nest", &["nest", "10", "3"]);
    let nest = &report["functions"][0];
    assert_eq!(nest["count"].as_u64(), Some(field(&said, "nest:")));
    assert_eq!(
        calls_between(nest, 0, (1 << 19) - 1),
        field(&said, "fast:"),
        "{nest}"
    );
    // Levels 1, 2, 3 sleep 1, 2 and 3 ms, and sleeps only ever overrun: all
    // 30 take 1 ms or more (some land in the bucket below 2^20 ns, which is
    // 1.05 ms), the 10 outermost at least 3 ms, so more than 2^21 ns; a
    // mispaired return would time a call too short.
    assert_eq!(calls_between(nest, 1 << 19, u64::MAX), 30, "{nest}");
    assert!(calls_between(nest, 1 << 21, u64::MAX) >= 10, "{nest}");
    assert!(calls_between(nest, 1 << 20, (1 << 21) - 1) <= 20, "{nest}");
}

/// -l LEVEL times only the calls at that depth of the recursion: 10 calls
/// each, level 1 the slowest (it holds the three 1 ms sleeps), level 4
/// (the innermost, which does not sleep) under 1 ms, level 5 none.
#[test]
fn nesting_level() {
    let latency = Fixture::build("latency", Go::Go127);
    let pattern = latency.pattern("main.nest");
    let run = |level: &str| {
        let tracer = Tracer::start(&["funclatency", "--json", "-l", level, &pattern]);
        latency.run(&["nest", "10", "3"]);
        let report = report(&tracer.stop(libc::SIGINT));
        report["functions"][0].clone()
    };
    let outermost = run("1");
    assert_eq!(outermost["count"], 10, "{outermost}");
    assert_eq!(
        calls_between(&outermost, 1 << 21, u64::MAX),
        10,
        "{outermost}"
    );
    let third = run("3");
    assert_eq!(third["count"], 10, "{third}");
    // 1 ms sleeps: some land just under 2^20 ns (1.05 ms).
    assert_eq!(calls_between(&third, 1 << 19, u64::MAX), 10, "{third}");
    let innermost = run("4");
    assert_eq!(innermost["count"], 10, "{innermost}");
    assert_eq!(
        calls_between(&innermost, 0, (1 << 20) - 1),
        10,
        "{innermost}"
    );
    assert_eq!(run("5")["count"], 0);
}

#[test]
fn recursion_pairs_each_level_go119() {
    recursion_pairs_each_level(Go::Go119);
}

#[test]
fn recursion_pairs_each_level_go127() {
    recursion_pairs_each_level(Go::Go127);
}

/// Calls that panic never reach a `ret`: they are reported as open, and
/// the calls that follow on the same goroutine are still timed right.
#[test]
fn panicking_calls_leave_no_stale_pairing() {
    for go in [Go::Go119, Go::Go127] {
        let (said, report) = trace(go, "main.risky", &["panic", "100"]);
        let risky = &report["functions"][0];
        assert_eq!(risky["count"].as_u64(), Some(field(&said, "returned:")));
        assert_eq!(
            report["open_calls"].as_u64(),
            Some(field(&said, "panicked:"))
        );
        // Every returning call slept 1 ms (a little more on a busy machine):
        // none is inflated by a stale start left by a panicking call. 1 ms
        // is below 2^20 ns, so a call that overslept by less than 48 us
        // lands in the bucket below.
        assert_eq!(calls_between(risky, 1 << 19, (1 << 22) - 1), 50, "{risky}");
    }
}

/// bcc's table layout, microseconds, one histogram per function with -F.
#[test]
fn text_output_like_bcc() {
    let latency = Fixture::build("latency", Go::Go127);
    let pattern = latency.pattern(r"main\.(work|nest)$");
    let tracer = Tracer::start(&["funclatency", "-u", "-F", "-r", &pattern]);
    latency.run(&["sleep", "2", "20", "2"]);
    latency.run(&["nest", "2", "1"]);
    let out = tracer.stop(libc::SIGINT);
    assert!(out.status.success(), "{out:?}");
    let text = &out.stdout;
    assert!(
        text.contains(
            "\nFunction = main.work\n     usecs               : count     distribution\n"
        ),
        "{text}"
    );
    assert!(text.contains("\nFunction = main.nest\n"), "{text}");
    assert!(text.contains("avg = "), "{text}");
    assert!(text.contains(", count: 20\n"), "{text}");
    assert!(text.contains(", count: 4\n"), "{text}");
    assert!(text.ends_with("Detaching...\n"), "{text}");
}

/// -p with a bare function name, the process ending the run.
#[test]
fn pid_and_bare_pattern() {
    let counter = Fixture::build("counter", Go::Go119);
    let mut target_cmd = std::process::Command::new(&counter.binary);
    target_cmd.args(["3000", "50"]);
    let target = Waiting::start(target_cmd);
    let tracer = Tracer::start(&["funclatency", "--json", "-p", &target.pid(), "main.work"]);
    target.finish();
    let report = report(&tracer.wait());
    assert_eq!(report["functions"][0]["count"].as_u64(), Some(3000));
}

/// gccgo keeps g in TLS, not R14, but never moves stacks: calls are keyed
/// by stack pointer, which survives goroutines changing threads and pairs
/// recursion level by level.
#[test]
fn gccgo_goroutines_and_recursion() {
    let (said, report) = trace(Go::Gccgo, "main.work", &["sleep", "8", "800", "2"]);
    let work = &report["functions"][0];
    assert_eq!(work["count"].as_u64(), Some(field(&said, "work:")));
    let in_range = calls_between(work, 1 << 20, (1 << 22) - 1);
    assert!(
        in_range * 100 >= 95 * 800,
        "only {in_range} of 800 calls in 1-4 ms"
    );

    let (said, report) = trace(Go::Gccgo, "main.nest", &["nest", "10", "3"]);
    let nest = &report["functions"][0];
    assert_eq!(nest["count"].as_u64(), Some(field(&said, "nest:")));
    assert_eq!(
        calls_between(nest, 0, (1 << 19) - 1),
        field(&said, "fast:"),
        "{nest}"
    );
}
