//! Whether gotrace must stop now: the user pressed Ctrl-C or sent SIGTERM
//! or SIGHUP, or the `-d` time ran out. Slow synchronous work (attaching
//! thousands of probes one by one on an old kernel, bisecting a link the
//! kernel refused) checks it between steps, so that a stop never waits for
//! it; the event loop learns the same from tokio's signal streams.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use anyhow::Context as _;

/// A stop request, shared by whoever needs to notice it.
#[derive(Clone, Debug)]
pub struct Stop {
    signalled: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

impl Stop {
    /// Stops on SIGINT, SIGTERM and SIGHUP from now on, and at `deadline`.
    /// Registering replaces the signals' default action (the process is not
    /// killed, it stops cleanly), as tokio's own signal streams do too.
    pub fn on_signals(deadline: Option<Instant>) -> anyhow::Result<Stop> {
        let signalled = Arc::new(AtomicBool::new(false));
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            signal_hook::flag::register(signal, Arc::clone(&signalled))
                .context("installing signal handlers")?;
        }
        Ok(Stop {
            signalled,
            deadline,
        })
    }

    /// A stop that never comes (for work that runs to its end).
    pub fn never() -> Stop {
        Stop {
            signalled: Arc::new(AtomicBool::new(false)),
            deadline: None,
        }
    }

    /// Whether to stop now.
    pub fn requested(&self) -> bool {
        self.signalled.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}
