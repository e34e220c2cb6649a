//! The records gRPC server (`hospital.records.v1.Records`). It only translates prost messages
//! to the records service's functions and the platform's, and back; authentication is the
//! shared layer ([`hospital_grpc::Authenticated`]), writes go through the same
//! [`hospital_core::Writer`] as REST.

use crate::coverage::{self, CoverageKey};
use crate::identifiers::{NATIONAL_ID, PATIENT_INTERNAL_ID};
use hospital_core::auth::Action;
use hospital_core::store::Version;
use hospital_core::{
    AuditAction, Caller, Checks, Error, Interaction, Platform, Touched, authorize, reveal,
};
use hospital_grpc::{Call, caller};
use hospital_proto::records::v1 as pb;
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

/// Idempotency keys of encounters opened over gRPC live in this identifier system.
pub const IDEMPOTENCY_SYSTEM: &str = "urn:hospital:idempotency-key";

const GET_PATIENT: Interaction = Interaction::Call("GetPatient", AuditAction::R);
const FIND_PATIENT: Interaction = Interaction::Call("FindPatientByIdentifier", AuditAction::R);
const ACTIVE_COVERAGE: Interaction = Interaction::Call("GetActiveCoverage", AuditAction::R);
const OPEN_ENCOUNTER: Interaction = Interaction::Call("OpenEncounter", AuditAction::C);
const CLOSE_ENCOUNTER: Interaction = Interaction::Call("CloseEncounter", AuditAction::U);

pub struct RecordsGrpc {
    platform: Platform,
}

impl RecordsGrpc {
    pub fn new(platform: Platform) -> Self {
        RecordsGrpc { platform }
    }

    pub fn into_server(self) -> pb::records_server::RecordsServer<RecordsGrpc> {
        pb::records_server::RecordsServer::new(self)
    }

    fn call<'a>(
        &'a self,
        caller: &'a Caller,
        interaction: Interaction,
        rtype: &'a str,
    ) -> Call<'a> {
        Call {
            platform: &self.platform,
            caller,
            interaction,
            resource_type: rtype,
        }
    }
}

fn parse(v: &Version) -> Result<Value, Error> {
    serde_json::from_str(&v.body).map_err(|_| Error::internal("stored resource unreadable"))
}

fn identifier_value(body: &Value, system: &str) -> String {
    body.get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|i| i.get("system").and_then(Value::as_str) == Some(system))
        .and_then(|i| i.get("value").and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned()
}

