//! What each role may do, as data. `docs/access.md` states the same table for people, and
//! `tests/access_control.rs` walks that document through the public API, so the two cannot
//! drift apart.

use crate::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Write,
}

/// Groups of resource types that roles are granted together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Who the patient is, who is close to them, and how they are insured.
    Registration,
    /// The clinical record.
    Clinical,
    /// Organisations, practitioners, locations, services, devices, the medicines stocked.
    Directory,
    /// Schedules, slots, appointments and the answers to them.
    Scheduling,
    /// The price list: what the hospital charges, and what BHYT pays for.
    Prices,
    /// Charges for care given (a clinician's only for encounters they take part in).
    Charges,
    /// Invoices, accounts, payments, and claims to the insurance fund.
    Billing,
    /// The audit trail.
    Audit,
}

pub fn category(resource_type: &str) -> Option<Category> {
    Some(match resource_type {
        "Patient" | "Coverage" | "RelatedPerson" => Category::Registration,
        "Encounter"
        | "Observation"
        | "Condition"
        | "AllergyIntolerance"
        | "MedicationRequest"
        | "Procedure"
        | "DiagnosticReport"
        | "DocumentReference"
        | "ServiceRequest"
        | "Consent"
        | "Provenance"
        | "MedicationDispense"
        | "MedicationAdministration"
        | "Immunization"
        | "Specimen"
        | "Task"
        | "ImagingStudy"
        | "CarePlan"
        | "CareTeam"
        | "Goal"
        | "Composition"
        | "EpisodeOfCare"
        | "Flag"
        | "FamilyMemberHistory"
        | "ClinicalImpression"
        | "QuestionnaireResponse"
        | "Communication"
        | "DeviceRequest"
        | "List" => Category::Clinical,
        "Organization" | "Practitioner" | "PractitionerRole" | "Location" | "HealthcareService"
        | "Device" | "Medication" => Category::Directory,
        "Schedule" | "Slot" | "Appointment" | "AppointmentResponse" => Category::Scheduling,
        "ChargeItemDefinition" => Category::Prices,
        "ChargeItem" => Category::Charges,
        "Invoice"
        | "Account"
        | "PaymentNotice"
        | "PaymentReconciliation"
        | "Claim"
        | "ClaimResponse" => Category::Billing,
        "AuditEvent" => Category::Audit,
        _ => return None,
    })
}

/// Types that belong to a patient's compartment: a patient token sees only its own.
pub fn is_patient_data(resource_type: &str) -> bool {
    matches!(
        category(resource_type),
        Some(Category::Registration | Category::Clinical | Category::Charges | Category::Billing)
    ) || matches!(resource_type, "Appointment" | "AppointmentResponse")
}

/// One grant: `role` may read / write the types of `category`.
#[derive(Debug, Clone, Copy)]
pub struct PolicyRow {
    pub role: Role,
    pub category: Category,
    pub read: bool,
    pub write: bool,
}

const fn row(role: Role, category: Category, read: bool, write: bool) -> PolicyRow {
    PolicyRow {
        role,
        category,
        read,
        write,
    }
}

use Category::*;
use Role::*;

/// The grants. Anything not granted is denied. A patient's reads are further confined to
/// their own compartment.
pub static POLICY: &[PolicyRow] = &[
    row(Patient, Registration, true, false),
    row(Patient, Clinical, true, false),
    row(Patient, Directory, true, false),
    row(Patient, Scheduling, true, false),
    row(Patient, Prices, true, false),
    row(Patient, Charges, true, false),
    row(Patient, Billing, true, false),
    row(Clinician, Registration, true, true),
    row(Clinician, Clinical, true, true),
    row(Clinician, Directory, true, false),
    row(Clinician, Scheduling, true, true),
    row(Clinician, Prices, true, false),
    row(Clinician, Charges, true, true),
    row(Clinician, Billing, true, false),
    row(Cashier, Registration, true, true),
    row(Cashier, Directory, true, false),
    row(Cashier, Scheduling, true, false),
    row(Cashier, Prices, true, false),
    row(Cashier, Charges, true, true),
    row(Cashier, Billing, true, true),
    row(Admin, Registration, true, false),
    row(Admin, Clinical, true, false),
    row(Admin, Directory, true, true),
    row(Admin, Scheduling, true, false),
    row(Admin, Prices, true, true),
    row(Admin, Charges, true, false),
    row(Admin, Billing, true, false),
    row(Admin, Audit, true, false),
    row(Service, Registration, true, true),
    row(Service, Clinical, true, true),
    row(Service, Directory, true, true),
    row(Service, Scheduling, true, true),
    row(Service, Prices, true, true),
    row(Service, Charges, true, true),
    row(Service, Billing, true, true),
];

/// Whether `role` may do `action` on `resource_type`.
pub fn allows(role: Role, action: Action, resource_type: &str) -> bool {
    let Some(cat) = category(resource_type) else {
        return false;
    };
    POLICY.iter().any(|r| {
        r.role == role
            && r.category == cat
            && match action {
                Action::Read => r.read,
                Action::Write => r.write,
            }
    })
}
