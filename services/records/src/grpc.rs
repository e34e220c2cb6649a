//! The records gRPC server (`hospital.records.v1.Records`). It translates prost messages to
//! store calls and back; writes go through the same [`hospital_fhir_http::Writer`] as REST.

use crate::identifiers::{INSURANCE_NUMBER, NATIONAL_ID, PATIENT_INTERNAL_ID};
use hospital_auth::{Action, AuthError};
use hospital_fhir_http::security::{Caller, Touched, authorize, reveal, visible};
use hospital_fhir_http::{ApiError, FhirApi, begin_as, commit_audited};
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
        ApiError::Unauthorized(_) => Status::unauthenticated(msg),
        ApiError::Forbidden(_) => Status::permission_denied(msg),
        ApiError::TooManyRequests(_) => Status::resource_exhausted(msg),
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

/// The HTTP status an audit record gives a gRPC outcome.
fn http_of(code: tonic::Code) -> u16 {
    match code {
        tonic::Code::Ok => 200,
        tonic::Code::InvalidArgument => 400,
        tonic::Code::Unauthenticated => 401,
        tonic::Code::PermissionDenied => 403,
        tonic::Code::NotFound => 404,
        tonic::Code::AlreadyExists => 409,
        tonic::Code::FailedPrecondition => 412,
        tonic::Code::ResourceExhausted => 429,
        _ => 500,
    }
}

impl RecordsGrpc {
    /// Authenticates a call from its `authorization` metadata (a bearer token); a service
    /// token may carry the user it acts for in `x-on-behalf-of`.
    async fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        let sec = &self.api.security;
        let client = req
            .remote_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|| "unknown".into());
        if sec.throttle.check(&client).is_err() {
            return Err(Status::resource_exhausted(AuthError::Throttled.to_string()));
        }
        let md = req.metadata();
        let token = md
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let verified = match token {
            None => Err(AuthError::Missing),
            Some(t) => sec.auth.verify(&t).await,
        };
        let mut principal = match verified {
            Ok(p) => p,
            Err(e) => {
                sec.throttle.failed(&client);
                let mut anonymous = Caller::system("anonymous");
                anonymous.client = client;
                let mut rec = anonymous.record("authenticate", "", &Touched::default(), 401);
                rec.actor = "anonymous".into();
                rec.role = String::new();
                let _ = sec.audit.record(rec).await;
                return Err(Status::unauthenticated(e.to_string()));
            }
        };
        let mut via = None;
        if principal.role == hospital_auth::Role::Service
            && let Some(user) = md.get("x-on-behalf-of").and_then(|v| v.to_str().ok())
        {
            let u = sec
                .auth
                .verify(user)
                .await
                .map_err(|e| Status::unauthenticated(format!("on-behalf-of token: {e}")))?;
            via = Some(principal.audit_name());
            principal = u;
        }
        Ok(Caller {
            principal,
            via,
            client,
            user_agent: md
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .chars()
                .take(300)
                .collect(),
        })
    }

    /// Audits a write that failed (a successful one is audited in its own transaction).
    async fn audit_failure<T>(
        &self,
        caller: &Caller,
        method: &str,
        rtype: &str,
        result: &Result<T, Status>,
    ) {
        if let Err(s) = result {
            let record = caller.record(method, rtype, &Touched::default(), http_of(s.code()));
            if let Err(e) = self.api.security.audit.record(record).await {
                tracing::error!(error = %e, "audit record of a failed call could not be written");
            }
        }
    }

    /// Audits a read-only call before its answer leaves.
    async fn audited<T>(
        &self,
        caller: &Caller,
        method: &str,
        rtype: &str,
        result: Result<(T, Vec<Version>), Status>,
    ) -> Result<Response<T>, Status> {
        let (touched, code) = match &result {
            Ok((_, vs)) => (Touched::of(vs), 200),
            Err(s) => (Touched::default(), http_of(s.code())),
        };
        self.api
            .security
            .audit
            .record(caller.record(method, rtype, &touched, code))
            .await
            .map_err(|_| Status::unavailable("audit unavailable"))?;
        result.map(|(t, _)| Response::new(t))
    }

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
        let caller = self.caller(&request).await?;
        let id = request.into_inner().patient_id;
        let r = async {
            authorize(&caller, Action::Read, "Patient").map_err(status)?;
            if !hospital_store::is_valid_id(&id) {
                return Err(Status::invalid_argument(
                    "patient_id is not a valid FHIR id",
                ));
            }
            let v = reveal(
                &caller,
                "Patient",
                &id,
                self.api.store.read("Patient", &id).await,
            )
            .map_err(status)?;
            Ok((patient_record(&v)?, vec![v]))
        }
        .await;
        self.audited(&caller, "GetPatient", "Patient", r).await
    }

    async fn find_patient_by_identifier(
        &self,
        request: Request<pb::FindPatientByIdentifierRequest>,
    ) -> Result<Response<pb::PatientRecord>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let result = async {
            authorize(&caller, Action::Read, "Patient").map_err(status)?;
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
                Some(v) if visible(&caller, &v) => Ok((patient_record(&v)?, vec![v])),
                _ => Err(Status::not_found("no patient carries this identifier")),
            }
        }
        .await;
        self.audited(&caller, "FindPatientByIdentifier", "Patient", result)
            .await
    }

    async fn get_active_coverage(
        &self,
        request: Request<pb::GetActiveCoverageRequest>,
    ) -> Result<Response<pb::CoverageRecord>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let result = async {
            authorize(&caller, Action::Read, "Coverage").map_err(status)?;
            self.active_coverage(&caller, r).await
        }
        .await;
        self.audited(&caller, "GetActiveCoverage", "Coverage", result)
            .await
    }

    async fn open_encounter(
        &self,
        request: Request<pb::OpenEncounterRequest>,
    ) -> Result<Response<pb::EncounterRecord>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let result = self.open(&caller, r).await;
        self.audit_failure(&caller, "OpenEncounter", "Encounter", &result)
            .await;
        result.map(Response::new)
    }

    async fn close_encounter(
        &self,
        request: Request<pb::CloseEncounterRequest>,
    ) -> Result<Response<pb::EncounterRecord>, Status> {
        let caller = self.caller(&request).await?;
        let id = request.into_inner().encounter_id;
        let result = self.close(&caller, id).await;
        self.audit_failure(&caller, "CloseEncounter", "Encounter", &result)
            .await;
        result.map(Response::new)
    }
}

