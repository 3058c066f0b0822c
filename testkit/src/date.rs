//! HTTP dates (RFC 9110 §5.6.7): one formatter and two parsers, written out by hand.
//!
//! # Theory of operation
//!
//! A server sends exactly one format, the IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`):
//! [`http_date`] writes it and [`parse_imf_fixdate`] reads it and nothing else, which is
//! what a checker of weir's `Date` and `Last-Modified` fields wants. A recipient must also
//! accept the two obsolete formats, RFC 850's (`Sunday, 06-Nov-94 08:49:37 GMT`) and C's
//! asctime (`Sun Nov  6 08:49:37 1994`): [`parse_http_date`] reads all three, which is what
//! a model of the server's handling of `If-Modified-Since` or `If-Range` wants.
//!
//! Times are seconds since the Unix epoch. Both parsers refuse what no correct sender
//! writes: a weekday that is not the date's, a day the month does not have, hour 24 or
//! second 60 (Unix time has no leap seconds, and weir's clock is Unix time), and any year
//! outside 1970..=9999, the range weir can show — the same range the core's own recipient
//! (the httpdate crate) accepts, so a model built on these functions agrees with it.
//!
//! The calendar arithmetic is Howard Hinnant's `days_from_civil`/`civil_from_days`
//! (<https://howardhinnant.github.io/date_algorithms.html>), exact for every year here.

