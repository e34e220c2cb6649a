//! Issuing invoices: an encounter's billable charges, priced from the list in force on each
//! day of service and split by [`bhyt`] into the fund's share, the patient's co-pay and
//! self-pay, with the patient's coverage asked of the records service over gRPC. Or a deposit
//! (tạm ứng): one self-pay amount. Every door — `POST /fhir/Invoice/$issue`, gRPC
//! `CreateInvoice` — comes here.
//!
//! An issued invoice is never edited: a correction is [`Invoicing::cancel`] (the invoice kept,
//! `cancelled`, with its reason; its charges billable again) and a new invoice.
//!
//! Each line keeps what the Decision 130 claims export needs, so that export is a projection:
//! the item's code, title and category (drug → XML2, else XML3), quantity, unit price, BHYT unit
//! price, day of service, the fund's percentage (MUC_HUONG) and the amounts — `total` (base),
//! `bhyt-fund` (deduction), `copay`, `self-pay`, `covered` (informational), all in
//! `urn:hospital:price-kind`. The invoice's `totalGross` is the sum of the lines' totals and
//! `totalNet` (what the patient pays) is `totalGross` less the fund's share.

use crate::bhyt::{self, Card, Class, Level, Line, Route, Visit};
use crate::charges;
use crate::invoice::{IDEMPOTENCY_KEY, identifier};
use crate::prices::{self, PRICE_KIND, Price};
use chrono::NaiveDate;
use hospital_core::auth::{Action, Role};
use hospital_core::store::{SearchQuery, Version};
use hospital_core::{Caller, Error, Platform, Touched, Tx, authorize, codes};
use hospital_grpc::outbound::{Idempotency, Outbound};
use hospital_proto::records::v1 as records;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};

pub const KIND: &str = "urn:hospital:invoice-kind";
pub const ENCOUNTER: &str = "urn:hospital:invoice:encounter";
pub const COVERAGE: &str = "urn:hospital:invoice:coverage";
pub const LINE: &str = "urn:hospital:invoice:line";
pub const ROUTE: &str = "urn:hospital:bhyt-route";

/// How a coverage is looked up: by the invoice's patient, or by what the cashier was shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoverageKey {
    Patient(String),
    /// A BHYT card number the cashier was shown.
    Card(String),
    /// The 12-digit personal ID shown instead of the card (accepted since 2025).
    PersonalId(String),
}

impl CoverageKey {
    /// What the cashier was shown, checked for its form: `None` for the patient's own key.
    fn shown(&self) -> Option<&'static str> {
        match self {
            CoverageKey::Patient(_) => None,
            CoverageKey::Card(_) => Some("BHYT card"),
            CoverageKey::PersonalId(_) => Some("personal ID"),
        }
    }

    /// A card number or personal ID as the cashier typed it: upper case, no spaces; refused
    /// unless it has the form of one (`path` names the parameter).
    pub fn card(number: &str, path: &str) -> Result<CoverageKey, Error> {
        let n: String = number
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase();
        if bhyt::is_card_number(&n) {
            Ok(CoverageKey::Card(n))
        } else {
            Err(Error::invalid(
                path,
                "a BHYT card number is 15 characters: 2 letters, a benefit digit 1-5, 12 digits",
            ))
        }
    }

    pub fn personal_id(id: &str, path: &str) -> Result<CoverageKey, Error> {
        let n: String = id.chars().filter(|c| !c.is_whitespace()).collect();
        if n.len() == 12 && n.bytes().all(|b| b.is_ascii_digit()) {
            Ok(CoverageKey::PersonalId(n))
        } else {
            Err(Error::invalid(path, "a personal ID is 12 digits"))
        }
    }
}

