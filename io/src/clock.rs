//! The shell's clocks, turned into the core's `Now`.
//!
//! The core never reads a clock (DESIGN.md §1); each worker owns a `Clock` and passes
//! `clock.now()` into every core call. `mono` counts milliseconds since the worker started,
//! from `Instant`, so it never goes backwards (the core's contract) even when the wall clock
//! is stepped; `unix` is the wall clock in whole seconds, used only for dates people read.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use weir_core::{Now, Time, UnixTime};

/// One worker's clock: a monotonic epoch plus the system's wall clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock whose monotonic time starts at zero now.
    #[must_use]
    pub fn start() -> Clock {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// Both clocks, read now.
    #[must_use]
    pub fn now(&self) -> Now {
        Now {
            mono: self.mono(),
            unix: unix_now(),
        }
    }

    /// Milliseconds since `start`, rounded down (so a deadline is never reported as reached
    /// before it is).
    #[must_use]
    pub fn mono(&self) -> Time {
        let ms = self.epoch.elapsed().as_millis();
        // A u64 of milliseconds lasts 584 million years; saturate rather than wrap.
        Time(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

/// The wall clock in whole seconds since the Unix epoch; negative if the system clock is set
/// before 1970 (the core accepts that for old files, and it must not panic here).
fn unix_now() -> UnixTime {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => UnixTime(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        Err(before) => UnixTime(-i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn mono_starts_near_zero_and_never_decreases() {
        let clock = Clock::start();
        let a = clock.mono();
        assert!(a.0 < 1000, "a fresh clock reads {a}");
        std::thread::sleep(Duration::from_millis(15));
        let b = clock.mono();
        assert!(b.0 >= a.0 + 15, "{b} should be at least 15ms after {a}");
    }

    #[test]
    fn unix_time_is_plausible() {
        let now = Clock::start().now();
        // 2020-01-01 and 2200-01-01: a sanity window, not a calendar check.
        assert!(now.unix.0 > 1_577_836_800 && now.unix.0 < 7_258_118_400);
    }
}
