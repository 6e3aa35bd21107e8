//! Nothing of gotrace stays in the kernel, however it ends: checked by
//! listing the kernel's BPF programs (links hold their program, so no
//! program means no link and no uprobe).

use std::process::Command;

use integration_tests::{only_table, residue, Fixture, Go, Tracer};

fn ends_clean_on(signal: libc::c_int) {
    let counter = Fixture::build("counter", Go::Go127);
    let tracer = Tracer::start(&["funccount", &counter.pattern("main.*")]);
    assert_ne!(
        residue(),
        Vec::<String>::new(),
        "the program is not visible while tracing"
    );
    counter.run(&["100"]);
    let out = tracer.stop(signal);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(only_table(&out).get("main.work"), Some(&100));
    assert_eq!(residue(), Vec::<String>::new());
}

#[test]
fn sigint() {
    ends_clean_on(libc::SIGINT);
}

#[test]
fn sigterm() {
    ends_clean_on(libc::SIGTERM);
}

#[test]
fn sighup() {
    ends_clean_on(libc::SIGHUP);
}

#[test]
fn duration_end() {
    let counter = Fixture::build("counter", Go::Go119);
    let tracer = Tracer::start(&["funccount", "-d", "1", &counter.pattern("main.*")]);
    let out = tracer.wait();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(residue(), Vec::<String>::new());
}

/// SIGKILL gives gotrace no chance to clean up: the kernel must, because
/// every probe hangs off a descriptor.
#[test]
fn sigkill() {
    let counter = Fixture::build("counter", Go::Go127);
    let tracer = Tracer::start(&["funccount", &counter.pattern("runtime.*")]);
    let out = tracer.stop(libc::SIGKILL);
    assert!(!out.status.success());
    assert_eq!(residue(), Vec::<String>::new());
    // And the binary runs untraced, unharmed.
    counter.run(&["1000"]);
}

/// The same for the per-probe perf-event method (the fallback on kernels
/// without uprobe_multi), killed with probes in place.
#[test]
fn sigkill_perf_event_probes() {
    let counter = Fixture::build("counter", Go::Go119);
    let tracer = Tracer::start(&["funccount", "--attach", "perf", &counter.pattern("main.*")]);
    let out = tracer.stop(libc::SIGKILL);
    assert!(!out.status.success());
    assert_eq!(residue(), Vec::<String>::new());
}

/// An error half way through attaching (here: out of file descriptors, one
/// perf-event probe at a time) detaches the probes already placed.
#[test]
fn error_half_way_through_attaching() {
    let counter = Fixture::build("counter", Go::Go127);
    let out = Command::new("prlimit")
        .arg("--nofile=48:48")
        .arg(integration_tests::gotrace())
        .args([
            "funccount",
            "--attach",
            "perf",
            &counter.pattern("runtime.*"),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("Too many open files"), "{stderr}");
    assert_eq!(residue(), Vec::<String>::new());
}

/// funclatency's entry and return programs go too.
#[test]
fn funclatency_sigint() {
    let latency = Fixture::build("latency", Go::Go127);
    let tracer = Tracer::start(&["funclatency", &latency.pattern("main.*")]);
    assert_eq!(
        residue().len(),
        2,
        "both programs are visible while tracing"
    );
    latency.run(&["nest", "1", "1"]);
    let out = tracer.stop(libc::SIGINT);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(residue(), Vec::<String>::new());
}