/// Where a patient's coverage comes from: the records service, over gRPC ([`RecordsCoverage`]).
#[async_trait::async_trait]
pub trait CoverageSource: Send + Sync {
    /// The BHYT coverage `key` names in force on `on` or, when none is, the one that expired
    /// last before it (`in_force` false); none when there is neither.
    async fn latest(&self, key: &CoverageKey, on: NaiveDate) -> Result<Option<Covered>, Error>;
}

/// Coverage asked of the records service (`hospital.records.v1.Records/GetActiveCoverage`).
pub struct RecordsCoverage(pub Outbound);

/// A coverage as the records service reports it, for billing.
pub fn covered(
    id: &str,
    patient_id: &str,
    card_number: &str,
    valid_from: &str,
    valid_to: &str,
    in_force: bool,
) -> Covered {
    // An open end is treated as far in the future.
    let from = ymd(valid_from).unwrap_or(NaiveDate::MIN);
    let to = ymd(valid_to).unwrap_or(NaiveDate::MAX - chrono::Duration::days(400));
    Covered {
        coverage_id: id.to_owned(),
        patient_id: patient_id.to_owned(),
        in_force,
        card: Card {
            number: card_number.to_owned(),
            valid_from: from,
            valid_to: to,
            // The portal reports these; until it is wired, the conservative answer.
            five_years: false,
            copaid_this_year: Decimal::ZERO,
            shown_on: None,
        },
    }
}

#[async_trait::async_trait]
impl CoverageSource for RecordsCoverage {
    async fn latest(&self, key: &CoverageKey, on: NaiveDate) -> Result<Option<Covered>, Error> {
        use records::get_active_coverage_request::Patient;
        let msg = records::GetActiveCoverageRequest {
            patient: Some(match key {
                CoverageKey::Patient(p) => Patient::PatientId(p.clone()),
                CoverageKey::Card(c) => Patient::CardNumber(c.clone()),
                CoverageKey::PersonalId(n) => Patient::NationalId(n.clone()),
            }),
            date: on.to_string(),
            include_expired: true,
        };
        let r = self
            .0
            .call(msg, None, Idempotency::Safe, |ch, req| async move {
                records::records_client::RecordsClient::new(ch)
                    .get_active_coverage(req)
                    .await
            })
            .await;
        match r {
            Ok(c) => Ok(Some(covered(
                &c.id,
                &c.patient_id,
                &c.card_number,
                &c.valid_from,
                &c.valid_to,
                c.in_force,
            ))),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) if s.code() == tonic::Code::InvalidArgument => Err(Error::invalid(
                "coverage",
                format!("the records service refused the lookup: {}", s.message()),
            )),
            Err(s) => Err(Error::new(
                codes::DEPENDENCY_UNAVAILABLE,
                format!(
                    "the records service did not say the patient's coverage: {}",
                    s.message()
                ),
            )),
        }
    }
}

/// Everything invoicing needs.
#[derive(Clone)]
pub struct Invoicing {
    pub platform: Platform,
    pub coverage: std::sync::Arc<dyn CoverageSource>,
    pub rules: std::sync::Arc<bhyt::Rules>,
    /// The hospital's level, which decides the referral ratios.
    pub level: Level,
}

/// A coverage as billing sees it.
#[derive(Debug, Clone)]
pub struct Covered {
    pub coverage_id: String,
    /// Whose it is.
    pub patient_id: String,
    /// In force on the day asked (else it expired before: the BHYT rules say what it pays).
    pub in_force: bool,
    pub card: Card,
}

/// What to invoice.
#[derive(Debug, Clone)]
pub enum Request {
    /// The billable charges of an encounter (after adding `new_charges`, ChargeItem bodies),
    /// with the coverage of the card or personal ID the cashier was `shown`, if any (else the
    /// patient's own).
    Encounter {
        encounter: String,
        new_charges: Vec<Value>,
        shown: Option<CoverageKey>,
    },
    /// A deposit of `amount` đồng.
    Deposit { patient: String, amount: i64 },
    /// Services paid before they are given, self-pay at the hospital's price (a
    /// direct-to-patient video visit): `(code, quantity, day)` of the price list.
    Prepaid {
        patient: String,
        items: Vec<(String, i64, NaiveDate)>,
        /// The telemedicine Appointment it prepays, told when a payment settles it.
        appointment: Option<String>,
    },
}

