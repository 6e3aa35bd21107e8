//! `gotrace trace` on the args fixture, whose calls and argument values are
//! fixed in its source (add(42, 13), greet("bob", i), handle(&Request{"GET",
//! 200}, 3), small(true, -5, 65535), asmAdd(7, 8)): every ABI gotrace reads.

use std::process::Command;

use integration_tests::{
    assert_one_line_error, run_gotrace, stack_frames, trace_events as events, Fixture, Go, Output,
    Tracer, Waiting,
};

/// gccgo specializes small functions (`main.add.constprop.0`) at -O2 and
/// calls a pure function once per loop; turn that off so the C-ABI
/// arguments stay the Go ones and every call happens.
const GCCGO_FLAGS: &[&str] = &["-fno-ipa-cp", "-fno-ipa-sra", "-fno-ipa-pure-const"];

fn build(go: Go) -> Fixture {
    match go {
        Go::Gccgo => Fixture::build_with("args", go, GCCGO_FLAGS),
        _ => Fixture::build("args", go),
    }
}

/// Runs the fixture `calls` times under `gotrace trace PROBES...`.
fn trace(fixture: &Fixture, options: &[&str], probes: &[String], calls: u32) -> Output {
    let mut args = vec!["trace"];
    args.extend(options);
    args.extend(probes.iter().map(String::as_str));
    let tracer = Tracer::start(&args);
    fixture.run(&[&calls.to_string()]);
    tracer.stop(libc::SIGINT)
}

/// `[p:|r:]BINARY:text` for a probe on the fixture.
fn probe(fixture: &Fixture, text: &str) -> String {
    let (kind, rest) = match text.split_once(':') {
        Some((kind @ ("p" | "r"), rest)) => (format!("{kind}:"), rest),
        _ => (String::new(), text),
    };
    format!("{kind}{}:{rest}", fixture.binary.display())
}

