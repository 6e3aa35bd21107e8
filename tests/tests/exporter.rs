//! `--listen`: gotrace as a Prometheus exporter, scraped by Debian's real
//! `prometheus` server and asked through its query API; the exposition
//! checked by `promtool check metrics`.

use std::{
    io::Write as _,
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use integration_tests::{
    assert_one_line_error, fixture_counts, run_gotrace, said, Fixture, Go, Tracer, Waiting,
};

/// A port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `curl -s` of `url` with extra curl arguments: (status, body).
fn curl(url: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .expect("running curl (installed by cargo xtask test)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or((&text, "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// Debian's prometheus scraping `target` every second.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
                 - job_name: gotrace\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus (installed by cargo xtask test)");
        let server = Prometheus {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while curl(&server.url("/-/ready"), &[]).0 != 200 {
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            thread::sleep(Duration::from_millis(200));
        }
        // Its first scrape comes seconds after it is ready (target
        // discovery is throttled): tests measure from there.
        server.wait_for("up{job=\"gotrace\"}", |up| up == 1.0);
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The value of an instant PromQL query with one result, if it has one.
    fn query(&self, promql: &str) -> Option<f64> {
        let (_, body) = curl(
            &self.url("/api/v1/query"),
            &["-G", "--data-urlencode", &format!("query={promql}")],
        );
        let reply: serde_json::Value = serde_json::from_str(&body).ok()?;
        reply["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()
    }

    /// Polls `promql` (up to 30 s) until `done` holds for its value.
    fn wait_for(&self, promql: &str, done: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.query(promql);
            if let Some(v) = value.filter(|v| done(*v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{promql} never got there (last {value:?})"
            );
            thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// funccount's counter as Prometheus stores it: the fixture's own count,
/// exactly, and a non-zero rate while it runs.
#[test]
fn prometheus_counts_calls_exactly() {
    let counter = Fixture::build("counter", Go::Go127);
    let address = format!("127.0.0.1:{}", free_port());
    let tracer = Tracer::start(&[
        "funccount",
        "--listen",
        &address,
        &counter.pattern("main.work"),
    ]);
    let prometheus = Prometheus::start(&address);
    // 10 rounds of 1,000 calls, 600 ms apart: about 6 s of calls.
    let mut cmd = Command::new(&counter.binary);
    cmd.args(["1000", "0", "10", "600"]);
    let mut running = Waiting::start(cmd);
    running.go();
    let series = format!(
        "gotrace_function_calls_total{{binary=\"{}\",function=\"main.work\"}}",
        shown(&counter.binary)
    );
    let rate = prometheus.wait_for(&format!("rate({series}[3s])"), |v| v > 0.0);
    assert!(
        running.running(),
        "the rate came only after the run: {rate}"
    );
    let expected = fixture_counts(&running.finish())["main.work"];
    let total = prometheus.wait_for(&series, |v| v >= expected as f64);
    assert_eq!(total, expected as f64);
    let probes = prometheus.query(&format!(
        "gotrace_probes{{binary=\"{}\"}}",
        shown(&counter.binary)
    ));
    assert_eq!(probes, Some(1.0));
    let out = tracer.stop(libc::SIGINT);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !out.stdout.contains("FUNC"),
        "no table without -i: {}",
        out.stdout
    );
}

/// funclatency's histogram as Prometheus stores it: the count is the
/// fixture's, and the median of 3 ms sleeps lands in their bucket
/// (2.1-4.2 ms).
#[test]
fn prometheus_latency_histogram() {
    let latency = Fixture::build("latency", Go::Go119);
    let address = format!("127.0.0.1:{}", free_port());
    let tracer = Tracer::start(&[
        "funclatency",
        "--listen",
        &address,
        &latency.pattern("main.work"),
    ]);
    let prometheus = Prometheus::start(&address);
    // 2 goroutines, 600 calls of 3 ms: about a second.
    let fixture_said = latency.run(&["sleep", "2", "600", "3"]);
    let calls = said(&fixture_said, "work:");
    let selector = format!(
        "{{binary=\"{}\",function=\"main.work\"}}",
        shown(&latency.binary)
    );
    let count = prometheus.wait_for(
        &format!("gotrace_function_duration_seconds_count{selector}"),
        |v| v >= calls as f64,
    );
    assert_eq!(count, calls as f64);
    let median = prometheus.wait_for(
        &format!(
            "histogram_quantile(0.5, sum by (le, function) \
             (increase(gotrace_function_duration_seconds_bucket{selector}[1m])))"
        ),
        |v| v > 0.0,
    );
    assert!(
        (0.002_097_151..=0.004_194_303).contains(&median),
        "median {median} s outside the 3 ms sleeps' bucket"
    );
    let open = prometheus.query(&format!("gotrace_open_calls{selector}"));
    assert_eq!(open, Some(0.0));
    drop(tracer);
}

/// The exposition passes `promtool check metrics`; OpenMetrics when asked;
/// 404 elsewhere; `--labels pid` splits the series by process, each with
/// its own count.
#[test]
fn exposition_formats_and_labels() {
    let counter = Fixture::build("counter", Go::Go119);
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let tracer = Tracer::start(&[
        "funclatency",
        "--listen",
        &address,
        "--labels",
        "pid",
        &counter.pattern("main.work"),
    ]);
    let processes: Vec<(String, u64)> = ["300", "700"]
        .into_iter()
        .map(|calls| {
            let mut cmd = Command::new(&counter.binary);
            cmd.arg(calls);
            let running = Waiting::start(cmd);
            let pid = running.pid();
            (pid, fixture_counts(&running.finish())["main.work"])
        })
        .collect();
    let url = format!("http://{address}/metrics");
    let (status, text) = curl(&url, &[]);
    assert_eq!(status, 200);
    for (pid, calls) in &processes {
        let line = format!(
            "gotrace_function_duration_seconds_count{{binary=\"{}\",function=\"main.work\",pid=\"{pid}\"}} {calls}",
            shown(&counter.binary)
        );
        assert!(text.contains(&line), "no {line:?} in\n{text}");
    }
    let (valid, said_promtool) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .output_with(text.as_bytes());
    assert!(valid, "promtool: {said_promtool}");

    let (status, open_metrics) = curl(
        &url,
        &["-H", "Accept: application/openmetrics-text; version=1.0.0"],
    );
    assert_eq!(status, 200);
    assert!(open_metrics.ends_with("# EOF\n"), "{open_metrics}");
    assert!(
        open_metrics.contains("# UNIT gotrace_function_duration_seconds seconds"),
        "{open_metrics}"
    );
    assert_eq!(curl(&format!("http://{address}/"), &[]).0, 404);
    assert_eq!(curl(&format!("http://{address}/metrics/x"), &[]).0, 404);
    drop(tracer);
}

/// A scrape while over 10,000 probes are attached (every function of
/// Debian's prometheus binary): it answers, and its time is recorded.
#[test]
fn scrape_with_many_probes() {
    let address = format!("127.0.0.1:{}", free_port());
    let tracer = Tracer::start(&["funccount", "--listen", &address, "/usr/bin/prometheus:*"]);
    let started = Instant::now();
    let (status, text) = curl(&format!("http://{address}/metrics"), &[]);
    let took = started.elapsed();
    assert_eq!(status, 200);
    let probes: u64 = text
        .lines()
        .find(|l| l.starts_with("gotrace_probes{"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or_else(|| panic!("no gotrace_probes in the scrape"));
    assert!(probes > 10_000, "{probes} probes");
    let series = text
        .lines()
        .filter(|l| l.starts_with("gotrace_function_calls_total{"))
        .count();
    println!(
        "scrape of {series} series ({probes} probes, {} bytes) took {:.3} s",
        text.len(),
        took.as_secs_f64()
    );
    drop(tracer);
}

/// `--listen` inputs: a port in use, an unparsable address, `--labels`
/// without `--listen`, `-m` with it.
#[test]
fn bad_listen_inputs() {
    let counter = Fixture::build("counter", Go::Go119);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let in_use = taken.local_addr().unwrap().to_string();
    let pattern = counter.pattern("main.work");
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &["funccount", "--listen", &in_use, &pattern],
            &[&in_use, "in use"],
        ),
        (
            &["funccount", "--listen", "localhost", &pattern],
            &["--listen", "HOST:PORT"],
        ),
        (&["funccount", "--labels", "pid", &pattern], &["--listen"]),
        (
            &["funclatency", "--listen", "127.0.0.1:0", "-m", &pattern],
            &["--listen"],
        ),
    ];
    for (args, needles) in cases {
        let out = run_gotrace(args);
        println!("{args:?} -> {}", out.stderr.trim_end());
        assert_one_line_error(&out, needles);
    }
}

/// Feeding a child's stdin and collecting its result.
trait OutputWith {
    fn output_with(&mut self, input: &[u8]) -> (bool, String);
}

impl OutputWith for Command {
    fn output_with(&mut self, input: &[u8]) -> (bool, String) {
        let mut child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting promtool (installed with prometheus)");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input)
            .expect("writing to promtool");
        let out = child.wait_with_output().expect("waiting for promtool");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}
