//! Time on the wire: the clock, ISO 8601 date-times, and the range of timestamps a row holds.

use std::time::{SystemTime, UNIX_EPOCH};

/// The earliest timestamp a row holds: 0000-01-01T00:00:00.000Z, in ms since the epoch.
pub const MIN_TSTAMP_MS: i64 = -62_167_219_200_000;
/// The latest timestamp a row holds: 9999-12-31T23:59:59.999Z, in ms since the epoch.
pub const MAX_TSTAMP_MS: i64 = 253_402_300_799_999;

/// Milliseconds since the Unix epoch, now (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Milliseconds since the epoch of an ISO 8601 / RFC 3339 date-time as SDKs send them:
/// `YYYY-MM-DD`, optionally `T` (or `t` or a space) `hh:mm[:ss[.fraction]]`, optionally `Z` or
/// an offset `±hh[:mm]` / `±hhmm` (none = UTC). Years 0000–9999; fractions beyond
/// milliseconds are truncated.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let d = b.get(from..from + len)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| d.iter().fold(0i64, |n, c| n * 10 + i64::from(c - b'0')))
    };
    let year = num(0, 4)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let (month, day) = (num(5, 2)?, num(8, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut ms = days_from_civil(year, month, day) * 86_400_000;
    let mut i = 10;
    if i == b.len() {
        return Some(ms);
    }
    if !matches!(b[i], b'T' | b't' | b' ') {
        return None;
    }
    let (hour, minute) = (num(i + 1, 2)?, num(i + 4, 2)?);
    if b.get(i + 3) != Some(&b':') || hour > 23 || minute > 59 {
        return None;
    }
    ms += hour * 3_600_000 + minute * 60_000;
    i += 6;
    if b.get(i) == Some(&b':') {
        let second = num(i + 1, 2)?;
        if second > 60 {
            return None;
        }
        ms += second.min(59) * 1000;
        i += 3;
        if matches!(b.get(i), Some(b'.' | b',')) {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return None;
            }
            let frac = &b[start..i.min(start + 3)];
            let mut f = frac.iter().fold(0i64, |n, c| n * 10 + i64::from(c - b'0'));
            for _ in frac.len()..3 {
                f *= 10;
            }
            ms += f;
        }
    }
    match b.get(i) {
        None => {}
        Some(b'Z' | b'z') if i + 1 == b.len() => {}
        Some(&sign @ (b'+' | b'-')) => {
            let oh = num(i + 1, 2)?;
            let rest = &b[i + 3..];
            let om = match rest {
                [] => 0,
                [b':', _, _] => num(i + 4, 2)?,
                [_, _] => num(i + 3, 2)?,
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let offset = (oh * 60 + om) * 60_000;
            ms += if sign == b'+' { -offset } else { offset };
        }
        _ => return None,
    }
    (MIN_TSTAMP_MS..=MAX_TSTAMP_MS).contains(&ms).then_some(ms)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_8601_timestamps_parse_with_offsets_and_fractions() {
        for (s, ms) in [
            ("2023-11-14T22:13:20Z", Some(1_700_000_000_000)),
            ("2023-11-14T22:13:20.123Z", Some(1_700_000_000_123)),
            ("2023-11-14T22:13:20.123456+00:00", Some(1_700_000_000_123)),
            ("2023-11-14T22:13:20.1Z", Some(1_700_000_000_100)),
            ("2023-11-14 23:13:20+0100", Some(1_700_000_000_000)),
            ("2023-11-14T20:13:20-02", Some(1_700_000_000_000)),
            ("2023-11-14T22:13:20", Some(1_700_000_000_000)),
            ("2023-11-14T22:13Z", Some(1_699_999_980_000)),
            ("2023-11-14", Some(1_699_920_000_000)),
            ("1970-01-01T00:00:00Z", Some(0)),
            ("1969-12-31T23:59:59.999Z", Some(-1)),
            ("2024-02-29T00:00:00Z", Some(1_709_164_800_000)),
            ("0000-01-01T00:00:00Z", Some(MIN_TSTAMP_MS)),
            ("2023-02-29T00:00:00Z", None),
            ("2023-13-01T00:00:00Z", None),
            ("2023-11-14T24:00:00Z", None),
            ("2023-11-14T22:13:20.Z", None),
            ("2023-11-14T22:13:20Zjunk", None),
            ("2023-11-14T22:13:20+1", None),
            ("20231114T221320Z", None),
            ("", None),
            ("2023-11-14T22:13:20+ß", None),
        ] {
            assert_eq!(parse_iso8601(s), ms, "{s}");
        }
    }
}