/// 9999-12-31T23:59:59Z, the last second an IMF-fixdate's four-digit year can show.
pub const MAX: i64 = 253_402_300_799;

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const WEEKDAYS_LONG: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The IMF-fixdate of Unix time `secs`, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
///
/// A time outside 1970..=9999 is shown as the nearest end of that range, as weir shows
/// it (a file's modification time before the epoch becomes the epoch), so that a model
/// predicting weir's fields can call this with any time.
#[must_use]
pub fn http_date(secs: i64) -> String {
    let secs = secs.clamp(0, MAX);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[weekday(days)],
        MONTHS[m - 1],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Reads an IMF-fixdate and nothing else: `None` for anything that is not exactly one.
#[must_use]
pub fn parse_imf_fixdate(text: &str) -> Option<i64> {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let b = text.as_bytes();
    if b.len() != 29 || &b[3..5] != b", " || b[7] != b' ' || b[11] != b' ' || b[16] != b' ' {
        return None;
    }
    if &b[25..] != b" GMT" {
        return None;
    }
    let wday = WEEKDAYS.iter().position(|w| w.as_bytes() == &b[..3])?;
    let day = digits(&b[5..7])?;
    let month = month(&b[8..11])?;
    let year = digits(&b[12..16])?;
    let secs = time_of_day(&b[17..25])?;
    seconds(year, month, day, secs, wday)
}

/// Reads any of the three formats RFC 9110 §5.6.7 asks a recipient to accept, with the
/// optional whitespace around a field value ignored.
///
/// RFC 850's two-digit year is read as 2000–2069 for `00`–`69` and 1970–1999 otherwise.
/// RFC 9110 asks for a moving window instead (a year more than 50 years ahead is the
/// previous century's); the fixed pivot is what the core's recipient (httpdate) does, and
/// keeps every answer the same whatever day the tests run.
#[must_use]
pub fn parse_http_date(text: &str) -> Option<i64> {
    let text = text.trim_matches([' ', '\t']);
    parse_imf_fixdate(text)
        .or_else(|| parse_rfc850(text))
        .or_else(|| parse_asctime(text))
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`.
fn parse_rfc850(text: &str) -> Option<i64> {
    let (name, rest) = text.split_once(", ")?;
    let wday = WEEKDAYS_LONG.iter().position(|w| *w == name)?;
    let b = rest.as_bytes();
    if b.len() != 22 || b[2] != b'-' || b[6] != b'-' || b[9] != b' ' || &b[18..] != b" GMT" {
        return None;
    }
    let day = digits(&b[..2])?;
    let month = month(&b[3..6])?;
    let yy = digits(&b[7..9])?;
    let year = if yy < 70 { 2000 + yy } else { 1900 + yy };
    let secs = time_of_day(&b[10..18])?;
    seconds(year, month, day, secs, wday)
}

/// `Sun Nov  6 08:49:37 1994` (the day may also be written `06`).
fn parse_asctime(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 24 || b[3] != b' ' || b[7] != b' ' || b[10] != b' ' || b[19] != b' ' {
        return None;
    }
    let wday = WEEKDAYS.iter().position(|w| w.as_bytes() == &b[..3])?;
    let month = month(&b[4..7])?;
    let day = match b[8] {
        b' ' => digits(&b[9..10])?,
        _ => digits(&b[8..10])?,
    };
    let secs = time_of_day(&b[11..19])?;
    let year = digits(&b[20..24])?;
    seconds(year, month, day, secs, wday)
}

/// The value of a run of ASCII digits (and only digits).
fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, &d| n * 10 + i64::from(d - b'0')))
}

/// 1 for `Jan` … 12 for `Dec` (case-sensitive, as the grammar is).
fn month(b: &[u8]) -> Option<usize> {
    MONTHS.iter().position(|m| m.as_bytes() == b).map(|i| i + 1)
}

/// `HH:MM:SS` as seconds into the day.
fn time_of_day(b: &[u8]) -> Option<i64> {
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, s) = (digits(&b[..2])?, digits(&b[3..5])?, digits(&b[6..])?);
    (h < 24 && m < 60 && s < 60).then_some(h * 3600 + m * 60 + s)
}

/// The Unix time of a date whose weekday the sender claims is `wday` (0 = Monday), if
/// the date exists, is in range and falls on that weekday.
fn seconds(year: i64, month: usize, day: i64, secs: i64, wday: usize) -> Option<i64> {
    if !(1970..=9999).contains(&year) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    (weekday(days) == wday).then_some(days * 86_400 + secs)
}

fn days_in_month(year: i64, month: usize) -> i64 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// 0 = Monday for a count of days since 1970-01-01 (a Thursday).
fn weekday(days: i64) -> usize {
    // unwrap-free: rem_euclid(7) is in 0..7.
    (days + 3).rem_euclid(7) as usize
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: usize, d: i64) -> i64 {
    let m = m as i64;
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month 1..=12, day) of a count of days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, usize, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    // unwrap-free: m is in 1..=12.
    (yoe + era * 400 + i64::from(m <= 2), m as usize, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn known_vectors() {
        // RFC 9110 §5.6.7's example in all three formats.
        let t = 784_111_777;
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(t));
        assert_eq!(parse_http_date("Sun Nov 06 08:49:37 1994"), Some(t));
        assert_eq!(parse_http_date(" Sun, 06 Nov 1994 08:49:37 GMT\t"), Some(t));
        // The edges of the range, a leap day, and the pivot of RFC 850's two-digit year.
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(
            parse_http_date("Tuesday, 01-Jan-69 00:00:00 GMT"),
            Some(3_124_224_000)
        );
        assert_eq!(
            parse_imf_fixdate("Tue, 01 Jan 2069 00:00:00 GMT"),
            Some(3_124_224_000)
        );
        assert_eq!(parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT"), Some(0));
    }

    #[test]
    fn times_outside_the_range_are_shown_at_its_ends() {
        assert_eq!(http_date(-5), http_date(0));
        assert_eq!(http_date(i64::MIN), http_date(0));
        assert_eq!(http_date(i64::MAX), http_date(MAX));
    }

    #[test]
    fn round_trips_over_four_centuries() {
        // Every 31337 s (a prime, so the times of day drift through every hour) from 1970
        // to 2370, plus the last seconds before MAX.
        let step = 31_337;
        let times = (0..(400 * 365 * 86_400) / step)
            .map(|i| i * step)
            .chain(MAX - 100..=MAX);
        for t in times {
            let text = http_date(t);
            assert_eq!(parse_imf_fixdate(&text), Some(t), "{text}");
            assert_eq!(parse_http_date(&text), Some(t), "{text}");
        }
    }

    #[test]
    fn agrees_with_httpdate() {
        // httpdate is an independent implementation: both must write and read alike.
        let step = 86_399 * 37 + 17;
        for t in (0..MAX).step_by(step as usize).chain([MAX]) {
            let st = UNIX_EPOCH + Duration::from_secs(t.unsigned_abs());
            let theirs = httpdate::fmt_http_date(st);
            assert_eq!(http_date(t), theirs);
            // And the obsolete forms they read, ours read to the same second.
            let rfc850 = httpdate_rfc850(&theirs);
            let parsed = httpdate::parse_http_date(&rfc850).ok();
            let ours = parse_http_date(&rfc850);
            assert_eq!(
                ours,
                parsed.map(|p| p.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64),
                "{rfc850}"
            );
        }
    }

    /// The RFC 850 form of an IMF-fixdate (for years a two-digit year can name).
    fn httpdate_rfc850(imf: &str) -> String {
        let wday = WEEKDAYS.iter().position(|w| *w == &imf[..3]).unwrap();
        format!(
            "{}, {}-{}-{} {} GMT",
            WEEKDAYS_LONG[wday],
            &imf[5..7],
            &imf[8..11],
            &imf[14..16],
            &imf[17..25]
        )
    }

    #[test]
    fn refuses_what_no_sender_writes() {
        let bad = [
            "",
            "garbage",
            // The wrong weekday, day, month, hour, minute, second.
            "Mon, 06 Nov 1994 08:49:37 GMT",
            "Wed, 31 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nob 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:49:37 GMT",
            "Sun, 06 Nov 1994 08:60:37 GMT",
            "Sun, 06 Nov 1994 08:49:60 GMT",
            // Not leap years, and years out of range.
            "Thu, 29 Feb 1900 00:00:00 GMT",
            "Sun, 29 Feb 2100 00:00:00 GMT",
            "Wed, 31 Dec 1969 23:59:59 GMT",
            // Case, spacing, zone and digit counts.
            "sun, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 nov 1994 08:49:37 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun,  06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37 gmt",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 +0000",
            "Sun, +6 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994 GMT",
            "Sun Nov 6 08:49:37 1994",
        ];
        for b in bad {
            assert_eq!(parse_http_date(b), None, "{b:?}");
            assert_eq!(parse_imf_fixdate(b), None, "{b:?}");
        }
        // The obsolete formats are a recipient's burden, never a sender's.
        for obsolete in ["Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            assert!(parse_http_date(obsolete).is_some());
            assert_eq!(parse_imf_fixdate(obsolete), None, "{obsolete:?}");
        }
        assert_eq!(parse_imf_fixdate(" Sun, 06 Nov 1994 08:49:37 GMT"), None);
    }
}
