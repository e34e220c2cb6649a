//! Authentication, authorisation and audit at the FHIR edge.
//!
//! Every request except `GET /fhir/metadata` carries a JWT bearer token; the caller it names
//! travels with the request as [`Caller`]. Handlers ask [`authorize`] before touching a type
//! and [`visible`] before returning a resource to a patient, and finish through [`finish`],
//! which writes the audit record of reads before the response leaves (writes record theirs
//! inside their own transaction).

use crate::{ApiError, FhirApi};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hospital_auth::{Action, AuthError, Principal, is_patient_data};
use hospital_store::Version;
use hospital_store::audit::AuditRecord;
use serde_json::Value;
use std::net::SocketAddr;

/// The authenticated caller of one request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Principal,
    /// The service that relayed the call on the principal's behalf.
    pub via: Option<String>,
    pub client: String,
    pub user_agent: String,
}

impl Caller {
    /// A caller for work the system does itself (seeding, maintenance commands).
    pub fn system(subject: &str) -> Caller {
        Caller {
            principal: Principal {
                subject: subject.to_owned(),
                role: hospital_auth::Role::Service,
                patient: None,
                practitioner: None,
                scopes: None,
            },
            via: None,
            client: "local".into(),
            user_agent: "hospital".into(),
        }
    }

    /// An audit record of this caller doing `action` on `resource_type`.
    pub fn record(
        &self,
        action: &str,
        resource_type: &str,
        touched: &Touched,
        outcome: u16,
    ) -> AuditRecord {
        AuditRecord {
            at: hospital_store::dates::now_micros(),
            actor: self.principal.audit_name(),
            role: self.principal.role.as_str().to_owned(),
            on_behalf_of: self.via.clone().unwrap_or_default(),
            action: action.to_owned(),
            resource_type: resource_type.to_owned(),
            entities: touched.entities.clone(),
            patients: touched.patients.clone(),
            client: self.client.clone(),
            user_agent: self.user_agent.clone(),
            outcome: i64::from(outcome),
        }
    }
}

/// What a request touched, for its audit record.
#[derive(Debug, Default, Clone)]
pub struct Touched {
    pub entities: Vec<String>,
    pub patients: Vec<String>,
    /// The record was already written inside the request's write transaction.
    pub audited: bool,
}

impl Touched {
    pub fn add(&mut self, v: &Version) {
        self.entities.push(format!("{}/{}", v.resource_type, v.id));
        for p in patients_in(v) {
            if !self.patients.contains(&p) {
                self.patients.push(p);
            }
        }
    }

    pub fn of(versions: &[Version]) -> Touched {
        let mut t = Touched::default();
        for v in versions {
            t.add(v);
        }
        t
    }
}

/// Ids of the patients a stored version belongs to or mentions (`Patient/<id>` references).
pub fn patients_in(v: &Version) -> Vec<String> {
    let mut out = Vec::new();
    if v.resource_type == "Patient" {
        out.push(v.id.clone());
    }
    let mut rest = v.body.as_str();
    while let Some(i) = rest.find("\"Patient/") {
        rest = &rest[i + 9..];
        let id: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
            .take(64)
            .collect();
        if !id.is_empty() && !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// Refuses `action` on `resource_type` unless the caller's role and scopes allow it.
pub fn authorize(caller: &Caller, action: Action, resource_type: &str) -> Result<(), ApiError> {
    if caller.principal.may(action, resource_type) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "the {} role may not {} {resource_type}",
            caller.principal.role.as_str(),
            match action {
                Action::Read => "read",
                Action::Write => "write",
            }
        )))
    }
}

/// Whether the caller may see this version: a patient sees only their own compartment.
pub fn visible(caller: &Caller, v: &Version) -> bool {
    let Some(pid) = caller.principal.compartment() else {
        return true;
    };
    if !is_patient_data(&v.resource_type) {
        return true;
    }
    if v.resource_type == "Patient" {
        return v.id == pid;
    }
    let Ok(body) = serde_json::from_str::<Value>(&v.body) else {
        return false;
    };
    hospital_store::extract::extract(&v.resource_type, &body)
        .references
        .iter()
        .any(|(_, t, id)| t == "Patient" && id == pid)
}