fn patient_record(v: &Version) -> Result<pb::PatientRecord, Error> {
    let body = parse(v)?;
    let name = body.pointer("/name/0");
    let full_name = name
        .and_then(|n| n.get("text").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| {
            let family = name
                .and_then(|n| n.get("family"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let given: Vec<&str> = name
                .and_then(|n| n.get("given"))
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            [family, &given.join(" ")]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ")
        });
    Ok(pb::PatientRecord {
        id: v.id.clone(),
        version_id: v.version_id,
        full_name,
        birth_date: body
            .get("birthDate")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        gender: body
            .get("gender")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        national_id: identifier_value(&body, NATIONAL_ID),
        facility_patient_code: identifier_value(&body, PATIENT_INTERNAL_ID),
        resource_json: v.body.clone(),
    })
}

fn encounter_record(v: &Version) -> Result<pb::EncounterRecord, Error> {
    let body = parse(v)?;
    Ok(pb::EncounterRecord {
        id: v.id.clone(),
        version_id: v.version_id,
        status: body
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        resource_json: v.body.clone(),
    })
}

#[tonic::async_trait]
impl pb::records_server::Records for RecordsGrpc {
    async fn get_patient(
        &self,
        request: Request<pb::GetPatientRequest>,
    ) -> Result<Response<pb::PatientRecord>, Status> {
        let caller = caller(&request)?;
        let id = request.into_inner().patient_id;
        let r = async {
            authorize(&caller, Action::Read, "Patient")?;
            if !hospital_core::store::is_valid_id(&id) {
                return Err(Error::invalid(
                    "patient_id",
                    "patient_id is not a valid FHIR id",
                ));
            }
            let v = reveal(
                &caller,
                "Patient",
                &id,
                self.platform.store().read("Patient", &id).await,
            )?;
            Ok((patient_record(&v)?, Touched::of(&[v])))
        }
        .await;
        self.call(&caller, GET_PATIENT, "Patient")
            .audited(r)
            .await
            .map(Response::new)
    }

    async fn find_patient_by_identifier(
        &self,
        request: Request<pb::FindPatientByIdentifierRequest>,
    ) -> Result<Response<pb::PatientRecord>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            authorize(&caller, Action::Read, "Patient")?;
            let token = coverage::token_value(&r.system, &r.value)?;
            match coverage::find_one(
                &self.platform,
                &caller,
                "Patient",
                vec![("identifier".into(), token)],
            )
            .await?
            {
                Some(v) => Ok((patient_record(&v)?, Touched::of(&[v]))),
                None => Err(Error::not_found("no patient carries this identifier")),
            }
        }
        .await;
        self.call(&caller, FIND_PATIENT, "Patient")
            .audited(result)
            .await
            .map(Response::new)
    }

    async fn get_active_coverage(
        &self,
        request: Request<pb::GetActiveCoverageRequest>,
    ) -> Result<Response<pb::CoverageRecord>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            authorize(&caller, Action::Read, "Coverage")?;
            let key = match r.patient {
                Some(pb::get_active_coverage_request::Patient::PatientId(id)) => {
                    CoverageKey::Patient(id)
                }
                Some(pb::get_active_coverage_request::Patient::CardNumber(c)) => {
                    CoverageKey::Card(c)
                }
                Some(pb::get_active_coverage_request::Patient::NationalId(n)) => {
                    CoverageKey::NationalId(n)
                }
                None => {
                    return Err(Error::invalid(
                        "patient",
                        "give patient_id, card_number or national_id",
                    ));
                }
            };
            let date = coverage::service_date(&r.date)?;
            let otherwise = if r.include_expired {
                coverage::WhenNoneInForce::LatestExpired
            } else {
                coverage::WhenNoneInForce::NotFound
            };
            let (c, touched) =
                coverage::coverage_on(&self.platform, &caller, &key, date, otherwise).await?;
            Ok((
                pb::CoverageRecord {
                    id: c.version.id.clone(),
                    patient_id: c.patient_id,
                    card_number: c.card_number,
                    benefit_level: c.benefit_level,
                    registered_facility: c.registered_facility,
                    valid_from: c.valid_from,
                    valid_to: c.valid_to,
                    resource_json: c.version.body,
                    in_force: c.in_force,
                },
                touched,
            ))
        }
        .await;
        self.call(&caller, ACTIVE_COVERAGE, "Coverage")
            .audited(result)
            .await
            .map(Response::new)
    }

    async fn open_encounter(
        &self,
        request: Request<pb::OpenEncounterRequest>,
    ) -> Result<Response<pb::EncounterRecord>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = self.open(&caller, r).await;
        self.call(&caller, OPEN_ENCOUNTER, "Encounter")
            .audited(result)
            .await
            .map(Response::new)
    }

    async fn close_encounter(
        &self,
        request: Request<pb::CloseEncounterRequest>,
    ) -> Result<Response<pb::EncounterRecord>, Status> {
        let caller = caller(&request)?;
        let id = request.into_inner().encounter_id;
        let result = self.close(&caller, id).await;
        self.call(&caller, CLOSE_ENCOUNTER, "Encounter")
            .audited(result)
            .await
            .map(Response::new)
    }
}

