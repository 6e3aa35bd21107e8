//! The bench's real-server section: Debian's prometheus (stripped, cgo,
//! Go 1.19) under a steady load from `ab`, its request latency untraced and
//! under gotrace patterns of growing breadth, each against the untraced run
//! of the same bench.

use std::{
    fmt::Write as _,
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use super::Session;
use crate::util::output;

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Requests per `ab` run: one client, keep-alive, the health check.
const REQUESTS: &str = "3000";

/// The patterns measured, narrow to broad.
/// Patterns, and whether the overhead budget is turned off (broad ones
/// get 5% of a CPU by default; with it off they show what it saves).
const PATTERNS: [(&str, bool); 6] = [
    ("net/http.(*conn).serve", false),
    ("net/http.*", false),
    ("runtime.*", false),
    ("runtime.*", true),
    ("*", false),
    ("*", true),
];

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(dir: &Path) -> anyhow::Result<Server> {
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1h\n")?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting prometheus")?;
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while output(Command::new("curl").args(["-sf", &server.url("/-/ready")])).is_none() {
            if Instant::now() > deadline {
                bail!("prometheus did not become ready");
            }
            thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Mean milliseconds per request of one `ab` run.
    fn latency(&self) -> anyhow::Result<f64> {
        let out = output(Command::new("ab").args([
            "-q",
            "-k",
            "-c",
            "1",
            "-n",
            REQUESTS,
            &self.url("/-/healthy"),
        ]))
        .context("running ab")?;
        out.lines()
            .find(|l| l.starts_with("Time per request:") && l.contains("(mean)"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|ms| ms.parse().ok())
            .with_context(|| format!("no mean time per request in ab's output:\n{out}"))
    }
}

pub fn section(gotrace: &Path, dir: &Path) -> anyhow::Result<String> {
    let server = Server::start(dir)?;
    let pid = server.child.id().to_string();
    // Warm up: the first requests are slower.
    server.latency()?;
    let untraced = server.latency()?;
    let mut text = String::new();
    writeln!(
        text,
        "\n## A real server: Debian's prometheus\n\n`{PROMETHEUS}` (stripped, cgo, Go 1.19) on loopback, `ab -k -c 1 -n {REQUESTS}` on `/-/healthy`, mean time per request untraced and under `gotrace funccount -p PID PATTERN` (attach time: start to banner), for the first requests after the banner and for as many more. Broad patterns get a 5% overhead budget by default, which takes the costliest functions out after the first quarter second; `--budget off` rows are without it.\n"
    )?;
    writeln!(
        text,
        "| pattern | functions | attach | ms per request (vs untraced): first {REQUESTS} | next {REQUESTS} |"
    )?;
    writeln!(text, "|---|---|---|---|---|")?;
    writeln!(text, "| (untraced) | | | {untraced:.3} | |")?;
    for (pattern, off) in PATTERNS {
        let budget: &[&str] = if off { &["--budget", "off"] } else { &[] };
        let session = Session::start(
            Command::new(gotrace)
                .args(["funccount", "-p", &pid])
                .args(budget)
                .arg(pattern),
            "Tracing ",
        )?;
        let attach = session.attach;
        let functions = session
            .banner
            .split_whitespace()
            .nth(1)
            .unwrap_or("?")
            .to_owned();
        let first = server.latency()?;
        let then = server.latency()?;
        session.stop()?;
        writeln!(
            text,
            "| `{}{pattern}` | {functions} | {} | {first:.3} ({:.2}x) | {then:.3} ({:.2}x) |",
            if off { "--budget off " } else { "" },
            attach.map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64())),
            first / untraced,
            then / untraced
        )?;
    }
    Ok(text)
}
