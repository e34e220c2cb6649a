//! The one write door. REST, Bundle entries, gRPC calls and operations all write through
//! [`Writer`], which runs the owner's rules on every write.

use crate::error::{Error, codes};
use crate::ownership::owner_of;
use crate::rules::{Checks, Origin, ResourceRules, Write, WriteKind};
use crate::tx::Tx;
use hospital_store::{Version, WriteOutcome};
use serde_json::Value;
use std::sync::Arc;

/// Writes through the owners' rules.
pub struct Writer<'a> {
    pub(crate) registry: &'a crate::rules::Registry,
}

impl Writer<'_> {
    fn rules(&self, resource_type: &str) -> Result<Arc<dyn ResourceRules>, Error> {
        if !hospital_fhir_model::is_supported(resource_type) {
            return Err(Error::new(
                codes::NO_SUCH_ENDPOINT,
                format!("resource type `{resource_type}` is not supported"),
            ));
        }
        self.registry.rules(resource_type).cloned().ok_or_else(|| {
            Error::new(
                codes::OWNED_ELSEWHERE,
                format!(
                    "{resource_type} is written by the {} service, which this process does not know",
                    owner_of(resource_type).map_or("(no)", |s| s.as_str())
                ),
            )
        })
    }

    /// Creates `body` (server-assigned id unless `id` is given) and checks it.
    pub async fn create(
        &self,
        tx: &mut Tx,
        resource_type: &str,
        id: Option<&str>,
        body: Value,
        checks: Checks,
    ) -> Result<WriteOutcome, Error> {
        self.create_as(tx, resource_type, id, body, checks, Origin::Client)
            .await
    }

    pub(crate) async fn create_as(
        &self,
        tx: &mut Tx,
        resource_type: &str,
        id: Option<&str>,
        mut body: Value,
        checks: Checks,
        origin: Origin,
    ) -> Result<WriteOutcome, Error> {
        let rules = self.rules(resource_type)?;
        let id = id
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if let Value::Object(m) = &mut body {
            m.remove("id");
        }
        let write = Write {
            resource_type,
            id: &id,
            kind: WriteKind::Create,
            origin,
        };
        rules.prepare(tx, &write, &mut body).await?;
        let out = tx
            .inner
            .create_with_id(&crate::WRITE_KEY, resource_type, &id, body)
            .await?;
        if checks == Checks::Now {
            self.check(tx, &out.version).await?;
        }
        Ok(out)
    }

    /// Updates (or creates at a client-chosen id) `resource_type/id`. A signed entry is
    /// refused: it can only be amended.
    pub async fn update(
        &self,
        tx: &mut Tx,
        resource_type: &str,
        id: &str,
        body: Value,
        if_match: Option<i64>,
        checks: Checks,
    ) -> Result<WriteOutcome, Error> {
        if crate::rules::is_signable(resource_type) && tx.is_signed(resource_type, id).await? {
            return Err(Error::new(
                codes::SIGNED_ENTRY,
                format!("{resource_type}/{id} is signed; correct it with $amend and a reason"),
            ));
        }
        self.update_any(
            tx,
            resource_type,
            id,
            body,
            if_match,
            checks,
            Origin::Client,
        )
        .await
    }

    /// Applies a JSON Patch to the current version of `resource_type/id` and writes the
    /// result as an [`Writer::update`] (so the owner's rules, validation and the refusal of a
    /// signed entry are those of a PUT). The row is read locked, so no concurrent write slips
    /// between the version patched and the one written; `if_match` names the version the
    /// client patched.
    pub async fn patch(
        &self,
        tx: &mut Tx,
        resource_type: &str,
        id: &str,
        patch: &crate::patch::JsonPatch,
        if_match: Option<i64>,
        checks: Checks,
    ) -> Result<WriteOutcome, Error> {
        let current = tx.read_for_update(resource_type, id).await?;
        if let Some(expected) = if_match
            && expected != current.version_id
        {
            return Err(hospital_store::StoreError::VersionConflict {
                expected,
                current: current.version_id,
            }
            .into());
        }
        let mut body: Value = serde_json::from_str(&current.body)
            .map_err(|e| Error::internal(format!("stored body unreadable: {e}")))?;
        patch.apply(&mut body)?;
        if body.get("resourceType").and_then(Value::as_str) != Some(resource_type) {
            return Err(Error::invalid(
                "resourceType",
                format!("a patch cannot make the {resource_type} another type of resource"),
            ));
        }
        self.update(
            tx,
            resource_type,
            id,
            body,
            Some(current.version_id),
            checks,
        )
        .await
    }

    /// A create by the owning service's own logic ([`Origin::Service`]), which its rules may
    /// allow where they refuse a client.
    pub async fn create_by_service(
        &self,
        tx: &mut Tx,
        resource_type: &str,
        body: Value,
    ) -> Result<WriteOutcome, Error> {
        self.create_as(tx, resource_type, None, body, Checks::Now, Origin::Service)
            .await
    }

    /// An update by the owning service's own logic ([`Origin::Service`]).
    pub async fn update_by_service(
        &self,
        tx: &mut Tx,
        resource_type: &str,
        id: &str,
        body: Value,
        if_match: Option<i64>,
    ) -> Result<WriteOutcome, Error> {
        self.update_any(
            tx,
            resource_type,
            id,
            body,
            if_match,
            Checks::Now,
            Origin::Service,
        )
        .await
    }

    /// The amendment of a (signed) entry: a new version; the caller signs it in the same
    /// transaction.
    pub(crate) async fn amend(
        &self,
        tx: &mut Tx,
        resource_type: &str,
        id: &str,
        body: Value,
    ) -> Result<WriteOutcome, Error> {
        tx.read(resource_type, id).await?;
        self.update_any(
            tx,
            resource_type,
            id,
            body,
            None,
            Checks::Now,
            Origin::Signature,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn update_any(
        &self,
        tx: &mut Tx,
        resource_type: &str,
        id: &str,
        mut body: Value,
        if_match: Option<i64>,
        checks: Checks,
        origin: Origin,
    ) -> Result<WriteOutcome, Error> {
        let rules = self.rules(resource_type)?;
        match body.get("id").and_then(Value::as_str) {
            Some(b) if b == id => {}
            Some(b) => {
                return Err(Error::invalid(
                    format!("{resource_type}.id"),
                    format!("the body's id `{b}` differs from the id `{id}` in the URL"),
                ));
            }
            None => {
                return Err(Error::invalid(
                    format!("{resource_type}.id"),
                    "an update must carry the resource id in the body",
                ));
            }
        }
        let write = Write {
            resource_type,
            id,
            kind: WriteKind::Update,
            origin,
        };
        rules.prepare(tx, &write, &mut body).await?;
        let out = tx
            .inner
            .update(&crate::WRITE_KEY, resource_type, id, body, if_match)
            .await?;
        if checks == Checks::Now {
            self.check(tx, &out.version).await?;
        }
        Ok(out)
    }

    /// Deletes `resource_type/id`.
    pub async fn delete(
        &self,
        tx: &mut Tx,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<Version>, Error> {
        self.rules(resource_type)?;
        if crate::rules::is_signable(resource_type) && tx.is_signed(resource_type, id).await? {
            return Err(Error::new(
                codes::SIGNED_ENTRY,
                format!(
                    "{resource_type}/{id} is signed and cannot be deleted; amend it with a reason"
                ),
            ));
        }
        Ok(tx
            .inner
            .delete(&crate::WRITE_KEY, resource_type, id)
            .await?)
    }

    /// Runs the owner's post-write checks on a written version.
    pub async fn check(&self, tx: &mut Tx, v: &Version) -> Result<(), Error> {
        let rules = self.rules(&v.resource_type)?;
        let body: Value = serde_json::from_str(&v.body)
            .map_err(|e| Error::internal(format!("stored body unreadable: {e}")))?;
        rules.check(tx, &v.resource_type, &body).await
    }
}
