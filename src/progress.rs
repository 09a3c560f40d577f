//! A progress line on stderr for the long-running operator commands (`audit`, `replay`).
//!
//! On a terminal it is one line redrawn in place (`\r`) a few times a second; otherwise (a log
//! file, CI) a plain line every few seconds. Data never goes to stderr, so piping stdout stays
//! clean.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Counts work done and reports it on stderr.
pub struct Progress {
    label: &'static str,
    unit: &'static str,
    total: Option<u64>,
    done: u64,
    started: Instant,
    drawn: Instant,
    tty: bool,
    drew: bool,
}

impl Progress {
    /// Starts counting `unit`s of `label`, out of `total` when known.
    pub fn new(label: &'static str, unit: &'static str, total: Option<u64>) -> Self {
        let now = Instant::now();
        Progress {
            label,
            unit,
            total,
            done: 0,
            started: now,
            drawn: now,
            tty: std::io::stderr().is_terminal(),
            drew: false,
        }
    }

    /// Records that `n` more units are done, redrawing when it is time.
    pub fn add(&mut self, n: u64) {
        self.done += n;
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if self.drawn.elapsed() >= every {
            self.drawn = Instant::now();
            let line = self.line();
            let mut err = std::io::stderr().lock();
            let _ = if self.tty {
                write!(err, "\r\x1b[2K{line}")
            } else {
                writeln!(err, "{line}")
            };
            self.drew = true;
        }
    }

    /// Units done so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Units per second since the start.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed().as_secs_f64().max(1e-9)
    }

    /// Replaces the progress line with a final one: how much, how long, how fast.
    pub fn finish(&self) {
        let mut err = std::io::stderr().lock();
        if self.tty && self.drew {
            let _ = write!(err, "\r\x1b[2K");
        }
        let _ = writeln!(
            err,
            "{}: {} {} in {:.2} s ({:.0} {}/s)",
            self.label,
            self.done,
            self.unit,
            self.elapsed().as_secs_f64(),
            self.rate(),
            self.unit
        );
    }

    fn line(&self) -> String {
        let share = match self.total {
            Some(t) if t > 0 => format!("/{t} ({:.0}%)", 100.0 * self.done as f64 / t as f64),
            _ => String::new(),
        };
        format!(
            "{}: {}{share} {}, {:.0} {}/s",
            self.label,
            self.done,
            self.unit,
            self.rate(),
            self.unit
        )
    }
}
