//! What one request touched, and its audit record.

use crate::caller::Caller;
use crate::compartment;
use crate::interaction::Interaction;
use hospital_store::Version;
use hospital_store::audit::AuditRecord;

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
        self.entity(&format!("{}/{}", v.resource_type, v.id));
        for p in compartment::patients_of(v) {
            self.patient(&p);
        }
    }

    /// The audit record of `caller` doing `interaction` on `resource_type`, touching this.
    pub fn record(
        &self,
        caller: &Caller,
        interaction: Interaction,
        resource_type: &str,
        outcome: u16,
    ) -> AuditRecord {
        AuditRecord {
            at: hospital_store::dates::now_micros(),
            actor: caller.principal.audit_name(),
            role: caller.principal.role.as_str().to_owned(),
            on_behalf_of: caller.via.clone().unwrap_or_default(),
            action: interaction.name().to_owned(),
            action_code: interaction.code().to_owned(),
            resource_type: resource_type.to_owned(),
            entities: self.entities.clone(),
            patients: self.patients.clone(),
            client: caller.client.clone(),
            user_agent: caller.user_agent.clone(),
            outcome: i64::from(outcome),
        }
    }

    pub fn of(versions: &[Version]) -> Touched {
        let mut t = Touched::default();
        for v in versions {
            t.add(v);
        }
        t
    }

    /// Names a target that was not (or could not be) read, e.g. of a refused request.
    pub fn target(entity: &str) -> Touched {
        let mut t = Touched::default();
        t.entity(entity);
        t
    }

    pub fn entity(&mut self, e: &str) {
        if !self.entities.iter().any(|x| x == e) {
            self.entities.push(e.to_owned());
        }
    }

    pub fn patient(&mut self, p: &str) {
        if !self.patients.iter().any(|x| x == p) {
            self.patients.push(p.to_owned());
        }
    }
}
