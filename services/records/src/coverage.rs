//! BHYT coverage in force on a date: the records service's rule, used by its gRPC edge and by
//! every other service that asks (billing's cost sharing depends on it).

use crate::identifiers::{BhytCardNumber, Cccd, INSURANCE_NUMBER, NATIONAL_ID};
use hospital_core::store::{SearchQuery, Version};
use hospital_core::{Caller, Error, Platform, Touched};
use serde_json::Value;

/// How the patient of a coverage lookup is named.
#[derive(Debug, Clone)]
pub enum CoverageKey {
    Patient(String),
    /// A BHYT card number.
    Card(String),
    /// The 12-digit personal ID, accepted in place of the card since 2025.
    NationalId(String),
}

/// The coverage in force on a date.
#[derive(Debug, Clone)]
pub struct ActiveCoverage {
    pub version: Version,
    pub patient_id: String,
    pub card_number: String,
    /// The benefit digit of the card (1-5), which decides the fund's share.
    pub benefit_level: u32,
    /// The registered primary-care facility (KCB ban đầu), or empty.
    pub registered_facility: String,
    /// Validity, YYYY-MM-DD; empty when open.
    pub valid_from: String,
    pub valid_to: String,
    /// In force on the date asked; `false` for an expired one ([`coverage_on`]).
    pub in_force: bool,
}

/// What to answer when no coverage is in force on the date asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenNoneInForce {
    /// Not found.
    NotFound,
    /// The coverage whose validity ended most recently before the date (billing states when
    /// the card expired, and applies the grace of a stay begun while it was valid).
    LatestExpired,
}

/// The date of service: `YYYY-MM-DD`, or today (in Vietnam) when empty.
pub fn service_date(s: &str) -> Result<chrono::NaiveDate, Error> {
    if s.is_empty() {
        let vn = chrono::FixedOffset::east_opt(7 * 3600).expect("UTC+7");
        return Ok(chrono::Utc::now().with_timezone(&vn).date_naive());
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| Error::invalid("date", "date must be YYYY-MM-DD"))
}

/// A token search value for `system|value` whose parts are values, never search syntax.
pub fn token_value(system: &str, value: &str) -> Result<String, Error> {
    if value.is_empty() {
        return Err(Error::invalid("value", "value is required"));
    }
    if system.contains(['|', ',', '\\', '$']) {
        return Err(Error::invalid(
            "system",
            "an identifier system is a URI without `|`, `,`, `\\` or `$`",
        ));
    }
    if value.contains('\\') || (system.is_empty() && value.contains('|')) {
        return Err(Error::invalid("value", "the value contains `\\` or `|`"));
    }
    let value = value.replace(',', "\\,");
    Ok(if system.is_empty() {
        value
    } else {
        format!("{system}|{value}")
    })
}

/// The one resource of `rtype` matching `params`, as `caller` may see it (a patient's lookup
/// runs inside their compartment, so it cannot tell whether anyone else matches).
pub async fn find_one(
    platform: &Platform,
    caller: &Caller,
    rtype: &str,
    params: Vec<(String, String)>,
) -> Result<Option<Version>, Error> {
    let mut q = SearchQuery::new(rtype, params);
    q.params.push(("_count".into(), "2".into()));
    let r = hospital_core::read::search(platform, caller, &mut q, None).await?;
    match r.matches.len() {
        0 => Ok(None),
        1 => Ok(r.matches.into_iter().next()),
        _ => Err(Error::new(
            hospital_core::codes::AMBIGUOUS_CONDITION,
            format!("more than one {rtype} matches"),
        )),
    }
}

fn day(s: &str) -> &str {
    s.get(..10).unwrap_or(s)
}

fn identifier_value<'a>(body: &'a Value, system: &str) -> &'a str {
    body.get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|i| i.get("system").and_then(Value::as_str) == Some(system))
        .and_then(|i| i.get("value").and_then(Value::as_str))
        .unwrap_or_default()
}

/// The active coverage of the patient named by `key` on `date`, and what was read to find it.
pub async fn active_on(
    platform: &Platform,
    caller: &Caller,
    key: &CoverageKey,
    date: chrono::NaiveDate,
) -> Result<(ActiveCoverage, Touched), Error> {
    coverage_on(platform, caller, key, date, WhenNoneInForce::NotFound).await
}

