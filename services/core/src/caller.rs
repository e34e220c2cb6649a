//! Who is calling, and what one request touched (for its audit record).

use crate::compartment;
use crate::interaction::Interaction;
use hospital_auth::{Action, Principal};
use hospital_store::Version;
use hospital_store::audit::AuditRecord;

/// The authenticated caller of one request, whatever the door (REST, Bundle, gRPC, page).
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Principal,
    /// The service that relayed the call on the principal's behalf.
    pub via: Option<String>,
    /// The client's address (the forwarded one only from a trusted proxy).
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

    /// An audit record of this caller doing `interaction` on `resource_type`.
    pub fn record(
        &self,
        interaction: Interaction,
        resource_type: &str,
        touched: &Touched,
        outcome: u16,
    ) -> AuditRecord {
        AuditRecord {
            at: hospital_store::dates::now_micros(),
            actor: self.principal.audit_name(),
            role: self.principal.role.as_str().to_owned(),
            on_behalf_of: self.via.clone().unwrap_or_default(),
            action: interaction.name().to_owned(),
            action_code: interaction.code().to_owned(),
            resource_type: resource_type.to_owned(),
            entities: touched.entities.clone(),
            patients: touched.patients.clone(),
            client: self.client.clone(),
            user_agent: self.user_agent.clone(),
            outcome: i64::from(outcome),
        }
    }

    /// Whether the role and scopes allow `action` on `resource_type`.
    pub fn may(&self, action: Action, resource_type: &str) -> bool {
        self.principal.may(action, resource_type)
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
        self.entity(&format!("{}/{}", v.resource_type, v.id));
        for p in compartment::patients_of(v) {
            self.patient(&p);
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
