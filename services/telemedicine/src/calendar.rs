//! Time as the hospital lives it: Vietnam's clock (Asia/Ho_Chi_Minh, UTC+7 all year, no daylight
//! saving) and its public holidays, kept as data (`data/holidays.csv`).

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Vietnam's offset from UTC.
pub fn vietnam() -> FixedOffset {
    FixedOffset::east_opt(7 * 3600).expect("UTC+7 is a valid offset")
}

/// Now, on Vietnam's clock.
pub fn now() -> DateTime<FixedOffset> {
    Utc::now().with_timezone(&vietnam())
}

/// Today's date in Vietnam.
pub fn today() -> NaiveDate {
    now().date_naive()
}

/// `local` (a wall-clock time in Vietnam) as an instant.
pub fn at(local: NaiveDateTime) -> DateTime<FixedOffset> {
    vietnam()
        .from_local_datetime(&local)
        .single()
        .expect("a fixed offset maps every local time once")
}

/// A FHIR instant (`2026-12-03T08:00:00+07:00`) of `t`, always on Vietnam's clock.
pub fn instant(t: DateTime<FixedOffset>) -> String {
    t.with_timezone(&vietnam())
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// The two `date` search values that bound a Vietnamese calendar day. A bare `date=YYYY-MM-DD`
/// is read by the store as a UTC day, which starts at 07:00 in Vietnam.
pub fn day_search(day: NaiveDate) -> [String; 2] {
    let from = at(day.and_hms_opt(0, 0, 0).unwrap_or_default());
    let to = from + chrono::Duration::days(1);
    [format!("ge{}", instant(from)), format!("lt{}", instant(to))]
}

/// A FHIR instant or dateTime with a time and an offset, parsed.
pub fn parse_instant(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).ok()
}

/// Microseconds since the Unix epoch (what the store's time claims use).
pub fn micros(t: DateTime<FixedOffset>) -> i64 {
    t.timestamp_micros()
}

/// The calendar day in Vietnam that `t` falls on.
pub fn day_of(t: DateTime<FixedOffset>) -> NaiveDate {
    t.with_timezone(&vietnam()).date_naive()
}

const HOLIDAYS: &str = include_str!("../data/holidays.csv");

/// The public holidays: date → name.
pub fn holidays() -> &'static BTreeMap<NaiveDate, String> {
    static TABLE: OnceLock<BTreeMap<NaiveDate, String>> = OnceLock::new();
    TABLE.get_or_init(|| parse_holidays(HOLIDAYS).expect("data/holidays.csv is well formed"))
}

/// Whether offices close on `day` for a public holiday.
pub fn is_holiday(day: NaiveDate) -> bool {
    holidays().contains_key(&day)
}

fn parse_holidays(text: &str) -> Result<BTreeMap<NaiveDate, String>, String> {
    let mut table = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("date,") {
            continue;
        }
        let mut cols = line.split(',');
        let (Some(date), Some(name), Some(status)) = (cols.next(), cols.next(), cols.next()) else {
            return Err(format!("line {}: expected date,name,status", n + 1));
        };
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .map_err(|_| format!("line {}: `{date}` is not a date", n + 1))?;
        if !matches!(status, "announced" | "provisional") {
            return Err(format!(
                "line {}: status is announced or provisional",
                n + 1
            ));
        }
        if table.insert(date, name.to_owned()).is_some() {
            return Err(format!("line {}: {date} is listed twice", n + 1));
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_holidays_are_read() {
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert!(is_holiday(d("2026-09-02")));
        assert!(is_holiday(d("2026-02-17")), "the first day of Tết 2026");
        assert!(!is_holiday(d("2026-12-03")));
        assert_eq!(holidays()[&d("2026-04-30")], "Ngày Giải phóng miền Nam");
    }

    #[test]
    fn a_malformed_table_is_refused() {
        assert!(parse_holidays("2026-13-01,x,announced").is_err());
        assert!(parse_holidays("2026-01-01,x,maybe").is_err());
        assert!(parse_holidays("2026-01-01,x,announced\n2026-01-01,y,announced").is_err());
    }

    #[test]
    fn instants_are_written_on_vietnams_clock() {
        let t = parse_instant("2026-12-03T01:00:00Z").unwrap();
        assert_eq!(instant(t), "2026-12-03T08:00:00+07:00");
        assert_eq!(
            day_of(parse_instant("2026-12-02T18:00:00Z").unwrap()).to_string(),
            "2026-12-03"
        );
        // 03:00 in Hà Nội on 3 December is 20:00 UTC on the 2nd, and still the 3rd's.
        let [from, to] = day_search(day_of(parse_instant("2026-12-02T20:00:00Z").unwrap()));
        assert_eq!(
            (from.as_str(), to.as_str()),
            ("ge2026-12-03T00:00:00+07:00", "lt2026-12-04T00:00:00+07:00")
        );
    }
}
