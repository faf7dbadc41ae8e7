//! Progress display: an indicatif bar on a terminal, a line every
//! [`LINE_EVERY`] otherwise; for the steps between passes (dedup's
//! clusters), which read no records and whose length is not known ahead,
//! a spinner on a terminal instead of a bar ([`stages`]).
//!
//! Progress is what a default run shows while it works, so off a terminal
//! its lines are printed, not logged: they do not depend on the log level
//! (`-v` adds the phases and pass results as log lines), only `-q` and
//! `--no-progress` turn them off. A line is short and plain, for a log file
//! or a CI console read later.

use std::io::IsTerminal;
use std::rc::Rc;
use std::time::{Duration, Instant};

use drainpipe::jobs::{ProgressFactory, StageFactory, StageProgress};
use drainpipe_actors::Progress;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a progress line is printed off a terminal: often enough to
/// show a long run is alive, rarely enough that a log stays readable.
pub const LINE_EVERY: Duration = Duration::from_secs(10);

/// A progress callback maker for the run; `silent` turns display off.
pub fn factory(silent: bool) -> ProgressFactory {
    if silent {
        return Rc::new(|_| Box::new(|_: &Progress| {}));
    }
    let terminal = std::io::stderr().is_terminal();
    Rc::new(move |pass: &str| {
        if terminal {
            bar(pass.to_owned())
        } else {
            lines(pass.to_owned())
        }
    })
}

/// A progress callback maker for the steps between passes, shown as the
/// passes' are ([`factory`]): `silent` turns display off, a terminal
/// gets a spinner, anything else a line every [`LINE_EVERY`].
pub fn stages(silent: bool) -> StageFactory {
    if silent {
        return Rc::new(|_| Box::new(|_: &StageProgress| {}));
    }
    let terminal = std::io::stderr().is_terminal();
    Rc::new(move |stage: &str| {
        if terminal {
            spinner(stage.to_owned())
        } else {
            stage_lines(stage.to_owned())
        }
    })
}

fn spinner(stage: String) -> Box<dyn FnMut(&StageProgress)> {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix} {spinner} {msg}").expect("a valid template"),
    );
    bar.set_prefix(stage);
    Box::new(move |p: &StageProgress| {
        if p.done {
            bar.finish_and_clear();
            return;
        }
        bar.set_message(stage_message(p));
        bar.tick();
    })
}

fn stage_lines(stage: String) -> Box<dyn FnMut(&StageProgress)> {
    let mut every = Every::new(LINE_EVERY, Instant::now());
    Box::new(move |p: &StageProgress| {
        if !p.done && every.due(Instant::now()) {
            crate::logging::say(format_args!("drainpipe: {stage}: {}", stage_message(p)));
        }
    })
}

/// What a step between passes has done: its contraction round (when it
/// makes them on disk), its steps and the bytes it wrote.
fn stage_message(p: &StageProgress) -> String {
    let round = match p.round {
        0 => String::new(),
        round => format!("contraction round {round}, "),
    };
    format!(
        "{round}{} steps, {} written",
        p.steps,
        HumanBytes(p.bytes_written)
    )
}

fn rate(n: u64, secs: f64) -> f64 {
    n as f64 / secs.max(1e-3)
}

fn bar(pass: String) -> Box<dyn FnMut(&Progress)> {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}% {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(pass);
    Box::new(move |p: &Progress| {
        if let Some(total) = p.total {
            bar.set_length(total);
            bar.set_position(p.position.min(total));
        }
        bar.set_message(format!(
            "{} records ({:.0}/s, {}/s), {} rejected, {}",
            p.read,
            rate(p.read, p.elapsed_s),
            HumanBytes(rate(p.bytes, p.elapsed_s) as u64),
            p.rejected,
            p.phase.name()
        ));
        if p.phase >= drainpipe_actors::Phase::Finishing {
            bar.finish_and_clear();
        }
    })
}

fn lines(pass: String) -> Box<dyn FnMut(&Progress)> {
    let mut every = Every::new(LINE_EVERY, Instant::now());
    Box::new(move |p: &Progress| {
        if every.due(Instant::now()) {
            crate::logging::say(line(&pass, p));
        }
    })
}

/// A clock that rings at most once per period: the first time `due` is
/// asked a full period after the last ring (or after the start).
struct Every {
    period: Duration,
    last: Instant,
}

impl Every {
    fn new(period: Duration, start: Instant) -> Self {
        Every {
            period,
            last: start,
        }
    }

    fn due(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.last) < self.period {
            return false;
        }
        self.last = now;
        true
    }
}

/// A progress line: `drainpipe: PASS: N records read (P%), R records/s, B/s,
/// N rejected`.
fn line(pass: &str, p: &Progress) -> String {
    let percent = p
        .total
        .filter(|&t| t > 0)
        .map(|t| format!(" ({:.0}%)", 100.0 * p.position.min(t) as f64 / t as f64))
        .unwrap_or_default();
    format!(
        "drainpipe: {pass}: {} records read{percent}, {:.0} records/s, {}/s, {} rejected",
        p.read,
        rate(p.read, p.elapsed_s),
        HumanBytes(rate(p.bytes, p.elapsed_s) as u64),
        p.rejected,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Progress {
        Progress {
            phase: drainpipe_actors::Phase::Running,
            read: 120_000,
            done: 110_000,
            rejected: 3,
            bytes: 240 << 20,
            position: 60,
            total: Some(200),
            in_flight: 4,
            elapsed_s: 4.0,
        }
    }

    #[test]
    fn a_progress_line_names_the_pass_the_records_the_share_done_and_the_rate() {
        assert_eq!(
            line("signatures", &snapshot()),
            "drainpipe: signatures: 120000 records read (30%), 30000 records/s, 60.00 MiB/s, 3 rejected"
        );
        let unknown_size = Progress {
            total: None,
            ..snapshot()
        };
        assert_eq!(
            line("kept", &unknown_size),
            "drainpipe: kept: 120000 records read, 30000 records/s, 60.00 MiB/s, 3 rejected"
        );
    }

    #[test]
    fn a_stage_message_names_its_round_its_steps_and_the_bytes_it_wrote() {
        let on_disk = StageProgress {
            steps: 8192,
            round: 3,
            bytes_written: 3 << 20,
            done: false,
        };
        assert_eq!(
            stage_message(&on_disk),
            "contraction round 3, 8192 steps, 3.00 MiB written"
        );
        let in_memory = StageProgress {
            steps: 4096,
            ..StageProgress::default()
        };
        assert_eq!(stage_message(&in_memory), "4096 steps, 0 B written");
    }

    #[test]
    fn progress_lines_come_at_most_once_a_period() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut every = Every::new(Duration::from_secs(10), start);
        let rang: Vec<u64> = (0..=35).filter(|&s| every.due(at(s))).collect();
        assert_eq!(rang, [10, 20, 30]);
    }
}