fn ymd(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d").ok()
}

fn whole(d: Decimal) -> i64 {
    d.to_i64().unwrap_or(0)
}

fn reference_id<'a>(body: &'a Value, pointer: &str, rtype: &str) -> Option<&'a str> {
    body.pointer(pointer)?
        .as_str()?
        .strip_prefix(rtype)?
        .strip_prefix('/')
}

/// The visit an Encounter is, for the BHYT rules.
pub fn visit_of(encounter: &Value, level: Level) -> Result<Visit, Error> {
    let start = encounter
        .pointer("/period/start")
        .and_then(Value::as_str)
        .and_then(ymd)
        .ok_or_else(|| {
            Error::new(
                codes::BUSINESS_RULE,
                "the encounter has no start (period.start): nothing can be priced",
            )
        })?;
    let end = encounter
        .pointer("/period/end")
        .and_then(Value::as_str)
        .and_then(ymd);
    let class = match encounter.pointer("/class/code").and_then(Value::as_str) {
        Some("IMP" | "ACUTE" | "NONAC") => Class::Inpatient,
        _ => Class::Outpatient,
    };
    let emergency = encounter.pointer("/class/code").and_then(Value::as_str) == Some("EMER")
        || encounter
            .pointer("/priority/coding/0/code")
            .and_then(Value::as_str)
            == Some("EM");
    let stated = encounter
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(ROUTE))
        .and_then(|e| e.get("valueCode").and_then(Value::as_str));
    let route = match (emergency, stated) {
        (true, _) | (_, Some("emergency")) => Route::Emergency,
        (_, Some("self-referred")) => Route::SelfReferred,
        _ => Route::InNetwork,
    };
    Ok(Visit {
        start,
        end,
        class,
        route,
        level,
    })
}

