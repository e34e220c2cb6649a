//! The rules of the service that owns a resource type, run by [`crate::Writer`] inside the
//! write transaction whatever the door (REST, Bundle entry, gRPC, an operation).

use crate::error::Error;
use crate::ownership::{ServiceName, owner_of};
use crate::tx::Tx;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Whether a write makes a new resource or a new version of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// A POST: a new, server-assigned (or Bundle-assigned) id.
    Create,
    /// A PUT: update, or create at a client-chosen id.
    Update,
}

/// Who is behind a write, beyond the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A client's write through REST, a Bundle or gRPC.
    Client,
    /// The platform recording a signature ($sign, $amend): the only writer of Provenance.
    Signature,
    /// The owning service recording what it learned itself, not what a client sent (billing's
    /// ledger from bank feeds: the only writer of PaymentNotice and of an Invoice's paid state).
    Service,
}

/// One write about to happen.
#[derive(Debug, Clone, Copy)]
pub struct Write<'a> {
    pub resource_type: &'a str,
    /// The id it will be stored under.
    pub id: &'a str,
    pub kind: WriteKind,
    pub origin: Origin,
}

/// When a write's post-write checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// Right after the write (a single write).
    Now,
    /// After every write of the transaction (a Bundle: entries may reference each other).
    Deferred,
}

/// The rules of a resource type's owner.
#[async_trait]
pub trait ResourceRules: Send + Sync {
    /// Checks and completes a resource before it is stored (identifier rules, assigned codes).
    async fn prepare(&self, tx: &mut Tx, write: &Write<'_>, body: &mut Value) -> Result<(), Error>;

    /// Checks a stored resource against the rest of the store once every write of the
    /// transaction is done (e.g. that its references resolve).
    async fn check(&self, tx: &mut Tx, resource_type: &str, body: &Value) -> Result<(), Error>;
}

/// What a service brings to every process, whichever services that process runs: the rules
/// of the types it owns, and the identifier systems that must stay unique.
pub struct ServiceDefinition {
    pub name: ServiceName,
    pub rules: Vec<(&'static str, Arc<dyn ResourceRules>)>,
    /// `(resource type, identifier system)` pairs that may name one resource only.
    pub unique_identifiers: &'static [(&'static str, &'static str)],
    /// The search parameters of the types it owns (its own crate: FHIR's, generated, and the
    /// hospital's own).
    pub search_params: &'static [&'static [hospital_store::params::SearchParam]],
    /// Combined indexes over those parameters, for the searches its users make most.
    pub combined_indexes: &'static [hospital_store::params::ComboIndex],
}

impl ServiceDefinition {
    /// A service whose types have no rules of their own yet: each is written with the
    /// platform's common rule, [`ReferencesResolve`].
    pub fn references_only(
        name: ServiceName,
        search_params: &'static [&'static [hospital_store::params::SearchParam]],
    ) -> ServiceDefinition {
        let rules: Arc<dyn ResourceRules> = Arc::new(ReferencesResolve);
        ServiceDefinition {
            name,
            rules: crate::ownership::owned_by(name)
                .map(|t| (t, rules.clone()))
                .collect(),
            unique_identifiers: &[],
            search_params,
            combined_indexes: &[],
        }
    }
}

/// Every service's rules, by type.
#[derive(Clone, Default)]
pub struct Registry {
    rules: HashMap<&'static str, Arc<dyn ResourceRules>>,
    unique: Vec<(&'static str, &'static str)>,
    params: Vec<&'static [hospital_store::params::SearchParam]>,
    combos: Vec<&'static [hospital_store::params::ComboIndex]>,
    services: Vec<ServiceName>,
}

