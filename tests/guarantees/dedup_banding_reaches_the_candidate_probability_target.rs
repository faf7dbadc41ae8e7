//! Guarantee: the automatically chosen LSH banding makes a pair exactly at
//! the threshold a candidate with probability >= 0.95, fits in the
//! permutations (`bands * rows <= num_perm`), and has the most rows per
//! band that can (the steepest S-curve, fewest false positives), for
//! thresholds 0.5 to 0.95.

use drainpipe::jobs::dedup::{explain, Banding, DedupParams};

#[test]
fn the_chosen_banding_meets_the_target_at_every_threshold() {
    for num_perm in [64, 128, 256] {
        for step in 0..10 {
            let threshold = 0.5 + 0.05 * step as f64;
            let params = DedupParams {
                threshold,
                num_perm,
                ..DedupParams::default()
            };
            let b = params.banding().unwrap();
            let at = b.candidate_probability(threshold);
            assert!(at >= 0.95, "t={threshold} p={num_perm}: {b:?} gives {at}");
            assert!(b.bands * b.rows <= num_perm, "{b:?}");
            let steeper = Banding {
                rows: b.rows + 1,
                bands: num_perm / (b.rows + 1),
            };
            assert!(
                steeper.bands == 0 || steeper.candidate_probability(threshold) < 0.95,
                "t={threshold} p={num_perm}: {steeper:?} would also reach the target"
            );
        }
    }
}

#[test]
fn explain_prints_the_banding_and_the_curve() {
    let text = explain(&DedupParams::default());
    assert!(text.contains("18 bands x 7 rows"), "{text}");
    for j in ["0.5", "0.6", "0.7", "0.8", "0.9", "1.0"] {
        assert!(
            text.contains(&format!("  {j}  ")),
            "{j} missing from\n{text}"
        );
    }
    let bad = explain(&DedupParams {
        bands: Some(100),
        rows: Some(2),
        ..DedupParams::default()
    });
    assert!(bad.starts_with("invalid parameters"), "{bad}");
}
