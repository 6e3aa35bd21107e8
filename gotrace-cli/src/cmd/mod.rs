//! One module per tool; each turns parsed arguments into a tracing run.

pub mod capability;
pub mod funccount;
pub mod funclatency;
pub mod info;
mod lifetime;
pub(crate) mod select;
mod session;
pub mod trace;

use anyhow::Context as _;
use gotrace_common::probe::Cookie;

use crate::{
    attach::{self, Attacher, Link, Scope, Site},
    host,
    process::Process,
    symbols::{Binary, Located},
};

/// A probe at `address` of `binary` with `cookie`, described for error
/// messages; the cookie also says whether the kernel single-steps the
/// instruction there (what the budget prices its hits at).
fn probe_site(
    binary: &Binary,
    located: &Located,
    address: u64,
    cookie: Cookie,
    describe: String,
) -> anyhow::Result<ProbeSite> {
    let file_offset = binary.file_offset(address).with_context(|| {
        format!(
            "{describe} at {address:#x} lies in no loadable segment of {}",
            located.display
        )
    })?;
    let stepped = crate::attach::placement::cost(binary.arch(), binary.code_at(address, 16))
        == crate::attach::placement::Cost::SingleStepped;
    let flag = if stepped {
        u64::from(Cookie::FLAG_SINGLE_STEPPED) << 32
    } else {
        0
    };
    Ok(ProbeSite {
        site: Site {
            file_offset,
            cookie: cookie.0 | flag,
        },
        describe,
    })
}

/// A probe site and what it probes, for error messages.
#[derive(Clone)]
struct ProbeSite {
    site: Site,
    describe: String,
}

/// Attaches `program` at `sites` of `target`, saying which sites the
/// kernel refused.
fn attach_sites(
    attacher: &mut Attacher,
    ebpf: &mut aya::Ebpf,
    program: &str,
    target: &Located,
    sites: &[ProbeSite],
    process: Option<Process>,
) -> anyhow::Result<Link> {
    let request = attach::Request {
        program,
        target: &target.path,
        shown: &target.display,
        sites: &sites.iter().map(|s| s.site).collect::<Vec<_>>(),
        scope: Scope::of(process),
    };
    let link = attacher.attach(ebpf, &request)?;
    for dropped in &link.dropped {
        eprintln!(
            "gotrace: not probing {}: {}",
            sites[dropped.index].describe,
            dropped.reason()
        );
    }
    Ok(link)
}

/// bcc's "Tracing N functions for ..." line, on stderr when stdout is JSON.
fn print_banner(banner: &str, json: bool) {
    if json {
        eprintln!("{banner}");
    } else {
        println!("{banner}");
    }
}

/// Says why a run ended when the reason is not the user's own doing.
fn note_end(end: lifetime::End, scope: &host::Scope) {
    let which = match scope.processes() {
        [one] => format!("process {}", one.pid()),
        _ => format!("every process of {}", scope.describe()),
    };
    match end {
        lifetime::End::TargetExited => eprintln!("gotrace: {which} exited"),
        lifetime::End::TargetExeced => {
            eprintln!("gotrace: {which} exec'd another program, which has none of the probes")
        }
        lifetime::End::Signal | lifetime::End::Duration => {}
    }
}

/// `--listen` and `--labels` of the tools that count (funccount,
/// funclatency).
#[derive(clap::Args, Debug)]
pub struct Export {
    /// Serve the counts on http://HOST:PORT/metrics for Prometheus (text
    /// format, or OpenMetrics when asked) instead of printing tables;
    /// `-i` prints them too.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Add a per-process label to the exported series (more series: one
    /// per process, or per process name).
    #[arg(long, value_enum, value_name = "pid|comm", requires = "listen")]
    pub labels: Option<crate::exporter::ProcessLabel>,
}

impl Export {
    /// Binds the socket, before anything attaches.
    fn bind(&self) -> anyhow::Result<Option<crate::exporter::Listener>> {
        self.listen
            .as_deref()
            .map(crate::exporter::Listener::bind)
            .transpose()
    }

    /// Sets `BY_PROCESS` and sizes the per-process maps of `map` (the
    /// tool's, of `rows` pairs) when `--labels` asks for them.
    fn configure<'a>(&self, loader: &mut aya::EbpfLoader<'a>, map: &'a str, rows: u32) {
        use gotrace_common::probe::{BY_PROCESS, MAX_PROCESS_NAMES, PROCESS_NAMES_MAP};
        static ON: u64 = 1;
        static OFF: u64 = 0;
        let on = self.labels.is_some();
        loader.override_global(BY_PROCESS, if on { &ON } else { &OFF }, true);
        if on {
            loader
                .map_max_entries(map, rows)
                .map_max_entries(PROCESS_NAMES_MAP, MAX_PROCESS_NAMES);
        }
    }

    /// Whether tables go to the terminal: not when exporting, unless `-i`.
    fn prints(&self, interval: Option<std::time::Duration>) -> bool {
        self.listen.is_none() || interval.is_some()
    }
}

/// `--budget`, which every tool takes.
#[derive(clap::Args, Debug)]
pub struct Overhead {
    /// Keep what the probes cost the traced programs under PERCENT of one
    /// CPU, detaching the most expensive functions when over it (`off`:
    /// never; default 5 for patterns of 100 functions or more).
    #[arg(long, value_name = "PERCENT|off", value_parser = crate::budget::parse, allow_hyphen_values = true)]
    budget: Option<crate::budget::Choice>,
}

/// The selectors every tool shares: which processes a run keeps.
#[derive(clap::Args, Debug)]
pub struct Selectors {
    /// Trace only these processes (`-p 10,11`): PATH may then be left out.
    #[arg(short, long, value_name = "PID", value_delimiter = ',')]
    pid: Vec<u32>,
    /// Trace only processes whose name (or executable's file name)
    /// matches GLOB, including ones that start later.
    #[arg(long, value_name = "GLOB")]
    comm: Option<String>,
    /// Trace only processes in this cgroup v2 directory and below it (a
    /// container, a service), filtered in the kernel.
    #[arg(short = 'c', long, value_name = "PATH")]
    cgroup: Option<std::path::PathBuf>,
}

impl Selectors {
    /// Checks the selectors against the running system.
    fn scope(&self) -> anyhow::Result<host::Scope> {
        host::Scope::new(&self.pid, self.comm.as_deref(), self.cgroup.as_deref())
    }
}

/// The single-threaded event loop a run waits in.
fn event_loop() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")
}

/// Parses a positive number of seconds such as `5` or `0.5` (`-i`, `-d`).
fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(format!("{text:?}: give a positive number of seconds"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::parse_seconds;
    use std::time::Duration;

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
        assert!(parse_seconds("inf").is_err());
    }
}
