//! The price list, as FHIR `ChargeItemDefinition`s maintained by admins: for each service, drug
//! or supply, the hospital's price, the BHYT price (present only when BHYT covers it), and the
//! dates it is in force. One definition holds one price of one code for one period:
//!
//! ```json
//! {"resourceType": "ChargeItemDefinition", "status": "active",
//!  "url": "urn:hospital:price:KB.01", "version": "2026-01-01", "title": "Khám bệnh",
//!  "code": {"coding": [{"system": "urn:hospital:service-code", "code": "KB.01"}]},
//!  "effectivePeriod": {"start": "2026-01-01"},
//!  "extension": [{"url": "urn:hospital:charge-category", "valueCode": "service"}],
//!  "propertyGroup": [{"priceComponent": [
//!    {"type": "base", "code": {"coding": [{"system": "urn:hospital:price-kind", "code": "hospital"}]},
//!     "amount": {"value": 50600, "currency": "VND"}},
//!    {"type": "informational", "code": {"coding": [{"system": "urn:hospital:price-kind", "code": "bhyt"}]},
//!     "amount": {"value": 50600, "currency": "VND"}}]}]}
//! ```
//!
//! `url` is `urn:hospital:price:<code>` (billing fills it in) and `version` the first day in
//! force. Two active definitions of one code never overlap in time (checked under a lock on
//! the code), so "the price on a day" has one answer. A price change is a new definition from
//! a later day, after the old one is given its end: invoices copy the prices they were issued
//! with, so no change of the list alters a past invoice.

use crate::invoice::vnd;
use chrono::NaiveDate;
use hospital_core::store::SearchQuery;
use hospital_core::{Error, Tx, codes};
use serde_json::{Value, json};

pub const SERVICE_CODE: &str = "urn:hospital:service-code";
pub const PRICE_KIND: &str = "urn:hospital:price-kind";
pub const CATEGORY: &str = "urn:hospital:charge-category";
pub const URL_PREFIX: &str = "urn:hospital:price:";

/// What a price is for; the claims export puts drugs in XML2 and the rest in XML3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Service,
    Drug,
    Supply,
}

impl Category {
    pub fn parse(s: &str) -> Option<Category> {
        Some(match s {
            "service" => Category::Service,
            "drug" => Category::Drug,
            "supply" => Category::Supply,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Service => "service",
            Category::Drug => "drug",
            Category::Supply => "supply",
        }
    }
}

/// One price of the list, as billing uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    /// The ChargeItemDefinition's id.
    pub id: String,
    pub code: String,
    pub title: String,
    pub category: Category,
    /// The hospital's price per unit, đồng.
    pub price: i64,
    /// The BHYT price per unit, when BHYT covers the item.
    pub bhyt_price: Option<i64>,
    pub from: NaiveDate,
    /// The last day in force, if any.
    pub to: Option<NaiveDate>,
    /// `url|version`: how a charge names the definition it was priced by.
    pub canonical: String,
}

impl Price {
    pub fn in_force(&self, on: NaiveDate) -> bool {
        self.from <= on && self.to.is_none_or(|t| on <= t)
    }
}

fn day(s: Option<&str>, path: &str) -> Result<Option<NaiveDate>, Error> {
    match s {
        None => Ok(None),
        Some(s) => NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d")
            .map(Some)
            .map_err(|_| Error::invalid(path, "a day is YYYY-MM-DD")),
    }
}

/// The code a resource's `code` CodeableConcept gives in the hospital's service-code system.
pub fn service_code(body: &Value) -> Option<&str> {
    body.pointer("/code/coding")?
        .as_array()?
        .iter()
        .find(|c| c.get("system").and_then(Value::as_str) == Some(SERVICE_CODE))?
        .get("code")?
        .as_str()
}

fn component<'a>(body: &'a Value, kind: &str) -> Option<&'a Value> {
    body.get("propertyGroup")?
        .as_array()?
        .iter()
        .filter_map(|g| g.get("priceComponent").and_then(Value::as_array))
        .flatten()
        .find(|c| {
            c.pointer("/code/coding/0/system").and_then(Value::as_str) == Some(PRICE_KIND)
                && c.pointer("/code/coding/0/code").and_then(Value::as_str) == Some(kind)
        })
}

