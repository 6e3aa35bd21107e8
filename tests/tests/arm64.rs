//! The arm64 stage: every tool on arm64 Go programs (Go 1.19 and 1.27,
//! cross-built here) in an emulated arm64 machine, with counts and values
//! the fixtures determine. Each test is one boot of the machine
//! (`integration_tests::arm64`); each ends by checking that the kernel
//! holds none of gotrace's programs.
//!
//! arm64 differs from x86-64 where it matters here: g lives in R28 in
//! every function (ABI0 too), arguments in R0-R15, the return address in
//! the link register, and the kernel simulates `ret` and `b.ls` instead of
//! single-stepping them.

use integration_tests::{
    arm64::{Guest, Runs},
    count_tables, counts_by_binary, latency_report, said, stack_frames, trace_events, Fixture, Go,
    Output,
};

const GOS: [Go; 2] = [Go::Go119, Go::Go127];

/// The step's only funccount table.
fn table(out: &Output) -> std::collections::BTreeMap<String, u64> {
    assert!(out.status.success(), "{out:?}");
    let tables = count_tables(&out.stdout);
    assert_eq!(tables.len(), 1, "{}", out.stdout);
    tables.into_iter().next().unwrap_or_default()
}

fn no_residue(runs: &Runs) {
    assert_eq!(runs.number("residue:"), 0, "gotrace programs left loaded");
}

/// Calls counted exactly: main.work's entry probe sits on the stack-check
/// `b.ls` and counts only when it falls through, so main.grow, whose
/// recursion grows the stack through runtime.morestack (which restarts
/// the function), is counted once per call; main.leaf has no stack check
/// and is probed at its entry.
#[test]
fn funccount_counts_exactly() {
    let mut guest = Guest::new();
    let mut script = String::new();
    for go in GOS {
        let counter = guest.fixture("counter", go);
        let name = format!("{go:?}");
        script += &format!(
            "start {name} funccount -v '{counter}:main.*'\n\
             run said{name} {counter} 20000 300\n\
             echo live{name}: $(residue)\n\
             stop {name}\n\
             run info{name} gotrace info {counter}\n"
        );
    }
    script += "echo residue: $(residue)\n";
    let runs = guest.boot(&script);
    for go in GOS {
        let name = format!("{go:?}");
        let fixture = runs.step(&format!("said{name}")).stdout;
        let out = runs.step(&name);
        let counts = table(&out);
        for func in ["work", "leaf", "grow"] {
            assert_eq!(
                counts.get(&format!("main.{func}")),
                Some(&said(&fixture, &format!("{func}:"))),
                "{go:?} main.{func}: {counts:?}\n{fixture}"
            );
        }
        // Build info and the ABI it implies, read from the arm64 binary.
        let info = runs.step(&format!("info{name}")).stdout;
        let version = if go == Go::Go119 { "go1.19" } else { "go1.27" };
        assert!(info.contains(version), "{go:?}: {info}");
        assert!(info.contains("abi:         register"), "{go:?}: {info}");
        // What `residue` finds once the run ends, it finds while it runs.
        assert!(runs.number(&format!("live{name}:")) >= 1, "{go:?}");
        assert!(
            out.stderr.contains("main.work") && out.stderr.contains("stack-check branch"),
            "{go:?}: -v does not place main.work on its b.ls:\n{}",
            out.stderr
        );
    }
    no_residue(&runs);
}

