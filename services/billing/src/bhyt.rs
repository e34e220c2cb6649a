//! Social health insurance (BHYT) cost sharing: how each line of a bill splits into the fund's
//! share, the patient's co-pay and the patient's self-pay. Every figure — the base salary, the
//! small-visit threshold, the co-pay ceiling, the share of each benefit level, the referral
//! ratios, the grace after a card expires — is dated data (`data/bhyt.json`), looked up for the
//! date of service; none is a constant here. Money is whole đồng, computed in `Decimal`; each
//! line is rounded, and the totals are the sums of the lines, so they always agree.

use chrono::{Duration, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Deserialize;
use std::collections::BTreeMap;

/// One figure in force from `from` until the next entry of its list.
#[derive(Debug, Clone, Deserialize)]
struct Dated<T> {
    from: NaiveDate,
    #[serde(flatten)]
    value: T,
}

#[derive(Debug, Clone, Deserialize)]
struct BaseSalary {
    monthly: Decimal,
}

#[derive(Debug, Clone, Deserialize)]
struct SmallVisit {
    share_of_base_salary: Decimal,
}

#[derive(Debug, Clone, Deserialize)]
struct CopayCeiling {
    months_of_base_salary: Decimal,
    continuous_years: u32,
}

#[derive(Debug, Clone, Deserialize)]
struct Levels {
    levels: BTreeMap<String, Decimal>,
}

#[derive(Debug, Clone, Deserialize)]
struct Ratio {
    route: String,
    class: String,
    level: String,
    ratio: Decimal,
}

#[derive(Debug, Clone, Deserialize)]
struct Ratios {
    ratios: Vec<Ratio>,
}

#[derive(Debug, Clone, Deserialize)]
struct Grace {
    days_after_expiry: i64,
}

/// The dated rules, as loaded.
#[derive(Debug, Clone, Deserialize)]
pub struct Rules {
    base_salary: Vec<Dated<BaseSalary>>,
    small_visit_threshold: Vec<Dated<SmallVisit>>,
    copay_ceiling: Vec<Dated<CopayCeiling>>,
    benefit_levels: Vec<Dated<Levels>>,
    referral_ratios: Vec<Dated<Ratios>>,
    expiry_grace: Vec<Dated<Grace>>,
}

/// The figures the project ships (`services/billing/data/bhyt.json`).
pub const SHIPPED: &str = include_str!("../data/bhyt.json");

fn in_force<'a, T>(list: &'a [Dated<T>], on: NaiveDate, what: &str) -> Result<&'a T, String> {
    list.iter()
        .filter(|d| d.from <= on)
        .max_by_key(|d| d.from)
        .map(|d| &d.value)
        .ok_or_else(|| format!("no {what} is in force on {on}"))
}

/// How the patient came: the route decides the referral ratio (`bhyt.md` rule 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The registered facility, a valid referral slip, a re-examination appointment.
    InNetwork,
    /// Always paid at the card level.
    Emergency,
    SelfReferred,
}

impl Route {
    fn key(self) -> &'static str {
        match self {
            Route::InNetwork => "in-network",
            Route::Emergency => "emergency",
            Route::SelfReferred => "self-referred",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Outpatient,
    Inpatient,
}

impl Class {
    fn key(self) -> &'static str {
        match self {
            Class::Outpatient => "outpatient",
            Class::Inpatient => "inpatient",
        }
    }
}

/// The facility's level (specialised: provincial and central hospitals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Basic,
    Specialised,
}

impl Level {
    fn key(self) -> &'static str {
        match self {
            Level::Basic => "basic",
            Level::Specialised => "specialised",
        }
    }
}

/// A BHYT card as the coverage records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// 15 characters: group code, benefit digit, province, social insurance number.
    pub number: String,
    pub valid_from: NaiveDate,
    pub valid_to: NaiveDate,
    /// Five consecutive years of cover (the portal reports it).
    pub five_years: bool,
    /// Co-payments made in this calendar year so far (the portal reports it).
    pub copaid_this_year: Decimal,
    /// When the card was shown, if after the care began: it pays only from then (rule 6).
    pub shown_on: Option<NaiveDate>,
}

