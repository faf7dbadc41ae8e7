//! When a run returns, every thread it started has exited: the processor
//! pool, the Source and the Integrator's arbiter (actix joins none of them).
//! The only test in this file, so the process holds no other pipeline.

mod common;

use common::{output, MemorySource, Script};
use drainpipe_actors::{Pipeline, RunHandle, Settings};

fn pipeline_threads() -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let comm = task.unwrap().path().join("comm");
        if let Ok(name) = std::fs::read_to_string(comm) {
            let name = name.trim().to_owned();
            // Thread names are cut to 15 characters by the kernel.
            if name.starts_with("drainpipe-") || name.starts_with("actix-rt|") {
                names.push(name);
            }
        }
    }
    names
}

#[test]
fn no_pipeline_thread_is_alive_after_run_returns() {
    assert!(pipeline_threads().is_empty());
    for (workers, stop_early) in [(4, false), (2, true), (1, false)] {
        let records: Vec<String> = (0..20_000).map(|i| format!("r{i}")).collect();
        let handle = RunHandle::new();
        if stop_early {
            handle.request_stop();
        }
        let (_dir, out) = output();
        let report = Pipeline::new(Script::default(), MemorySource::new(records), out)
            .settings(Settings {
                workers,
                window: 2 * workers,
                ..Settings::default()
            })
            .handle(handle)
            .run()
            .unwrap();
        assert!(report.conservation);
        // No waiting here: the run must have joined them already.
        let alive = pipeline_threads();
        assert!(alive.is_empty(), "threads alive after the run: {alive:?}");
    }
}