/// The coverage of the patient named by `key` in force on `date` or, when there is none and
/// `otherwise` says so, the one that ended most recently before it; and what was read.
pub async fn coverage_on(
    platform: &Platform,
    caller: &Caller,
    key: &CoverageKey,
    date: chrono::NaiveDate,
    otherwise: WhenNoneInForce,
) -> Result<(ActiveCoverage, Touched), Error> {
    let mut touched = Touched::default();
    let beneficiary_or_card = match key {
        CoverageKey::Patient(id) => {
            if !hospital_core::store::is_valid_id(id) {
                return Err(Error::invalid(
                    "patient_id",
                    "patient_id is not a valid FHIR id",
                ));
            }
            ("beneficiary".to_owned(), format!("Patient/{id}"))
        }
        CoverageKey::Card(card) => {
            BhytCardNumber::parse(card).map_err(|m| Error::invalid("card_number", m))?;
            (
                "identifier".to_owned(),
                token_value(INSURANCE_NUMBER, card)?,
            )
        }
        CoverageKey::NationalId(nid) => {
            Cccd::parse(nid).map_err(|m| Error::invalid("national_id", m))?;
            let patient = find_one(
                platform,
                caller,
                "Patient",
                vec![("identifier".into(), token_value(NATIONAL_ID, nid)?)],
            )
            .await?
            .ok_or_else(|| Error::not_found("no patient carries this personal ID"))?;
            touched.add(&patient);
            ("beneficiary".to_owned(), format!("Patient/{}", patient.id))
        }
    };
    let mut q = SearchQuery::new(
        "Coverage",
        vec![
            beneficiary_or_card,
            ("status".into(), "active".into()),
            ("_count".into(), "50".into()),
        ],
    );
    let found = hospital_core::read::search(platform, caller, &mut q, None).await?;
    let date = date.format("%Y-%m-%d").to_string();
    let mut chosen: Option<(Version, Value, bool)> = None;
    for v in found.matches {
        let body: Value = serde_json::from_str(&v.body)
            .map_err(|_| Error::internal("stored resource unreadable"))?;
        let period = |k: &str| {
            body.pointer(&format!("/period/{k}"))
                .and_then(Value::as_str)
                .map(|s| day(s).to_owned())
                .unwrap_or_default()
        };
        let (start, end) = (period("start"), period("end"));
        let in_force = (start.is_empty() || start <= date) && (end.is_empty() || end >= date);
        if in_force {
            chosen = Some((v, body, true));
            break;
        }
        let expired = !end.is_empty() && end < date;
        let later = match &chosen {
            Some((_, b, _)) => {
                end.as_str()
                    > b.pointer("/period/end")
                        .and_then(Value::as_str)
                        .map(day)
                        .unwrap_or("")
            }
            None => true,
        };
        if otherwise == WhenNoneInForce::LatestExpired && expired && later {
            chosen = Some((v, body, false));
        }
    }
    if let Some((v, body, in_force)) = chosen {
        let start = body
            .pointer("/period/start")
            .and_then(Value::as_str)
            .unwrap_or("");
        let end = body
            .pointer("/period/end")
            .and_then(Value::as_str)
            .unwrap_or("");
        let mut card = identifier_value(&body, INSURANCE_NUMBER).to_owned();
        if card.is_empty() {
            card = body
                .get("subscriberId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
        }
        let benefit_level = BhytCardNumber::parse(&card)
            .map(|c| c.benefit_level())
            .unwrap_or(0);
        let patient_id = body
            .pointer("/beneficiary/reference")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("Patient/"))
            .unwrap_or_default()
            .to_owned();
        let registered_facility = body
            .get("class")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|c| c.pointer("/type/coding/0/code").and_then(Value::as_str) == Some("KCBBD"))
            .and_then(|c| c.get("value").and_then(Value::as_str))
            .unwrap_or_default()
            .to_owned();
        touched.add(&v);
        return Ok((
            ActiveCoverage {
                patient_id,
                card_number: card,
                benefit_level,
                registered_facility,
                valid_from: day(start).to_owned(),
                valid_to: day(end).to_owned(),
                in_force,
                version: v,
            },
            touched,
        ));
    }
    Err(Error::not_found(match otherwise {
        WhenNoneInForce::NotFound => "no coverage is active on that date",
        WhenNoneInForce::LatestExpired => "no coverage is active on that date, nor ended before it",
    }))
}
