//! The records gRPC server (`hospital.records.v1.Records`). It translates prost messages to
//! store calls and back; writes go through the same [`hospital_fhir_http::Writer`] as REST.

use crate::identifiers::{INSURANCE_NUMBER, NATIONAL_ID, PATIENT_INTERNAL_ID};
use hospital_fhir_http::{ApiError, FhirApi};
use hospital_proto::records::v1 as pb;
use hospital_store::{SearchQuery, StoreError, Version};
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

/// Idempotency keys of encounters opened over gRPC live in this identifier system.
pub const IDEMPOTENCY_SYSTEM: &str = "urn:hospital:idempotency-key";

pub struct RecordsGrpc {
    api: FhirApi,
}

impl RecordsGrpc {
    pub fn new(api: FhirApi) -> Self {
        RecordsGrpc { api }
    }

    pub fn into_server(self) -> pb::records_server::RecordsServer<RecordsGrpc> {
        pb::records_server::RecordsServer::new(self)
    }
}

fn status(e: ApiError) -> Status {
    let msg = e.to_string();
    match e {
        ApiError::Invalid { .. } => Status::invalid_argument(msg),
        ApiError::NotFound(_) | ApiError::Gone(_) => Status::not_found(msg),
        ApiError::Conflict(_) => Status::already_exists(msg),
        ApiError::PreconditionFailed(_) | ApiError::Unprocessable(_) => {
            Status::failed_precondition(msg)
        }
        ApiError::MethodNotAllowed(_) => Status::unimplemented(msg),
        _ => Status::internal("internal error"),
    }
}

fn store_status(e: StoreError) -> Status {
    status(ApiError::from(e))
}

