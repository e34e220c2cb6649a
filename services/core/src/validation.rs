//! `$validate` (<https://hl7.org/fhir/R4B/resource-operation-validate.html>): whether a write
//! would be accepted, and if not the refusal it would meet. The write is made through the
//! [`crate::Writer`] — the owner's rules, FHIR validation, unique identifiers, the refusal of a
//! signed entry — in a transaction that is then rolled back, so the answer is the write's own
//! and nothing is kept. (On PostgreSQL a rolled-back write still uses up the numbers it drew
//! from a sequence, as a refused write does: a facility code may be skipped.)

use crate::caller::Caller;
use crate::compartment::{patients_of_body, standing_patients};
use crate::error::{Error, Kind, codes};
use crate::platform::Platform;
use crate::rules::Checks;
use crate::touched::Touched;
use serde_json::Value;

/// The write to try.
#[derive(Debug, Clone)]
pub enum Proposal {
    /// A create of this resource (`POST [type]/$validate`, mode create or none).
    Create(Value),
    /// An update of `id` to this resource (`POST [type]/[id]/$validate`, mode update or none).
    Update { id: String, body: Value },
    /// The deletion of `id` (mode delete).
    Delete { id: String },
}

/// What the write would have met.
#[derive(Debug)]
pub enum Verdict {
    Accepted,
    /// The refusal, as the write would have answered it.
    Refused(Error),
}

/// Whether a refusal is about the proposed write itself (the answer of a validation) rather
/// than a reason the validation could not be made (a busy database, a fault).
fn about_the_write(e: &Error) -> bool {
    matches!(
        e.kind(),
        Kind::Invalid | Kind::Conflict | Kind::PreconditionFailed | Kind::BusinessRule
    ) && e.code != codes::CONTENTION
        && e.code != codes::CREATED_CONCURRENTLY
}

/// Tries `proposal` on `resource_type` as `caller` would write it, and rolls it back. The
/// caller's authorisation to write the type is the edge's to check first, as for a write.
/// `Err` means the validation could not be made; what it touched names the patients of the
/// proposal and of the resource it would change, for the audit record.
pub async fn validate(
    platform: &Platform,
    caller: &Caller,
    resource_type: &str,
    proposal: Proposal,
) -> Result<(Verdict, Touched), Error> {
    let mut touched = Touched::default();
    match &proposal {
        Proposal::Create(body) => {
            touched.entity(resource_type);
            for p in patients_of_body(resource_type, "", body) {
                touched.patient(&p);
            }
        }
        Proposal::Update { id, body } => {
            touched.entity(&format!("{resource_type}/{id}"));
            for p in patients_of_body(resource_type, id, body) {
                touched.patient(&p);
            }
        }
        Proposal::Delete { id } => touched.entity(&format!("{resource_type}/{id}")),
    }
    if let Proposal::Update { id, .. } | Proposal::Delete { id } = &proposal {
        for p in standing_patients(platform.store(), resource_type, id).await? {
            touched.patient(&p);
        }
    }
    let writer = platform.writer();
    let mut tx = platform.begin(caller).await?;
    let tried = match proposal {
        Proposal::Create(body) => writer
            .create(&mut tx, resource_type, None, body, Checks::Now)
            .await
            .map(drop),
        Proposal::Update { id, body } => writer
            .update(&mut tx, resource_type, &id, body, None, Checks::Now)
            .await
            .map(drop),
        Proposal::Delete { id } => match tx.read(resource_type, &id).await {
            Ok(_) => writer.delete(&mut tx, resource_type, &id).await.map(drop),
            Err(e) => Err(e),
        },
    };
    tx.rollback().await?;
    match tried {
        Ok(()) => Ok((Verdict::Accepted, touched)),
        Err(e) if about_the_write(&e) => Ok((Verdict::Refused(e), touched)),
        Err(e) => Err(e),
    }
}
