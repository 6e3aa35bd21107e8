//! The traced program survives: a runtime-heavy program (stack copying,
//! GC, channels, panics, goroutines hopping threads, LockOSThread) runs
//! under funccount on all its main.* and runtime.* functions, funclatency
//! on a hot recursive function and trace -U on another, all at once, and
//! prints exactly what it prints untraced.
//!
//! 15 s per Go version by default; GOTRACE_SOAK_SECS=60 for the full soak.

use integration_tests::{only_table, residue, Fixture, Go, Tracer};

fn soak(go: Go) {
    let secs = std::env::var("GOTRACE_SOAK_SECS").unwrap_or_else(|_| "15".into());
    let soak = Fixture::build("soak", go);
    let untraced = soak.run(&["1"]);
    assert!(untraced.starts_with("soak ok:"), "{untraced}");

    let counting = Tracer::start(&[
        "funccount",
        "--budget",
        "off",
        "-r",
        &soak.pattern(r"(main|runtime)\..*"),
    ]);
    let timing = Tracer::start(&["funclatency", "-u", &soak.pattern("main.deep")]);
    let tracing = Tracer::start(&[
        "trace",
        "-U",
        &soak.pattern(r#"main.mayPanic (i == 7) "%d", i"#),
    ]);
    let traced = soak.run(&[&secs]);
    assert_eq!(traced, untraced, "the traced program's output changed");

    let counts = only_table(&counting.stop(libc::SIGINT));
    assert!(
        counts.get("main.deep").is_some_and(|&n| n > 10_000),
        "{counts:?}"
    );
    assert!(
        counts.get("runtime.gcStart").is_some_and(|&n| n > 0),
        "no GC seen: {counts:?}"
    );
    let latency = timing.stop(libc::SIGINT);
    assert!(
        latency.status.success() && latency.stdout.contains("count: "),
        "{latency:?}"
    );
    let events = tracing.stop(libc::SIGINT);
    assert!(events.status.success(), "{events:?}");
    assert!(events.stdout.contains("main.mayPanic"), "{}", events.stdout);
    assert!(
        events.stdout.contains("main.round.func1+0x"),
        "no Go stack in:\n{}",
        events.stdout
    );
    assert_eq!(residue(), Vec::<String>::new());
}

/// Go 1.19's runtime.gcWriteBarrierR8 starts with `xchg rax, r8`, which
/// the kernel's uprobe code runs as a nop: before gotrace moved that probe
/// (tests/misemulated.rs) this run died in runtime.deltimer.
#[test]
fn soak_go119() {
    soak(Go::Go119);
}

#[test]
fn soak_go127() {
    soak(Go::Go127);
}
