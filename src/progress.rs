//! Progress display: an indicatif bar on a terminal, a log line every few
//! seconds otherwise.

use std::io::IsTerminal;
use std::rc::Rc;
use std::time::{Duration, Instant};

use drainpipe::jobs::ProgressFactory;
use drainpipe_actors::Progress;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

const LOG_EVERY: Duration = Duration::from_secs(5);

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
    let mut last = Instant::now();
    Box::new(move |p: &Progress| {
        if last.elapsed() < LOG_EVERY {
            return;
        }
        last = Instant::now();
        let percent = p
            .total
            .filter(|&t| t > 0)
            .map(|t| format!(" ({:.0}%)", 100.0 * p.position as f64 / t as f64))
            .unwrap_or_default();
        log::info!(
            "{pass}: {} records read{percent}, {:.0} records/s, {}/s, {} rejected, {} batches in flight",
            p.read,
            rate(p.read, p.elapsed_s),
            HumanBytes(rate(p.bytes, p.elapsed_s) as u64),
            p.rejected,
            p.in_flight
        );
    })
}
