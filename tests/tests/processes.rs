//! Binaries as processes see them: gccgo programs whose code is in libgo,
//! libraries named like bcc does (`go:`), `-p` without a path, and
//! binaries that exist only inside another mount namespace.

use std::{path::Path, process::Command};

use integration_tests::{fixture_counts, only_table, Fixture, Go, Tracer, Waiting};

/// gccgo binaries: C ABI, entry probes, exact counts of main.*.
#[test]
fn gccgo_program_counts_exactly() {
    let counter = Fixture::build("counter", Go::Gccgo);
    let tracer = Tracer::start(&["funccount", &counter.pattern("main.*")]);
    let said = fixture_counts(&counter.run(&["20000", "300"]));
    let counts = only_table(&tracer.stop(libc::SIGINT));
    for (func, n) in &said {
        assert_eq!(counts.get(func), Some(n), "{func}: {counts:?}");
    }
    assert_eq!(counts.get("main.main"), Some(&1));
}

/// `go:fmt.Println` finds libgo.so.N like bcc's `go:` does, and counts
/// every process using libgo (each counter run prints one line).
#[test]
fn libgo_by_library_name_counts_every_process() {
    let counter = Fixture::build("counter", Go::Gccgo);
    let tracer = Tracer::start(&["funccount", "go:fmt.Println"]);
    assert!(
        tracer.banner.starts_with("Tracing 1 functions"),
        "{}",
        tracer.banner
    );
    for _ in 0..3 {
        counter.run(&["10"]);
    }
    let counts = only_table(&tracer.stop(libc::SIGINT));
    // Other gccgo programs may run meanwhile on a shared machine; ours ran 3.
    assert!(
        counts.get("fmt.Println").is_some_and(|&n| n >= 3),
        "{counts:?}"
    );
}

/// With -p, a library name resolves among the files the process maps, and
/// only that process counts.
#[test]
fn libgo_in_one_process() {
    let counter = Fixture::build("counter", Go::Gccgo);
    let target = Waiting::start(Command::new(&counter.binary));
    let tracer = Tracer::start(&["funccount", "-p", &target.pid(), "go:fmt.Println"]);
    counter.run(&["10"]); // another process: not counted
    target.finish();
    let out = tracer.wait();
    assert_eq!(only_table(&out).get("fmt.Println"), Some(&1), "{out:?}");
}

/// `-p PID` with the executable's bare name, and with no path at all.
#[test]
fn pid_with_bare_names() {
    let counter = Fixture::build("counter", Go::Go119);
    for pattern in ["counter:main.leaf", "main.leaf"] {
        let target = Waiting::start(Command::new(&counter.binary));
        let tracer = Tracer::start(&["funccount", "-p", &target.pid(), pattern]);
        let said = fixture_counts(&target.finish());
        let out = tracer.wait();
        assert_eq!(
            only_table(&out).get("main.leaf"),
            said.get("main.leaf"),
            "{pattern}: {out:?}"
        );
    }
}

/// A binary that exists only in another mount namespace (as in a
/// container) resolves through /proc/PID/root.
#[test]
fn binary_inside_another_mount_namespace() {
    let counter = Fixture::build("counter", Go::Go127);
    let hidden = counter.dir.path().join("ns");
    std::fs::create_dir(&hidden).unwrap();
    let inside = hidden.join("counter");
    let script = format!(
        "mount -t tmpfs none {dir} && cp {bin} {dir}/counter && exec {dir}/counter 4000 0",
        dir = hidden.display(),
        bin = counter.binary.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    let target = Waiting::start(cmd);
    assert!(
        !inside.exists(),
        "the binary must not be visible outside the namespace"
    );

    let pattern = format!("{}:main.*", inside.display());
    let tracer = Tracer::start(&["funccount", "-p", &target.pid(), &pattern]);
    let said = fixture_counts(&target.finish());
    let out = tracer.wait();
    let counts = only_table(&out);
    assert_eq!(counts.get("main.work"), said.get("main.work"), "{out:?}");
    assert!(out.stderr.contains("exited"), "{}", out.stderr);
    assert!(!Path::new(&inside).exists());
}