/// Arguments in R0-R15 (ints, a string by its DWARF name), an assembly
/// (ABI0) function's on the stack, results at `ret` (r: probes), the
/// goroutine from R28, and -U stacks from frame records and the link
/// register.
#[test]
fn trace_reads_arguments_and_results() {
    let mut guest = Guest::new();
    let mut script = String::new();
    for go in GOS {
        let args = guest.fixture("args", go);
        let name = format!("{go:?}");
        script += &format!(
            "start {name} trace '{args}:main.add \"%d %d\", goarg1, goarg2' \
             'r:{args}:main.add \"= %d\", retval' \
             '{args}:main.greet \"%s %d\", name, n' \
             '{args}:main.asmAdd.abi0 \"%d %d\", goarg1, goarg2' \
             'r:{args}:main.asmAdd.abi0 \"= %d\", goarg3'\n\
             run said{name} {args} 2\n\
             stop {name}\n\
             start stack{name} trace -U '{args}:main.add \"%d\", goarg1'\n\
             run saidstack{name} {args} 1\n\
             stop stack{name}\n"
        );
    }
    script += "echo residue: $(residue)\n";
    let runs = guest.boot(&script);
    for go in GOS {
        let name = format!("{go:?}");
        let out = runs.step(&name);
        let events = trace_events(&out);
        let of = |func: &str| -> Vec<String> {
            events
                .iter()
                .filter(|(f, _)| f == func)
                .map(|(_, m)| m.clone())
                .collect()
        };
        assert_eq!(
            of("main.add"),
            ["42 13", "= 55", "42 13", "= 55"],
            "{go:?}: {}",
            out.stdout
        );
        assert_eq!(
            of("main.greet"),
            ["bob 0", "bob 1"],
            "{go:?}: {}",
            out.stdout
        );
        assert_eq!(
            of("main.asmAdd.abi0"),
            ["7 8", "= 15", "7 8", "= 15"],
            "{go:?}: {}",
            out.stdout
        );
        // GOID: everything runs on the main goroutine, 1.
        let goids: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.contains(" main."))
            .filter_map(|l| l.split_whitespace().nth(2))
            .collect();
        assert_eq!(goids.len(), 10, "{go:?}: {}", out.stdout);
        assert!(goids.iter().all(|g| *g == "1"), "{go:?}: {}", out.stdout);

        let stack = runs.step(&format!("stack{name}"));
        assert!(stack.status.success(), "{stack:?}");
        let frames = stack_frames(&stack);
        assert!(frames.len() >= 3, "{go:?}: {}", stack.stdout);
        assert!(frames[0].starts_with("main.add+0x"), "{go:?}: {frames:?}");
        assert!(frames[1].starts_with("main.main+0x"), "{go:?}: {frames:?}");
        assert!(
            frames.iter().any(|f| f.starts_with("runtime.main+0x")),
            "{go:?}: {frames:?}"
        );
    }
    no_residue(&runs);
}

/// Calls timed per goroutine: 4 goroutines sleep 2 ms per call, parking
/// and resuming on other threads (GOMAXPROCS=4 on the guest's one CPU, so
/// there are threads to resume on); the assembly function's goroutine
/// comes from R28 as well (on x86-64 it needs the thread's FS base).
#[test]
fn funclatency_times_goroutines() {
    let mut guest = Guest::new();
    let mut script = String::new();
    for go in GOS {
        let latency = guest.fixture("latency", go);
        for (mode, func) in [("sleep", "main.work"), ("asm", "main.asmSleep.abi0")] {
            let name = format!("{mode}{go:?}");
            script += &format!(
                "start {name} funclatency --json '{latency}:{func}'\n\
                 run said{name} env GOMAXPROCS=4 {latency} {mode} 4 40 2\n\
                 stop {name}\n"
            );
        }
    }
    script += "echo residue: $(residue)\n";
    let runs = guest.boot(&script);
    for go in GOS {
        for (mode, said_as) in [("sleep", "work:"), ("asm", "asmSleep:")] {
            let name = format!("{mode}{go:?}");
            let fixture = runs.step(&format!("said{name}")).stdout;
            let report = latency_report(&runs.step(&name));
            let function = &report["functions"][0];
            assert_eq!(
                function["count"].as_u64(),
                Some(said(&fixture, said_as)),
                "{name}: {report}"
            );
            assert_eq!(report["open_calls"].as_u64(), Some(0), "{name}: {report}");
            // The emulated machine oversleeps (2 ms sleeps take 3-4 ms), so
            // the fixture's own clock is the reference.
            let avg = function["avg"].as_u64().expect("avg");
            let fixture_avg = said(&fixture, "avg_ns:");
            assert!(
                avg.abs_diff(fixture_avg) * 100 < fixture_avg * 15,
                "{name}: avg {avg} vs the fixture's {fixture_avg}: {report}"
            );
        }
    }
    no_residue(&runs);
}

/// Inlined copies have no symbol: counted through the inline trees, in a
/// loop (main.scale), at two call sites (main.clamp), and fmt.Println
/// inlined into main.main (the 2017 post's program, stripped: its names
/// and inline trees come from .gopclntab alone). main.scale's copy
/// starts with a load of a global through R27, a sequence Go restarts when
/// a goroutine is preempted inside it: the probe goes after it (a probe on
/// its first instruction counted 4-6 passes of 10,000 twice here), and the
/// loop runs long enough for preemption signals to land in it.
#[test]
fn inlined_copies() {
    let mut guest = Guest::new();
    let mut script = String::new();
    for go in GOS {
        let inlined = guest.fixture("inlined", go);
        let hello = guest.fixture_with("hello", go, &["-ldflags=-s -w"], "-stripped");
        let name = format!("{go:?}");
        script += &format!(
            "start {name} funccount '{inlined}:main.*'\n\
             run said{name} {inlined} 10000\n\
             stop {name}\n\
             start hello{name} funccount '{hello}:fmt.Println'\n\
             {hello}; {hello}; {hello}\n\
             stop hello{name}\n"
        );
    }
    script += "echo residue: $(residue)\n";
    let runs = guest.boot(&script);
    for go in GOS {
        let name = format!("{go:?}");
        let fixture = runs.step(&format!("said{name}")).stdout;
        assert!(
            fixture.starts_with("scale: 10000 clamp: 10001 "),
            "{fixture}"
        );
        let counts = table(&runs.step(&name));
        assert_eq!(
            counts.get("main.scale [inlined x1]"),
            Some(&10000),
            "{go:?} {counts:?}"
        );
        assert_eq!(
            counts.get("main.clamp [inlined x2]"),
            Some(&10001),
            "{go:?} {counts:?}"
        );
        assert_eq!(counts.get("main.work"), Some(&1), "{go:?} {counts:?}");
        let hello = table(&runs.step(&format!("hello{name}")));
        assert_eq!(
            hello.get("fmt.Println [inlined x1]"),
            Some(&3),
            "{go:?} {hello:?}"
        );
    }
    no_residue(&runs);
}

