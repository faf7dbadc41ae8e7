//! Bounded memory: never more than W batches in flight, never more than N
//! deliveries waiting at the Integrator, never more than W batches held for
//! ordering, observed during runs where step 1 and step 2 are both uneven.

use crate::common;

use std::time::Duration;

use common::{assert_conserved, output, MemorySource, Script, Step2};
use drainpipe_actors::{Pipeline, Settings};

#[test]
fn peaks_stay_within_the_window_and_the_pool_size() {
    for (workers, window) in [(1, 1), (2, 2), (2, 8), (4, 3), (4, 8)] {
        for slow_integrator in [false, true] {
            // Uneven step 1: batches finish out of order.
            let records: Vec<String> = (0..3_000)
                .map(|i| {
                    if i % 37 == 0 {
                        "sleep:3".into()
                    } else {
                        format!("r{i}")
                    }
                })
                .collect();
            let step2 = Step2 {
                delay: slow_integrator.then_some(Duration::from_micros(50)),
                ..Step2::default()
            };
            let (_dir, out) = output();
            let report = Pipeline::new(
                Script {
                    step2,
                    ..Script::default()
                },
                MemorySource::new(records),
                out,
            )
            .settings(Settings {
                workers,
                window,
                batch: Some(8),
                ..Settings::default()
            })
            .run()
            .unwrap();
            let label = format!("workers={workers} window={window} slow={slow_integrator}");
            assert_eq!(report.exit_code, 0, "{label}: {}", report.human());
            assert_conserved(&report);
            let p = &report.peaks;
            assert!(
                p.in_flight >= 1 && p.in_flight <= window as u64,
                "{label}: {p:?}"
            );
            assert!(p.integrator_mailbox <= workers as u64, "{label}: {p:?}");
            assert!(p.integrator_reorder <= window as u64, "{label}: {p:?}");
            if window >= 2 && workers >= 2 {
                // The window is actually used, so the bound above is real.
                assert!(p.in_flight >= 2, "{label}: {p:?}");
            }
        }
    }
}
