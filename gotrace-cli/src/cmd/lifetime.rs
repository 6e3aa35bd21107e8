//! When a tracing run prints and when it ends: interval ticks, `-d`
//! duration, SIGINT/SIGTERM/SIGHUP, and the exit or exec of the last of
//! the `-p` processes.

use std::{os::fd::OwnedFd, time::Duration};

use anyhow::Context as _;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, Signal, SignalKind},
    time::{interval_at, sleep_until, Instant, Interval},
};

use crate::process::Process;

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Signal,
    Duration,
    /// Every `-p` process exited (or, if some exec'd, see below).
    TargetExited,
    /// Every `-p` process is gone and the last one left by exec'ing
    /// another program, which has none of the probes.
    TargetExeced,
}

/// How often the `-p` process is checked for an exec, which no pidfd
/// reports.
const EXEC_CHECK: Duration = Duration::from_millis(250);

/// What happened next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An `-i` interval has passed: print and go on.
    Tick,
    /// Print a last time and detach.
    End(End),
}

pub struct Lifetime {
    stop: crate::stop::Stop,
    interval: Option<Interval>,
    deadline: Option<Instant>,
    duration: Option<Duration>,
    signals: [Signal; 3],
    /// The `-p` processes; the run ends when none is left.
    watched: Vec<Watched>,
}

/// A `-p` process, watched for its exit and its exec.
struct Watched {
    process: Process,
    exit: AsyncFd<OwnedFd>,
    /// The executable it ran when tracing began.
    started_as: Option<(u64, u64)>,
    gone: bool,
}

impl Lifetime {
    /// Starts the clocks now. Signals are caught from here on, so a Ctrl-C
    /// while attaching still detaches cleanly.
    pub fn start(
        interval: Option<Duration>,
        duration: Option<Duration>,
        processes: &[Process],
    ) -> anyhow::Result<Self> {
        let now = Instant::now();
        // Before tokio's streams: both see every signal from here on.
        let stop = crate::stop::Stop::on_signals(duration.map(|d| (now + d).into_std()))?;
        let signals = [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ]
        .map(signal)
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .context("installing signal handlers")?
        .try_into()
        .map_err(|_| anyhow::anyhow!("installing signal handlers"))?;
        let watched = processes
            .iter()
            .map(|&process| {
                let fd = process.exit_notifier()?;
                // SAFETY: the AsyncFd owns the pidfd, so it stays open for
                // as long as it is registered.
                let exit = unsafe { AsyncFd::register(fd) }.context("polling the pidfd")?;
                Ok(Watched {
                    process,
                    exit,
                    started_as: process.executable(),
                    gone: false,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            stop,
            interval: interval.map(|i| interval_at(now + i, i)),
            deadline: duration.map(|d| now + d),
            duration,
            signals,
            watched,
        })
    }

    /// Whether to stop now, for work that cannot wait for [`Lifetime::next`]
    /// (attaching): a signal came, or `-d` ran out while attaching.
    pub fn stop(&self) -> crate::stop::Stop {
        self.stop.clone()
    }

    /// Restarts the `-i` and `-d` clocks: called once tracing has begun, so
    /// that a slow attach does not eat into them.
    pub fn begin(&mut self) {
        let now = Instant::now();
        if let Some(interval) = &self.interval {
            let period = interval.period();
            self.interval = Some(interval_at(now + period, period));
        }
        if let Some(deadline) = &mut self.deadline {
            *deadline = now + self.duration.unwrap_or_default();
        }
    }

    /// Waits for the next tick or the end.
    pub async fn next(&mut self) -> Event {
        let [int, term, hup] = &mut self.signals;
        let tick = async {
            match &mut self.interval {
                Some(interval) => interval.tick().await,
                None => std::future::pending().await,
            }
        };
        let deadline = async {
            match self.deadline {
                Some(deadline) => sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        let watched = &mut self.watched;
        let targets_gone = async move {
            if watched.is_empty() {
                return std::future::pending().await;
            }
            let mut exec_check = tokio::time::interval(EXEC_CHECK);
            loop {
                // Exits, as the pidfds report them.
                let exited = std::future::poll_fn(|cx| {
                    let mut any = false;
                    for w in watched.iter_mut().filter(|w| !w.gone) {
                        if w.exit.poll_read_ready(cx).is_ready() {
                            w.gone = true;
                            any = true;
                        }
                    }
                    if any {
                        std::task::Poll::Ready(())
                    } else {
                        std::task::Poll::Pending
                    }
                });
                let execed = tokio::select! {
                    () = exited => false,
                    _ = exec_check.tick() => {
                        // Gone altogether: the pidfd reports that.
                        let mut any = false;
                        for w in watched.iter_mut().filter(|w| !w.gone) {
                            let now = w.process.executable();
                            if now.is_some() && now != w.started_as {
                                w.gone = true;
                                any = true;
                            }
                        }
                        any
                    }
                };
                if watched.iter().all(|w| w.gone) {
                    return if execed {
                        End::TargetExeced
                    } else {
                        End::TargetExited
                    };
                }
            }
        };
        tokio::select! {
            // The end wins over a tick that falls due at the same instant.
            biased;
            _ = int.recv() => Event::End(End::Signal),
            _ = term.recv() => Event::End(End::Signal),
            _ = hup.recv() => Event::End(End::Signal),
            () = deadline => Event::End(End::Duration),
            end = targets_gone => Event::End(end),
            _ = tick => Event::Tick,
        }
    }
}
