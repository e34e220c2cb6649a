//! Calls from one service to another: deadline, service token (local, or by the OAuth2
//! client-credentials grant), the user acted for, and retries only where they are safe.

use crate::common::*;
use hospital_core::ServiceName;
use hospital_core::auth::Role;
use hospital_grpc::outbound::{Idempotency, Outbound, ServiceToken, TokenSource};
use hospital_proto::records::v1 as pb;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tonic::Code;

hospital_test_kit::on_both_backends!(
    an_outbound_call_carries_the_service_token_and_the_user_it_acts_for
);

async fn get_patient(client: &Outbound, id: &str, user: Option<&str>) -> Result<String, Code> {
    client
        .call(
            pb::GetPatientRequest {
                patient_id: id.to_owned(),
            },
            user,
            Idempotency::Safe,
            |ch, req| async move {
                pb::records_client::RecordsClient::new(ch)
                    .get_patient(req)
                    .await
            },
        )
        .await
        .map(|p| p.id)
        .map_err(|s| s.code())
}

async fn an_outbound_call_carries_the_service_token_and_the_user_it_acts_for(b: Backend) {
    let app = spawn_app(b).await;
    let an = app.create(patient_an("051085000701")).await;
    let binh = app.create(patient_an("051085000702")).await;
    let records = app
        .running
        .as_ref()
        .unwrap()
        .context
        .clients
        .of(ServiceName::Records)
        .clone();
    assert_eq!(get_patient(&records, &binh, None).await, Ok(binh.clone()));
    let user = mint(Role::Patient, "an", Some(&an), None, None);
    assert_eq!(
        get_patient(&records, &an, Some(&user)).await,
        Ok(an.clone())
    );
    assert_eq!(
        get_patient(&records, &binh, Some(&user)).await,
        Err(Code::NotFound),
        "acting for An, the service sees only An's"
    );
    let trail = app
        .audit_events(&format!("patient={an}&agent=patient:an"))
        .await;
    assert_eq!(
        trail[0]["agent"][1]["who"]["identifier"]["value"], "service:all",
        "{trail:?}"
    );
    app.stop().await;
}

fn local_token() -> Arc<ServiceToken> {
    ServiceToken::new(TokenSource::Local {
        auth: hospital_core::auth::Authenticator::local(
            hospital_core::auth::Secret(hospital::config::TEST_SECRET.as_bytes().to_vec()),
            "hospital-local",
            "hospital",
        ),
        subject: "billing".into(),
    })
}

/// A TCP listener that accepts connections and, per `hold`, keeps them silent or drops
/// them at once; it counts what it accepted.
async fn unhelpful_peer(hold: bool) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            if hold {
                held.push(socket);
            }
        }
    });
    (format!("http://{addr}"), count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_safe_call_is_retried_and_an_unkeyed_write_is_made_once() {
    for (idempotency, want) in [
        (Idempotency::Safe, 3),
        (Idempotency::Keyed("k-1".into()), 3),
        (Idempotency::Unsafe, 1),
    ] {
        let (url, accepted) = unhelpful_peer(false).await;
        let client = Outbound::new(&url, local_token(), Duration::from_millis(500)).unwrap();
        let r = client
            .call(
                pb::GetPatientRequest {
                    patient_id: "x".into(),
                },
                None,
                idempotency.clone(),
                |ch, req| async move {
                    pb::records_client::RecordsClient::new(ch)
                        .get_patient(req)
                        .await
                },
            )
            .await;
        let code = r.unwrap_err().code();
        assert!(
            matches!(code, Code::Unavailable | Code::Unknown | Code::Cancelled),
            "{idempotency:?}: {code:?}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), want, "{idempotency:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_to_a_silent_service_ends_at_its_deadline() {
    let (url, _) = unhelpful_peer(true).await;
    let client = Outbound::new(&url, local_token(), Duration::from_millis(300)).unwrap();
    let t = Instant::now();
    let r = get_patient(&client, "x", None).await;
    assert!(r.is_err());
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_service_token_comes_from_the_client_credentials_grant_and_is_reused() {
    let app = spawn_app(Backend::Sqlite).await;
    let an = app.create(patient_an("051085000703")).await;
    // The identity provider's token endpoint (RFC 6749 §4.4), as a provider answers it.
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let endpoint = axum::Router::new().route(
        "/token",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                let basic = headers["authorization"].to_str().unwrap().to_owned();
                use base64::Engine as _;
                let expected = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("billing:s3cret")
                );
                if basic != expected || body != "grant_type=client_credentials" {
                    return (axum::http::StatusCode::UNAUTHORIZED, "{}".to_owned());
                }
                let token = mint(Role::Service, "billing", None, None, None);
                (
                    axum::http::StatusCode::OK,
                    serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": 300})
                        .to_string(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, endpoint).await.unwrap() });
    let token = |secret: &str| {
        ServiceToken::new(TokenSource::ClientCredentials {
            token_url: format!("http://{addr}/token"),
            client_id: "billing".into(),
            client_secret: secret.into(),
            http: reqwest::Client::new(),
        })
    };
    let client = Outbound::new(&app.grpc, token("s3cret"), Duration::from_secs(5)).unwrap();
    for _ in 0..3 {
        assert_eq!(get_patient(&client, &an, None).await, Ok(an.clone()));
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the token is cached until it expires"
    );
    let refused = Outbound::new(&app.grpc, token("wrong"), Duration::from_secs(5)).unwrap();
    assert_eq!(
        get_patient(&refused, &an, None).await,
        Err(Code::Unavailable)
    );
    app.stop().await;
}
