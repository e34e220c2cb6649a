//! The video visit: joining, and ending.
//!
//! Joining admits only the appointment's patient and its practitioner(s), only while the
//! appointment is booked (or under way), and only inside the join window (from
//! `--join-early-minutes` before the start to the end). It answers a short-lived join token
//! (which opens the signalling WebSocket, [`crate::signalling`]), the ICE servers, and TURN
//! credentials in coturn's shared-secret scheme (`username = "<expiry>:<participant>"`,
//! `credential = base64(HMAC-SHA1(secret, username))`).
//!
//! The first join moves the appointment to `arrived` and opens its Encounter (class `VR`) in
//! the records service over gRPC, once (an idempotency key of the appointment). Ending the
//! visit (the practitioner) closes the Encounter and marks the appointment `fulfilled`.
//! Nothing is recorded: the media go browser to browser.

use crate::appointment::{self, ext, set_ext};
use crate::calendar;
use base64::Engine;
use chrono::Duration;
use hmac::{Hmac, Mac};
use hospital_core::auth::Role;
use hospital_core::{Caller, Error, Platform, Touched, codes};
use hospital_grpc::outbound::{Idempotency, Outbound};
use hospital_proto::records::v1 as records;
use serde_json::{Value, json};
use std::sync::Arc;

/// On an appointment under way: its Encounter.
pub const ENCOUNTER: &str = "urn:hospital:appointment:encounter";

/// On a visit's Consent: whether the visit is recorded (never, by default).
pub const RECORDED: &str = "urn:hospital:telemedicine:recorded";

/// How long a join token opens the signalling channel.
pub const TOKEN_TTL_SECS: i64 = 300;
/// How long TURN credentials last.
pub const TURN_TTL_SECS: i64 = 4 * 3600;

#[derive(Clone)]
pub struct Visits {
    pub platform: Platform,
    pub records: Outbound,
    /// The key of join tokens (the same on every replica).
    pub key: Arc<[u8]>,
    pub early: Duration,
    pub stun: Vec<String>,
    pub turn: Vec<String>,
    pub turn_secret: Option<String>,
}

/// Who is in a visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// `patient` or `practitioner`.
    pub role: &'static str,
    /// `Patient/<id>` or `Practitioner/<id>`.
    pub reference: String,
}

/// What a participant gets on joining.
#[derive(Debug, Clone)]
pub struct Joined {
    pub token: String,
    pub expires: i64,
    pub participant: Participant,
    pub ice_servers: Value,
    pub appointment: Value,
}

fn body_of(v: &hospital_core::store::Version) -> Result<Value, Error> {
    serde_json::from_str(&v.body).map_err(|_| Error::internal("stored appointment unreadable"))
}

/// The caller's place in the appointment, or the refusal: another patient's appointment is
/// not known to them; a clinician who is not its practitioner is refused.
pub fn participant_of(caller: &Caller, id: &str, a: &Value) -> Result<Participant, Error> {
    let p = &caller.principal;
    match p.role {
        Role::Patient => {
            let own = p.patient.as_deref().map(|x| format!("Patient/{x}"));
            if own.is_some() && appointment::patient_of(a) == own {
                Ok(Participant {
                    role: "patient",
                    reference: own.unwrap_or_default(),
                })
            } else {
                Err(Error::not_found(format!("Appointment/{id} is not known")))
            }
        }
        Role::Clinician => {
            let me = p
                .practitioner
                .as_deref()
                .map(|x| format!("Practitioner/{x}"));
            match me {
                Some(me) if appointment::actors(a, "Practitioner").contains(&me) => {
                    Ok(Participant {
                        role: "practitioner",
                        reference: me,
                    })
                }
                _ => Err(Error::forbidden(format!(
                    "only the practitioner of Appointment/{id} joins it"
                ))),
            }
        }
        _ => Err(Error::forbidden(
            "a visit is joined by its patient and its practitioner only",
        )),
    }
}

