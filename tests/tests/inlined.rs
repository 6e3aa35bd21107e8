//! Functions the compiler inlined have no symbol; gotrace counts their
//! inlined copies through the pclntab inline trees, in unstripped and
//! stripped binaries, PIE or not.

use std::process::Command;

use integration_tests::{only_table, run_gotrace, Fixture, Go, Tracer, STRIPPED_EXTERNAL_PIE};

/// The program of the 2017 post: fmt.Println, inlined into main.main,
/// counted once per run.
fn hello(go: Go, flags: &[&str]) {
    let hello = Fixture::build_with("hello", go, flags);
    let tracer = Tracer::start(&["funccount", &hello.pattern("fmt.Println")]);
    for _ in 0..3 {
        assert_eq!(hello.run(&[]), "Hello, BPF!\n");
    }
    let out = tracer.stop(libc::SIGINT);
    assert!(
        out.stderr
            .contains("fmt.Println was inlined by the compiler into main.main"),
        "{}",
        out.stderr
    );
    let counts = only_table(&out);
    assert_eq!(
        counts.get("fmt.Println [inlined x1]"),
        Some(&3),
        "{}",
        out.stdout
    );
}

#[test]
fn hello_go119() {
    hello(Go::Go119, &[]);
}

#[test]
fn hello_go127() {
    hello(Go::Go127, &[]);
}

#[test]
fn hello_stripped_go119() {
    hello(Go::Go119, &["-ldflags=-s -w"]);
}

#[test]
fn hello_stripped_go127() {
    hello(Go::Go127, &["-ldflags=-s -w"]);
}

#[test]
fn hello_stripped_pie_go119() {
    hello(Go::Go119, &["-buildmode=pie", "-ldflags=-s -w"]);
}

#[test]
fn hello_stripped_pie_go127() {
    hello(Go::Go127, &["-buildmode=pie", "-ldflags=-s -w"]);
}

/// Linked by the C linker (see `STRIPPED_EXTERNAL_PIE`).
#[test]
fn hello_stripped_external_pie_go119() {
    hello(Go::Go119, STRIPPED_EXTERNAL_PIE);
}

#[test]
fn hello_stripped_external_pie_go127() {
    hello(Go::Go127, STRIPPED_EXTERNAL_PIE);
}

/// Inlined calls in a loop and at two call sites count exactly.
#[test]
fn inlined_calls_count_exactly() {
    for go in [Go::Go119, Go::Go127] {
        let inlined = Fixture::build("inlined", go);
        let tracer = Tracer::start(&["funccount", &inlined.pattern("main.*")]);
        let said = inlined.run(&["7000"]);
        assert!(said.starts_with("scale: 7000 clamp: 7001 "), "{said}");
        let counts = only_table(&tracer.stop(libc::SIGINT));
        assert_eq!(
            counts.get("main.scale [inlined x1]"),
            Some(&7000),
            "{go:?} {counts:?}"
        );
        assert_eq!(
            counts.get("main.clamp [inlined x2]"),
            Some(&7001),
            "{go:?} {counts:?}"
        );
        assert_eq!(counts.get("main.work"), Some(&1));
    }
}

/// `gotrace info --functions` lists the inlined copies and their callers,
/// the same with and without symbols; `go build -gcflags=-m` is the
/// compiler's own word that it inlined there.
#[test]
fn info_lists_inlined_sites() {
    for go in [Go::Go119, Go::Go127] {
        let inlined = Fixture::build("inlined", go);
        let compiler = Command::new(go.compiler())
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/inlined"))
            .env("GOTOOLCHAIN", "local")
            .args(["build", "-gcflags=-m", "-o", "/dev/null", "."])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&compiler.stderr);
        assert!(said.contains("inlining call to clamp"), "{said}");

        let sites = |binary: &std::path::Path| {
            let out = run_gotrace(&[
                "info",
                "--json",
                "--functions",
                &binary.display().to_string(),
            ]);
            let info: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
            let mut sites: Vec<(String, String)> = info["inlined"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["name"].as_str().unwrap().starts_with("main."))
                .map(|s| {
                    (
                        s["name"].as_str().unwrap().to_owned(),
                        s["caller"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            sites.sort();
            sites
        };
        let expected = vec![
            ("main.clamp".to_owned(), "main.main".to_owned()),
            ("main.clamp".to_owned(), "main.work".to_owned()),
            ("main.scale".to_owned(), "main.work".to_owned()),
        ];
        assert_eq!(sites(&inlined.binary), expected);
        let stripped = inlined.dir.path().join("stripped");
        assert!(Command::new("strip")
            .arg("-o")
            .arg(&stripped)
            .arg(&inlined.binary)
            .status()
            .unwrap()
            .success());
        assert_eq!(sites(&stripped), expected);
    }
}