/// Whether `number` is a BHYT card number (`^[A-Z]{2}[1-5][0-9]{2}[0-9]{10}$`).
pub fn is_card_number(number: &str) -> bool {
    let b = number.as_bytes();
    b.len() == 15
        && b[..2].iter().all(u8::is_ascii_uppercase)
        && (b'1'..=b'5').contains(&b[2])
        && b[3..].iter().all(u8::is_ascii_digit)
}

/// One encounter, as billing sees it.
#[derive(Debug, Clone)]
pub struct Visit {
    /// The day care began (admission, or the outpatient visit).
    pub start: NaiveDate,
    /// Discharge, for an inpatient stay.
    pub end: Option<NaiveDate>,
    pub class: Class,
    pub route: Route,
    pub level: Level,
}

/// One line of a bill, before splitting.
#[derive(Debug, Clone)]
pub struct Line {
    pub code: String,
    pub display: String,
    pub quantity: Decimal,
    /// The hospital's price per unit.
    pub price: Decimal,
    /// The BHYT price per unit, if the item is on the BHYT list.
    pub bhyt_price: Option<Decimal>,
    /// Requested by the patient beyond what is indicated (on request): self-pay.
    pub on_request: bool,
    /// The day of service (default: the visit's start).
    pub date: Option<NaiveDate>,
}

/// One line, split. `total = covered + self_pay`, `covered = fund + copay`,
/// `patient = copay + self_pay`, all whole đồng.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub total: Decimal,
    pub covered: Decimal,
    pub self_pay: Decimal,
    pub fund: Decimal,
    pub copay: Decimal,
    pub patient: Decimal,
    /// The share the fund paid of the covered cost, as a percentage (card level × referral
    /// ratio, or 100 under the small-visit or ceiling rules): the claims export's MUC_HUONG.
    pub percent: Decimal,
}

/// A whole bill, split: its lines, their sums, and why the shares are what they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bill {
    pub lines: Vec<Split>,
    pub total: Decimal,
    pub covered: Decimal,
    pub self_pay: Decimal,
    pub fund: Decimal,
    pub copay: Decimal,
    pub patient: Decimal,
    /// Each reason in words, for the invoice (e.g. "card expired on 2026-05-31: self-pay").
    pub reasons: Vec<String>,
}

fn dong(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
}

impl Rules {
    pub fn load(json: &str) -> Result<Rules, String> {
        let rules: Rules =
            serde_json::from_str(json).map_err(|e| format!("BHYT rules unreadable: {e}"))?;
        Ok(rules)
    }

    pub fn shipped() -> Rules {
        Rules::load(SHIPPED).expect("the shipped BHYT rules load")
    }

    /// The monthly base salary in force on `on`.
    pub fn base_salary(&self, on: NaiveDate) -> Result<Decimal, String> {
        Ok(in_force(&self.base_salary, on, "base salary")?.monthly)
    }

    /// The fund's share of covered cost for the card's benefit digit.
    pub fn card_share(&self, card: &str, on: NaiveDate) -> Result<Decimal, String> {
        if !is_card_number(card) {
            return Err(format!("`{card}` is not a BHYT card number"));
        }
        let levels = in_force(&self.benefit_levels, on, "benefit level table")?;
        levels
            .levels
            .get(&card[2..3])
            .copied()
            .ok_or_else(|| format!("no share for benefit level {}", &card[2..3]))
    }

    fn ratio(&self, visit: &Visit, on: NaiveDate) -> Result<Decimal, String> {
        let table = in_force(&self.referral_ratios, on, "referral ratio table")?;
        let fits = |r: &Ratio, class: &str, level: &str| {
            r.route == visit.route.key()
                && (r.class == "*" || r.class == class)
                && (r.level == "*" || r.level == level)
        };
        table
            .ratios
            .iter()
            .find(|r| fits(r, visit.class.key(), visit.level.key()))
            .map(|r| r.ratio)
            .ok_or_else(|| {
                format!(
                    "no referral ratio for {} {} care at a {} facility",
                    visit.route.key(),
                    visit.class.key(),
                    visit.level.key()
                )
            })
    }

