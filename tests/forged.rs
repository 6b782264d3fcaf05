//! Forged signals from another process interrupt nothing and all reach the application's
//! handler (the reliability run sends 100,000; this sends 2,000). Own binary: it installs a
//! process-wide SIGUSR1 handler before killable's.

use testkit::forge;

#[test]
fn forged_signals_interrupt_nothing() {
    if let Ok(spec) = std::env::var(forge::CHILD_ENV) {
        forge::child_main(&spec);
    }
    let mut child = testkit::own_binary();
    child.args([
        "forged_signals_interrupt_nothing",
        "--exact",
        "--test-threads=1",
    ]);
    let c = forge::run(2_000, 4, child);
    println!("{c:?}");
    assert_eq!(c.spurious_interrupts, 0, "{c:?}");
    assert_eq!(c.crashes, 0, "{c:?}");
    assert_eq!(c.app_deliveries, c.sent, "{c:?}");
}
