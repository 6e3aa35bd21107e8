//! Bad input: a one-line error that says what to do, a non-zero exit, and
//! nothing left in the kernel.

use std::{os::unix::fs::PermissionsExt as _, process::Command};

use integration_tests::{assert_one_line_error, run_gotrace, Fixture, Go, Output};

#[test]
fn bad_inputs() {
    let counter = Fixture::build("counter", Go::Go119);
    let dir = counter.dir.path();
    let text = dir.join("notes.txt");
    std::fs::write(&text, "not a program\n").unwrap();
    let bin = counter.binary.display().to_string();
    let dead_pid = dead_pid().to_string();

    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec!["/nonexistent/app:main.*".into()],
            vec!["/nonexistent/app", "no such file"],
        ),
        (
            vec![format!("{}:main.*", text.display())],
            vec!["notes.txt", "not an ELF"],
        ),
        (
            vec![format!("{}:main.*", dir.display())],
            vec!["is a directory"],
        ),
        (
            vec!["/bin/true:main.*".into()],
            vec!["/bin/true", "not a Go binary", "PATH:FUNC works on any ELF"],
        ),
        (
            vec![format!("{bin}:main.wrok")],
            vec![&bin, "main.wrok", "did you mean \"main.work\""],
        ),
        (
            vec![format!("{bin}:nosuch.*")],
            vec![&bin, "no function", "runtime, ", "try PKG.*"],
        ),
        (vec![format!("{bin}:")], vec!["names no function"]),
        (
            vec!["-c".into(), "/nonexistent-cgroup".into(), "main.*".into()],
            vec!["no cgroup", "/nonexistent-cgroup"],
        ),
        (
            vec!["-c".into(), dir.display().to_string(), "main.*".into()],
            vec!["not in the cgroup v2 hierarchy"],
        ),
        (
            vec![
                "-p".into(),
                format!("{},{dead_pid}", std::process::id()),
                "main.*".into(),
            ],
            vec![&dead_pid, "no process"],
        ),
        (
            vec!["--comm".into(), "".into(), "main.*".into()],
            vec!["--comm needs"],
        ),
        (
            vec!["nosuchlib:main.*".into()],
            vec!["nosuchlib", "libnosuchlib.so"],
        ),
        (
            vec!["-p".into(), dead_pid.clone(), "main.*".into()],
            vec![&dead_pid, "no process"],
        ),
        (vec!["-p".into(), "0".into(), "main.*".into()], vec!["-p 0"]),
        (
            vec!["-r".into(), format!("{bin}:main.((")],
            vec!["regular expression"],
        ),
        (
            vec!["-i".into(), "0".into(), format!("{bin}:main.*")],
            vec!["--interval", "positive"],
        ),
        (
            vec!["-d".into(), "soon".into(), format!("{bin}:main.*")],
            vec!["--duration", "soon"],
        ),
        (
            vec!["-p".into(), "x".into(), "main.*".into()],
            vec!["--pid"],
        ),
        (vec![], vec!["PATTERN", "--help"]),
        (
            vec!["--bogus".into(), format!("{bin}:main.*")],
            vec!["--bogus"],
        ),
    ];
    for (args, needles) in &cases {
        let mut argv = vec!["funccount"];
        argv.extend(args.iter().map(String::as_str));
        let out = run_gotrace(&argv);
        println!("{argv:?} -> {}", out.stderr.trim_end());
        assert_one_line_error(&out, needles);
    }
    assert_one_line_error(&run_gotrace(&["bogus"]), &["bogus"]);
}

