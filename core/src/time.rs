//! Time as a value.
//!
//! The core never reads a clock. The caller passes `Now` into every call that may depend on
//! time: `mono` is the shell's monotonic clock in milliseconds since an epoch of its choosing
//! (it must never go backwards), `unix` is the wall clock in seconds, used only for what
//! people read (`Date`, `Last-Modified`, log lines). The simulator and the model checker
//! build both from plain numbers, so one seed or one path always prints the same trace.

use core::fmt;
use core::time::Duration;

/// A point on the caller's monotonic clock, in milliseconds since the caller's epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub u64);

impl Time {
    /// The point `d` after `self`, saturating instead of overflowing.
    #[must_use]
    pub fn after(self, d: Duration) -> Time {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Time(self.0.saturating_add(ms))
    }

    /// How long from `earlier` to `self`; zero if `earlier` is later.
    #[must_use]
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Wall-clock time in whole seconds since the Unix epoch (may be negative for old files).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub i64);

impl UnixTime {
    /// Formats as an IMF-fixdate (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    #[must_use]
    pub fn http_date(self) -> String {
        // Building a SystemTime from a number reads no clock; httpdate only formats it.
        let secs = self.0.max(0) as u64;
        httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// Parses any of the three HTTP date formats RFC 9110 §5.6.7 asks recipients to accept.
    #[must_use]
    pub fn parse_http_date(text: &[u8]) -> Option<UnixTime> {
        let text = core::str::from_utf8(text).ok()?;
        let t = httpdate::parse_http_date(text.trim()).ok()?;
        let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
        i64::try_from(secs).ok().map(UnixTime)
    }
}

/// Both clocks at the moment of a call: what every time-dependent entry point takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Now {
    /// Monotonic time, for deadlines.
    pub mono: Time,
    /// Wall-clock time, for dates people read.
    pub unix: UnixTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_date_round_trips() {
        let t = UnixTime(784_111_777);
        assert_eq!(t.http_date(), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(UnixTime::parse_http_date(t.http_date().as_bytes()), Some(t));
        assert_eq!(
            UnixTime::parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(t)
        );
        assert_eq!(UnixTime::parse_http_date(b"garbage"), None);
    }

    #[test]
    fn time_arithmetic_saturates() {
        assert_eq!(Time(5).after(Duration::from_millis(7)), Time(12));
        assert_eq!(Time(u64::MAX).after(Duration::from_secs(1)), Time(u64::MAX));
        assert_eq!(Time(3).since(Time(10)), Duration::ZERO);
    }
}
