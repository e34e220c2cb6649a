//! Structural validation of FHIR R4B resources with fhir-sdk's generated models.
//!
//! The generated models are enormous; every generic instantiation of their `Deserialize` impls
//! costs minutes of compile time. This crate is the only place that instantiates them, behind
//! the non-generic [`validate`] function, so no other crate in the workspace ever re-compiles
//! them. Nothing here knows about storage or HTTP.

use fhir_sdk::r4b::resources as r;
use serde_json::Value;

/// Why a resource is not valid FHIR R4B, with the FHIRPath-like location of the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Element path, e.g. `Patient.birthDate` or `Observation.code.coding[0].system`.
    pub path: String,
    /// Human-readable reason.
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for Invalid {}

macro_rules! supported {
    ($($name:ident),* $(,)?) => {
        /// Resource types this build validates and therefore accepts.
        pub const SUPPORTED_TYPES: &[&str] = &[$(stringify!($name)),*];

        fn check_typed(resource_type: &str, body: &Value) -> Result<Value, Invalid> {
            match resource_type {
                $(stringify!($name) => {
                    let typed: r::$name = serde_path_to_error::deserialize(body)
                        .map_err(|e| path_error(resource_type, e))?;
                    serde_json::to_value(&typed).map_err(|e| Invalid {
                        path: resource_type.to_owned(),
                        message: e.to_string(),
                    })
                })*
                other => Err(Invalid {
                    path: "resourceType".into(),
                    message: format!("resource type `{other}` is not supported by this server"),
                }),
            }
        }
    };
}

supported!(
    Patient,
    Practitioner,
    PractitionerRole,
    Organization,
    Location,
    Coverage,
    Encounter,
    Observation,
    Condition,
    AllergyIntolerance,
    MedicationRequest,
    Procedure,
    DiagnosticReport,
    DocumentReference,
    ServiceRequest,
    Consent,
    Schedule,
    Slot,
    Appointment,
    ChargeItem,
    ChargeItemDefinition,
    Invoice,
    Account,
    PaymentNotice,
    PaymentReconciliation,
    Provenance,
    // Every department's record: pharmacy, laboratory, radiology, care planning, papers.
    Medication,
    MedicationDispense,
    MedicationAdministration,
    Immunization,
    Specimen,
    Task,
    ImagingStudy,
    CarePlan,
    CareTeam,
    Goal,
    Composition,
    EpisodeOfCare,
    Flag,
    FamilyMemberHistory,
    ClinicalImpression,
    QuestionnaireResponse,
    Communication,
    RelatedPerson,
    HealthcareService,
    Device,
    DeviceRequest,
    List,
    AppointmentResponse,
    Claim,
    ClaimResponse,
);

fn path_error(resource_type: &str, e: serde_path_to_error::Error<serde_json::Error>) -> Invalid {
    let inner = e.path().to_string();
    let path = if inner == "." || inner.is_empty() {
        resource_type.to_owned()
    } else {
        format!("{resource_type}.{inner}")
    };
    Invalid {
        path,
        message: e.into_inner().to_string(),
    }
}

/// Whether `resource_type` is one this build can validate.
pub fn is_supported(resource_type: &str) -> bool {
    SUPPORTED_TYPES.contains(&resource_type)
}

/// Checks that `body` is a structurally valid R4B resource of type `resource_type`:
/// every element known, every datatype right, required elements present, no empty values.
///
/// fhir-sdk's models ignore unknown JSON members, so after a successful parse the model is
/// serialised again and every member of the input that did not survive the round trip is
/// reported as unknown; that also guarantees that what we store is what the models understand.
pub fn validate(resource_type: &str, body: &Value) -> Result<(), Invalid> {
    if !body.is_object() {
        return Err(Invalid {
            path: resource_type.to_owned(),
            message: "a resource must be a JSON object".into(),
        });
    }
    check_no_empty(body, resource_type)?;
    let round_trip = check_typed(resource_type, body)?;
    check_members_known(body, &round_trip, resource_type)
}

fn check_no_empty(value: &Value, path: &str) -> Result<(), Invalid> {
    match value {
        Value::Null => Err(Invalid {
            path: path.to_owned(),
            message: "null is not allowed in FHIR JSON; omit the element".into(),
        }),
        Value::String(s) if s.is_empty() => Err(Invalid {
            path: path.to_owned(),
            message: "empty strings are not allowed in FHIR JSON; omit the element".into(),
        }),
        Value::String(s)
            if s.chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) =>
        {
            Err(Invalid {
                path: path.to_owned(),
                message: "control characters are not allowed in FHIR strings".into(),
            })
        }
        Value::Array(items) => {
            if items.is_empty() {
                return Err(Invalid {
                    path: path.to_owned(),
                    message: "empty arrays are not allowed in FHIR JSON; omit the element".into(),
                });
            }
            for (i, item) in items.iter().enumerate() {
                // `null` is legal inside primitive-extension arrays (`_given: [null, {...}]`).
                if item.is_null() && path.rsplit('.').next().is_some_and(|l| l.starts_with('_')) {
                    continue;
                }
                check_no_empty(item, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        Value::Object(map) => {
            if map.is_empty() {
                return Err(Invalid {
                    path: path.to_owned(),
                    message: "empty objects are not allowed in FHIR JSON; omit the element".into(),
                });
            }
            for (k, v) in map {
                check_no_empty(v, &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_members_known(input: &Value, kept: &Value, path: &str) -> Result<(), Invalid> {
    match (input, kept) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let child = format!("{path}.{k}");
                match b.get(k) {
                    None => {
                        return Err(Invalid {
                            path: child,
                            message: format!("unknown element `{k}`"),
                        });
                    }
                    Some(w) => check_members_known(v, w, &child)?,
                }
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, w)) in a.iter().zip(b.iter()).enumerate() {
                check_members_known(v, w, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
