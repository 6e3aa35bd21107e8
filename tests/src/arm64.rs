//! The arm64 stage: fixtures cross-built for arm64, copied into an
//! emulated arm64 machine with the arm64 gotrace (`cargo xtask arm64`),
//! and a shell script that runs gotrace and the fixtures there.
//!
//! A script is one boot (3-6 s, plus TCG's slow emulation of everything
//! after), so each test runs its cases in one script. Its steps print
//! their streams and status between `@@NAME` markers, which [`Runs`]
//! takes apart again.

use std::{path::PathBuf, process::Command};

use crate::{Fixture, Go, Output};

/// Shell functions every script starts with.
///
/// - `run NAME CMD...`: runs CMD to its end.
/// - `start NAME ARGS...`: gotrace ARGS in the background, until its
///   `Tracing ...` banner (or its exit); `stop NAME` sends SIGINT, waits.
/// - `residue`: how many of gotrace's programs the kernel still holds
///   (`/proc/kallsyms` names every JIT-compiled program,
///   `bpf_prog_TAG_NAME\t[bpf]`, once the guest's init sets
///   `bpf_jit_kallsyms`).
const PRELUDE: &str = r#"
show() {
    echo "@@$1 status $2"; echo "@@$1 stdout"; cat "/tmp/$1.out"
    echo "@@$1 stderr"; cat "/tmp/$1.err"; echo "@@$1 end"
}
run() {
    name=$1; shift
    "$@" > "/tmp/$name.out" 2> "/tmp/$name.err"
    show "$name" $?
}
start() {
    name=$1; shift
    gotrace "$@" > "/tmp/$name.out" 2> "/tmp/$name.err" &
    echo $! > "/tmp/$name.pid"
    i=0
    until grep -q '^Tracing ' "/tmp/$name.out" "/tmp/$name.err" 2>/dev/null; do
        kill -0 "$(cat "/tmp/$name.pid")" 2>/dev/null || break
        i=$((i + 1)); [ $i -gt 3000 ] && break
        sleep 0.1
    done
}
stop() {
    pid=$(cat "/tmp/$1.pid")
    kill -INT "$pid" 2>/dev/null
    wait "$pid"
    show "$1" $?
}
residue() {
    grep -cE ' bpf_prog_[0-9a-f]+_(PROGRAMS)[[:space:]]' /proc/kallsyms
}
"#;

/// Seconds a script may take before its machine is stopped.
const TIMEOUT_SECS: u32 = 600;

/// The files of one boot of the arm64 machine.
pub struct Guest {
    dir: tempfile::TempDir,
    fixtures: Vec<Fixture>,
}

impl Default for Guest {
    fn default() -> Self {
        Self::new()
    }
}

impl Guest {
    pub fn new() -> Guest {
        Guest {
            dir: tempfile::Builder::new()
                .prefix("gotrace-arm64-")
                .tempdir()
                .expect("creating a temporary directory"),
            fixtures: Vec::new(),
        }
    }

    /// Builds `tests/fixtures/NAME` for arm64 with `go` (gc) and returns
    /// its path in the guest, `/files/NAME-go119` or `/files/NAME-go127`.
    pub fn fixture(&mut self, name: &str, go: Go) -> String {
        self.fixture_with(name, go, &[], "")
    }

    /// [`Guest::fixture`] built with `flags`, as `/files/NAME-goNNNSUFFIX`.
    pub fn fixture_with(&mut self, name: &str, go: Go, flags: &[&str], suffix: &str) -> String {
        let fixture = Fixture::build_for_with(name, go, "arm64", flags);
        let file = format!("{name}-{}{suffix}", format!("{go:?}").to_lowercase());
        std::fs::copy(&fixture.binary, self.dir.path().join(&file))
            .expect("copying a fixture for the guest");
        self.fixtures.push(fixture);
        format!("/files/{file}")
    }

    /// The host directory the guest sees as /files.
    pub fn host_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Boots the machine, runs `script` (after the prelude) and returns
    /// what its steps printed. Panics if the machine cannot boot: a
    /// machine without the arm64 pieces fails the suite, never skips it.
    pub fn boot(&self, script: &str) -> Runs {
        let runner = std::env::var_os("GOTRACE_ARM64_RUNNER").map(PathBuf::from);
        let runner = runner.expect(
            "GOTRACE_ARM64_RUNNER is not set: run the suite with `cargo xtask test`, which \
             prepares the arm64 machine",
        );
        let programs = gotrace_common::names::PROGRAMS.join("|");
        let script = format!("{}\n{script}", PRELUDE.replace("PROGRAMS", &programs));
        let out = Command::new(&runner)
            .args([
                "arm64",
                "--prepared",
                "--timeout",
                &TIMEOUT_SECS.to_string(),
            ])
            .arg("--files")
            .arg(self.dir.path())
            .arg("--")
            .arg(&script)
            .output()
            .expect("running the arm64 machine");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "the arm64 script failed ({}):\n{stdout}{stderr}",
            out.status
        );
        println!("arm64 guest:\n{stdout}{stderr}");
        Runs { stdout }
    }
}

/// What a script's steps printed.
pub struct Runs {
    stdout: String,
}

impl Runs {
    /// Step `name`'s streams and status. Its exit status is kept as a
    /// wait status, as `std::process::Command` reports it.
    pub fn step(&self, name: &str) -> Output {
        use std::os::unix::process::ExitStatusExt as _;
        let lines: Vec<&str> = self.stdout.lines().collect();
        let at = |what: &str| {
            let marker = format!("@@{name} {what}");
            lines
                .iter()
                .position(|l| l.starts_with(&marker))
                .unwrap_or_else(|| panic!("no step {name} in:\n{}", self.stdout))
        };
        let (status, out, err, end) = (at("status"), at("stdout"), at("stderr"), at("end"));
        let code: i32 = lines[status]
            .rsplit(' ')
            .next()
            .and_then(|c| c.parse().ok())
            .expect("a status number");
        let text = |range: &[&str]| range.iter().map(|l| format!("{l}\n")).collect::<String>();
        Output {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: text(&lines[out + 1..err]),
            stderr: text(&lines[err + 1..end]),
        }
    }

    /// The number the script printed after `label` on a line of its own.
    pub fn number(&self, label: &str) -> u64 {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {label} line in:\n{}", self.stdout))
    }
}
