//! Real Go programs nobody here wrote: Debian's prometheus server
//! (stripped, cgo, Go 1.19, 63,000 functions and 75,000 inlined copies),
//! installed by the set-up, listening on a loopback port, driven by curl
//! with a known number of requests, each on a connection of its own.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use integration_tests::{latency_report, only_table, residue, trace_events, Output, Tracer};

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Requests each test makes.
const REQUESTS: usize = 60;

/// A prometheus server on a free loopback port, with no scrape jobs (so
/// the only requests are the test's), killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start() -> Prometheus {
        assert!(
            std::path::Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} missing: run the suite with `cargo xtask test`, which installs Debian's prometheus"
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1h\n").expect("writing the config");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus");
        let server = Prometheus {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !server.get(&["/-/ready"]) {
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// GETs each path on a connection of its own; true if all answered 2xx.
    fn get(&self, paths: &[&str]) -> bool {
        // Each URL gets its own `-o`: curl writes the rest to stdout.
        let urls = paths.iter().flat_map(|p| {
            [
                "-o".to_owned(),
                "/dev/null".to_owned(),
                format!("http://127.0.0.1:{}{p}", self.port),
            ]
        });
        Command::new("curl")
            .args(["-sf", "-H", "Connection: close"])
            .args(urls)
            .status()
            .expect("running curl (installed by cargo xtask test)")
            .success()
    }

    /// `REQUESTS` requests of the health check.
    fn drive(&self) {
        assert!(
            self.get(&["/-/healthy"; REQUESTS]),
            "prometheus failed a request"
        );
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn traced(server: &Prometheus, args: &[&str]) -> Output {
    let pid = server.pid();
    let mut all = vec![args[0], "-p", &pid];
    all.extend(&args[1..]);
    let tracer = Tracer::start(&all);
    server.drive();
    let out = tracer.stop(libc::SIGINT);
    assert!(out.status.success(), "{out:?}");
    out
}

/// Every connection's serve loop, counted in the kernel: exactly the
/// requests made.
#[test]
fn funccount_counts_every_connection() {
    let server = Prometheus::start();
    let out = traced(&server, &["funccount", "net/http.(*conn).serve"]);
    assert_eq!(
        only_table(&out).get("net/http.(*conn).serve"),
        Some(&(REQUESTS as u64)),
        "{out:?}"
    );
    assert_eq!(residue(), Vec::<String>::new());
}

/// trace takes pointer-receiver methods, with a filter on an argument.
#[test]
fn trace_pointer_receiver_methods() {
    let server = Prometheus::start();
    let out = traced(
        &server,
        &[
            "trace",
            "net/http.(*conn).serve",
            r#"net/http.(*response).WriteHeader (goarg2 == 200) "%d", goarg2"#,
        ],
    );
    let events = trace_events(&out);
    let count = |f: &str| events.iter().filter(|(function, _)| function == f).count();
    assert_eq!(count("net/http.(*conn).serve"), REQUESTS, "{out:?}");
    assert_eq!(
        count("net/http.(*response).WriteHeader"),
        REQUESTS,
        "{out:?}"
    );
    assert!(events
        .iter()
        .filter(|(f, _)| f == "net/http.(*response).WriteHeader")
        .all(|(_, message)| message == "200"));
}

/// The handler of every request is timed, per goroutine.
#[test]
fn funclatency_times_every_request() {
    let server = Prometheus::start();
    let out = traced(
        &server,
        &["funclatency", "--json", "net/http.serverHandler.ServeHTTP"],
    );
    let report = latency_report(&out);
    assert_eq!(
        report["total"]["count"].as_u64(),
        Some(REQUESTS as u64),
        "{report}"
    );
    assert_eq!(report["open_calls"].as_u64(), Some(0), "{report}");
}

/// The patterns that broke on real servers: runtime.* and every function
/// of the binary attach within seconds (one link each), name what the
/// kernel cannot probe (runtime.abort starts with `int $3`), count what
/// the server does, and leave it serving.
#[test]
fn big_patterns_attach_and_count() {
    let server = Prometheus::start();
    for pattern in ["runtime.*", "*"] {
        let started = Instant::now();
        let pid = server.pid();
        let tracer = Tracer::start(&["funccount", "-p", &pid, pattern]);
        let attach = started.elapsed();
        server.drive();
        let out = tracer.stop(libc::SIGINT);
        assert!(out.status.success(), "{out:?}");
        println!("{pattern}: attached in {attach:?}");
        assert!(attach < Duration::from_secs(20), "{pattern}: {attach:?}");
        assert!(
            out.stderr.contains("not counting runtime.abort")
                || out.stderr.contains("kernel cannot probe (-v names them)"),
            "{}",
            out.stderr
        );
        let counts = only_table(&out);
        if pattern == "*" {
            assert_eq!(
                counts.get("net/http.(*conn).serve"),
                Some(&(REQUESTS as u64)),
                "{pattern}"
            );
        }
        assert!(counts.len() > 100, "{pattern}: {} rows", counts.len());
    }
    // Still serving, untraced.
    server.drive();
    assert_eq!(residue(), Vec::<String>::new());
}

/// `-v` names everything the kernel cannot probe, with the reason.
#[test]
fn refused_functions_are_named() {
    let out = integration_tests::run_gotrace(&[
        "funccount",
        "-v",
        "-d",
        "0.1",
        &format!("{PROMETHEUS}:runtime.abort"),
    ]);
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains("not counting runtime.abort: it starts with an `int`"),
        "{}",
        out.stderr
    );
}