impl Registry {
    /// Registers a service's definition. A service may only give rules for the types the
    /// ownership table gives it; anything else is a programming error, refused at start-up.
    pub fn register(&mut self, def: ServiceDefinition) -> Result<(), String> {
        for (t, rules) in def.rules {
            if owner_of(t) != Some(def.name) {
                return Err(format!(
                    "the {} service registered rules for {t}, which the ownership table gives to {}",
                    def.name,
                    owner_of(t).map_or("no service", ServiceName::as_str)
                ));
            }
            self.rules.insert(t, rules);
        }
        for p in def.search_params.iter().flat_map(|s| s.iter()) {
            if owner_of(p.resource_type) != Some(def.name) {
                return Err(format!(
                    "the {} service declared the search parameter {}.{} of a type it does not own",
                    def.name, p.resource_type, p.name
                ));
            }
        }
        for c in def.combined_indexes {
            if owner_of(c.resource_type) != Some(def.name) {
                return Err(format!(
                    "the {} service declared the combined index {}.{} of a type it does not own",
                    def.name, c.resource_type, c.name
                ));
            }
        }
        self.params.extend_from_slice(def.search_params);
        self.combos.push(def.combined_indexes);
        self.unique.extend_from_slice(def.unique_identifiers);
        self.services.push(def.name);
        Ok(())
    }

    pub fn rules(&self, resource_type: &str) -> Option<&Arc<dyn ResourceRules>> {
        self.rules.get(resource_type)
    }

    /// Installs every registered service's search parameters in the store (once per process).
    pub fn install_search_params(&self) -> Result<(), String> {
        hospital_store::params::install(&self.params, &self.combos)
    }

    pub fn unique_identifiers(&self) -> &[(&'static str, &'static str)] {
        &self.unique
    }

    pub fn registered(&self, service: ServiceName) -> bool {
        self.services.contains(&service)
    }
}

/// Rules for a type whose owner has no rules of its own yet: every reference to a Patient,
/// Encounter, Practitioner or Organization must resolve.
pub struct ReferencesResolve;

#[async_trait]
impl ResourceRules for ReferencesResolve {
    async fn prepare(&self, _: &mut Tx, _: &Write<'_>, _: &mut Value) -> Result<(), Error> {
        Ok(())
    }

    async fn check(&self, tx: &mut Tx, _resource_type: &str, body: &Value) -> Result<(), Error> {
        check_references(tx, body).await
    }
}

/// Whether entries of `resource_type` are signed: clinical entries only (Provenance records
/// signatures and is not itself signed). Registration and directory data are never frozen.
pub fn is_signable(resource_type: &str) -> bool {
    hospital_auth::category(resource_type) == Some(hospital_auth::Category::Clinical)
        && resource_type != "Provenance"
}

/// Reference targets that must exist when a resource points at them.
const CHECKED_TARGETS: &[&str] = &["Patient", "Encounter", "Practitioner", "Organization"];

/// Every relative reference of `body` to a Patient, Encounter, Practitioner or Organization
/// resolves to a stored resource (absolute and contained references are not checked).
pub async fn check_references(tx: &mut Tx, body: &Value) -> Result<(), Error> {
    use hospital_store::extract::{all_references, split_reference};
    let references = all_references(body);
    // Each target once, all in one query.
    let mut seen = std::collections::HashSet::new();
    let mut targets: Vec<(&str, &str)> = Vec::new();
    for (_, reference) in &references {
        if let Some((t, id)) = split_reference(reference)
            && CHECKED_TARGETS.contains(&t)
            && seen.insert((t, id))
        {
            targets.push((t, id));
        }
    }
    let missing: std::collections::HashSet<(String, String)> =
        tx.missing(&targets).await?.into_iter().collect();
    // The first reference, in document order, that does not resolve.
    for (path, reference) in &references {
        if let Some((t, id)) = split_reference(reference)
            && missing.contains(&(t.to_owned(), id.to_owned()))
        {
            return Err(Error::invalid(
                format!("{path}.reference"),
                format!("the reference `{t}/{id}` does not resolve to a stored resource"),
            ));
        }
    }
    Ok(())
}
