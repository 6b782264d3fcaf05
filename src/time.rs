//! Time: the conversions between `Instant`, `Duration` and the kernel's `timespec`s, in one
//! place. std's `Instant` is `CLOCK_MONOTONIC` on Linux; absolute monotonic deadlines keep a
//! retried wait from stretching.

use std::time::{Duration, Instant};

use nix::time::{ClockId, clock_gettime};

/// Converts an `Instant` to the `CLOCK_MONOTONIC` timespec it stands for.
///
/// std's `Instant` is `CLOCK_MONOTONIC` on Linux; we rebuild the absolute value from the
/// difference to "now" so we never depend on `Instant`'s private layout.
pub(crate) fn monotonic_timespec(at: Instant) -> libc::timespec {
    let now_ts = monotonic_now();
    let now = Instant::now();
    let (secs, nanos) = if at >= now {
        let d = at - now;
        add_ts(now_ts, d.as_secs() as i64, d.subsec_nanos() as i64)
    } else {
        let d = now - at;
        add_ts(now_ts, -(d.as_secs() as i64), -(d.subsec_nanos() as i64))
    };
    libc::timespec {
        tv_sec: secs,
        tv_nsec: nanos,
    }
}

fn add_ts(ts: libc::timespec, secs: i64, nanos: i64) -> (i64, i64) {
    let mut s = ts.tv_sec.saturating_add(secs);
    let mut n = ts.tv_nsec + nanos;
    if n >= 1_000_000_000 {
        n -= 1_000_000_000;
        s = s.saturating_add(1);
    } else if n < 0 {
        n += 1_000_000_000;
        s = s.saturating_sub(1);
    }
    (s.max(0), if s < 0 { 0 } else { n })
}

/// `CLOCK_MONOTONIC` now. Async-signal-safe: nix's `clock_gettime` is the one call, into a
/// local, with no allocation.
pub(crate) fn monotonic_now() -> libc::timespec {
    clock_now(ClockId::CLOCK_MONOTONIC)
}

/// The clock's time, or zero if the clock cannot be read (never, for the clocks used here,
/// which always exist on Linux).
fn clock_now(clock: ClockId) -> libc::timespec {
    clock_gettime(clock).map_or(
        libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        |t| *t.as_ref(),
    )
}

/// `CLOCK_MONOTONIC` now, in nanoseconds (async-signal-safe: one `clock_gettime`).
pub(crate) fn now_ns() -> u64 {
    ts_to_ns(&monotonic_now())
}

pub(crate) fn ts_to_ns(ts: &libc::timespec) -> u64 {
    (ts.tv_sec.max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// The absolute monotonic deadline `timeout` from now (`None`: no deadline, or too far).
pub(crate) fn abs_deadline(timeout: Option<Duration>) -> Option<libc::timespec> {
    timeout
        .and_then(|t| Instant::now().checked_add(t))
        .map(monotonic_timespec)
}

/// `CLOCK_REALTIME` now plus `d` (what `pthread_timedjoin_np` takes).
pub(crate) fn realtime_after(d: Duration) -> libc::timespec {
    let now = clock_now(ClockId::CLOCK_REALTIME);
    let nanos = now.tv_nsec as u64 + d.subsec_nanos() as u64;
    let secs = (d.as_secs().min(i64::MAX as u64 / 2) as i64)
        .saturating_add(now.tv_sec)
        .saturating_add((nanos / 1_000_000_000) as i64);
    libc::timespec {
        tv_sec: secs,
        tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
    }
}
