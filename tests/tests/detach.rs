//! Nothing of gotrace stays in the kernel, however it ends: checked by
//! listing the kernel's BPF programs (links hold their program, so no
//! program means no link and no uprobe).

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

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
    // Notes first (what cannot be probed, the default budget, that
    // attaching goes one by one), then the error, one line.
    let lines: Vec<&str> = stderr.lines().collect();
    let (error, notes) = lines.split_last().expect("an error");
    assert!(error.contains("Too many open files"), "{stderr}");
    assert!(
        error.contains(&counter.binary.display().to_string()),
        "{stderr}"
    );
    assert!(
        notes.iter().all(|l| l.starts_with("gotrace: not counting")
            || l.contains("inlined everywhere")
            || l.contains("overhead budget")
            || l.contains("probes one by one")),
        "{stderr}"
    );
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

/// On kernels without uprobe_multi links, probes are attached one by one
/// (here forced with --attach perf): Ctrl-C while attaching thousands of
/// them ends gotrace within a second, with no program left in the kernel.
/// (The kernel releases each perf-event uprobe under one lock with a grace
/// period, 0.1 s or more a site: gotrace detaches its programs first and
/// leaves the rest to a gotrace-detach process.)
#[test]
fn sigint_while_attaching_one_by_one() {
    let counter = Fixture::build("counter", Go::Go127);
    let mut child = Command::new(integration_tests::gotrace())
        .args([
            "funccount",
            "--attach",
            "perf",
            &counter.pattern("runtime.*"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    let mut line = String::new();
    while !line.contains("probes one by one") {
        line.clear();
        assert_ne!(
            stderr.read_line(&mut line).unwrap(),
            0,
            "gotrace said: {said}"
        );
        said.push_str(&line);
    }
    let sites: usize = line
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .expect("a number of sites");
    assert!(sites >= 2000, "{line}");
    // SAFETY: signalling our own child, not yet reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let stopped = Instant::now();
    let status = child.wait().unwrap();
    let took = stopped.elapsed();
    std::io::Read::read_to_string(&mut stderr, &mut said).unwrap();
    assert!(status.success(), "{status}: {said}");
    assert!(
        took < Duration::from_secs(1),
        "took {took:?} to stop: {said}"
    );
    assert!(said.contains("stopped while attaching"), "{said}");
    assert_eq!(residue(), Vec::<String>::new());
}