    /// Whether the card pays on `day`: inside its validity, or — during a treatment that began
    /// while it was valid — until discharge, at most the grace days after expiry; and, if it
    /// was shown late, only from the day it was shown (emergencies excepted).
    fn card_pays(&self, card: &Card, visit: &Visit, day: NaiveDate) -> Result<bool, String> {
        if day < card.valid_from {
            return Ok(false);
        }
        if let Some(shown) = card.shown_on
            && day < shown
            && visit.route != Route::Emergency
        {
            return Ok(false);
        }
        if day <= card.valid_to {
            return Ok(true);
        }
        let grace = in_force(&self.expiry_grace, card.valid_to, "expiry grace")?;
        let began_valid = visit.start >= card.valid_from && visit.start <= card.valid_to;
        let until_discharge = visit.end.is_none_or(|end| day <= end);
        Ok(began_valid
            && until_discharge
            && day <= card.valid_to + Duration::days(grace.days_after_expiry))
    }

    /// Splits `lines` of `visit` for a patient holding `card` (or none).
    pub fn split(
        &self,
        visit: &Visit,
        card: Option<&Card>,
        lines: &[Line],
    ) -> Result<Bill, String> {
        let on = visit.start;
        let mut reasons = Vec::new();
        // The share and ratio of this visit, and whether the 100 % rules apply.
        let mut share = Decimal::ZERO;
        let mut ratio = Decimal::ZERO;
        if let Some(card) = card {
            share = self.card_share(&card.number, on)?;
            ratio = self.ratio(visit, on)?;
            if ratio < Decimal::ONE {
                reasons.push(format!(
                    "{} {} care at a {} facility: {}% of the card level",
                    visit.route.key(),
                    visit.class.key(),
                    visit.level.key(),
                    (ratio * Decimal::from(100)).normalize()
                ));
            }
            let ceiling = in_force(&self.copay_ceiling, on, "co-pay ceiling")?;
            if card.five_years
                && card.copaid_this_year > ceiling.months_of_base_salary * self.base_salary(on)?
            {
                share = Decimal::ONE;
                reasons.push(format!(
                    "{} years of cover and co-payments this year above {} months' base salary: the fund pays 100%",
                    ceiling.continuous_years, ceiling.months_of_base_salary
                ));
            }
        } else {
            reasons.push("no BHYT card: self-pay".to_owned());
        }
        // Which lines the card pays for, and their covered cost.
        let mut pays = Vec::with_capacity(lines.len());
        for l in lines {
            let day = l.date.unwrap_or(on);
            let paid = match card {
                Some(c) => self.card_pays(c, visit, day)?,
                None => false,
            };
            pays.push(paid);
        }
        if let Some(c) = card {
            if pays.iter().any(|p| !p) {
                let why = if lines
                    .iter()
                    .zip(&pays)
                    .any(|(l, p)| !p && c.shown_on.is_some_and(|s| l.date.unwrap_or(on) < s))
                {
                    format!(
                        "card shown on {}: care before then is self-pay",
                        c.shown_on.map(|d| d.to_string()).unwrap_or_default()
                    )
                } else if lines
                    .iter()
                    .zip(&pays)
                    .any(|(l, p)| !p && l.date.unwrap_or(on) > c.valid_to)
                {
                    let grace = in_force(&self.expiry_grace, c.valid_to, "expiry grace")?;
                    let last = c.valid_to + Duration::days(grace.days_after_expiry);
                    if visit.start >= c.valid_from && visit.start <= c.valid_to {
                        format!(
                            "card {} expired on {} during the stay: it pays until discharge, at most {} days after (to {last}); care after that is self-pay",
                            mask(&c.number),
                            c.valid_to,
                            grace.days_after_expiry
                        )
                    } else {
                        format!(
                            "card {} expired on {}: self-pay (the {} days' grace after expiry is only for a treatment begun while the card was valid)",
                            mask(&c.number),
                            c.valid_to,
                            grace.days_after_expiry
                        )
                    }
                } else {
                    format!(
                        "card {} not yet valid on the day of service (valid from {}): self-pay",
                        mask(&c.number),
                        c.valid_from
                    )
                };
                reasons.push(why);
            } else if lines.iter().any(|l| l.date.unwrap_or(on) > c.valid_to) {
                let grace = in_force(&self.expiry_grace, c.valid_to, "expiry grace")?;
                reasons.push(format!(
                    "card {} expired on {} during the stay: it pays until discharge, at most {} days after (rule 6 grace)",
                    mask(&c.number),
                    c.valid_to,
                    grace.days_after_expiry
                ));
            }
        }
        let covered_of = |l: &Line, paid: bool| -> Decimal {
            match (paid && !l.on_request, l.bhyt_price) {
                (true, Some(p)) => dong(l.quantity * p.min(l.price)),
                _ => Decimal::ZERO,
            }
        };
        let covered_total: Decimal = lines
            .iter()
            .zip(&pays)
            .map(|(l, p)| covered_of(l, *p))
            .sum();
        let mut percent = share * ratio;
        if card.is_some() && visit.class == Class::Outpatient && ratio == Decimal::ONE {
            let small = in_force(&self.small_visit_threshold, on, "small-visit threshold")?;
            let threshold = dong(small.share_of_base_salary * self.base_salary(on)?);
            if covered_total > Decimal::ZERO && covered_total < threshold {
                percent = Decimal::ONE;
                reasons.push(format!(
                    "covered cost {} below {} (15% of the base salary): the fund pays 100%",
                    vnd(covered_total),
                    vnd(threshold)
                ));
            }
        }
        let mut bill = Bill {
            lines: Vec::with_capacity(lines.len()),
            total: Decimal::ZERO,
            covered: Decimal::ZERO,
            self_pay: Decimal::ZERO,
            fund: Decimal::ZERO,
            copay: Decimal::ZERO,
            patient: Decimal::ZERO,
            reasons,
        };
        for (l, paid) in lines.iter().zip(&pays) {
            let total = dong(l.quantity * l.price);
            let covered = covered_of(l, *paid);
            let self_pay = total - covered;
            let fund = dong(covered * percent);
            let copay = covered - fund;
            let s = Split {
                total,
                covered,
                self_pay,
                fund,
                copay,
                patient: copay + self_pay,
                percent: if covered > Decimal::ZERO {
                    (percent * Decimal::from(100)).normalize()
                } else {
                    Decimal::ZERO
                },
            };
            bill.total += s.total;
            bill.covered += s.covered;
            bill.self_pay += s.self_pay;
            bill.fund += s.fund;
            bill.copay += s.copay;
            bill.patient += s.patient;
            bill.lines.push(s);
        }
        Ok(bill)
    }
}

