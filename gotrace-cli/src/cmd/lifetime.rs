//! When a tracing run prints and when it ends: interval ticks, `-d`
//! duration, SIGINT/SIGTERM/SIGHUP, and the exit or exec of the `-p`
//! process.

use std::{os::fd::OwnedFd, time::Duration};

use anyhow::Context as _;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, Signal, SignalKind},
    time::{interval_at, sleep_until, Instant, Interval},
};

use crate::target::Process;

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Signal,
    Duration,
    TargetExited,
    /// The `-p` process now runs another program: its probes are gone.
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
    target_exit: Option<AsyncFd<OwnedFd>>,
    /// The `-p` process and the executable it ran when tracing began.
    target_exe: Option<(Process, (u64, u64))>,
}

impl Lifetime {
    /// Starts the clocks now. Signals are caught from here on, so a Ctrl-C
    /// while attaching still detaches cleanly.
    pub fn start(
        interval: Option<Duration>,
        duration: Option<Duration>,
        process: Option<Process>,
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
        let target_exit = process
            .map(|p| {
                let fd = p.exit_notifier()?;
                // SAFETY: the AsyncFd owns the pidfd, so it stays open for
                // as long as it is registered.
                unsafe { AsyncFd::register(fd) }.context("polling the pidfd")
            })
            .transpose()?;
        Ok(Self {
            stop,
            interval: interval.map(|i| interval_at(now + i, i)),
            deadline: duration.map(|d| now + d),
            duration,
            signals,
            target_exit,
            target_exe: process.and_then(|p| Some((p, p.executable()?))),
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
        let target_exit = async {
            match &self.target_exit {
                Some(fd) => drop(fd.readable().await),
                None => std::future::pending().await,
            }
        };
        let target_exe = self.target_exe;
        let target_exec = async move {
            let Some((process, started_as)) = target_exe else {
                return std::future::pending().await;
            };
            loop {
                tokio::time::sleep(EXEC_CHECK).await;
                // Gone altogether: the pidfd reports that.
                if process.executable().is_some_and(|now| now != started_as) {
                    return;
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
            () = target_exit => Event::End(End::TargetExited),
            () = target_exec => Event::End(End::TargetExeced),
            _ = tick => Event::Tick,
        }
    }
}
