//! Dates and times as ISO text, written and read without chrono's format
//! strings: every row a first sync or a backlog carries goes through here
//! (to the engines, into fingerprints, back from the engines), and chrono's
//! interpreted `%Y-%m-%d %H:%M:%S%.f` took a tenth of the agent's time.
//!
//! The text is exactly what chrono writes for those formats. Values outside
//! the common range (years before 0 or after 9999, leap seconds) and texts
//! of any other shape are left to chrono.

use std::fmt::{self, Write};

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// Writes `n` as two digits.
fn two(out: &mut impl Write, n: u32) -> fmt::Result {
    out.write_char(char::from(b'0' + (n / 10) as u8))?;
    out.write_char(char::from(b'0' + (n % 10) as u8))
}

/// `YYYY-MM-DD`; `None` for a year chrono writes with a sign.
pub(super) fn write_date(out: &mut impl Write, d: NaiveDate) -> Option<fmt::Result> {
    let year = d.year();
    if !(0..=9999).contains(&year) {
        return None;
    }
    let year = year as u32;
    Some((|| {
        two(out, year / 100)?;
        two(out, year % 100)?;
        out.write_char('-')?;
        two(out, d.month())?;
        out.write_char('-')?;
        two(out, d.day())
    })())
}

/// `HH:MM:SS` and chrono's `%.f` (nothing, or 3, 6 or 9 digits); `None`
/// for a leap second.
pub(super) fn write_time(out: &mut impl Write, t: NaiveTime) -> Option<fmt::Result> {
    let nanos = t.nanosecond();
    if nanos >= 1_000_000_000 {
        return None;
    }
    Some((|| {
        two(out, t.hour())?;
        out.write_char(':')?;
        two(out, t.minute())?;
        out.write_char(':')?;
        two(out, t.second())?;
        if nanos == 0 {
            Ok(())
        } else if nanos.is_multiple_of(1_000_000) {
            write!(out, ".{:03}", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            write!(out, ".{:06}", nanos / 1_000)
        } else {
            write!(out, ".{nanos:09}")
        }
    })())
}

/// `YYYY-MM-DD HH:MM:SS%.f`; `None` where chrono must write it.
pub(super) fn write_timestamp(out: &mut impl Write, t: NaiveDateTime) -> Option<fmt::Result> {
    if !(0..=9999).contains(&t.year()) || t.nanosecond() >= 1_000_000_000 {
        return None;
    }
    Some((|| {
        write_date(out, t.date()).expect("year in range")?;
        out.write_char(' ')?;
        write_time(out, t.time()).expect("no leap second")
    })())
}

/// The number in `digits`, all ASCII digits.
fn number(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |n, b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

/// `YYYY-MM-DD`, exactly.
pub(super) fn parse_date(text: &[u8]) -> Option<NaiveDate> {
    if text.len() != 10 || text[4] != b'-' || text[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(
        number(&text[..4])? as i32,
        number(&text[5..7])?,
        number(&text[8..10])?,
    )
}

/// `HH:MM:SS` with an optional fraction of one to nine digits, exactly.
pub(super) fn parse_time(text: &[u8]) -> Option<NaiveTime> {
    if text.len() < 8 || text[2] != b':' || text[5] != b':' {
        return None;
    }
    let nanos = match &text[8..] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            number(fraction)? * 10u32.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    NaiveTime::from_hms_nano_opt(
        number(&text[..2])?,
        number(&text[3..5])?,
        number(&text[6..8])?,
        nanos,
    )
}

/// `YYYY-MM-DD HH:MM:SS[.f]`, with a space or a `T` between.
pub(super) fn parse_timestamp(text: &[u8]) -> Option<NaiveDateTime> {
    if text.len() < 19 || !matches!(text[10], b' ' | b'T') {
        return None;
    }
    Some(NaiveDateTime::new(
        parse_date(&text[..10])?,
        parse_time(&text[11..])?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chrono_date(d: NaiveDate) -> String {
        d.format("%Y-%m-%d").to_string()
    }

    fn chrono_time(t: NaiveTime) -> String {
        t.format("%H:%M:%S%.f").to_string()
    }

    fn chrono_timestamp(t: NaiveDateTime) -> String {
        t.format("%Y-%m-%d %H:%M:%S%.f").to_string()
    }

    fn written(f: impl FnOnce(&mut String) -> Option<fmt::Result>) -> Option<String> {
        let mut out = String::new();
        f(&mut out).map(|r| r.map(|()| out).expect("a String takes any text"))
    }

    /// Nanoseconds of each precision `%.f` tells apart.
    fn nanos() -> impl Strategy<Value = u32> {
        prop_oneof![
            Just(0u32),
            (1..1000u32).prop_map(|ms| ms * 1_000_000),
            (1..1_000_000u32).prop_map(|us| us * 1000),
            1..1_000_000_000u32,
        ]
    }

    proptest! {
        #[test]
        fn text_is_chronos_and_reads_back(
            days in -800_000i32..4_000_000,
            secs in 0u32..86_400,
            nanos in nanos(),
        ) {
            let date = NaiveDate::from_num_days_from_ce_opt(days).unwrap();
            let time = NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos).unwrap();
            let stamp = NaiveDateTime::new(date, time);
            let in_range = (0..=9999).contains(&date.year());
            prop_assert_eq!(written(|o| write_date(o, date)), in_range.then(|| chrono_date(date)));
            prop_assert_eq!(written(|o| write_time(o, time)), Some(chrono_time(time)));
            prop_assert_eq!(
                written(|o| write_timestamp(o, stamp)),
                in_range.then(|| chrono_timestamp(stamp))
            );
            if in_range {
                prop_assert_eq!(parse_date(chrono_date(date).as_bytes()), Some(date));
                prop_assert_eq!(parse_timestamp(chrono_timestamp(stamp).as_bytes()), Some(stamp));
                let iso = stamp.format("%Y-%m-%dT%H:%M:%S%.f").to_string();
                prop_assert_eq!(parse_timestamp(iso.as_bytes()), Some(stamp));
            }
            prop_assert_eq!(parse_time(chrono_time(time).as_bytes()), Some(time));
        }
    }

    #[test]
    fn what_chrono_must_handle_is_left_to_it() {
        let leap = NaiveTime::from_hms_nano_opt(23, 59, 59, 1_500_000_000).unwrap();
        assert_eq!(written(|o| write_time(o, leap)), None);
        let far = NaiveDate::from_ymd_opt(12_345, 1, 1).unwrap();
        assert_eq!(written(|o| write_date(o, far)), None);
        for text in [
            "2024-02-30",
            "2024-1-05",
            "24-01-05",
            "2024-01-05x",
            "+2024-01-05",
        ] {
            assert_eq!(parse_date(text.as_bytes()), None, "{text}");
        }
        for text in [
            "25:00:00",
            "12:00",
            "12:00:00.",
            "12:00:00.1234567890",
            "12:00:00+01",
            "12:0a:00",
        ] {
            assert_eq!(parse_time(text.as_bytes()), None, "{text}");
        }
        assert_eq!(parse_timestamp(b"2024-01-05_12:00:00"), None);
    }
}
