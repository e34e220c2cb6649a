//! FHIR date, dateTime and instant values as time ranges at their own precision
//! (<https://hl7.org/fhir/R4B/search.html#date>): `2024` covers the whole year.
//! Values without a time zone are taken as UTC.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};

/// A closed range of microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub lo: i64,
    pub hi: i64,
}

fn micros(d: DateTime<Utc>) -> i64 {
    d.timestamp_micros()
}

fn day_start(y: i32, m: u32, d: u32) -> Option<DateTime<Utc>> {
    let date = NaiveDate::from_ymd_opt(y, m, d)?;
    Some(Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0)?))
}

/// Parses a FHIR date/dateTime/instant into the range it denotes.
pub fn parse_range(s: &str) -> Option<Range> {
    let s = s.trim();
    let bytes = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    match s.len() {
        4 => {
            let y = digits(0..4)? as i32;
            let lo = day_start(y, 1, 1)?;
            let hi = day_start(y + 1, 1, 1)?;
            Some(Range {
                lo: micros(lo),
                hi: micros(hi) - 1,
            })
        }
        7 if bytes[4] == b'-' => {
            let y = digits(0..4)? as i32;
            let m = digits(5..7)?;
            let lo = day_start(y, m, 1)?;
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            let hi = day_start(ny, nm, 1)?;
            Some(Range {
                lo: micros(lo),
                hi: micros(hi) - 1,
            })
        }
        10 if bytes[4] == b'-' && bytes[7] == b'-' => {
            let lo = day_start(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)?;
            Some(Range {
                lo: micros(lo),
                hi: micros(lo + Duration::days(1)) - 1,
            })
        }
        _ => {
            // A full date-time. Seconds precision or finer; a missing zone means UTC.
            let parsed = DateTime::parse_from_rfc3339(s)
                .map(|d| d.with_timezone(&Utc))
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                        .map(|n| Utc.from_utc_datetime(&n))
                })
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
                        .map(|n| Utc.from_utc_datetime(&n))
                })
                .ok()?;
            let has_fraction = s.contains('.');
            let width = if has_fraction {
                0
            } else if s.len() >= 19 && s.as_bytes().get(16) == Some(&b':') {
                999_999
            } else {
                59_999_999
            };
            let lo = micros(parsed);
            // Reject nonsense years early (the ranges must stay in i64 micros).
            if !(1..=9999).contains(&parsed.year()) {
                return None;
            }
            Some(Range { lo, hi: lo + width })
        }
    }
}

/// Formats an instant as FHIR `instant` (UTC, microsecond precision).
pub fn format_instant(micros: i64) -> String {
    let d = DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default();
    d.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Now, in microseconds since the epoch.
pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_the_precision_of_the_value() {
        let y = parse_range("2024").unwrap();
        let d = parse_range("2024-02-29").unwrap();
        let m = parse_range("2024-02").unwrap();
        assert!(y.lo <= m.lo && m.hi <= y.hi);
        assert!(m.lo <= d.lo && d.hi <= m.hi);
        assert_eq!(d.hi - d.lo + 1, 86_400_000_000);
        let t = parse_range("2024-02-29T10:00:00+07:00").unwrap();
        assert_eq!(t.lo, parse_range("2024-02-29T03:00:00Z").unwrap().lo);
        assert!(parse_range("2024-13").is_none());
        assert!(parse_range("yesterday").is_none());
    }
}
