//! The extension examples run as documented: `examples/custom_job.rs` (a job
//! in one file) and `examples/custom_actor.rs` (an actor of one's own wired
//! into the pipeline) complete, account for every record, and the custom
//! actor receives every result and every snapshot it was sent.

use crate::common;

#[allow(dead_code)] // the example's `main` is not called here
#[path = "../../examples/custom_job.rs"]
mod custom_job;

#[allow(dead_code)]
#[path = "../../examples/custom_actor.rs"]
mod custom_actor;

use common::{assert_conserved, output};

#[test]
fn a_job_in_one_file_measures_every_line() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/custom_job.rs");
    let lines = std::fs::read_to_string(&path).unwrap().lines().count() as u64;
    let (_dir, out) = output();
    let report = custom_job::run(&[path], out.clone()).unwrap();
    assert_eq!(report.exit_code, 0, "{}", report.human());
    assert_conserved(&report);
    assert_eq!(report.records.read, lines);
    assert_eq!(report.records.integrated, lines);
    assert_eq!(report.result["lines"], lines);
    let histogram = std::fs::read_to_string(out.file("line_lengths.tsv")).unwrap();
    let counted: u64 = histogram
        .lines()
        .map(|l| l.split('\t').nth(1).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counted, lines, "{histogram}");
}

#[test]
fn a_job_in_one_file_runs_distributed_with_the_single_process_outputs() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/custom_job.rs");
    let (_single_dir, single) = output();
    let report = custom_job::run(std::slice::from_ref(&path), single.clone()).unwrap();
    assert_eq!(report.exit_code, 0, "{}", report.human());

    // The example's own worker, with its registry, on a thread here; a
    // worker host runs the same function (`custom_job worker URL`).
    let server = crate::nats::NatsServer::start();
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (url, stop) = (server.url(), Arc::clone(&stop));
        std::thread::spawn(move || custom_job::work(&url, 2, stop))
    };
    let (_dir, distributed) = output();
    let report =
        custom_job::run_distributed(&[path], distributed.clone(), &server.url(), "example")
            .unwrap();
    stop.store(true, Ordering::SeqCst);
    let answered = worker.join().unwrap().unwrap();
    assert_eq!(report.exit_code, 0, "{}", report.human());
    assert_conserved(&report);
    assert!(answered > 0, "the worker answered the batches");
    let parts = report.remote.as_ref().unwrap()["parts"].as_u64().unwrap();
    assert!(parts > 0, "step 1 went through the broker");
    assert_eq!(
        std::fs::read(single.file("line_lengths.tsv")).unwrap(),
        std::fs::read(distributed.file("line_lengths.tsv")).unwrap(),
        "the distributed run's histogram is the single-process run's"
    );
    assert_eq!(report.result["lines"], report.records.integrated);
}

#[test]
fn a_custom_actor_receives_every_result_and_snapshot_it_was_sent() {
    let (_dir, out) = output();
    let outcome = custom_actor::run(2_000, out.clone()).unwrap();
    let report = &outcome.report;
    eprintln!(
        "{}; snapshots sent {}, refused {}",
        report.human(),
        outcome.snapshots_sent,
        outcome.snapshots_refused
    );
    assert_eq!(report.exit_code, 0, "{}", report.human());
    assert_conserved(report);
    assert_eq!(report.records.integrated, 2_000);
    assert_eq!(report.result["streamed_results"], 2_000);
    assert_eq!(report.result["streamed_snapshots"], outcome.snapshots_sent);
    assert_eq!(outcome.snapshots_refused, 0);
    let stream = std::fs::read_to_string(out.file("stream.jsonl")).unwrap();
    assert_eq!(
        stream.lines().count() as u64,
        2_000 + outcome.snapshots_sent,
        "every message the Reporter accepted is in the stream"
    );
}
