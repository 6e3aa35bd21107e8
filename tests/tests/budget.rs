//! The overhead budget: a function too hot for the budget is detached
//! (printed once, marked in the table and JSON, its trap gone: the
//! program's own throughput says so), the others keep counting exactly,
//! and `--budget off` detaches nothing.
//!
//! The budget fixture calls main.hot as fast as it can (hundreds of
//! millions of calls a second untraced, about a million traced) and
//! main.coldA/B/C at rates it sets, and says how many calls it made.

use std::process::Command;

use integration_tests::{
    latency_report, only_table, residue, said, trace_events, Fixture, Go, Output, Tracer, Waiting,
};

/// Runs the budget fixture for `seconds` under gotrace (`args`, then
/// `-p PID`), and returns what gotrace and the fixture printed.
fn traced(fixture: &Fixture, seconds: u32, args: &[&str]) -> (Output, String) {
    let mut cmd = Command::new(&fixture.binary);
    cmd.arg(seconds.to_string());
    let process = Waiting::start(cmd);
    let pid = process.pid();
    let mut argv = args.to_vec();
    argv.extend(["-p", &pid]);
    let tracer = Tracer::start(&argv);
    let said_by_fixture = process.finish();
    // With -p gotrace ends when its process does.
    let out = tracer.wait();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(residue(), Vec::<String>::new());
    (out, said_by_fixture)
}

