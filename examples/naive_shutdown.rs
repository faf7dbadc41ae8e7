//! The seed's bug made in actix, next to drainpipe's protocol: the same records through a pipeline stopped the naive way lose records without a word; the protocol loses none. Run it with `cargo run --release --example naive_shutdown [RECORDS]`.
//!
//! Three runs over the same records, with the same step 1 and step 2:
//!
//! 1. **naive, stop after dispatch**: a `SyncArbiter` pool does step 1 and
//!    `do_send`s each result to an integrator actor on its own `Arbiter`;
//!    `System::current().stop()` is called right after the last record is
//!    dispatched (with `do_send`).
//! 2. **naive, stop after step 1**: the same, but the stop waits until the
//!    workers have sent the result of every record. This is the article's
//!    shape: `p.map()` has returned, so step 1 is done and every result has
//!    been *sent*, but nothing says it has been *integrated*.
//! 3. **drainpipe**: the same work as a [`Job`] run by [`Pipeline`].
//!
//! `System::stop()` stops every arbiter without draining mailboxes: what is
//! still queued for the pool or the integrator is dropped, `do_send` never
//! reports it, and the naive program exits 0. How much is lost depends on
//! timing, so it varies from run to run. The protocol stops only after every
//! dispatched batch was answered, and a processor answers only after the
//! Integrator accepted the batch's outputs; then it checks conservation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use drainpipe_actors::{
    BatchBuilder, FinishContext, InputError, Integrate, Job, OutputDir, Pipeline, RawRecord,
    RecordError, RecordSource, RunReport, Settings,
};

/// Step 1: some CPU work on one record.
fn step1(record: u64) -> u64 {
    let mut x = record;
    for k in 0..50 {
        x = x.wrapping_mul(0x5851_F42D_4C95_7F2D).wrapping_add(k);
    }
    x
}