type HmacSha256 = Hmac<sha2::Sha256>;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Visits {
    fn sign(&self, text: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("any key length");
        mac.update(text.as_bytes());
        b64(&mac.finalize().into_bytes())
    }

    /// A join token: the room, the participant, the expiry, signed.
    pub fn token(&self, room: &str, p: &Participant, expires: i64) -> String {
        let claims = format!("{room}|{}|{}|{expires}", p.role, p.reference);
        format!("{}.{}", b64(claims.as_bytes()), self.sign(&claims))
    }

    /// The participant a join token admits to `room`, if it is genuine, for that room, and
    /// not expired.
    pub fn check_token(&self, room: &str, token: &str) -> Result<Participant, Error> {
        let bad = || {
            Error::new(
                codes::INVALID_TOKEN,
                "the join token is not valid: join again",
            )
        };
        let (claims, sig) = token.split_once('.').ok_or_else(bad)?;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .ok()
            .and_then(|c| String::from_utf8(c).ok())
            .ok_or_else(bad)?;
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("any key length");
        mac.update(claims.as_bytes());
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| bad())?;
        mac.verify_slice(&sig).map_err(|_| bad())?;
        let parts: Vec<&str> = claims.split('|').collect();
        let [r, role, reference, expires] = parts.as_slice() else {
            return Err(bad());
        };
        if *r != room {
            return Err(Error::forbidden("the join token is for another visit"));
        }
        let expires: i64 = expires.parse().map_err(|_| bad())?;
        if expires < calendar::now().timestamp() {
            return Err(Error::new(
                codes::EXPIRED_TOKEN,
                "the join token has expired: join again",
            ));
        }
        let role = match *role {
            "patient" => "patient",
            "practitioner" => "practitioner",
            _ => return Err(bad()),
        };
        Ok(Participant {
            role,
            reference: (*reference).to_owned(),
        })
    }

    /// The ICE servers for `p`: STUN, and TURN with coturn shared-secret credentials.
    pub fn ice_servers(&self, p: &Participant) -> Value {
        let mut servers = Vec::new();
        if !self.stun.is_empty() {
            servers.push(json!({"urls": self.stun}));
        }
        if let Some(secret) = &self.turn_secret
            && !self.turn.is_empty()
        {
            let expiry = calendar::now().timestamp() + TURN_TTL_SECS;
            let (username, credential) = turn_credentials(secret, expiry, &p.reference);
            servers
                .push(json!({"urls": self.turn, "username": username, "credential": credential}));
        }
        Value::Array(servers)
    }

    /// Joins `caller` to the visit of Appointment `id`. The patient's first join needs their
    /// `consent` to a remote visit, recorded as a FHIR Consent of this visit.
    pub async fn join(
        &self,
        caller: &Caller,
        id: &str,
        consent: bool,
    ) -> Result<(Joined, Touched), Error> {
        let v = self.platform.store().read("Appointment", id).await?;
        let a = body_of(&v)?;
        let participant = participant_of(caller, id, &a)?;
        let status = a.get("status").and_then(Value::as_str).unwrap_or("");
        if !matches!(status, "booked" | "arrived" | "checked-in") {
            return Err(Error::new(
                codes::WRONG_STATE,
                format!("Appointment/{id} is {status}: only a booked visit is joined"),
            ));
        }
        if crate::schedule::mode_of(&a) != Some(crate::schedule::Mode::Video) {
            return Err(Error::new(
                codes::BUSINESS_RULE,
                format!("Appointment/{id} is an in-person visit"),
            ));
        }
        let start = a
            .get("start")
            .and_then(Value::as_str)
            .and_then(calendar::parse_instant);
        let end = a
            .get("end")
            .and_then(Value::as_str)
            .and_then(calendar::parse_instant);
        let (Some(start), Some(end)) = (start, end) else {
            return Err(Error::new(codes::BUSINESS_RULE, "the visit has no time"));
        };
        let now = calendar::now();
        if now < start - self.early || now > end {
            let opens = (start - self.early).format("%H:%M %d/%m/%Y");
            return Err(Error::new(
                codes::BUSINESS_RULE,
                format!("the visit is joined from {opens} to its end, not now"),
            ));
        }
        let mut touched = Touched::default();
        touched.add(&v);
        if participant.role == "patient" {
            touched.add(&self.consent(caller, id, &a, &participant, consent).await?);
        }
        let appointment = if status == "booked" {
            let (w, t) = self.begin_visit(caller, id, &a).await?;
            for x in t {
                touched.add(&x);
            }
            w
        } else {
            a
        };
        let expires = now.timestamp() + TOKEN_TTL_SECS;
        Ok((
            Joined {
                token: self.token(id, &participant, expires),
                expires,
                ice_servers: self.ice_servers(&participant),
                participant,
                appointment,
            },
            touched,
        ))
    }

    /// The patient's consent to this remote visit: the one recorded, or, with `consent`, a new
    /// FHIR Consent (written through the records service's rules). Nothing of the visit is
    /// recorded: the Consent says so.
    async fn consent(
        &self,
        caller: &Caller,
        id: &str,
        a: &Value,
        p: &Participant,
        consent: bool,
    ) -> Result<hospital_core::store::Version, Error> {
        let q = hospital_core::store::SearchQuery::new(
            "Consent",
            vec![
                ("data".into(), format!("Appointment/{id}")),
                ("patient".into(), p.reference.clone()),
                ("status".into(), "active".into()),
            ],
        );
        if let Some(v) = self
            .platform
            .store()
            .search(&q)
            .await?
            .matches
            .into_iter()
            .next()
        {
            return Ok(v);
        }
        if !consent {
            return Err(Error::new(
                codes::BUSINESS_RULE,
                "the patient's consent to a remote examination is asked before the first join (consent)",
            )
            .at("consent"));
        }
        let body = json!({"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}],
                "text": "Đồng ý khám, chữa bệnh từ xa"}],
            "patient": {"reference": p.reference},
            "dateTime": calendar::instant(calendar::now()),
            "performer": [{"reference": p.reference}],
            "policyRule": {"text": "Luật Khám bệnh, chữa bệnh 2023 Điều 80; Thông tư 30/2023/TT-BYT"},
            "provision": {"type": "permit",
                "period": {"start": a["start"], "end": a["end"]},
                "data": [{"meaning": "related", "reference": {"reference": format!("Appointment/{id}")}}]},
            "extension": [{"url": RECORDED, "valueBoolean": false}]});
        let mut tx = self.platform.begin(caller).await?;
        tx.lock(&format!("consent-of:Appointment/{id}")).await?;
        if let Some(v) = tx.search(&q).await?.matches.into_iter().next() {
            return Ok(v);
        }
        let w = self
            .platform
            .writer()
            .create(
                &mut tx,
                "Consent",
                None,
                body,
                hospital_core::rules::Checks::Now,
            )
            .await?;
        tx.commit().await?;
        Ok(w.version)
    }

    /// The first join: the Encounter opened in records (once per appointment), the
    /// appointment `arrived`.
    async fn begin_visit(
        &self,
        caller: &Caller,
        id: &str,
        a: &Value,
    ) -> Result<(Value, Vec<hospital_core::store::Version>), Error> {
        let patient = appointment::patient_of(a)
            .and_then(|p| p.strip_prefix("Patient/").map(str::to_owned))
            .unwrap_or_default();
        let practitioner = appointment::actors(a, "Practitioner")
            .first()
            .and_then(|p| p.strip_prefix("Practitioner/").map(str::to_owned))
            .unwrap_or_default();
        let key = format!("visit:{id}");
        let msg = records::OpenEncounterRequest {
            patient_id: patient,
            appointment_id: id.to_owned(),
            encounter_class: records::EncounterClass::Virtual as i32,
            practitioner_id: practitioner,
            idempotency_key: key.clone(),
        };
        let encounter = self
            .records
            .call(msg, None, Idempotency::Keyed(key), |ch, req| async move {
                records::records_client::RecordsClient::new(ch)
                    .open_encounter(req)
                    .await
            })
            .await
            .map_err(|s| {
                Error::new(
                    codes::DEPENDENCY_UNAVAILABLE,
                    format!(
                        "the records service did not open the visit's encounter: {}",
                        s.message()
                    ),
                )
            })?;
        let mut tx = self.platform.begin(caller).await?;
        let v = tx.read_for_update("Appointment", id).await?;
        let mut a = body_of(&v)?;
        if a.get("status").and_then(Value::as_str) == Some("booked") {
            a["status"] = json!("arrived");
        }
        set_ext(
            &mut a,
            ENCOUNTER,
            Some(json!({"valueReference": {"reference": format!("Encounter/{}", encounter.id)}})),
        );
        let w = self
            .platform
            .writer()
            .update_by_service(&mut tx, "Appointment", id, a, Some(v.version_id))
            .await?;
        let mut written = vec![w.version.clone()];
        // The encounter records opened under telemedicine's authority is named in the
        // participant's own record of the join: they initiated it.
        if let Ok(e) = self.platform.store().read("Encounter", &encounter.id).await {
            written.push(e);
        }
        written.extend(tx.consequences().iter().cloned());
        tx.commit().await?;
        Ok((body_of(&w.version)?, written))
    }

    /// Ends the visit (its practitioner): the Encounter closed, the appointment `fulfilled`.
    pub async fn end(&self, caller: &Caller, id: &str) -> Result<(Value, Touched), Error> {
        let v = self.platform.store().read("Appointment", id).await?;
        let a = body_of(&v)?;
        let p = participant_of(caller, id, &a)?;
        if p.role != "practitioner" {
            return Err(Error::forbidden("the practitioner ends the visit"));
        }
        if a.get("status").and_then(Value::as_str) == Some("fulfilled") {
            return Ok((a, Touched::of(&[v])));
        }
        if a.get("status").and_then(Value::as_str) != Some("arrived") {
            return Err(Error::new(
                codes::WRONG_STATE,
                format!("Appointment/{id} has not begun"),
            ));
        }
        if let Some(enc) = ext(&a, ENCOUNTER)
            .and_then(|e| e.pointer("/valueReference/reference"))
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("Encounter/"))
        {
            let msg = records::CloseEncounterRequest {
                encounter_id: enc.to_owned(),
            };
            self.records
                .call(msg, None, Idempotency::Safe, |ch, req| async move {
                    records::records_client::RecordsClient::new(ch)
                        .close_encounter(req)
                        .await
                })
                .await
                .map_err(|s| {
                    Error::new(
                        codes::DEPENDENCY_UNAVAILABLE,
                        format!(
                            "the records service did not close the encounter: {}",
                            s.message()
                        ),
                    )
                })?;
        }
        let mut tx = self.platform.begin(caller).await?;
        let cur = tx.read_for_update("Appointment", id).await?;
        let mut a = body_of(&cur)?;
        a["status"] = json!("fulfilled");
        let w = self
            .platform
            .writer()
            .update_by_service(&mut tx, "Appointment", id, a, Some(cur.version_id))
            .await?;
        let mut touched = Touched::default();
        touched.add(&w.version);
        for c in tx.consequences() {
            touched.add(c);
        }
        tx.commit().await?;
        let _ = self
            .platform
            .store()
            .signal_append(id, "server", "server", "ended", "{}")
            .await;
        Ok((body_of(&w.version)?, touched))
    }
}

/// coturn's shared-secret credentials (its "REST API"): the username is the expiry (Unix
/// time) and the user, the password the base64 HMAC-SHA1 of the username under the secret.
pub fn turn_credentials(secret: &str, expiry: i64, user: &str) -> (String, String) {
    let username = format!("{expiry}:{user}");
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_credentials_follow_coturns_scheme() {
        // HMAC-SHA1("secret", "1700000000:Patient/an"), computed independently with
        // `printf %s 1700000000:Patient/an | openssl dgst -sha1 -hmac secret -binary | base64`.
        let (u, c) = turn_credentials("secret", 1_700_000_000, "Patient/an");
        assert_eq!(u, "1700000000:Patient/an");
        assert_eq!(c, TURN_VECTOR);
    }

    const TURN_VECTOR: &str = "MBOXalQRfmzEtisdNR8qHahuUF4=";
}
