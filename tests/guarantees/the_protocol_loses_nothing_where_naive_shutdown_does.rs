//! The same records through the same step 1 and step 2: stopped the naive
//! actix way (`System::stop()` with work still queued, results sent with
//! `do_send`) the run may lose records without any error; through drainpipe's
//! stop protocol it loses none. Runs `examples/naive_shutdown.rs`.

use crate::common;

#[allow(dead_code)] // the example's `main` is not called here
#[path = "../../examples/naive_shutdown.rs"]
mod naive_shutdown;

use common::{assert_conserved, output};

const RECORDS: u64 = 100_000;

#[test]
fn the_protocol_integrates_every_record_the_naive_stop_may_drop() {
    let (_dir, out) = output();
    let o = naive_shutdown::run(RECORDS, 4, out).unwrap();
    for (name, n) in [
        ("stop after the last dispatch", o.after_dispatch),
        ("stop after step 1", o.after_step1),
    ] {
        // Printed, not asserted: how much the naive stop loses depends on
        // timing (see the example's documentation).
        eprintln!(
            "naive, {name}: sent {}, integrated {} when System::run returned ({} lost), {} more before its thread exited",
            n.sent,
            n.integrated,
            n.sent - n.integrated,
            n.integrated_later
        );
        assert_eq!(n.sent, RECORDS);
        assert!(n.integrated + n.integrated_later <= n.sent, "{n:?}");
    }
    let r = &o.protocol;
    eprintln!("drainpipe: {}", r.human());
    assert_eq!(r.exit_code, 0, "{}", r.human());
    assert_conserved(r);
    assert_eq!(r.records.read, RECORDS);
    assert_eq!(r.records.integrated, RECORDS, "the protocol lost records");
    assert_eq!((r.records.rejected, r.records.abandoned), (0, 0));
}
