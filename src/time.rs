//! Time: the conversions between `Instant`, `Duration` and the kernel's `timespec`s, in one
//! place. std's `Instant` is `CLOCK_MONOTONIC` on Linux; absolute monotonic deadlines keep a
//! retried wait from stretching.

use std::time::{Duration, Instant};

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

pub(crate) fn monotonic_now() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts
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
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let nanos = now.tv_nsec as u64 + d.subsec_nanos() as u64;
    let secs = (d.as_secs().min(i64::MAX as u64 / 2) as i64)
        .saturating_add(now.tv_sec)
        .saturating_add((nanos / 1_000_000_000) as i64);
    libc::timespec {
        tv_sec: secs,
        tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
    }
}
