//! Authentication and audit at the FHIR edge: the middleware gathers a request's credentials
//! for [`hospital_core::Platform::authenticate`] (the same function gRPC uses) and translates
//! the verdict, then runs the request within the caller's bounds
//! ([`hospital_core::Platform::bounded`]: in-flight places, the time limit, panics); [`finish`]
//! lets no response leave without its audit record.

use crate::FhirApi;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hospital_core::{Caller, Credentials, Error, Interaction, Touched};
use std::net::SocketAddr;

/// Completes a request: writes the audit record (unless the write transaction did), then
/// answers. No response leaves without its audit record; if the record cannot be written the
/// request fails. A refused request's record names what it addressed (`target`).
pub async fn finish(
    api: &FhirApi,
    caller: &Caller,
    interaction: Interaction,
    resource_type: &str,
    target: Option<&str>,
    result: Result<(Response, Touched), Error>,
) -> Response {
    let result = result.map_err(|e| (e, target.map(Touched::target).unwrap_or_default()));
    finish_touched(api, caller, interaction, resource_type, result).await
}

/// [`finish`] for a request whose refusal knows what it touched (e.g. the patients of a
/// version a patient may not see): the refusal's record names them too.
pub async fn finish_touched(
    api: &FhirApi,
    caller: &Caller,
    interaction: Interaction,
    resource_type: &str,
    result: Result<(Response, Touched), (Error, Touched)>,
) -> Response {
    match result {
        Ok((response, touched)) => {
            if touched.audited {
                return response;
            }
            let status = response.status().as_u16();
            match api
                .platform
                .audit(caller, interaction, resource_type, &touched, status)
                .await
            {
                Ok(()) => response,
                Err(e) => crate::error::response(&e),
            }
        }
        Err((err, touched)) => {
            let status = crate::error::status(&err).as_u16();
            if let Err(e) = api
                .platform
                .audit(caller, interaction, resource_type, &touched, status)
                .await
            {
                tracing::error!(error = %e, "audit record of a failed request could not be written");
            }
            crate::error::response(&err)
        }
    }
}

/// What a request addresses, from its path below `/fhir`: `Patient/123` (the type and id),
/// or the path itself.
fn target_of(path: &str) -> String {
    let p = path.trim_start_matches("/fhir").trim_matches('/');
    let mut segs = p.split('/');
    match (segs.next(), segs.next()) {
        (Some(t), Some(id)) if !id.starts_with('_') && !id.starts_with('$') => format!("{t}/{id}"),
        (Some(t), _) => t.to_owned(),
        _ => String::new(),
    }
}

/// The authentication middleware of `/fhir`.
pub async fn authenticate(State(api): State<FhirApi>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let target = target_of(req.uri().path());
    let verdict = {
        let h = req.headers();
        let text = |k: &str| h.get(k).and_then(|v| v.to_str().ok());
        let credentials = Credentials {
            authorization: text(header::AUTHORIZATION.as_str()),
            on_behalf_of: text("x-on-behalf-of"),
            peer,
            forwarded_for: text("x-forwarded-for"),
            user_agent: text(header::USER_AGENT.as_str()).unwrap_or(""),
            target: &target,
        };
        api.platform.authenticate(&credentials).await
    };
    let caller = match verdict {
        Ok(caller) => caller,
        Err(e) => return crate::error::response(&e).into_response(),
    };
    req.extensions_mut().insert(caller.clone());
    match api.platform.bounded(&caller, &target, next.run(req)).await {
        Ok((response, place)) => response.map(|body| axum::body::Body::new(place.hold(body))),
        Err(e) => crate::error::response(&e).into_response(),
    }
}