/// Reads a definition's price, refusing one that does not say it plainly.
pub fn parse(id: &str, body: &Value) -> Result<Price, Error> {
    let code = service_code(body).ok_or_else(|| {
        Error::invalid(
            "ChargeItemDefinition.code",
            format!("a price names its item by a code of {SERVICE_CODE}"),
        )
    })?;
    if code.is_empty() || code.len() > 64 || code.contains(['|', ',', '$', '\\', ' ']) {
        return Err(Error::invalid(
            "ChargeItemDefinition.code",
            "a service code is 1 to 64 characters without spaces, `|`, `,`, `$` or `\\`",
        ));
    }
    let category = body
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(CATEGORY))
        .and_then(|e| e.get("valueCode").and_then(Value::as_str))
        .and_then(Category::parse)
        .ok_or_else(|| {
            Error::invalid(
                "ChargeItemDefinition.extension",
                format!("say what the item is: {CATEGORY} = service | drug | supply"),
            )
        })?;
    let price = vnd(
        component(body, "hospital").and_then(|c| c.get("amount")),
        "ChargeItemDefinition.propertyGroup.priceComponent",
    )?
    .ok_or_else(|| {
        Error::invalid(
            "ChargeItemDefinition.propertyGroup",
            format!("a price has a base priceComponent of {PRICE_KIND} `hospital` in VND"),
        )
    })?;
    let bhyt_price = vnd(
        component(body, "bhyt").and_then(|c| c.get("amount")),
        "ChargeItemDefinition.propertyGroup.priceComponent",
    )?;
    if price == 0 {
        return Err(Error::invalid(
            "ChargeItemDefinition.propertyGroup",
            "a price is at least 1 đồng",
        ));
    }
    let from = day(
        body.pointer("/effectivePeriod/start")
            .and_then(Value::as_str),
        "ChargeItemDefinition.effectivePeriod.start",
    )?
    .ok_or_else(|| {
        Error::invalid(
            "ChargeItemDefinition.effectivePeriod.start",
            "a price says from which day it is in force",
        )
    })?;
    let to = day(
        body.pointer("/effectivePeriod/end").and_then(Value::as_str),
        "ChargeItemDefinition.effectivePeriod.end",
    )?;
    if to.is_some_and(|t| t < from) {
        return Err(Error::invalid(
            "ChargeItemDefinition.effectivePeriod",
            "the period ends before it starts",
        ));
    }
    let title = body
        .get("title")
        .and_then(Value::as_str)
        .or_else(|| {
            body.pointer("/code/coding/0/display")
                .and_then(Value::as_str)
        })
        .unwrap_or(code)
        .to_owned();
    Ok(Price {
        id: id.to_owned(),
        code: code.to_owned(),
        title,
        category,
        price,
        bhyt_price,
        from,
        to,
        canonical: format!("{URL_PREFIX}{code}|{from}"),
    })
}

/// The active definitions of `code`, read inside `tx`.
async fn of_code(tx: &mut Tx, code: &str) -> Result<Vec<Price>, Error> {
    let q = SearchQuery::new(
        "ChargeItemDefinition",
        vec![
            ("url".into(), format!("{URL_PREFIX}{code}")),
            ("status".into(), "active".into()),
            ("_count".into(), "1000".into()),
        ],
    );
    tx.search(&q)
        .await?
        .matches
        .iter()
        .map(|v| {
            let body: Value = serde_json::from_str(&v.body)
                .map_err(|_| Error::internal("stored price unreadable"))?;
            parse(&v.id, &body)
        })
        .collect()
}

/// The price of `code` in force on `on`.
pub async fn price_on(tx: &mut Tx, code: &str, on: NaiveDate) -> Result<Price, Error> {
    of_code(tx, code)
        .await?
        .into_iter()
        .find(|p| p.in_force(on))
        .ok_or_else(|| {
            Error::new(
                codes::BUSINESS_RULE,
                format!("the price list has no price of `{code}` in force on {on}"),
            )
        })
}