/// Step 2: a little work per record, in the one place results meet.
fn step2(acc: &mut u64, value: u64) {
    for _ in 0..500 {
        *acc = (*acc ^ value)
            .rotate_left(5)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

// ---- The naive pipeline: plain actix, stopped with System::stop() -------------

#[derive(Message)]
#[rtype(result = "()")]
struct Work(u64);

#[derive(Message)]
#[rtype(result = "()")]
struct Output(u64);

struct Worker {
    integrator: Addr<NaiveIntegrator>,
    /// Records whose result this pool has sent.
    sent: Arc<AtomicU64>,
    _alive: mpsc::Sender<()>,
}

impl Actor for Worker {
    type Context = SyncContext<Self>;
}

impl Handler<Work> for Worker {
    type Result = ();
    fn handle(&mut self, Work(record): Work, _: &mut SyncContext<Self>) {
        // Fire and forget: if this message is never handled, nobody learns.
        self.integrator.do_send(Output(step1(record)));
        self.sent.fetch_add(1, Ordering::SeqCst);
    }
}

struct NaiveIntegrator {
    acc: u64,
    integrated: Arc<AtomicU64>,
}

impl Actor for NaiveIntegrator {
    type Context = Context<Self>;
}

impl Handler<Output> for NaiveIntegrator {
    type Result = ();
    fn handle(&mut self, Output(value): Output, _: &mut Context<Self>) {
        step2(&mut self.acc, value);
        self.integrated.fetch_add(1, Ordering::Relaxed);
    }
}

/// When the naive pipeline calls `System::current().stop()`.
#[derive(Debug, Clone, Copy)]
pub enum NaiveStop {
    /// Right after the last record is dispatched with `do_send`.
    AfterLastDispatch,
    /// After the workers have sent the result of every record to the
    /// integrator: step 1 is done, as when the article's `p.map()` returns.
    AfterStep1,
}

/// What a naive run did.
#[derive(Debug, Clone, Copy)]
pub struct Naive {
    /// Records dispatched to the pool.
    pub sent: u64,
    /// Records the integrator had handled when `System::run` returned: the
    /// result the naive program goes on with.
    pub integrated: u64,
    /// Records its thread handled after that, before it exited. Only seen
    /// here because this program joins that thread; actix does not, and a
    /// naive `main` returns without them.
    pub integrated_later: u64,
    /// Whether pool threads were still running when `System::run` returned
    /// (actix never joins them).
    pub threads_outlived_the_system: bool,
    /// Seconds from start until `System::run` returned.
    pub elapsed_s: f64,
}

/// Runs the naive pipeline over records `0..records`.
pub fn naive(records: u64, workers: usize, stop: NaiveStop) -> std::io::Result<Naive> {
    let started = std::time::Instant::now();
    let integrated = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let (alive_tx, alive_rx) = mpsc::channel::<()>();
    let system = System::new();
    let arbiter = system.block_on({
        let integrated = Arc::clone(&integrated);
        async move {
            let arbiter = Arbiter::new();
            let integrator = NaiveIntegrator::start_in_arbiter(&arbiter.handle(), move |_| {
                NaiveIntegrator { acc: 0, integrated }
            });
            let pool = {
                let sent = Arc::clone(&sent);
                SyncArbiter::start(workers, move || Worker {
                    integrator: integrator.clone(),
                    sent: Arc::clone(&sent),
                    _alive: alive_tx.clone(),
                })
            };
            for i in 0..records {
                pool.do_send(Work(i));
            }
            if let NaiveStop::AfterStep1 = stop {
                while sent.load(Ordering::SeqCst) < records {
                    actix_rt::time::sleep(Duration::from_millis(1)).await;
                }
            }
            System::current().stop();
            arbiter
        }
    });
    system.run()?;
    let elapsed_s = started.elapsed().as_secs_f64();
    let at_return = integrated.load(Ordering::SeqCst);
    let threads_outlived_the_system = matches!(alive_rx.try_recv(), Err(TryRecvError::Empty));
    // The System told the integrator's arbiter to stop; its thread may
    // still be inside a burst of messages. Join it to see how many more.
    let _ = arbiter.join();
    // Nothing in actix waits for the pool's threads; wait here (until every
    // `alive` sender is dropped) so they do not compete with the next run.
    let _ = alive_rx.recv_timeout(Duration::from_secs(10));
    Ok(Naive {
        sent: records,
        integrated: at_return,
        integrated_later: integrated.load(Ordering::SeqCst) - at_return,
        threads_outlived_the_system,
        elapsed_s,
    })
}

// ---- The same work as a drainpipe job -----------------------------------------

/// Records `0..n`, each its number in decimal.
struct Numbers {
    next: u64,
    n: u64,
    origin: Arc<str>,
}

impl RecordSource for Numbers {
    fn fill(&mut self, batch: &mut BatchBuilder, max: usize, _: usize) -> Result<bool, InputError> {
        while self.next < self.n && batch.len() < max {
            batch.push(
                &self.origin,
                self.next + 1,
                0,
                self.next.to_string().as_bytes(),
            );
            self.next += 1;
        }
        Ok(!batch.is_empty())
    }
    fn position(&self) -> u64 {
        self.next
    }
    fn total(&self) -> Option<u64> {
        Some(self.n)
    }
}

struct Same;

struct Acc(u64);

impl Job for Same {
    type Parsed<'a> = u64;
    type Output = u64;
    type Integrator = Acc;

    fn name(&self) -> &str {
        "naive-comparison"
    }
    fn parse<'a>(&self, raw: &RawRecord<'a>) -> Result<u64, RecordError> {
        Ok(std::str::from_utf8(raw.bytes)?.parse()?)
    }
    fn process(&self, record: u64) -> Result<u64, RecordError> {
        Ok(step1(record))
    }
    fn integrator(&self) -> Acc {
        Acc(0)
    }
}

impl Integrate for Acc {
    type Output = u64;
    fn integrate(&mut self, _index: u64, value: u64) -> Result<(), RecordError> {
        step2(&mut self.0, value);
        Ok(())
    }
    fn finish(&mut self, _: &FinishContext<'_>) -> Result<serde_json::Value, RecordError> {
        Ok(serde_json::json!({ "checksum": self.0 }))
    }
}

/// Runs the same records through [`Pipeline`].
pub fn protocol(records: u64, workers: usize, output: OutputDir) -> anyhow::Result<RunReport> {
    let source = Numbers {
        next: 0,
        n: records,
        origin: Arc::from("numbers"),
    };
    let settings = Settings {
        workers,
        window: 2 * workers,
        ..Settings::default()
    };
    Ok(Pipeline::new(Same, source, output)
        .settings(settings)
        .run()?)
}

/// The three runs.
pub struct Outcome {
    /// Stopped right after the last dispatch.
    pub after_dispatch: Naive,
    /// Stopped after step 1 of every record.
    pub after_step1: Naive,
    /// drainpipe's run.
    pub protocol: RunReport,
}

/// Runs all three over `records` records with `workers` workers.
pub fn run(records: u64, workers: usize, output: OutputDir) -> anyhow::Result<Outcome> {
    Ok(Outcome {
        after_dispatch: naive(records, workers, NaiveStop::AfterLastDispatch)?,
        after_step1: naive(records, workers, NaiveStop::AfterStep1)?,
        protocol: protocol(records, workers, output)?,
    })
}

fn main() -> anyhow::Result<()> {
    let records = std::env::args().nth(1).map_or(Ok(200_000), |n| n.parse())?;
    let output = OutputDir::create("drainpipe-out/naive_shutdown")?;
    let o = run(records, 4, output)?;
    let line = |name: &str, integrated: u64, note: String| {
        let lost = records - integrated;
        println!("{name:<46} integrated {integrated:>9}  lost {lost:>9}  {note}");
    };
    println!("{records} records, 4 workers, the same step 1 and step 2 in each run\n");
    for (name, n) in [
        (
            "naive: System::stop() after the last do_send",
            o.after_dispatch,
        ),
        ("naive: System::stop() after step 1 finished", o.after_step1),
    ] {
        let mut note = format!("{:.2}s, no error", n.elapsed_s);
        if n.integrated_later > 0 {
            note += &format!("; {} more after System::run returned", n.integrated_later);
        }
        if n.threads_outlived_the_system {
            note += "; pool threads outlived the System";
        }
        line(name, n.integrated, note);
    }
    let r = &o.protocol;
    let note = format!(
        "{:.2}s (exit {}, conservation {})",
        r.elapsed_s, r.exit_code, r.conservation
    );
    line(
        "drainpipe: drain, finish, release, stop",
        r.records.integrated,
        note,
    );
    println!(
        "\nA naive run loses what was still queued when System::stop() ran: work in the\n\
         pool's channel (1), results in the integrator's mailbox (2). do_send cannot\n\
         report it, and the program exits 0. \"more after System::run returned\": the\n\
         integrator's arbiter finishes the burst of messages it is in before it sees\n\
         the stop; those are not in the result the program has already read, and only\n\
         a join (which actix never does) lets them run at all. The numbers vary with\n\
         timing: 0 lost is possible, never guaranteed.\n\
         drainpipe stops the System only after every batch was answered; a processor\n\
         answers only after the Integrator has accepted its outputs; read = integrated\n\
         + rejected is checked at the end, and a difference exits 70."
    );
    let lost = r.records.read - r.records.integrated - r.records.rejected;
    std::process::exit(if lost == 0 && r.records.read == records {
        0
    } else {
        70
    });
}
