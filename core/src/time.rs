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

/// The latest time the four-digit date formats can show: 9999-12-31 23:59:59 UTC.
const UNIX_MAX: i64 = 253_402_300_799;

const WEEKDAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// A time's calendar fields in UTC (proleptic Gregorian).
struct Civil {
    year: u32,
    /// 0 = January.
    month: usize,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 0 = Sunday.
    weekday: usize,
}

impl Civil {
    /// Clamped to 1970..=9999, the range the formats can show (HTTP dates before 1970 do
    /// not occur; a file's mtime that far off is shown at the nearest end).
    fn of(t: UnixTime) -> Civil {
        // unwrap-free: the clamp keeps every quantity below non-negative and small.
        let secs = t.0.clamp(0, UNIX_MAX).unsigned_abs();
        let days = secs / 86_400;
        let rem = secs % 86_400;
        // Howard Hinnant's civil_from_days, for days since 1970-01-01 (non-negative here).
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 2 } else { mp - 10 };
        let year = yoe + era * 400 + u64::from(month <= 1);
        Civil {
            year: year as u32,
            month: month as usize,
            day: day as u32,
            hour: (rem / 3600) as u32,
            minute: (rem / 60 % 60) as u32,
            second: (rem % 60) as u32,
            // 1970-01-01 was a Thursday.
            weekday: ((days + 4) % 7) as usize,
        }
    }
}

fn two(out: &mut [u8], v: u32) {
    out[0] = b'0' + (v / 10 % 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}

fn four(out: &mut [u8], v: u32) {
    two(&mut out[..2], v / 100);
    two(&mut out[2..], v % 100);
}

impl UnixTime {
    /// The IMF-fixdate (RFC 9110 §5.6.7) as bytes, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`,
    /// written without allocating (every response carries one).
    #[must_use]
    pub fn http_date_bytes(self) -> [u8; 29] {
        let c = Civil::of(self);
        let mut out = *b"Sun, 00 Jan 0000 00:00:00 GMT";
        out[..3].copy_from_slice(WEEKDAYS[c.weekday]);
        two(&mut out[5..7], c.day);
        out[8..11].copy_from_slice(MONTHS[c.month]);
        four(&mut out[12..16], c.year);
        two(&mut out[17..19], c.hour);
        two(&mut out[20..22], c.minute);
        two(&mut out[23..25], c.second);
        out
    }

    /// Formats as an IMF-fixdate (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    #[must_use]
    pub fn http_date(self) -> String {
        self.http_date_bytes()
            .iter()
            .map(|&b| char::from(b))
            .collect()
    }

    /// An RFC 3339 UTC time stamp, e.g. `2000-10-10T13:55:36Z` (for error-log lines).
    #[must_use]
    pub fn rfc3339_bytes(self) -> [u8; 20] {
        let c = Civil::of(self);
        let mut out = *b"0000-00-00T00:00:00Z";
        four(&mut out[..4], c.year);
        two(&mut out[5..7], c.month as u32 + 1);
        two(&mut out[8..10], c.day);
        two(&mut out[11..13], c.hour);
        two(&mut out[14..16], c.minute);
        two(&mut out[17..19], c.second);
        out
    }

    /// The time of a Common Log Format line, e.g. `10/Oct/2000:13:55:36 +0000`.
    #[must_use]
    pub fn clf_bytes(self) -> [u8; 26] {
        let c = Civil::of(self);
        let mut out = *b"00/Jan/0000:00:00:00 +0000";
        two(&mut out[..2], c.day);
        out[3..6].copy_from_slice(MONTHS[c.month]);
        four(&mut out[7..11], c.year);
        two(&mut out[12..14], c.hour);
        two(&mut out[15..17], c.minute);
        two(&mut out[18..20], c.second);
        out
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

    proptest::proptest! {
        /// The hand-written formatter agrees with httpdate's over the whole range both can
        /// show (httpdate is the independent oracle here).
        #[test]
        fn http_dates_agree_with_httpdate(secs in 0..=UNIX_MAX) {
            let want = httpdate::fmt_http_date(
                std::time::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs()),
            );
            proptest::prop_assert_eq!(UnixTime(secs).http_date(), want);
        }
    }

    /// Every day from 1970 to 2401 (four centuries, with 2000's and 2400's leap days and
    /// 2100's, 2200's and 2300's missing ones), against httpdate: the sampled property
    /// above may miss the few days a wrong century correction moves.
    #[test]
    fn every_day_of_four_centuries_agrees_with_httpdate() {
        let last = UnixTime::parse_http_date(b"Mon, 01 Jan 2401 00:00:00 GMT").unwrap();
        for day in 0..=last.0 / 86_400 {
            let secs = day * 86_400 + 43_200;
            let want = httpdate::fmt_http_date(
                std::time::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs()),
            );
            assert_eq!(UnixTime(secs).http_date(), want);
        }
    }

    #[test]
    fn dates_at_the_edges_and_in_log_lines() {
        assert_eq!(UnixTime(0).http_date(), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(UnixTime(-5).http_date(), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            UnixTime(UNIX_MAX).http_date(),
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
        assert_eq!(
            UnixTime(i64::MAX).http_date(),
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
        assert_eq!(
            UnixTime(951_782_400).http_date(),
            "Tue, 29 Feb 2000 00:00:00 GMT"
        );
        assert_eq!(
            &UnixTime(971_186_136).clf_bytes(),
            b"10/Oct/2000:13:55:36 +0000"
        );
        assert_eq!(
            &UnixTime(971_186_136).rfc3339_bytes(),
            b"2000-10-10T13:55:36Z"
        );
        assert_eq!(
            &UnixTime(951_782_400).rfc3339_bytes(),
            b"2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn time_arithmetic_saturates() {
        assert_eq!(Time(5).after(Duration::from_millis(7)), Time(12));
        assert_eq!(Time(u64::MAX).after(Duration::from_secs(1)), Time(u64::MAX));
        assert_eq!(Time(3).since(Time(10)), Duration::ZERO);
    }
}