/// The answer to a caller who addressed `rtype/id` directly: the version read, unless the
/// caller is confined to a compartment it is not in. Then it is "not known" — never 403 or
/// 410 — so that a patient cannot learn that someone else's resource exists or was deleted.
pub fn reveal(
    caller: &Caller,
    rtype: &str,
    id: &str,
    read: Result<Version, hospital_store::StoreError>,
) -> Result<Version, ApiError> {
    let hidden = || ApiError::NotFound(format!("{rtype}/{id} is not known"));
    match read {
        Ok(v) if visible(caller, &v) => Ok(v),
        Ok(_) => Err(hidden()),
        Err(hospital_store::StoreError::Gone(_)) if caller.principal.compartment().is_some() => {
            Err(hidden())
        }
        Err(e) => Err(e.into()),
    }
}

/// Completes a request: writes the audit record (unless the write transaction did), then
/// answers. No response leaves without its audit record; if the record cannot be written the
/// request fails.
pub async fn finish(
    api: &FhirApi,
    caller: &Caller,
    action: &str,
    resource_type: &str,
    result: Result<(Response, Touched), ApiError>,
) -> Response {
    match result {
        Ok((response, touched)) => {
            if touched.audited {
                return response;
            }
            let record = caller.record(action, resource_type, &touched, response.status().as_u16());
            match api.security.audit.record(record).await {
                Ok(()) => response,
                Err(e) => {
                    tracing::error!(error = %e, "audit record could not be written; refusing the request");
                    ApiError::Internal("audit unavailable".into()).into_response()
                }
            }
        }
        Err(err) => {
            let record = caller.record(
                action,
                resource_type,
                &Touched::default(),
                err.status().as_u16(),
            );
            if let Err(e) = api.security.audit.record(record).await {
                tracing::error!(error = %e, "audit record of a failed request could not be written");
            }
            err.into_response()
        }
    }
}

fn client_of(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The authentication middleware of `/fhir`.
pub async fn authenticate(State(api): State<FhirApi>, mut req: Request, next: Next) -> Response {
    let client = client_of(&req);
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(300)
        .collect::<String>();
    let anonymous = |outcome: u16| AuditRecord {
        at: hospital_store::dates::now_micros(),
        actor: "anonymous".into(),
        role: String::new(),
        on_behalf_of: String::new(),
        action: "authenticate".into(),
        resource_type: String::new(),
        entities: Vec::new(),
        patients: Vec::new(),
        client: client.clone(),
        user_agent: user_agent.clone(),
        outcome: i64::from(outcome),
    };
    let delay = match api.security.throttle.check(&client) {
        Ok(d) => d,
        Err(hospital_auth::LockedOut) => {
            let _ = api.security.audit.record(anonymous(429)).await;
            return ApiError::TooManyRequests(AuthError::Throttled.to_string()).into_response();
        }
    };
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .map(str::to_owned);
    let verified = match token {
        None => Err(AuthError::Missing),
        Some(t) => api.security.auth.verify(&t).await,
    };
    let mut principal = match verified {
        Ok(p) => p,
        Err(e) => {
            api.security.throttle.failed(&client);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let _ = api.security.audit.record(anonymous(401)).await;
            return ApiError::Unauthorized(e.to_string()).into_response();
        }
    };
    let mut via = None;
    // A service relays the user it acts for; authorise and audit as that user.
    if principal.role == hospital_auth::Role::Service
        && let Some(user) = req
            .headers()
            .get("x-on-behalf-of")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    {
        match api.security.auth.verify(&user).await {
            Ok(u) => {
                via = Some(principal.audit_name());
                principal = u;
            }
            Err(e) => {
                let _ = api.security.audit.record(anonymous(401)).await;
                return ApiError::Unauthorized(format!("on-behalf-of token: {e}")).into_response();
            }
        }
    }
    req.extensions_mut().insert(Caller {
        principal,
        via,
        client,
        user_agent,
    });
    next.run(req).await
}
