//! Which service writes each resource type: fixed, and the same in every process, so that a
//! process can say who owns a type it does not write, and a Bundle that mixes types of several
//! services runs each entry's owner's rules wherever it arrives. A type added later gets its
//! owner here when it is added (a test checks that every supported type has one).

use std::fmt;

/// The services of the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceName {
    Records,
    Telemedicine,
    Billing,
}

impl ServiceName {
    pub const ALL: [ServiceName; 3] = [
        ServiceName::Records,
        ServiceName::Telemedicine,
        ServiceName::Billing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceName::Records => "records",
            ServiceName::Telemedicine => "telemedicine",
            ServiceName::Billing => "billing",
        }
    }

    pub fn parse(s: &str) -> Option<ServiceName> {
        ServiceName::ALL.into_iter().find(|n| n.as_str() == s)
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use ServiceName::*;

/// The ownership table (design brief, "Ownership").
pub static OWNERSHIP: &[(&str, ServiceName)] = &[
    // records: registration, the clinical record, the directory, signatures
    ("Patient", Records),
    ("Coverage", Records),
    ("Encounter", Records),
    ("Observation", Records),
    ("Condition", Records),
    ("AllergyIntolerance", Records),
    ("MedicationRequest", Records),
    ("Procedure", Records),
    ("DiagnosticReport", Records),
    ("DocumentReference", Records),
    ("Consent", Records),
    ("ServiceRequest", Records),
    ("Provenance", Records),
    ("Practitioner", Records),
    ("PractitionerRole", Records),
    ("Organization", Records),
    ("Location", Records),
    ("HealthcareService", Records),
    ("Device", Records),
    ("Medication", Records),
    ("RelatedPerson", Records),
    // records: every department's record (pharmacy, laboratory, radiology, the wards)
    ("MedicationDispense", Records),
    ("MedicationAdministration", Records),
    ("Immunization", Records),
    ("Specimen", Records),
    ("Task", Records),
    ("ImagingStudy", Records),
    ("CarePlan", Records),
    ("CareTeam", Records),
    ("Goal", Records),
    ("Composition", Records),
    ("EpisodeOfCare", Records),
    ("Flag", Records),
    ("FamilyMemberHistory", Records),
    ("ClinicalImpression", Records),
    ("QuestionnaireResponse", Records),
    ("Communication", Records),
    ("DeviceRequest", Records),
    ("List", Records),
    // telemedicine: scheduling
    ("Schedule", Telemedicine),
    ("Slot", Telemedicine),
    ("Appointment", Telemedicine),
    ("AppointmentResponse", Telemedicine),
    // billing: the price list, charges, invoices, payments
    ("ChargeItemDefinition", Billing),
    ("ChargeItem", Billing),
    ("Invoice", Billing),
    ("Account", Billing),
    ("PaymentNotice", Billing),
    ("PaymentReconciliation", Billing),
    // billing: claims to the insurance fund (the Decision 130 export) and its answers
    ("Claim", Billing),
    ("ClaimResponse", Billing),
];

/// The service that writes `resource_type`.
pub fn owner_of(resource_type: &str) -> Option<ServiceName> {
    OWNERSHIP
        .iter()
        .find(|(t, _)| *t == resource_type)
        .map(|(_, s)| *s)
}

/// The types `service` writes, in table order.
pub fn owned_by(service: ServiceName) -> impl Iterator<Item = &'static str> {
    OWNERSHIP
        .iter()
        .filter(move |(_, s)| *s == service)
        .map(|(t, _)| *t)
}

/// Which services one process runs: their REST writes, gRPC services, pages and background
/// work. Every process still links and registers every service's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    services: Vec<ServiceName>,
}

impl Deployment {
    /// The whole system in one process.
    pub fn all() -> Deployment {
        Deployment {
            services: ServiceName::ALL.to_vec(),
        }
    }

    pub fn only(service: ServiceName) -> Deployment {
        Deployment {
            services: vec![service],
        }
    }

    pub fn runs(&self, service: ServiceName) -> bool {
        self.services.contains(&service)
    }

    pub fn services(&self) -> &[ServiceName] {
        &self.services
    }

    /// Whether this process answers plain REST writes of `resource_type`.
    pub fn writes(&self, resource_type: &str) -> bool {
        owner_of(resource_type).is_some_and(|s| self.runs(s))
    }

    /// `all`, or the one service's name.
    pub fn name(&self) -> String {
        if self.services.len() == ServiceName::ALL.len() {
            "all".into()
        } else {
            self.services
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("+")
        }
    }
}