/// The rule on a definition's write: a plain price, its `url` and `version` filled in, and no
/// overlap with another active price of the same code.
pub async fn prepare(tx: &mut Tx, id: &str, body: &mut Value) -> Result<(), Error> {
    let p = parse(id, body)?;
    let url = format!("{URL_PREFIX}{}", p.code);
    match body.get("url").and_then(Value::as_str) {
        Some(u) if u != url => {
            return Err(Error::invalid(
                "ChargeItemDefinition.url",
                format!("a price's url is `{url}`, from its code"),
            ));
        }
        _ => body["url"] = json!(url),
    }
    body["version"] = json!(p.from.to_string());
    if body.get("status").and_then(Value::as_str) != Some("active") {
        return Ok(());
    }
    tx.lock(&format!("price:{}", p.code)).await?;
    if let Some(other) = of_code(tx, &p.code).await?.into_iter().find(|o| {
        o.id != id
            && o.from <= p.to.unwrap_or(NaiveDate::MAX)
            && p.from <= o.to.unwrap_or(NaiveDate::MAX)
    }) {
        return Err(Error::new(
            codes::BUSINESS_RULE,
            format!(
                "`{}` already has a price in force from {}{} (ChargeItemDefinition/{}): end it before the new one starts",
                p.code,
                other.from,
                other.to.map(|t| format!(" to {t}")).unwrap_or_default(),
                other.id
            ),
        ));
    }
    Ok(())
}

/// A definition's body for `hospital seed --demo` and tests.
pub fn definition(
    code: &str,
    title: &str,
    category: Category,
    price: i64,
    bhyt_price: Option<i64>,
    from: &str,
) -> Value {
    let mut components = vec![json!({"type": "base",
        "code": {"coding": [{"system": PRICE_KIND, "code": "hospital"}]},
        "amount": {"value": price, "currency": "VND"}})];
    if let Some(b) = bhyt_price {
        components.push(json!({"type": "informational",
            "code": {"coding": [{"system": PRICE_KIND, "code": "bhyt"}]},
            "amount": {"value": b, "currency": "VND"}}));
    }
    json!({"resourceType": "ChargeItemDefinition", "status": "active",
        "url": format!("{URL_PREFIX}{code}"), "title": title,
        "code": {"coding": [{"system": SERVICE_CODE, "code": code, "display": title}]},
        "effectivePeriod": {"start": from},
        "extension": [{"url": CATEGORY, "valueCode": category.as_str()}],
        "propertyGroup": [{"priceComponent": components}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_definition_reads_back_as_its_price() {
        let d = definition(
            "KB.01",
            "Khám bệnh",
            Category::Service,
            50_600,
            Some(50_600),
            "2026-01-01",
        );
        let p = parse("x", &d).unwrap();
        assert_eq!((p.price, p.bhyt_price), (50_600, Some(50_600)));
        assert_eq!(p.canonical, "urn:hospital:price:KB.01|2026-01-01");
        assert!(p.in_force(NaiveDate::from_ymd_opt(2026, 8, 1).unwrap()));
        assert!(!p.in_force(NaiveDate::from_ymd_opt(2025, 12, 31).unwrap()));
    }

    #[test]
    fn unclear_prices_are_refused() {
        let good = definition("X", "X", Category::Drug, 1000, None, "2026-01-01");
        let mut no_code = good.clone();
        no_code["code"] = json!({"text": "x"});
        let mut no_start = good.clone();
        no_start["effectivePeriod"] = json!({"end": "2026-01-01"});
        let mut backwards = good.clone();
        backwards["effectivePeriod"] = json!({"start": "2026-02-01", "end": "2026-01-01"});
        let mut fraction = good.clone();
        fraction["propertyGroup"][0]["priceComponent"][0]["amount"]["value"] = json!(10.5);
        let mut no_category = good.clone();
        no_category.as_object_mut().unwrap().remove("extension");
        for bad in [no_code, no_start, backwards, fraction, no_category] {
            assert!(parse("x", &bad).is_err(), "{bad}");
        }
    }
}