impl Invoicing {
    /// Issues the invoice `request` asks for, as `caller` (a cashier, or a service): once per
    /// `key` when one is given (a retry returns the invoice the first call issued).
    pub async fn issue(
        &self,
        caller: &Caller,
        request: &Request,
        key: Option<&str>,
    ) -> Result<(Version, Touched), Error> {
        if !matches!(caller.principal.role, Role::Cashier | Role::Service) {
            return Err(Error::forbidden("invoices are issued by a cashier"));
        }
        authorize(caller, Action::Write, "Invoice")?;
        if let Some(k) = key
            && (k.is_empty() || k.len() > 128 || k.contains([',', '|', '\\', '$']))
        {
            return Err(Error::invalid(
                "idempotency_key",
                "an idempotency key is 1 to 128 characters without `,`, `|`, `\\` or `$`",
            ));
        }
        if let Some(found) = self.issued_for(key).await? {
            return Ok((found.clone(), Touched::of(&[found])));
        }
        // What the invoice covers, read (and the coverage asked) before the transaction.
        let (patient, visit, encounter_id) = match request {
            Request::Encounter { encounter, .. } => {
                let v = self
                    .platform
                    .store()
                    .read("Encounter", encounter)
                    .await
                    .map_err(|_| {
                        Error::invalid("encounter", format!("Encounter/{encounter} is not known"))
                    })?;
                let body: Value = serde_json::from_str(&v.body)
                    .map_err(|_| Error::internal("stored encounter unreadable"))?;
                let patient = reference_id(&body, "/subject/reference", "Patient")
                    .ok_or_else(|| {
                        Error::new(codes::BUSINESS_RULE, "the encounter names no patient")
                    })?
                    .to_owned();
                (
                    patient,
                    Some(visit_of(&body, self.level)?),
                    Some(encounter.clone()),
                )
            }
            Request::Deposit { patient, .. } | Request::Prepaid { patient, .. } => {
                if let Request::Deposit { amount, .. } = request
                    && (*amount <= 0 || *amount > crate::ledger::MAX_AMOUNT)
                {
                    return Err(Error::invalid("amount", "a deposit is 1 to 10¹² đồng"));
                }
                if let Request::Prepaid { items, .. } = request
                    && (items.is_empty()
                        || items.len() > 20
                        || items.iter().any(|(_, q, _)| !(1..=100).contains(q)))
                {
                    return Err(Error::invalid(
                        "charges",
                        "a prepayment is 1 to 20 items of 1 to 100 units",
                    ));
                }
                self.platform
                    .store()
                    .read("Patient", patient)
                    .await
                    .map_err(|_| {
                        Error::invalid("patient", format!("Patient/{patient} is not known"))
                    })?;
                (patient.clone(), None, None)
            }
        };
        let covered = match (request, &visit) {
            (Request::Encounter { shown, .. }, Some(v)) => {
                self.coverage_of(&patient, shown.as_ref(), v.start).await?
            }
            _ => None,
        };
        let mut tx = self.platform.begin(caller).await?;
        let mut touched = Touched::default();
        let lock = match &encounter_id {
            Some(e) => format!("invoice-of:Encounter/{e}"),
            None => format!("invoice-of:Patient/{patient}"),
        };
        tx.lock(&lock).await?;
        let body = match (request, &visit) {
            (Request::Encounter { new_charges, .. }, Some(visit)) => {
                let encounter = encounter_id.as_deref().unwrap_or_default();
                for c in new_charges {
                    let mut c = c.clone();
                    c["resourceType"] = json!("ChargeItem");
                    c["subject"] = json!({"reference": format!("Patient/{patient}")});
                    c["context"] = json!({"reference": format!("Encounter/{encounter}")});
                    if c.get("status").is_none() {
                        c["status"] = json!("billable");
                    }
                    let w = self
                        .platform
                        .writer()
                        .create_by_service(&mut tx, "ChargeItem", c)
                        .await?;
                    touched.add(&w.version);
                }
                let charges = billable(&mut tx, encounter).await?;
                if charges.is_empty() {
                    return Err(Error::new(
                        codes::BUSINESS_RULE,
                        format!("Encounter/{encounter} has no billable charges"),
                    ));
                }
                let body = self
                    .encounter_invoice(
                        &mut tx,
                        &patient,
                        encounter,
                        visit,
                        covered.as_ref(),
                        &charges,
                    )
                    .await?;
                for (v, mut c) in charges {
                    c["status"] = json!("billed");
                    let w = self
                        .platform
                        .writer()
                        .update_by_service(&mut tx, "ChargeItem", &v.id, c, Some(v.version_id))
                        .await?;
                    touched.add(&w.version);
                }
                body
            }
            (Request::Deposit { amount, .. }, _) => deposit_invoice(&patient, *amount),
            (
                Request::Prepaid {
                    items, appointment, ..
                },
                _,
            ) => {
                let mut priced = Vec::with_capacity(items.len());
                for (code, qty, day) in items {
                    priced.push((prices::price_on(&mut tx, code, *day).await?, *qty, *day));
                }
                let mut body = prepaid_invoice(&patient, &priced);
                if let Some(a) = appointment {
                    crate::invoice::set_prepays(&mut body, a);
                }
                body
            }
            _ => return Err(Error::internal("an encounter invoice without its visit")),
        };
        let mut body = body;
        if let Some(k) = key {
            body["identifier"] = json!([{"system": IDEMPOTENCY_KEY, "value": k}]);
        }
        let written = match self
            .platform
            .writer()
            .create_by_service(&mut tx, "Invoice", body)
            .await
        {
            Ok(w) => w,
            // The same key, issued concurrently: that call's invoice is the answer.
            Err(e) if e.code == codes::DUPLICATE_IDENTIFIER && key.is_some() => {
                tx.rollback().await?;
                // Looked up inside a transaction: on SQLite the concurrent call's invoice may
                // be in the same group commit, not yet visible outside it; committing the
                // look waits until it is durable, so the answer names a stored invoice.
                let mut look = self.platform.begin(caller).await?;
                let found = issued_in(&mut look, key).await?;
                look.commit().await?;
                if let Some(found) = found {
                    return Ok((found.clone(), Touched::of(&[found])));
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        touched.add(&written.version);
        tx.commit().await?;
        hospital_host::metrics::INVOICES_ISSUED.inc(&[]);
        Ok((written.version, touched))
    }

    /// The coverage the invoice of `patient`'s care begun on `start` is split by: that of the
    /// card or personal ID the cashier was `shown` — refused when it is another patient's or
    /// records knows none — or else the patient's own; in force that day, or the one that
    /// expired last before it (the BHYT rules bill it as self-pay, or within the grace of a
    /// stay begun while it was valid, saying so on the invoice).
    async fn coverage_of(
        &self,
        patient: &str,
        shown: Option<&CoverageKey>,
        start: NaiveDate,
    ) -> Result<Option<Covered>, Error> {
        let own = CoverageKey::Patient(patient.to_owned());
        let key = shown.unwrap_or(&own);
        let found = self.coverage.latest(key, start).await?;
        let Some(what) = key.shown() else {
            return Ok(found);
        };
        match found {
            None => Err(Error::new(
                crate::codes::NO_COVERAGE_FOR_WHAT_WAS_SHOWN,
                format!("the records service knows no BHYT coverage for the {what} shown"),
            )),
            Some(c) if c.patient_id != patient => Err(Error::new(
                crate::codes::COVERAGE_OF_ANOTHER_PATIENT,
                format!("the {what} shown belongs to another patient, not to Patient/{patient}"),
            )),
            Some(c) => Ok(Some(c)),
        }
    }

    /// The invoice issued earlier under `key`.
    async fn issued_for(&self, key: Option<&str>) -> Result<Option<Version>, Error> {
        let Some(q) = by_key(key) else {
            return Ok(None);
        };
        Ok(self
            .platform
            .store()
            .search(&q)
            .await?
            .matches
            .into_iter()
            .next())
    }

    async fn encounter_invoice(
        &self,
        tx: &mut Tx,
        patient: &str,
        encounter: &str,
        visit: &Visit,
        covered: Option<&Covered>,
        charges: &[(Version, Value)],
    ) -> Result<Value, Error> {
        let mut priced: Vec<(Price, i64, NaiveDate)> = Vec::with_capacity(charges.len());
        let mut lines = Vec::with_capacity(charges.len());
        // One look at the price list per item and day, however many charges repeat it.
        let mut known: std::collections::HashMap<(String, NaiveDate), Price> =
            std::collections::HashMap::new();
        for (_, c) in charges {
            let code = prices::service_code(c).unwrap_or_default().to_owned();
            let day = charges::occurrence(c)?;
            let qty = charges::quantity(c)?;
            let price = match known.get(&(code.clone(), day)) {
                Some(p) => p.clone(),
                None => {
                    let p = prices::price_on(tx, &code, day).await?;
                    known.insert((code.clone(), day), p.clone());
                    p
                }
            };
            lines.push(Line {
                code: code.clone(),
                display: price.title.clone(),
                quantity: Decimal::from(qty),
                price: Decimal::from(price.price),
                bhyt_price: price.bhyt_price.map(Decimal::from),
                on_request: charges::on_request(c),
                date: Some(day),
            });
            priced.push((price, qty, day));
        }
        let bill = self
            .rules
            .split(visit, covered.map(|c| &c.card), &lines)
            .map_err(|e| Error::new(codes::BUSINESS_RULE, e))?;
        let money = |d: Decimal| json!({"value": whole(d), "currency": "VND"});
        let component = |kind: &str, code: &str, amount: Decimal| {
            json!({"type": kind, "code": {"coding": [{"system": PRICE_KIND, "code": code}]},
                "amount": money(amount)})
        };
        let line_items: Vec<Value> = charges
            .iter()
            .zip(&priced)
            .zip(&bill.lines)
            .enumerate()
            .map(|(i, (((v, _), (price, qty, day)), split))| {
                let mut ext = vec![
                    json!({"url": "code", "valueCode": price.code}),
                    json!({"url": "title", "valueString": price.title}),
                    json!({"url": "category", "valueCode": price.category.as_str()}),
                    json!({"url": "quantity", "valueInteger": qty}),
                    json!({"url": "unit-price", "valueMoney": {"value": price.price, "currency": "VND"}}),
                    json!({"url": "date", "valueDate": day.to_string()}),
                    json!({"url": "percent", "valueDecimal": split.percent.to_f64().unwrap_or(0.0)}),
                    json!({"url": "price", "valueCanonical": price.canonical}),
                ];
                if let Some(b) = price.bhyt_price {
                    ext.push(json!({"url": "bhyt-unit-price", "valueMoney": {"value": b, "currency": "VND"}}));
                }
                let mut total = component("base", "total", split.total);
                total["factor"] = json!(qty);
                json!({
                    "sequence": i + 1,
                    "extension": [{"url": LINE, "extension": ext}],
                    "chargeItemReference": {"reference": format!("ChargeItem/{}", v.id)},
                    "priceComponent": [
                        total,
                        component("deduction", "bhyt-fund", split.fund),
                        component("informational", "covered", split.covered),
                        component("informational", "copay", split.copay),
                        component("informational", "self-pay", split.self_pay),
                    ],
                })
            })
            .collect();
        let mut extension = vec![json!({"url": ENCOUNTER,
            "valueReference": {"reference": format!("Encounter/{encounter}")}})];
        if let Some(c) = covered {
            extension.push(json!({"url": COVERAGE,
                "valueReference": {"reference": format!("Coverage/{}", c.coverage_id),
                    "display": bhyt::mask(&c.card.number)}}));
        }
        let mut body = json!({
            "resourceType": "Invoice",
            "status": "issued",
            "type": {"coding": [{"system": KIND, "code": "encounter", "display": "Viện phí"}]},
            "subject": {"reference": format!("Patient/{patient}")},
            "recipient": {"reference": format!("Patient/{patient}")},
            "date": hospital_core::store::dates::format_instant(hospital_core::store::dates::now_micros()),
            "extension": extension,
            "lineItem": line_items,
            "totalPriceComponent": [
                component("base", "total", bill.total),
                component("deduction", "bhyt-fund", bill.fund),
                component("informational", "covered", bill.covered),
                component("informational", "copay", bill.copay),
                component("informational", "self-pay", bill.self_pay),
            ],
            "totalGross": money(bill.total),
            "totalNet": money(bill.patient),
        });
        if !bill.reasons.is_empty() {
            body["note"] = Value::Array(bill.reasons.iter().map(|r| json!({"text": r})).collect());
        }
        Ok(body)
    }

    /// Cancels an invoice that no payment was recorded against, keeping it with its reason;
    /// its charges are billable again, for the corrected invoice.
    pub async fn cancel(
        &self,
        caller: &Caller,
        id: &str,
        reason: &str,
    ) -> Result<(Version, Touched), Error> {
        if !matches!(caller.principal.role, Role::Cashier | Role::Service) {
            return Err(Error::forbidden("invoices are cancelled by a cashier"));
        }
        authorize(caller, Action::Write, "Invoice")?;
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(Error::invalid(
                "reason",
                "say why the invoice is cancelled (1 to 500 characters)",
            ));
        }
        let mut tx = self.platform.begin(caller).await?;
        tx.lock(&format!("Invoice/{id}")).await?;
        let v = tx.read("Invoice", id).await?;
        let mut touched = Touched::of(std::slice::from_ref(&v));
        let mut inv: Value = serde_json::from_str(&v.body)
            .map_err(|_| Error::internal("stored invoice unreadable"))?;
        match inv.get("status").and_then(Value::as_str) {
            Some("issued" | "draft") => {}
            Some(other) => {
                return Err(Error::new(
                    codes::STATE_CONFLICT,
                    format!("the invoice is {other}: only an open one is cancelled"),
                ));
            }
            None => return Err(Error::internal("stored invoice has no status")),
        }
        let paid = crate::ledger::paid_in(&mut tx, id).await?;
        if paid > 0 {
            return Err(Error::new(
                codes::STATE_CONFLICT,
                format!(
                    "{paid} đồng were paid against this invoice: those payments stay with it; refund them before cancelling"
                ),
            ));
        }
        inv["status"] = json!("cancelled");
        inv["cancelledReason"] = json!(reason);
        let out = self
            .platform
            .writer()
            .update_by_service(&mut tx, "Invoice", id, inv.clone(), Some(v.version_id))
            .await?;
        touched.add(&out.version);
        for charge in inv
            .get("lineItem")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|l| {
                l.pointer("/chargeItemReference/reference")
                    .and_then(Value::as_str)
            })
            .filter_map(|r| r.strip_prefix("ChargeItem/"))
        {
            let cv = tx.read("ChargeItem", charge).await?;
            let mut c: Value = serde_json::from_str(&cv.body)
                .map_err(|_| Error::internal("stored charge unreadable"))?;
            c["status"] = json!("billable");
            let w = self
                .platform
                .writer()
                .update_by_service(&mut tx, "ChargeItem", charge, c, Some(cv.version_id))
                .await?;
            touched.add(&w.version);
        }
        tx.commit().await?;
        Ok((out.version, touched))
    }
}

/// The billable charges of an encounter, read inside `tx`.
/// The most charges one encounter's invoice takes (a long inpatient stay has a few thousand).
pub const MAX_CHARGES: usize = 5_000;

/// The billable charges of an encounter, read inside `tx`, page after page: every one, or a
/// refusal when there are more than [`MAX_CHARGES`] (never a bill of only some of them).
async fn billable(tx: &mut Tx, encounter: &str) -> Result<Vec<(Version, Value)>, Error> {
    let mut out = Vec::new();
    let mut seen = 0usize;
    let mut cursor: Option<String> = None;
    loop {
        let mut params = vec![
            ("context".into(), format!("Encounter/{encounter}")),
            ("_count".into(), "1000".into()),
        ];
        if let Some(c) = &cursor {
            params.push(("_cursor".into(), c.clone()));
        }
        let page = tx.search(&SearchQuery::new("ChargeItem", params)).await?;
        seen += page.matches.len();
        if seen > MAX_CHARGES {
            return Err(Error::new(
                codes::BOUND_EXCEEDED,
                format!(
                    "Encounter/{encounter} has more than {MAX_CHARGES} charges: invoice it in parts (cancel some charges, or bill deposits)"
                ),
            ));
        }
        for v in page.matches {
            let body: Value = serde_json::from_str(&v.body)
                .map_err(|_| Error::internal("stored charge unreadable"))?;
            if body.get("status").and_then(Value::as_str) == Some("billable") {
                out.push((v, body));
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    out.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    Ok(out)
}

fn deposit_invoice(patient: &str, amount: i64) -> Value {
    let money = json!({"value": amount, "currency": "VND"});
    json!({
        "resourceType": "Invoice",
        "status": "issued",
        "type": {"coding": [{"system": KIND, "code": "deposit", "display": "Tạm ứng"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "recipient": {"reference": format!("Patient/{patient}")},
        "date": hospital_core::store::dates::format_instant(hospital_core::store::dates::now_micros()),
        "lineItem": [{"sequence": 1,
            "chargeItemCodeableConcept": {"coding": [{"system": KIND, "code": "deposit", "display": "Tạm ứng viện phí"}]},
            "priceComponent": [{"type": "base", "code": {"coding": [{"system": PRICE_KIND, "code": "total"}]}, "amount": money}]}],
        "totalGross": money,
        "totalNet": money,
    })
}

/// An invoice of services paid before they are given: self-pay at the hospital's price
/// (BHYT pays for telemedicine only at a receiving facility, never direct to the patient).
fn prepaid_invoice(patient: &str, priced: &[(Price, i64, NaiveDate)]) -> Value {
    let money = |v: i64| json!({"value": v, "currency": "VND"});
    let component = |kind: &str, code: &str, amount: i64| {
        json!({"type": kind, "code": {"coding": [{"system": PRICE_KIND, "code": code}]},
            "amount": money(amount)})
    };
    let mut total = 0i64;
    let lines: Vec<Value> = priced
        .iter()
        .enumerate()
        .map(|(i, (price, qty, day))| {
            let line_total = price.price * qty;
            total += line_total;
            let mut base = component("base", "total", line_total);
            base["factor"] = json!(qty);
            json!({
                "sequence": i + 1,
                "extension": [{"url": LINE, "extension": [
                    {"url": "code", "valueCode": price.code},
                    {"url": "title", "valueString": price.title},
                    {"url": "category", "valueCode": price.category.as_str()},
                    {"url": "quantity", "valueInteger": qty},
                    {"url": "unit-price", "valueMoney": money(price.price)},
                    {"url": "date", "valueDate": day.to_string()},
                    {"url": "percent", "valueDecimal": 0.0},
                    {"url": "price", "valueCanonical": price.canonical},
                ]}],
                "chargeItemCodeableConcept": {"coding": [{"system": prices::SERVICE_CODE,
                    "code": price.code, "display": price.title}]},
                "priceComponent": [
                    base,
                    component("deduction", "bhyt-fund", 0),
                    component("informational", "covered", 0),
                    component("informational", "copay", 0),
                    component("informational", "self-pay", line_total),
                ],
            })
        })
        .collect();
    json!({
        "resourceType": "Invoice",
        "status": "issued",
        "type": {"coding": [{"system": KIND, "code": "prepaid", "display": "Trả trước"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "recipient": {"reference": format!("Patient/{patient}")},
        "date": hospital_core::store::dates::format_instant(hospital_core::store::dates::now_micros()),
        "lineItem": lines,
        "totalPriceComponent": [
            component("base", "total", total),
            component("deduction", "bhyt-fund", 0),
            component("informational", "covered", 0),
            component("informational", "copay", 0),
            component("informational", "self-pay", total),
        ],
        "totalGross": money(total),
        "totalNet": money(total),
    })
}

/// The kind of an invoice (`encounter`, `deposit`, `prepaid`), if it says.
pub fn kind(invoice: &Value) -> Option<&str> {
    invoice
        .pointer("/type/coding/0/code")
        .and_then(Value::as_str)
}

/// Whether the invoice was issued under `key`.
pub fn has_key(invoice: &Value, key: &str) -> bool {
    identifier(invoice, IDEMPOTENCY_KEY) == Some(key)
}

/// The search for the invoice issued under `key`.
fn by_key(key: Option<&str>) -> Option<SearchQuery> {
    key.map(|k| {
        SearchQuery::new(
            "Invoice",
            vec![("identifier".into(), format!("{IDEMPOTENCY_KEY}|{k}"))],
        )
    })
}

/// The invoice issued under `key`, as `tx` sees it (with what commits alongside it).
async fn issued_in(tx: &mut Tx, key: Option<&str>) -> Result<Option<Version>, Error> {
    let Some(q) = by_key(key) else {
        return Ok(None);
    };
    Ok(tx.search(&q).await?.matches.into_iter().next())
}