/// The other tools' inputs: funclatency's options and functions it cannot
/// time, info's paths, trace's options and malformed probes. Together with
/// `bad_inputs` (21) and trace.rs's `bad_probes` (13), 65 inputs.
#[test]
fn bad_inputs_of_the_other_tools() {
    let args = Fixture::build("args", Go::Go127);
    let bin = args.binary.display().to_string();
    let text = args.dir.path().join("notes.txt");
    std::fs::write(&text, "not a program\n").unwrap();
    let text = text.display().to_string();
    let dead_pid = dead_pid().to_string();
    let probe = |p: &str| format!("{bin}:{p}");

    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec![
                "funclatency".into(),
                "-u".into(),
                "-m".into(),
                probe("main.add"),
            ],
            vec!["--microseconds", "--milliseconds"],
        ),
        (
            // main.helper exists only inlined: its arguments are where
            // the compiler left them, not in the ABI's places.
            vec!["trace".into(), probe(r#"main.helper "%d", goarg1"#)],
            vec![
                "goarg1 has no meaning in an inlined copy",
                "name the parameter",
            ],
        ),
        (
            vec![
                "trace".into(),
                format!(r#"r:{bin}:main.helper "%d", retval"#),
            ],
            vec!["retval has no meaning in an inlined copy"],
        ),
        (
            vec!["funclatency".into(), "/bin/true:main.*".into()],
            vec!["/bin/true", "not a Go binary"],
        ),
        (
            vec![
                "funclatency".into(),
                "-p".into(),
                dead_pid.clone(),
                "main.add".into(),
            ],
            vec![&dead_pid, "no process"],
        ),
        (
            vec!["funclatency".into(), probe("nosuch.*")],
            vec!["no function", "try PKG.*"],
        ),
        (
            vec![
                "funclatency".into(),
                "-d".into(),
                "0".into(),
                probe("main.add"),
            ],
            vec!["--duration", "positive"],
        ),
        (vec!["funclatency".into()], vec!["PATTERN"]),
        (
            vec![
                "funccount".into(),
                "--budget".into(),
                "-5".into(),
                probe("main.add"),
            ],
            vec!["--budget", "positive percentage"],
        ),
        (
            vec![
                "funclatency".into(),
                "--budget".into(),
                "lots".into(),
                probe("main.add"),
            ],
            vec!["--budget", "\"lots\"", "or `off`"],
        ),
        (
            vec!["trace".into(), "--budget=0".into(), probe("main.add")],
            vec!["--budget", "positive percentage"],
        ),
        (
            vec!["info".into(), "/nonexistent".into()],
            vec!["/nonexistent", "no such file"],
        ),
        (
            vec!["info".into(), text.clone()],
            vec!["notes.txt", "not an ELF"],
        ),
        (vec!["info".into(), "/tmp".into()], vec!["is a directory"]),
        (
            vec!["info".into(), "--bogus".into(), bin.clone()],
            vec!["--bogus"],
        ),
        (
            vec!["trace".into(), "-Z".into(), "0".into(), probe("main.add")],
            vec!["--string-size", "2..=64"],
        ),
        (
            vec!["trace".into(), "-L".into(), "x".into(), probe("main.add")],
            vec!["--tid"],
        ),
        (
            vec![
                "trace".into(),
                "-p".into(),
                dead_pid.clone(),
                "main.add".into(),
            ],
            vec![&dead_pid, "no process"],
        ),
        (vec!["trace".into()], vec!["PROBE"]),
        (
            vec!["trace".into(), probe(r#"main.add "%d""#)],
            vec!["1 conversion", "0 argument"],
        ),
        (
            vec!["trace".into(), probe(r#"main.add "%d" goarg99"#)],
            vec!["goarg99", "1 to 32"],
        ),
        (
            vec!["trace".into(), probe(r#"main.add "%d" goarg0"#)],
            vec!["goarg0"],
        ),
        (
            vec!["trace".into(), probe(r#"main.add "%d" retval0"#)],
            vec!["retval0"],
        ),
        (
            vec![
                "trace".into(),
                probe(r#"main.add (goarg1 == ) "%d" goarg1"#),
            ],
            vec!["not an integer"],
        ),
        (
            vec![
                "trace".into(),
                probe(r#"main.add (goarg1 == 99999999999999999999999) "%d" goarg1"#),
            ],
            vec!["99999999999999999999999"],
        ),
        (
            vec!["trace".into(), probe(r#"main.add "%d %d" goarg1,, goarg2"#)],
            vec!["bad argument \"\""],
        ),
        (
            vec!["trace".into(), probe(r#"main.add "%d" goarg1 goarg2"#)],
            vec!["goarg1 goarg2"],
        ),
        (
            vec!["trace".into(), probe(r#"main.add (name == "x)"#)],
            vec!["unbalanced"],
        ),
        (
            vec!["trace".into(), probe(r#"main.add "%"#)],
            vec!["unterminated"],
        ),
        (
            vec![
                "trace".into(),
                probe(r#"main.add (x == 1 && x == 2 && x == 3 && x == 4 && x == 5) "%d" x"#),
            ],
            vec!["more than 4"],
        ),
        (
            vec![
                "trace".into(),
                probe(r#"main.add "%d %d %d %d %d %d %d" x, x, x, x, x, x, x"#),
            ],
            vec!["7 values", "at most 6"],
        ),
        (
            vec!["trace".into(), probe(r#"main.greet "%d" name.Len"#)],
            vec!["no field \"Len\""],
        ),
    ];
    for (argv, needles) in &cases {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = run_gotrace(&argv);
        println!("{argv:?} -> {}", out.stderr.trim_end());
        assert_one_line_error(&out, needles);
    }
}

/// Without root or CAP_BPF+CAP_PERFMON: exit 77 and say which are needed.
/// A 32-bit x86 Go program runs on this kernel, but its code is not
/// x86-64 code: placing probes by x86-64 rules would put them inside
/// instructions. Every tool refuses it by name.
#[test]
fn other_architectures() {
    let hello = Fixture::build_for("hello", Go::Go127, "386");
    let bin = hello.binary.display().to_string();
    for args in [
        vec!["funccount".to_owned(), format!("{bin}:main.*")],
        vec!["funclatency".to_owned(), format!("{bin}:main.main")],
        vec!["trace".to_owned(), format!("{bin}:main.main")],
        vec!["info".to_owned(), bin.clone()],
    ] {
        let out = run_gotrace(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_one_line_error(&out, &[&bin, "32-bit x86 (i386)", "x86-64 programs only"]);
    }
}

#[test]
fn no_privilege() {
    let counter = Fixture::build("counter", Go::Go119);
    // nobody must be able to reach the binary to get as far as privilege.
    std::fs::set_permissions(counter.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(integration_tests::gotrace())
        .args(["funccount", &counter.pattern("main.*")])
        .output()
        .unwrap();
    let out = Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(out.status.code(), Some(77), "{out:?}");
    assert_one_line_error(&out, &["root", "CAP_BPF", "CAP_PERFMON"]);
}

/// A PID that surely does not exist: beyond the kernel's pid_max.
fn dead_pid() -> u32 {
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    max + 1
}
