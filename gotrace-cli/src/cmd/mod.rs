//! One module per tool; each turns parsed arguments into a tracing run.

pub mod capability;
pub mod funccount;
pub mod funclatency;
pub mod info;
mod lifetime;
pub(crate) mod select;
pub mod trace;

use anyhow::Context as _;
use gotrace_common::probe::Cookie;

use crate::{
    attach::{self, Attacher, Link, Scope, Site},
    probe::pattern::Pattern,
    symbols::{self, Binary, Located},
    target::Process,
};

/// What a tracing run works on: the binary the pattern names, and the
/// process (`-p`) it is limited to.
struct Target {
    pattern: Pattern,
    process: Option<Process>,
    located: Located,
    binary: Binary,
}

impl Target {
    /// Parses `pattern`, finds `pid`, locates and opens the binary: every
    /// check that needs no privilege, in the order a user fixes them.
    fn open(pattern: &str, regexp: bool, pid: Option<u32>) -> anyhow::Result<Self> {
        let pattern = Pattern::parse(pattern, regexp)?;
        let process = pid.map(Process::find).transpose()?;
        let located = symbols::locate(pattern.path.as_deref(), process)?;
        let binary = Binary::open(&located.path)?;
        Ok(Self {
            pattern,
            process,
            located,
            binary,
        })
    }

    /// A probe at `address` with `cookie`, described for error messages.
    fn site(&self, address: u64, cookie: Cookie, describe: String) -> anyhow::Result<ProbeSite> {
        probe_site(&self.binary, &self.located, address, cookie, describe)
    }
}

/// A probe at `address` of `binary` with `cookie`, described for error
/// messages.
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
    Ok(ProbeSite {
        site: Site {
            file_offset,
            cookie: cookie.0,
        },
        describe,
    })
}

/// A probe site and what it probes, for error messages.
struct ProbeSite {
    site: Site,
    describe: String,
}

/// Attaches `program` at `sites` of `target`, saying how with `-v`, and
/// which sites the kernel refused.
fn attach_sites(
    attacher: &mut Attacher,
    ebpf: &mut aya::Ebpf,
    program: &str,
    target: &Located,
    sites: &[ProbeSite],
    process: Option<Process>,
    verbose: bool,
) -> anyhow::Result<Link> {
    let request = attach::Request {
        program,
        target: &target.path,
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
    if verbose {
        eprintln!(
            "gotrace: {program}: {} probes in {}, {}",
            sites.len() - link.dropped.len(),
            target.display,
            link.method
        );
        if let Some(reason) = attacher.fallback_reason() {
            eprintln!("gotrace: uprobe_multi not used: {reason}");
        }
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
fn note_end(end: lifetime::End, pid: Option<u32>) {
    let pid = pid.unwrap_or_default();
    match end {
        lifetime::End::TargetExited => eprintln!("gotrace: process {pid} exited"),
        lifetime::End::TargetExeced => {
            eprintln!("gotrace: process {pid} exec'd another program, which has none of the probes")
        }
        lifetime::End::Signal | lifetime::End::Duration => {}
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
