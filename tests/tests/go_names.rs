//! Go symbols that are not plain identifiers, as FUNC of every tool:
//! pointer receivers (`main.(*Counter).Add`, the most common handler
//! names), generic instances (`main.Map[go.shape.int_0,...]`), closures
//! (`main.main.func1`) and the compiler's equality functions
//! (`type..eq.main.Key`, `type:.eq.SM8` from Go 1.21). The methods fixture
//! calls each a number of times it prints.

use integration_tests::{
    assert_one_line_error, latency_report, only_table, residue, run_gotrace, said, trace_events,
    Fixture, Go, Tracer,
};

const CALLS: &str = "400";

/// funccount of `func` (a glob, or `-r` and a regular expression) on the
/// fixture built by `go`: the table, and what the fixture said.
fn count(
    methods: &Fixture,
    options: &[&str],
    func: &str,
) -> (std::collections::BTreeMap<String, u64>, String) {
    let pattern = methods.pattern(func);
    let mut args = vec!["funccount"];
    args.extend(options);
    args.push(&pattern);
    let tracer = Tracer::start(&args);
    let output = methods.run(&[CALLS]);
    let out = tracer.stop(libc::SIGINT);
    assert!(out.status.success(), "{out:?}");
    (only_table(&out), output)
}

fn names(go: Go) {
    let methods = Fixture::build("methods", go);
    let (counts, output) = count(&methods, &[], "main.(*Counter).Add");
    let calls = said(&output, "calls:");
    assert_eq!(
        counts.get("main.(*Counter).Add"),
        Some(&calls),
        "{counts:?}"
    );
    assert_eq!(counts.len(), 1, "{counts:?}");

    // A generic name without brackets: every instance, a row each.
    let (counts, _) = count(&methods, &[], "main.(*List).Push");
    let (int, string) = match go {
        Go::Go119 => ("go.shape.int_0", "go.shape.string_0"),
        _ => ("go.shape.int", "go.shape.string"),
    };
    assert_eq!(
        counts.get(&format!("main.(*List[{int}]).Push")),
        Some(&calls),
        "{counts:?}"
    );
    assert_eq!(
        counts.get(&format!("main.(*List[{string}]).Push")),
        Some(&calls),
        "{counts:?}"
    );
    let (counts, _) = count(&methods, &[], "main.Map");
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");

    // The closure called through a variable.
    let (counts, _) = count(&methods, &[], "main.main.func1");
    assert_eq!(counts.get("main.main.func1"), Some(&calls), "{counts:?}");

    // The compiler's equality of Key, one call per map lookup.
    let eq = match go {
        Go::Go119 => "type..eq.main.Key",
        _ => "type:.eq.SM8",
    };
    let (counts, output) = count(&methods, &[], eq);
    assert_eq!(counts.get(eq), Some(&said(&output, "found:")), "{counts:?}");

    // -r anchors at the start only, as bcc's: a prefix selects.
    let (counts, _) = count(&methods, &["-r"], r"main\.\(\*Counter\)");
    assert_eq!(
        counts.get("main.(*Counter).Add"),
        Some(&calls),
        "{counts:?}"
    );
    assert_eq!(residue(), Vec::<String>::new());
}

#[test]
fn names_go119() {
    names(Go::Go119);
}

#[test]
fn names_go127() {
    names(Go::Go127);
}

/// An expression that matches only inside names says so.
#[test]
fn regexp_anchored_at_the_start() {
    let methods = Fixture::build("methods", Go::Go127);
    let out = run_gotrace(&["funccount", "-r", &methods.pattern(r"\(\*Counter\)\.Add$")]);
    assert_one_line_error(
        &out,
        &[
            "anchors at the start",
            "main.(*Counter).Add",
            r"'.*\(\*Counter\)\.Add$'",
        ],
    );
}

/// trace and funclatency take pointer-receiver methods too, with a filter
/// after the name.
#[test]
fn pointer_receiver_in_trace_and_funclatency() {
    let methods = Fixture::build("methods", Go::Go127);
    let probe = format!(
        r#"{}:main.(*Counter).Add (goarg2 >= 397) "%d", goarg2"#,
        methods.binary.display()
    );
    let tracer = Tracer::start(&["trace", &probe]);
    methods.run(&[CALLS]);
    let out = tracer.stop(libc::SIGINT);
    let events = trace_events(&out);
    assert_eq!(
        events,
        ["397", "398", "399"]
            .map(|n| ("main.(*Counter).Add".to_owned(), n.to_owned()))
            .to_vec(),
        "{out:?}"
    );

    let tracer = Tracer::start(&[
        "funclatency",
        "--json",
        &methods.pattern("main.(*List).Push"),
    ]);
    let output = methods.run(&[CALLS]);
    let report = latency_report(&tracer.stop(libc::SIGINT));
    let calls = said(&output, "calls:");
    assert_eq!(
        report["total"]["count"].as_u64(),
        Some(2 * calls),
        "{report}"
    );
    assert_eq!(residue(), Vec::<String>::new());
}