/// The hot calls the fixture made in its `second`th second.
fn throughput(fixture_said: &str, second: u32) -> u64 {
    let line = fixture_said
        .lines()
        .find(|l| l.starts_with(&format!("second {second}: hot ")))
        .unwrap_or_else(|| panic!("no second {second} in {fixture_said}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// The functions gotrace said it detached.
fn detached(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.ends_with("of a CPU: detached"))
        .map(|l| l.trim_start_matches("gotrace: ").split(':').next().unwrap())
        .collect()
}

/// The cold functions' counts equal the fixture's.
fn assert_cold_exact(counts: impl Fn(&str) -> Option<u64>, fixture_said: &str) {
    for cold in ["coldA", "coldB", "coldC"] {
        assert_eq!(
            counts(&format!("main.{cold}")),
            Some(said(fixture_said, &format!("{cold}:"))),
            "{cold}: {fixture_said}"
        );
    }
}

/// The hot function is detached within the first interval or two, and its
/// trap with it: by the third second the fixture runs at least 10x the
/// calls gotrace counted in all (at ~1 us a trap it could not, traced).
fn assert_hot_detached(out: &Output, counted: u64, fixture_said: &str) {
    assert_eq!(detached(&out.stderr), ["main.hot"], "{}", out.stderr);
    let third = throughput(fixture_said, 3);
    assert!(
        third >= 10 * counted,
        "second 3 ran {third} hot calls, only 10x over the {counted} counted while traced:\n{fixture_said}"
    );
}

fn funccount_detaches_the_hot_function(go: Go) {
    let fixture = Fixture::build("budget", go);
    let (out, fixture_said) = traced(
        &fixture,
        3,
        &["funccount", "--budget", "5", &fixture.pattern("main.*")],
    );
    let counts = only_table(&out);
    let (label, counted) = counts
        .iter()
        .find(|(label, _)| label.starts_with("main.hot"))
        .unwrap_or_else(|| panic!("no main.hot row: {}", out.stdout));
    // Its count stops where it was detached, and the mark says so.
    assert_eq!(*label, format!("main.hot [detached after {counted} calls]"));
    assert!(*counted > 0);
    assert_hot_detached(&out, *counted, &fixture_said);
    assert_cold_exact(|f| counts.get(f).copied(), &fixture_said);
}

#[test]
fn funccount_detaches_the_hot_function_go119() {
    funccount_detaches_the_hot_function(Go::Go119);
}

#[test]
fn funccount_detaches_the_hot_function_go127() {
    funccount_detaches_the_hot_function(Go::Go127);
}

/// `--budget off`: nothing detached, every hot call counted.
#[test]
fn budget_off_detaches_nothing() {
    let fixture = Fixture::build("budget", Go::Go127);
    let (out, fixture_said) = traced(
        &fixture,
        2,
        &["funccount", "--budget", "off", &fixture.pattern("main.*")],
    );
    assert_eq!(detached(&out.stderr), Vec::<&str>::new());
    let counts = only_table(&out);
    assert_eq!(
        counts.get("main.hot"),
        Some(&said(&fixture_said, "hot:")),
        "{fixture_said}"
    );
    assert_cold_exact(|f| counts.get(f).copied(), &fixture_said);
}

/// A pattern of 100 functions or more gets the default budget, and says
/// so. The hot function goes first; the runtime's scheduling of the
/// fixture's 5 ms ticker (hundreds of inlined copies, mostly
/// single-stepped) costs more than 5% of a CPU too, so more goes after it,
/// cheapest last: every function detached is marked with the calls it
/// counted, every other one counts exactly.
#[test]
fn broad_patterns_get_a_default_budget() {
    let fixture = Fixture::build("budget", Go::Go127);
    let (out, fixture_said) = traced(&fixture, 3, &["funccount", &fixture.pattern("*")]);
    assert!(
        out.stderr
            .contains("overhead budget 5.0% of a CPU, the default for broad patterns"),
        "{}",
        out.stderr
    );
    let detached = detached(&out.stderr);
    assert_eq!(detached.first(), Some(&"main.hot"), "{}", out.stderr);
    let counts = only_table(&out);
    assert!(counts.len() > 100, "{} rows", counts.len());
    let count = |function: &str| {
        counts.iter().find_map(|(label, n)| {
            let marked = format!("{function} [detached after {n} calls]");
            (label == function || *label == marked).then_some((*n, *label == marked))
        })
    };
    let (hot, marked) = count("main.hot").expect("a main.hot row");
    assert!(marked, "{}", out.stdout);
    let third = throughput(&fixture_said, 3);
    assert!(third >= 10 * hot, "{third} vs {hot}:\n{fixture_said}");
    for cold in ["coldA", "coldB", "coldC"] {
        let function = format!("main.{cold}");
        let made = said(&fixture_said, &format!("{cold}:"));
        match count(&function) {
            Some((n, false)) => assert_eq!(n, made, "{function}"),
            Some((n, true)) => {
                assert!(detached.contains(&function.as_str()));
                assert!(n < made, "{function}: {n} of {made}");
            }
            None => panic!("no {function} row: {}", out.stdout),
        }
    }
}

/// funclatency: the hot function's row is marked in JSON with the calls
/// it timed; the cold ones are all timed.
#[test]
fn funclatency_detaches_the_hot_function() {
    let fixture = Fixture::build("budget", Go::Go127);
    let (out, fixture_said) = traced(
        &fixture,
        3,
        &[
            "funclatency",
            "--json",
            "--budget",
            "5",
            &fixture.pattern("main.*"),
        ],
    );
    let report = latency_report(&out);
    let functions = report["functions"].as_array().expect("functions");
    let row = |name: &str| functions.iter().find(|f| f["func"] == name);
    let hot = row("main.hot").expect("a main.hot row");
    let counted = hot["count"].as_u64().expect("count");
    assert_eq!(hot["detached_after"].as_u64(), Some(counted), "{hot}");
    assert_hot_detached(&out, counted, &fixture_said);
    assert_cold_exact(|f| row(f)?["count"].as_u64(), &fixture_said);
    assert!(row("main.coldA").unwrap().get("detached_after").is_none());
}

/// trace: the hot probe goes, every cold call is still printed. The hot
/// probe prints one call in 1024 (`hot(0)`, once per batch of the
/// fixture's loop; the filter runs in the kernel): a line per call, at
/// hundreds of thousands a second, would fill the ring buffer faster than
/// the test reads it, and trace would rightly drop cold events with them.
#[test]
fn trace_detaches_the_hot_function() {
    let fixture = Fixture::build("budget", Go::Go127);
    let (out, fixture_said) = traced(
        &fixture,
        3,
        &[
            "trace",
            "--budget",
            "5",
            &format!("{} (goarg1 == 0)", fixture.pattern("main.hot")),
            &format!("{} \"%d\", goarg1", fixture.pattern("main.coldA")),
        ],
    );
    let events = trace_events(&out);
    let calls = |f: &str| events.iter().filter(|(func, _)| func == f).count() as u64;
    assert!(calls("main.hot") > 0, "{}", out.stdout);
    assert_hot_detached(&out, calls("main.hot") * 1024, &fixture_said);
    assert_eq!(
        calls("main.coldA"),
        said(&fixture_said, "coldA:"),
        "{}",
        out.stderr
    );
}
