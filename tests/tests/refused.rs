//! Functions and inlined copies whose first instruction Linux's uprobe
//! code refuses (a `lock` prefix, a `ds` override, `int $3`) or accepts
//! although it looks alike (an `fs` override): the refused fixture calls
//! each a number of times it prints, and gotrace must count every call,
//! name what it cannot probe, and never make the kernel refuse the whole
//! set (which it did for `runtime.abort` of Debian's prometheus).

use integration_tests::{
    assert_one_line_error, only_table, residue, run_gotrace, said, trace_events, Fixture, Go,
    Tracer,
};

const CALLS: u64 = 2000;

fn exact_counts(go: Go) {
    let refused = Fixture::build("refused", go);
    let tracer = Tracer::start(&["funccount", "-v", &refused.pattern("main.*")]);
    let output = refused.run(&[&CALLS.to_string()]);
    // Probes moved off refused instructions must not change what runs.
    assert_eq!(
        output,
        format!(
            "calls: {CALLS} locked: {CALLS} sum: {} swapped: {CALLS}\n",
            4 * CALLS
        )
    );
    let out = tracer.stop(libc::SIGINT);
    assert!(out.status.success(), "{out:?}");
    let counts = only_table(&out);
    let calls = said(&output, "calls:");
    for function in [
        "main.lockInc.abi0",
        "main.lockXadd.abi0",
        "main.dsLoad.abi0",
        "main.fsLoad.abi0",
        "main.casOnce",
    ] {
        assert_eq!(counts.get(function), Some(&calls), "{function}: {out:?}");
    }
    // The kernel refuses `lock` and `ds:`, and accepts `fs:` (Go's TLS loads).
    for moved in ["lockInc.abi0", "lockXadd.abi0", "dsLoad.abi0"] {
        let line = out
            .stderr
            .lines()
            .find(|l| l.starts_with(&format!("gotrace: main.{moved} ")))
            .unwrap_or_else(|| panic!("no placement of {moved}: {}", out.stderr));
        assert!(line.contains("which the kernel cannot probe"), "{line}");
    }
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("gotrace: main.fsLoad.abi0 ") && l.ends_with("(entry)")),
        "{}",
        out.stderr
    );
    // int $3 cannot be moved past (nothing follows it but its RET, and a
    // probe there would count nothing): named, and the rest counted.
    assert!(
        out.stderr
            .contains("not counting main.trap.abi0: it starts with an `int`"),
        "{}",
        out.stderr
    );
    if go == Go::Go127 {
        // Go 1.27 inlines swap into casOnce, and its copy starts with the
        // `LOCK CMPXCHGQ` that starts casOnce itself on Go 1.19.
        assert_eq!(
            counts.get("main.swap [inlined x1]"),
            Some(&calls),
            "{out:?}"
        );
    }
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

/// The same with one perf event per site (kernels without uprobe_multi).
#[test]
fn exact_counts_perf_events() {
    let refused = Fixture::build("refused", Go::Go119);
    let tracer = Tracer::start(&["funccount", "--attach", "perf", &refused.pattern("main.*")]);
    refused.run(&["300"]);
    let counts = only_table(&tracer.stop(libc::SIGINT));
    assert_eq!(counts.get("main.lockXadd.abi0"), Some(&300));
    assert_eq!(counts.get("main.casOnce"), Some(&300));
    assert_eq!(residue(), Vec::<String>::new());
}

/// A function that is nothing but a refused instruction is an error that
/// says why, and leaves nothing attached.
#[test]
fn only_unprobeable_functions() {
    let refused = Fixture::build("refused", Go::Go127);
    let out = run_gotrace(&["funccount", &refused.pattern("main.trap.abi0")]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("`int`") && out.stderr.contains("none of the functions"),
        "{}",
        out.stderr
    );
    assert_eq!(residue(), Vec::<String>::new());
}

/// trace reads arguments at the moved probe only where the skipped
/// instruction left them alone: `LOCK CMPXCHGQ` overwrites RAX (goarg1 of
/// casOnce on Go 1.19) but not RCX (goarg3).
#[test]
fn trace_past_a_refused_instruction() {
    let refused = Fixture::build("refused", Go::Go119);
    let probe = format!(r#"{}:main.casOnce "%d", goarg3"#, refused.binary.display());
    let tracer = Tracer::start(&["trace", "-M", "3", &probe]);
    refused.run(&["5"]);
    let out = tracer.wait();
    let messages: Vec<String> = trace_events(&out).into_iter().map(|(_, m)| m).collect();
    assert_eq!(messages, ["1", "2", "3"], "{out:?}");
    let clobbered = run_gotrace(&[
        "trace",
        &format!(r#"{}:main.casOnce "%d", goarg1"#, refused.binary.display()),
    ]);
    assert_one_line_error(
        &clobbered,
        &["cannot read goarg1 of main.casOnce", "overwritten"],
    );
}

/// info --probe-cost counts what placement moved and refused.
#[test]
fn probe_cost_counts_refusals() {
    let refused = Fixture::build("refused", Go::Go127);
    let out = run_gotrace(&[
        "info",
        "--json",
        "--probe-cost",
        &refused.binary.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let info: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let cost = &info["probe_cost"];
    // main.trap.abi0, and the runtime's own int $3 (runtime.abort) at least.
    assert!(cost["unprobeable"].as_u64().unwrap() >= 2, "{cost}");
    // lockInc, lockXadd, dsLoad at least.
    assert!(cost["entries_moved"].as_u64().unwrap() >= 3, "{cost}");
    // main.swap in casOnce at least.
    assert!(cost["inlined_moved"].as_u64().unwrap() >= 1, "{cost}");
}