impl RecordsGrpc {
    async fn open(
        &self,
        caller: &Caller,
        r: pb::OpenEncounterRequest,
    ) -> Result<(pb::EncounterRecord, Touched), Error> {
        authorize(caller, Action::Write, "Encounter")?;
        if r.idempotency_key.is_empty() || r.idempotency_key.len() > 128 {
            return Err(Error::invalid(
                "idempotency_key",
                "idempotency_key is required (at most 128 characters)",
            ));
        }
        if !hospital_core::store::is_valid_id(&r.patient_id) {
            return Err(Error::invalid(
                "patient_id",
                "patient_id is not a valid FHIR id",
            ));
        }
        let class = match pb::EncounterClass::try_from(r.encounter_class) {
            Ok(pb::EncounterClass::Virtual) => {
                json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR", "display": "virtual"})
            }
            Ok(pb::EncounterClass::Ambulatory) => {
                json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"})
            }
            _ => {
                return Err(Error::invalid(
                    "encounter_class",
                    "encounter_class must be VIRTUAL or AMBULATORY",
                ));
            }
        };
        let mut body = json!({
            "resourceType": "Encounter",
            "identifier": [{"system": IDEMPOTENCY_SYSTEM, "value": r.idempotency_key}],
            "status": "in-progress",
            "class": class,
            "subject": {"reference": format!("Patient/{}", r.patient_id)},
            "period": {"start": hospital_core::store::dates::format_instant(hospital_core::store::dates::now_micros())},
        });
        if !r.practitioner_id.is_empty() {
            if !hospital_core::store::is_valid_id(&r.practitioner_id) {
                return Err(Error::invalid(
                    "practitioner_id",
                    "practitioner_id is not a valid FHIR id",
                ));
            }
            body["participant"] = json!([{"individual": {"reference": format!("Practitioner/{}", r.practitioner_id)}}]);
        }
        if !r.appointment_id.is_empty() {
            if !hospital_core::store::is_valid_id(&r.appointment_id) {
                return Err(Error::invalid(
                    "appointment_id",
                    "appointment_id is not a valid FHIR id",
                ));
            }
            body["appointment"] =
                json!([{"reference": format!("Appointment/{}", r.appointment_id)}]);
        }
        // The key is a condition like any If-None-Exist on the identifier, so the same lock
        // serialises a gRPC open and a REST conditional create with this key.
        let mut tx = self.platform.begin(caller).await?;
        let condition = format!(
            "identifier={}",
            coverage::token_value(IDEMPOTENCY_SYSTEM, &r.idempotency_key)?
                .replace('%', "%25")
                .replace('&', "%26")
                .replace('+', "%2B")
                .replace('#', "%23")
        );
        let existing =
            hospital_core::conditional::find_match(&mut tx, "Encounter", &condition).await?;
        let subject = format!("Patient/{}", r.patient_id);
        let (v, code) = match existing {
            Some(v) => {
                let same_patient = parse(&v)?
                    .pointer("/subject/reference")
                    .and_then(Value::as_str)
                    == Some(subject.as_str());
                if !same_patient {
                    return Err(Error::conflict(
                        "this idempotency key opened an encounter for another patient",
                    ));
                }
                (v, 200)
            }
            None => {
                let out = self
                    .platform
                    .writer()
                    .create(&mut tx, "Encounter", None, body, Checks::Now)
                    .await?;
                (out.version, 201)
            }
        };
        let touched = Touched::of(std::slice::from_ref(&v));
        let touched = tx
            .commit_audited(OPEN_ENCOUNTER, "Encounter", touched, code)
            .await?;
        Ok((encounter_record(&v)?, touched))
    }

    async fn close(
        &self,
        caller: &Caller,
        id: String,
    ) -> Result<(pb::EncounterRecord, Touched), Error> {
        authorize(caller, Action::Write, "Encounter")?;
        if !hospital_core::store::is_valid_id(&id) {
            return Err(Error::invalid(
                "encounter_id",
                "encounter_id is not a valid FHIR id",
            ));
        }
        let mut tx = self.platform.begin(caller).await?;
        let current = tx.read("Encounter", &id).await?;
        let mut body = parse(&current)?;
        let v = match body.get("status").and_then(Value::as_str) {
            Some("finished") => current,
            Some("in-progress" | "arrived" | "triaged" | "planned" | "onleave") => {
                body["status"] = json!("finished");
                body["period"]["end"] = json!(hospital_core::store::dates::format_instant(
                    hospital_core::store::dates::now_micros()
                ));
                if let Value::Object(m) = &mut body {
                    m.remove("meta");
                }
                self.platform
                    .writer()
                    .update(
                        &mut tx,
                        "Encounter",
                        &id,
                        body,
                        Some(current.version_id),
                        Checks::Now,
                    )
                    .await?
                    .version
            }
            other => {
                return Err(Error::new(
                    hospital_core::codes::WRONG_STATE,
                    format!("an encounter in status {other:?} cannot be closed"),
                ));
            }
        };
        let touched = Touched::of(std::slice::from_ref(&v));
        let touched = tx
            .commit_audited(CLOSE_ENCOUNTER, "Encounter", touched, 200)
            .await?;
        Ok((encounter_record(&v)?, touched))
    }
}