/// A card number with its social insurance number hidden (`DN4 51 ******6789`).
pub fn mask(card: &str) -> String {
    if card.len() != 15 || !card.is_ascii() {
        return "***".into();
    }
    format!("{} {} ******{}", &card[..3], &card[3..5], &card[11..])
}

/// An amount the Vietnamese way: `250.000 ₫`.
pub fn vnd(amount: Decimal) -> String {
    let whole = dong(amount).abs().to_string();
    let mut out = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    let sign = if amount.is_sign_negative() && !dong(amount).is_zero() {
        "-"
    } else {
        ""
    };
    format!("{sign}{out} ₫")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn card(number: &str) -> Card {
        Card {
            number: number.into(),
            valid_from: day("2026-01-01"),
            valid_to: day("2026-12-31"),
            five_years: false,
            copaid_this_year: Decimal::ZERO,
            shown_on: None,
        }
    }

    fn outpatient(on: &str) -> Visit {
        Visit {
            start: day(on),
            end: None,
            class: Class::Outpatient,
            route: Route::InNetwork,
            level: Level::Specialised,
        }
    }

    fn covered(amount: Decimal) -> Line {
        Line {
            code: "K01".into(),
            display: "Khám bệnh".into(),
            quantity: Decimal::ONE,
            price: amount,
            bhyt_price: Some(amount),
            on_request: false,
            date: None,
        }
    }

    /// Covered, self-pay, fund, patient.
    type Shares = (Decimal, Decimal, Decimal, Decimal);

    fn fund_and_patient(b: &Bill) -> Shares {
        (b.covered, b.self_pay, b.fund, b.patient)
    }

    /// The worked examples of `bhyt.md`, date of service 2026-08-01.
    #[test]
    fn every_worked_example_splits_as_published() {
        let r = Rules::shipped();
        let on = "2026-08-01";
        let cases: Vec<(&str, Visit, Vec<Line>, Shares)> = vec![
            (
                "DN4790123456789",
                outpatient(on),
                vec![covered(d("1000000"))],
                (d("1000000"), d("0"), d("800000"), d("200000")),
            ),
            (
                "HT3510123456789",
                outpatient(on),
                vec![covered(d("1000000"))],
                (d("1000000"), d("0"), d("950000"), d("50000")),
            ),
            (
                "DN4510123456789",
                outpatient(on),
                vec![covered(d("300000"))],
                (d("300000"), d("0"), d("300000"), d("0")),
            ),
            (
                "DN4510123456789",
                outpatient(on),
                vec![
                    covered(d("1000000")),
                    Line {
                        on_request: true,
                        ..covered(d("500000"))
                    },
                ],
                (d("1000000"), d("500000"), d("800000"), d("700000")),
            ),
            (
                "DN4510123456789",
                Visit {
                    class: Class::Inpatient,
                    route: Route::SelfReferred,
                    end: Some(day("2026-08-05")),
                    ..outpatient(on)
                },
                vec![covered(d("10000000"))],
                (d("10000000"), d("0"), d("3200000"), d("6800000")),
            ),
            (
                "TE1510123456789",
                outpatient(on),
                vec![covered(d("2000000"))],
                (d("2000000"), d("0"), d("2000000"), d("0")),
            ),
        ];
        for (number, visit, lines, expected) in cases {
            let b = r.split(&visit, Some(&card(number)), &lines).unwrap();
            assert_eq!(fund_and_patient(&b), expected, "{number}: {b:#?}");
            assert_eq!(b.covered, b.fund + b.copay);
            assert_eq!(b.patient, b.copay + b.self_pay);
        }
        // The self-referred inpatient line carries its effective percentage: 80 × 40 % = 32.
        let b = r
            .split(
                &Visit {
                    class: Class::Inpatient,
                    route: Route::SelfReferred,
                    ..outpatient(on)
                },
                Some(&card("DN4510123456789")),
                &[covered(d("10000000"))],
            )
            .unwrap();
        assert_eq!(b.lines[0].percent, d("32"));
    }

    #[test]
    fn the_small_visit_threshold_follows_the_base_salary_in_force() {
        let r = Rules::shipped();
        let c = card("DN4510123456789");
        // 360,000: below 15 % of 2,530,000 (379,500) from 2026-07-01, above 351,000 before.
        let line = [covered(d("360000"))];
        let before = r.split(&outpatient("2026-06-30"), Some(&c), &line).unwrap();
        let after = r.split(&outpatient("2026-07-01"), Some(&c), &line).unwrap();
        assert_eq!((before.fund, before.patient), (d("288000"), d("72000")));
        assert_eq!((after.fund, after.patient), (d("360000"), d("0")));
        assert!(
            after.reasons.iter().any(|r| r.contains("379.500 ₫")),
            "{:?}",
            after.reasons
        );
    }

    #[test]
    fn a_card_expiring_during_a_stay_pays_until_discharge_within_the_grace() {
        let r = Rules::shipped();
        let c = Card {
            valid_to: day("2026-08-03"),
            ..card("DN4510123456789")
        };
        let stay = |end: &str| Visit {
            start: day("2026-08-01"),
            end: Some(day(end)),
            class: Class::Inpatient,
            route: Route::InNetwork,
            level: Level::Specialised,
        };
        let on = |when: &str| Line {
            date: Some(day(when)),
            ..covered(d("1000000"))
        };
        // Discharged 10 days after expiry: every day is paid at the card level.
        let b = r
            .split(
                &stay("2026-08-13"),
                Some(&c),
                &[on("2026-08-02"), on("2026-08-13")],
            )
            .unwrap();
        assert_eq!(b.fund, d("1600000"));
        assert!(
            b.reasons.iter().any(|r| r.contains("until discharge")),
            "{:?}",
            b.reasons
        );
        // A stay running past the 15 days: the days after the grace are self-pay.
        let b = r
            .split(
                &stay("2026-08-25"),
                Some(&c),
                &[on("2026-08-18"), on("2026-08-19")],
            )
            .unwrap();
        assert_eq!((b.fund, b.self_pay), (d("800000"), d("1000000")));
        assert_eq!(
            b.reasons,
            vec![
                "card DN4 51 ******6789 expired on 2026-08-03 during the stay: it pays until discharge, at most 15 days after (to 2026-08-18); care after that is self-pay"
            ]
        );
        // An outpatient visit after expiry is self-pay, with the reason.
        let b = r
            .split(&outpatient("2026-08-05"), Some(&c), &[covered(d("500000"))])
            .unwrap();
        assert_eq!(
            (b.fund, b.self_pay, b.patient),
            (d("0"), d("500000"), d("500000"))
        );
        assert_eq!(
            b.reasons,
            vec![
                "card DN4 51 ******6789 expired on 2026-08-03: self-pay (the 15 days' grace after expiry is only for a treatment begun while the card was valid)"
            ]
        );
        // A card shown before it is valid.
        let b = r
            .split(
                &outpatient("2025-12-31"),
                Some(&card("DN4510123456789")),
                &[covered(d("500000"))],
            )
            .unwrap();
        assert_eq!(
            b.reasons,
            vec![
                "card DN4 51 ******6789 not yet valid on the day of service (valid from 2026-01-01): self-pay"
            ]
        );
    }

    #[test]
    fn the_copay_ceiling_and_a_late_card_are_honoured() {
        let r = Rules::shipped();
        let over = Card {
            five_years: true,
            copaid_this_year: d("15180001"),
            ..card("DN4510123456789")
        };
        let b = r
            .split(
                &outpatient("2026-08-01"),
                Some(&over),
                &[covered(d("1000000"))],
            )
            .unwrap();
        assert_eq!(b.fund, d("1000000"));
        let late = Card {
            shown_on: Some(day("2026-08-03")),
            ..card("DN4510123456789")
        };
        let stay = Visit {
            start: day("2026-08-01"),
            end: Some(day("2026-08-05")),
            class: Class::Inpatient,
            route: Route::InNetwork,
            level: Level::Specialised,
        };
        let on = |when: &str| Line {
            date: Some(day(when)),
            ..covered(d("1000000"))
        };
        let b = r
            .split(&stay, Some(&late), &[on("2026-08-02"), on("2026-08-03")])
            .unwrap();
        assert_eq!((b.fund, b.self_pay), (d("800000"), d("1000000")));
        let emergency = Visit {
            route: Route::Emergency,
            ..stay
        };
        let b = r
            .split(&emergency, Some(&late), &[on("2026-08-02")])
            .unwrap();
        assert_eq!(b.fund, d("800000"), "an emergency is paid from the start");
    }

    #[test]
    fn lines_round_to_whole_dong_and_the_totals_are_their_sums() {
        let r = Rules::shipped();
        let lines: Vec<Line> = [d("33333.5"), d("12345.49"), d("99999.99")]
            .into_iter()
            .map(|p| Line {
                quantity: d("3"),
                ..covered(p)
            })
            .collect();
        let b = r
            .split(
                &outpatient("2026-08-01"),
                Some(&card("HT3510123456789")),
                &lines,
            )
            .unwrap();
        for l in &b.lines {
            assert_eq!(l.fund, l.fund.trunc());
            assert_eq!(l.total, l.covered + l.self_pay);
        }
        let sum = |f: fn(&Split) -> Decimal| b.lines.iter().map(f).sum::<Decimal>();
        assert_eq!(b.fund, sum(|l| l.fund));
        assert_eq!(b.patient, sum(|l| l.patient));
        assert_eq!(b.total, b.fund + b.patient);
    }

    #[test]
    fn no_card_is_self_pay_and_card_numbers_are_checked() {
        let r = Rules::shipped();
        let b = r
            .split(&outpatient("2026-08-01"), None, &[covered(d("250000"))])
            .unwrap();
        assert_eq!((b.fund, b.patient), (d("0"), d("250000")));
        assert!(is_card_number("DN4510123456789"));
        for bad in [
            "DN6510123456789",
            "dn4510123456789",
            "DN451012345678",
            "DN45101234567890",
        ] {
            assert!(!is_card_number(bad), "{bad}");
        }
        assert_eq!(vnd(d("250000")), "250.000 ₫");
        assert_eq!(vnd(d("1000")), "1.000 ₫");
        assert_eq!(vnd(d("999")), "999 ₫");
        assert_eq!(mask("DN4510123456789"), "DN4 51 ******6789");
    }
}