fn parse(v: &Version) -> Result<Value, Status> {
    serde_json::from_str(&v.body).map_err(|_| Status::internal("stored resource unreadable"))
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

fn patient_record(v: &Version) -> Result<pb::PatientRecord, Status> {
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

fn encounter_record(v: &Version) -> Result<pb::EncounterRecord, Status> {
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

impl RecordsGrpc {
    async fn search_one(
        &self,
        rtype: &str,
        params: Vec<(String, String)>,
    ) -> Result<Option<Version>, Status> {
        let mut q = SearchQuery::new(rtype, params);
        q.params.push(("_count".into(), "2".into()));
        let r = self.api.store.search(&q).await.map_err(store_status)?;
        match r.matches.len() {
            0 => Ok(None),
            1 => Ok(r.matches.into_iter().next()),
            _ => Err(Status::failed_precondition(format!(
                "more than one {rtype} matches"
            ))),
        }
    }
}

#[tonic::async_trait]
impl pb::records_server::Records for RecordsGrpc {
    async fn get_patient(
        &self,
        request: Request<pb::GetPatientRequest>,
    ) -> Result<Response<pb::PatientRecord>, Status> {
        let id = request.into_inner().patient_id;
        if !hospital_store::is_valid_id(&id) {
            return Err(Status::invalid_argument(
                "patient_id is not a valid FHIR id",
            ));
        }
        let v = self
            .api
            .store
            .read("Patient", &id)
            .await
            .map_err(store_status)?;
        Ok(Response::new(patient_record(&v)?))
    }

    async fn find_patient_by_identifier(
        &self,
        request: Request<pb::FindPatientByIdentifierRequest>,
    ) -> Result<Response<pb::PatientRecord>, Status> {
        let r = request.into_inner();
        if r.value.is_empty() {
            return Err(Status::invalid_argument("value is required"));
        }
        let token = if r.system.is_empty() {
            r.value.replace(',', "\\,")
        } else {
            format!("{}|{}", r.system, r.value.replace(',', "\\,"))
        };
        match self
            .search_one("Patient", vec![("identifier".into(), token)])
            .await?
        {
            Some(v) => Ok(Response::new(patient_record(&v)?)),
            None => Err(Status::not_found("no patient carries this identifier")),
        }
    }

    async fn get_active_coverage(
        &self,
        request: Request<pb::GetActiveCoverageRequest>,
    ) -> Result<Response<pb::CoverageRecord>, Status> {
        let r = request.into_inner();
        let date = if r.date.is_empty() {
            chrono::Utc::now().date_naive().to_string()
        } else {
            chrono::NaiveDate::parse_from_str(&r.date, "%Y-%m-%d")
                .map_err(|_| Status::invalid_argument("date must be YYYY-MM-DD"))?
                .to_string()
        };
        let mut params: Vec<(String, String)> = Vec::new();
        match r.patient {
            Some(pb::get_active_coverage_request::Patient::PatientId(id)) => {
                if !hospital_store::is_valid_id(&id) {
                    return Err(Status::invalid_argument(
                        "patient_id is not a valid FHIR id",
                    ));
                }
                params.push(("beneficiary".into(), format!("Patient/{id}")));
            }
            Some(pb::get_active_coverage_request::Patient::CardNumber(card)) => {
                crate::identifiers::BhytCardNumber::parse(&card)
                    .map_err(Status::invalid_argument)?;
                params.push(("identifier".into(), format!("{INSURANCE_NUMBER}|{card}")));
            }
            Some(pb::get_active_coverage_request::Patient::NationalId(nid)) => {
                crate::identifiers::Cccd::parse(&nid).map_err(Status::invalid_argument)?;
                let patient = self
                    .search_one(
                        "Patient",
                        vec![("identifier".into(), format!("{NATIONAL_ID}|{nid}"))],
                    )
                    .await?
                    .ok_or_else(|| Status::not_found("no patient carries this personal ID"))?;
                params.push(("beneficiary".into(), format!("Patient/{}", patient.id)));
            }
            None => {
                return Err(Status::invalid_argument(
                    "give patient_id, card_number or national_id",
                ));
            }
        }
        params.push(("status".into(), "active".into()));
        params.push(("_count".into(), "50".into()));
        let found = self
            .api
            .store
            .search(&SearchQuery::new("Coverage", params))
            .await
            .map_err(store_status)?;
        for v in &found.matches {
            let body = parse(v)?;
            let start = body
                .pointer("/period/start")
                .and_then(Value::as_str)
                .unwrap_or("");
            let end = body
                .pointer("/period/end")
                .and_then(Value::as_str)
                .unwrap_or("");
            let in_force = (start.is_empty() || start.get(..10).unwrap_or(start) <= date.as_str())
                && (end.is_empty() || end.get(..10).unwrap_or(end) >= date.as_str());
            if !in_force {
                continue;
            }
            let card = identifier_value(&body, INSURANCE_NUMBER);
            let card = if card.is_empty() {
                body.get("subscriberId")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            } else {
                card
            };
            let benefit_level = crate::identifiers::BhytCardNumber::parse(&card)
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
            return Ok(Response::new(pb::CoverageRecord {
                id: v.id.clone(),
                patient_id,
                card_number: card,
                benefit_level,
                registered_facility,
                valid_from: start.get(..10).unwrap_or(start).to_owned(),
                valid_to: end.get(..10).unwrap_or(end).to_owned(),
                resource_json: v.body.clone(),
            }));
        }
        Err(Status::not_found("no coverage is active on that date"))
    }

    async fn open_encounter(
        &self,
        request: Request<pb::OpenEncounterRequest>,
    ) -> Result<Response<pb::EncounterRecord>, Status> {
        let r = request.into_inner();
        if r.idempotency_key.is_empty() || r.idempotency_key.len() > 128 {
            return Err(Status::invalid_argument(
                "idempotency_key is required (at most 128 characters)",
            ));
        }
        if !hospital_store::is_valid_id(&r.patient_id) {
            return Err(Status::invalid_argument(
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
                return Err(Status::invalid_argument(
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
            "period": {"start": hospital_store::dates::format_instant(hospital_store::dates::now_micros())},
        });
        if !r.practitioner_id.is_empty() {
            if !hospital_store::is_valid_id(&r.practitioner_id) {
                return Err(Status::invalid_argument(
                    "practitioner_id is not a valid FHIR id",
                ));
            }
            body["participant"] = json!([{"individual": {"reference": format!("Practitioner/{}", r.practitioner_id)}}]);
        }
        if !r.appointment_id.is_empty() {
            if !hospital_store::is_valid_id(&r.appointment_id) {
                return Err(Status::invalid_argument(
                    "appointment_id is not a valid FHIR id",
                ));
            }
            body["appointment"] =
                json!([{"reference": format!("Appointment/{}", r.appointment_id)}]);
        }
        let mut tx = self.api.store.begin().await.map_err(store_status)?;
        tx.lock(&format!("Encounter?idempotency={}", r.idempotency_key))
            .await
            .map_err(store_status)?;
        let existing = tx
            .search(&SearchQuery::new(
                "Encounter",
                vec![(
                    "identifier".into(),
                    format!(
                        "{IDEMPOTENCY_SYSTEM}|{}",
                        r.idempotency_key.replace(',', "\\,")
                    ),
                )],
            ))
            .await
            .map_err(store_status)?;
        if let Some(v) = existing.matches.first() {
            tx.commit().await.map_err(store_status)?;
            return Ok(Response::new(encounter_record(v)?));
        }
        let out = self
            .api
            .writer()
            .create(&mut tx, "Encounter", None, body, true)
            .await
            .map_err(status)?;
        tx.commit().await.map_err(store_status)?;
        Ok(Response::new(encounter_record(&out.version)?))
    }

    async fn close_encounter(
        &self,
        request: Request<pb::CloseEncounterRequest>,
    ) -> Result<Response<pb::EncounterRecord>, Status> {
        let id = request.into_inner().encounter_id;
        if !hospital_store::is_valid_id(&id) {
            return Err(Status::invalid_argument(
                "encounter_id is not a valid FHIR id",
            ));
        }
        let mut tx = self.api.store.begin().await.map_err(store_status)?;
        let current = tx.read("Encounter", &id).await.map_err(store_status)?;
        let mut body = parse(&current)?;
        match body.get("status").and_then(Value::as_str) {
            Some("finished") => {
                tx.commit().await.map_err(store_status)?;
                return Ok(Response::new(encounter_record(&current)?));
            }
            Some("in-progress" | "arrived" | "triaged" | "planned" | "onleave") => {}
            other => {
                return Err(Status::failed_precondition(format!(
                    "an encounter in status {other:?} cannot be closed"
                )));
            }
        }
        body["status"] = json!("finished");
        body["period"]["end"] = json!(hospital_store::dates::format_instant(
            hospital_store::dates::now_micros()
        ));
        if let Value::Object(m) = &mut body {
            m.remove("meta");
        }
        let out = self
            .api
            .writer()
            .update(
                &mut tx,
                "Encounter",
                &id,
                body,
                Some(current.version_id),
                true,
            )
            .await
            .map_err(status)?;
        tx.commit().await.map_err(store_status)?;
        Ok(Response::new(encounter_record(&out.version)?))
    }
}