/// The 2017 post's example, which printed garbage under bcc: Go's register
/// ABI arguments and results, on both ends of the register-ABI versions.
fn register_abi(go: Go) {
    let args = build(go);
    let out = trace(
        &args,
        &[],
        &[
            probe(&args, r#"main.add "%d %d", goarg1, goarg2"#),
            probe(&args, r#"r:main.add "%d", retval"#),
        ],
        3,
    );
    let lines = events(&out);
    let adds: Vec<&str> = lines
        .iter()
        .filter(|(f, _)| f == "main.add")
        .map(|(_, m)| m.as_str())
        .collect();
    assert_eq!(
        adds,
        ["42 13", "55", "42 13", "55", "42 13", "55"],
        "{}",
        out.stdout
    );
    // GOID: the main goroutine is 1.
    let first = out.stdout.lines().find(|l| l.contains("main.add")).unwrap();
    assert_eq!(first.split_whitespace().nth(2), Some("1"), "{first}");
}

#[test]
fn register_abi_go119() {
    register_abi(Go::Go119);
}

#[test]
fn register_abi_go127() {
    register_abi(Go::Go127);
}

/// gccgo: the C ABI, read with argN.
#[test]
fn gccgo_c_abi() {
    let args = build(Go::Gccgo);
    let out = trace(
        &args,
        &[],
        &[probe(&args, r#"main.add "%d %d", arg1, arg2"#)],
        2,
    );
    assert_eq!(
        events(&out),
        [
            ("main.add".into(), "42 13".into()),
            ("main.add".into(), "42 13".into())
        ]
    );
    // goargN reads Go's own ABI, which gccgo code does not use.
    let err = run_gotrace(&["trace", &probe(&args, r#"main.add "%d", goarg1"#)]);
    assert_one_line_error(&err, &["goarg1", "use arg1"]);
}

/// An assembly (ABI0) function takes its arguments on the stack, and
/// leaves its result after them (`asmAdd(7, 8)` writes 15 to word 3),
/// where an r: probe reads it.
#[test]
fn stack_abi_assembly_function() {
    for go in [Go::Go119, Go::Go127] {
        let args = build(go);
        let out = trace(
            &args,
            &[],
            &[
                probe(&args, r#"main.asmAdd.abi0 "%d %d", goarg1, goarg2"#),
                probe(&args, r#"r:main.asmAdd.abi0 "= %d", goarg3"#),
            ],
            2,
        );
        let messages: Vec<String> = events(&out).into_iter().map(|(_, m)| m).collect();
        assert_eq!(
            messages,
            ["7 8", "= 15", "7 8", "= 15"],
            "{go:?}: {}",
            out.stdout
        );
        // Called from main.main: the main goroutine, which is always 1.
        let goids: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.contains("main.asmAdd.abi0"))
            .filter_map(|l| l.split_whitespace().nth(2))
            .collect();
        assert_eq!(goids, ["1", "1", "1", "1"], "{go:?}: {}", out.stdout);
    }
}

/// Named arguments from DWARF: strings, ints of every width and sign, and
/// a field behind a struct pointer.
#[test]
fn named_arguments() {
    for go in [Go::Go119, Go::Go127] {
        let args = build(go);
        let out = trace(
            &args,
            &[],
            &[
                probe(&args, r#"main.greet "%s %d", name, n"#),
                probe(
                    &args,
                    r#"main.handle "%s %d %d", req.Method, req.Code, retries"#,
                ),
                probe(&args, r#"main.small "%d %d %d", ok, b, u"#),
            ],
            2,
        );
        let lines = events(&out);
        let messages: Vec<&str> = lines.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(
            messages,
            [
                "bob 0",
                "GET 200 3",
                "1 -5 65535",
                "bob 1",
                "GET 200 3",
                "1 -5 65535"
            ],
            "{go:?}: {}",
            out.stdout
        );
    }
}

/// Filters run in the kernel: numbers, strings, && and ||.
#[test]
fn filters() {
    let args = build(Go::Go127);
    let cases: [(&str, &[&str]); 5] = [
        (r#"main.greet (n == 1) "%s %d", name, n"#, &["bob 1"]),
        (r#"main.greet (n >= 1 && n < 3) "%d", n"#, &["1", "2"]),
        (r#"main.greet (n == 0 || n == 3) "%d", n"#, &["0", "3"]),
        (r#"main.greet (name == "bob" && n == 2) "%d", n"#, &["2"]),
        (r#"main.greet (name != "bob") "%d", n"#, &[]),
    ];
    for (text, expected) in cases {
        let out = trace(&args, &[], &[probe(&args, text)], 4);
        let messages: Vec<String> = events(&out).into_iter().map(|(_, m)| m).collect();
        assert_eq!(messages, expected, "{text}");
    }
}

/// -M stops after that many events; --json prints one object per event.
#[test]
fn max_events_and_json() {
    let args = build(Go::Go119);
    let tracer = Tracer::start(&[
        "trace",
        "-M",
        "3",
        "--json",
        &probe(&args, r#"main.add "%d %d", goarg1, goarg2"#),
    ]);
    args.run(&["10"]);
    let out = tracer.wait();
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert_eq!(lines[0]["message"], "42 13");
    assert_eq!(lines[0]["func"], "main.add");
}

/// -U prints the Go stack: the function, its caller, the runtime.
#[test]
fn user_stack() {
    let args = build(Go::Go127);
    let out = trace(
        &args,
        &["-U"],
        &[probe(&args, r#"main.add "%d", goarg1"#)],
        1,
    );
    let frames = stack_frames(&out);
    assert!(frames.len() >= 3, "{}", out.stdout);
    assert!(frames[0].starts_with("main.add+0x"), "{frames:?}");
    assert!(frames[1].starts_with("main.main+0x"), "{frames:?}");
    assert!(
        frames.iter().any(|f| f.starts_with("runtime.main+0x")),
        "{frames:?}"
    );
}

/// Calls the compiler inlined have no frame, but -U names them: the args
/// fixture's `helper` is inlined into main.main and calls main.leaf. Go
/// 1.19 and 1.27 lay inline trees out differently; stripped binaries find
/// them through moduledata, stripped PIE ones through its relocations.
fn inlined_frames(args: &Fixture) {
    let out = trace(
        args,
        &["-U"],
        &[probe(args, r#"main.leaf "%d", goarg1"#)],
        1,
    );
    let frames = stack_frames(&out);
    assert!(frames.len() >= 4, "{}", out.stdout);
    assert!(frames[0].starts_with("main.leaf+0x"), "{frames:?}");
    assert!(
        frames[1].starts_with("main.helper (inlined) ["),
        "{frames:?}"
    );
    assert!(frames[2].starts_with("main.main+0x"), "{frames:?}");
}

#[test]
fn inlined_frames_in_user_stacks() {
    inlined_frames(&build(Go::Go119));
    inlined_frames(&build(Go::Go127));
    inlined_frames(&Fixture::build_with("args", Go::Go127, &["-ldflags=-s -w"]));
    inlined_frames(&Fixture::build_with(
        "args",
        Go::Go127,
        &["-buildmode=pie", "-ldflags=-s -w"],
    ));
}

/// The event lines of one probe on the args fixture run once.
fn messages(args: &Fixture, text: &str) -> Vec<String> {
    let out = trace(args, &[], &[probe(args, text)], 1);
    events(&out).into_iter().map(|(_, m)| m).collect()
}

/// Slices print their length and first elements (strings as text);
/// interfaces their dynamic type, named from the binary's type descriptors,
/// and value. The calls and values are those of the fixture's source.
fn slices_and_interfaces(args: &Fixture) {
    assert_eq!(
        messages(args, r#"main.sum "%v", xs"#),
        ["len=3 [1 2 3]", "len=10 [0 1 2 3 4 5 6 ...]"]
    );
    assert_eq!(
        messages(args, r#"main.checksum "%v", data"#),
        [r#"len=5 "hello""#]
    );
    assert_eq!(
        messages(args, r#"main.plot "%v", ps"#),
        ["len=2 [{1 2} {3 -4}]"]
    );
    // The first three elements, each text cut at 20 bytes.
    assert_eq!(
        messages(args, r#"main.words "%v", ws"#),
        [
            r#"len=4 ["GET" "a-path-longer-than-t"... "" ...]"#,
            r#"len=1 ["solo"]"#,
            "len=0 []"
        ]
    );
    let described = messages(args, r#"main.describe "%v", v"#);
    assert_eq!(described.len(), 6, "{described:?}");
    assert_eq!(
        described[..3],
        ["int(42)", r#"string("hi")"#, "main.Celsius(-5)"]
    );
    assert!(
        described[3].starts_with("*main.Request(0x"),
        "{described:?}"
    );
    assert_eq!(described[4], "<nil>");
    assert_eq!(described[5], "main.Point{X:1 Y:-4}");
    let reported = messages(args, r#"main.report "%v", err"#);
    assert_eq!(reported.len(), 1);
    assert!(
        reported[0].starts_with("*errors.errorString(0x"),
        "{reported:?}"
    );
}

#[test]
fn slices_and_interfaces_go119() {
    slices_and_interfaces(&build(Go::Go119));
}

#[test]
fn slices_and_interfaces_go127() {
    slices_and_interfaces(&build(Go::Go127));
}

/// In a PIE the kernel sees type descriptors at run-time addresses; the
/// load bias comes from where the probe fired, even after the process has
/// exited (it runs for a millisecond here).
#[test]
fn slices_and_interfaces_pie() {
    slices_and_interfaces(&Fixture::build_with("args", Go::Go127, &["-buildmode=pie"]));
}

/// -p: only that process, found without a path.
#[test]
fn pid_only() {
    let counter = Fixture::build("counter", Go::Go127);
    let mut target_cmd = Command::new(&counter.binary);
    target_cmd.args(["5", "0"]);
    let target = Waiting::start(target_cmd);
    let pid = target.pid();
    let tracer = Tracer::start(&["trace", "-p", &pid, r#"main.leaf "%d", goarg1"#]);
    counter.run(&["7"]); // another process: not traced
    target.finish();
    let out = tracer.wait();
    let messages: Vec<String> = events(&out).into_iter().map(|(_, m)| m).collect();
    assert_eq!(messages, ["0", "1", "2", "3", "4"], "{}", out.stdout);
    assert!(
        out.stdout.lines().skip(1).all(|l| l.starts_with(&pid)),
        "{}",
        out.stdout
    );
}

/// Probes that cannot be read right are refused before anything attaches.
#[test]
fn bad_probes() {
    let args = build(Go::Go127);
    let stripped = Fixture::build_with("args", Go::Go127, &["-ldflags=-s -w"]);
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            probe(&args, r#"main.add "%d %d", goarg1"#),
            vec!["1 argument"],
        ),
        (probe(&args, r#"main.add "%q", goarg1"#), vec!["%q"]),
        (probe(&args, r#"main.add "%d", retval"#), vec!["r:main.add"]),
        (probe(&args, r#"r:main.add "%d", goarg1"#), vec!["p: probe"]),
        (
            probe(&args, r#"r:main.asmAdd.abi0 "%d", retval"#),
            vec!["ABI0", "goargN"],
        ),
        (
            probe(&args, r#"main.add "%d", z"#),
            vec!["no parameter \"z\"", "x, y"],
        ),
        (
            probe(&args, r#"main.greet "%d", name"#),
            vec!["name is a string", "%s"],
        ),
        (probe(&args, r#"main.greet "%s", n"#), vec!["not a string"]),
        (
            probe(&args, r#"main.handle "%d", req.Nope"#),
            vec!["no field \"Nope\""],
        ),
        (
            probe(&args, r#"main.add (goarg1 ~ 3) "%d", goarg1"#),
            vec!["not a comparison"],
        ),
        (
            probe(&args, r#"main.add (x == 1 && y == 2 || x == 3)"#),
            vec!["mixes"],
        ),
        (
            probe(&stripped, r#"main.add "%d", x"#),
            vec!["need DWARF", "goargN"],
        ),
        (probe(&args, "main.nosuch"), vec!["no function"]),
        (
            probe(&args, r#"main.sum "%d", xs"#),
            vec!["xs is a slice", "%v"],
        ),
        (
            probe(&args, r#"main.describe "%s", v"#),
            vec!["v is an interface", "%v"],
        ),
        (String::new(), vec!["empty probe"]),
    ];
    for (text, needles) in &cases {
        let out = run_gotrace(&["trace", text]);
        println!("{text} -> {}", out.stderr.trim_end());
        assert_one_line_error(&out, needles);
    }
}

/// -Z cuts strings (marked "..."); -n keeps only matching process names;
/// -L only one thread; -t prints seconds since the first event.
#[test]
fn output_options() {
    let args = build(Go::Go127);
    let greet = probe(&args, r#"main.greet "%s", name"#);
    let cut = trace(&args, &["-Z", "3"], std::slice::from_ref(&greet), 1);
    assert_eq!(events(&cut), [("main.greet".into(), "bo...".into())]);

    let named = trace(&args, &["-n", "arg"], std::slice::from_ref(&greet), 2);
    assert_eq!(events(&named).len(), 2, "{}", named.stdout);
    let other = trace(
        &args,
        &["-n", "nosuchcomm"],
        std::slice::from_ref(&greet),
        2,
    );
    assert_eq!(events(&other).len(), 0, "{}", other.stdout);
    let no_thread = trace(&args, &["-L", "1"], std::slice::from_ref(&greet), 2);
    assert_eq!(events(&no_thread).len(), 0, "{}", no_thread.stdout);

    let timed = trace(&args, &["-t"], &[greet], 2);
    assert!(timed.stdout.starts_with("TIME"), "{}", timed.stdout);
    let first: f64 = timed
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(first, 0.0);

    let err = run_gotrace(&["trace", "-Z", "200", &probe(&args, "main.add")]);
    assert_one_line_error(&err, &["--string-size"]);
}

/// -C prints the CPU of each event; -f keeps the events whose message
/// matches; -b sizes the buffer in pages (a power of two).
#[test]
fn cpu_message_filter_and_buffer() {
    let args = build(Go::Go119);
    let greet = probe(&args, r#"main.greet "%s %d", name, n"#);
    let out = trace(&args, &["-C", "-f", " [02]$", "-b", "64"], &[greet], 4);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("CPU PID"), "{}", out.stdout);
    let cpus = std::thread::available_parallelism().unwrap().get() as u32;
    let mut messages = Vec::new();
    for line in &lines[1..] {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let cpu: u32 = fields[0].parse().unwrap();
        assert!(cpu < cpus, "{line}");
        assert_eq!(fields[5], "main.greet", "{line}");
        messages.push(fields[6..].join(" "));
    }
    assert_eq!(messages, ["bob 0", "bob 2"], "{}", out.stdout);

    let pages = run_gotrace(&["trace", "-b", "3", &probe(&args, "main.add")]);
    assert_one_line_error(&pages, &["--buffer-pages", "power of two"]);
    let regex = run_gotrace(&["trace", "-f", "(", &probe(&args, "main.add")]);
    assert_one_line_error(&regex, &["-f", "regular expression"]);
}

/// Probes in two binaries: each program is loaded once and attached to
/// both, with either attach method (one perf event per site failed on the
/// second binary when the program was loaded per binary).
fn two_binaries(method: &str) {
    let (a, b) = (build(Go::Go119), build(Go::Go127));
    let out = {
        let tracer = Tracer::start(&[
            "trace",
            "--attach",
            method,
            &probe(&a, r#"main.add "%d %d", goarg1, goarg2"#),
            &probe(&b, r#"main.add "%d", goarg2"#),
        ]);
        a.run(&["2"]);
        b.run(&["2"]);
        tracer.stop(libc::SIGINT)
    };
    let messages: Vec<String> = events(&out).into_iter().map(|(_, m)| m).collect();
    assert_eq!(messages, ["42 13", "42 13", "13", "13"], "{out:?}");
}

#[test]
fn two_binaries_multi() {
    two_binaries("multi");
}

#[test]
fn two_binaries_perf() {
    two_binaries("perf");
}