/// Whole-host tracing (a pattern without a path): programs are found at
/// their exec and counted each in a section of its own, a copy of the
/// binary as well; then the Prometheus exporter, scraped with busybox's
/// wget. The fixtures wait for a line on stdin before calling, so that
/// their probes are in place first (under emulation that takes 150-400 ms
/// after the exec).
#[test]
fn whole_host_and_exporter() {
    let mut guest = Guest::new();
    let counter = guest.fixture("counter", Go::Go127);
    let script = format!(
        "start host funccount --json main.work\n\
         (sleep 2; echo) | COUNTER_WAIT=1 {counter} 3000 0\n\
         cp {counter} /tmp/copy\n\
         (sleep 2; echo) | COUNTER_WAIT=1 /tmp/copy 2000 0\n\
         stop host\n\
         start exporter funccount --listen 127.0.0.1:9464 '{counter}:main.work'\n\
         {counter} 1500 0\n\
         run scrape wget -qO- http://127.0.0.1:9464/metrics\n\
         stop exporter\n\
         echo residue: $(residue)\n"
    );
    let runs = guest.boot(&script);
    let by_binary = counts_by_binary(&runs.step("host"));
    let work = |binary: &str| {
        by_binary
            .get(binary)
            .and_then(|c| c.get("main.work"))
            .copied()
    };
    assert_eq!(work(&counter), Some(3000), "{by_binary:?}");
    assert_eq!(work("/tmp/copy"), Some(2000), "{by_binary:?}");
    let scrape = runs.step("scrape");
    assert!(scrape.status.success(), "{scrape:?}");
    let line =
        format!("gotrace_function_calls_total{{binary=\"{counter}\",function=\"main.work\"}} 1500");
    assert!(
        scrape.stdout.lines().any(|l| l == line),
        "no {line:?} in:\n{}",
        scrape.stdout
    );
    assert!(runs.step("exporter").status.success());
    no_residue(&runs);
}

/// Bad input gets one line that says what is wrong and a non-zero exit,
/// and leaves nothing in the kernel; an x86-64 program is refused by name.
#[test]
fn bad_input() {
    let mut guest = Guest::new();
    let counter = guest.fixture("counter", Go::Go127);
    let x86 = Fixture::build("hello", Go::Go127);
    std::fs::copy(&x86.binary, guest_path(&guest, "hello-x86")).expect("copying");
    let cases: [(&str, String, &[&str]); 6] = [
        (
            "missing",
            "funccount '/files/nothing:main.*'".into(),
            &["/files/nothing"],
        ),
        (
            "notelf",
            "funccount '/init:main.*'".into(),
            &["/init", "ELF"],
        ),
        (
            "notgo",
            "trace '/bin/busybox:main.main'".into(),
            &["/bin/busybox", "Go"],
        ),
        (
            "nomatch",
            format!("funccount '{counter}:main.nothing*'"),
            &["main.nothing*"],
        ),
        (
            "format",
            format!("trace '{counter}:main.add \"%d %d\", goarg1'"),
            &["%d"],
        ),
        (
            "x86",
            "funccount '/files/hello-x86:main.*'".into(),
            &["x86-64", "arm64"],
        ),
    ];
    let mut script = String::new();
    for (name, args, _) in &cases {
        script += &format!("run {name} gotrace {args}\n");
    }
    script += "echo residue: $(residue)\n";
    let runs = guest.boot(&script);
    for (name, _, needles) in &cases {
        let out = runs.step(name);
        assert!(!out.status.success(), "{name}: {out:?}");
        assert_eq!(out.stdout, "", "{name}: {out:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{name}: {out:?}");
        for needle in *needles {
            assert!(
                lines[0].contains(needle),
                "{name}: {needle:?} not in {:?}",
                lines[0]
            );
        }
    }
    no_residue(&runs);
}

/// Where a file for the guest's /files goes on the host.
fn guest_path(guest: &Guest, file: &str) -> std::path::PathBuf {
    guest.host_dir().join(file)
}
