//! The reliability runs of `cargo bench --bench killable -- reliability`, at a smaller size.

use testkit::integrity;

/// Every byte arrived once and in order, and interrupts really broke calls on the way.
fn check(r: integrity::Integrity) {
    println!("{r:?}");
    assert_eq!(r.mismatches, 0, "{r:?}");
    assert_eq!((r.bytes_sent, r.bytes_received), (4 << 20, 4 << 20));
    assert!(r.reader_interrupts > 0 && r.writer_interrupts > 0, "{r:?}");
    assert!(
        r.reader_broken + r.writer_broken > 0,
        "no call was ever broken: {r:?}"
    );
}

#[test]
fn pipe_data_survives_interrupts_on_both_sides() {
    check(integrity::pipe(4 << 20, 1_000));
}

#[test]
fn tcp_data_survives_interrupts_on_both_sides() {
    check(integrity::tcp(4 << 20, 1_000));
}

#[test]
fn a_short_storm_loses_nothing() {
    let s = integrity::storm(8, 2, std::time::Duration::from_secs(2));
    println!("{s:?}");
    assert_eq!((s.failures, s.mismatches), (0, 0), "{s:?}");
    assert!(s.transfers == 8 && s.bytes > 0 && s.interrupts > 0, "{s:?}");
}
