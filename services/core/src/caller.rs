//! Who is calling.

use hospital_auth::{Action, Principal};

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

    /// Whether the role and scopes allow `action` on `resource_type`.
    pub fn may(&self, action: Action, resource_type: &str) -> bool {
        self.principal.may(action, resource_type)
    }
}