impl RecordsGrpc {
    async fn active_coverage(
        &self,
        caller: &Caller,
        r: pb::GetActiveCoverageRequest,
    ) -> Result<(pb::CoverageRecord, Vec<Version>), Status> {
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
                    .filter(|p| visible(caller, p))
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
        for v in found.matches.iter().filter(|v| visible(caller, v)) {
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
            return Ok((
                pb::CoverageRecord {
                    id: v.id.clone(),
                    patient_id,
                    card_number: card,
                    benefit_level,
                    registered_facility,
                    valid_from: start.get(..10).unwrap_or(start).to_owned(),
                    valid_to: end.get(..10).unwrap_or(end).to_owned(),
                    resource_json: v.body.clone(),
                },
                vec![v.clone()],
            ));
        }
        Err(Status::not_found("no coverage is active on that date"))
    }

    async fn open(
        &self,
        caller: &Caller,
        r: pb::OpenEncounterRequest,
    ) -> Result<pb::EncounterRecord, Status> {
        authorize(caller, Action::Write, "Encounter").map_err(status)?;
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
        let mut tx = begin_as(&self.api, caller).await.map_err(status)?;
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
        let (v, code) = match existing.matches.into_iter().next() {
            Some(v) => (v, 200),
            None => {
                let out = self
                    .api
                    .writer()
                    .create(&mut tx, "Encounter", None, body, true)
                    .await
                    .map_err(status)?;
                (out.version, 201)
            }
        };
        let touched = Touched::of(std::slice::from_ref(&v));
        commit_audited(tx, caller, "OpenEncounter", "Encounter", touched, code)
            .await
            .map_err(status)?;
        encounter_record(&v)
    }

    async fn close(&self, caller: &Caller, id: String) -> Result<pb::EncounterRecord, Status> {
        authorize(caller, Action::Write, "Encounter").map_err(status)?;
        if !hospital_store::is_valid_id(&id) {
            return Err(Status::invalid_argument(
                "encounter_id is not a valid FHIR id",
            ));
        }
        let mut tx = begin_as(&self.api, caller).await.map_err(status)?;
        let current = tx.read("Encounter", &id).await.map_err(store_status)?;
        let mut body = parse(&current)?;
        let v = match body.get("status").and_then(Value::as_str) {
            Some("finished") => current,
            Some("in-progress" | "arrived" | "triaged" | "planned" | "onleave") => {
                body["status"] = json!("finished");
                body["period"]["end"] = json!(hospital_store::dates::format_instant(
                    hospital_store::dates::now_micros()
                ));
                if let Value::Object(m) = &mut body {
                    m.remove("meta");
                }
                self.api
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
                    .map_err(status)?
                    .version
            }
            other => {
                return Err(Status::failed_precondition(format!(
                    "an encounter in status {other:?} cannot be closed"
                )));
            }
        };
        let touched = Touched::of(std::slice::from_ref(&v));
        commit_audited(tx, caller, "CloseEncounter", "Encounter", touched, 200)
            .await
            .map_err(status)?;
        encounter_record(&v)
    }
}
