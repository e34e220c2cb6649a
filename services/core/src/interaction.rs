//! What a request does, as the audit trail records it. Each interaction carries its own
//! AuditEvent action code (<https://hl7.org/fhir/R4B/valueset-audit-event-action.html>), so a
//! read is recorded as a read through every door, REST or gRPC.

/// AuditEvent.action: Create, Read, Update, Delete, Execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    C,
    R,
    U,
    D,
    E,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::C => "C",
            AuditAction::R => "R",
            AuditAction::U => "U",
            AuditAction::D => "D",
            AuditAction::E => "E",
        }
    }

    pub fn parse(s: &str) -> Option<AuditAction> {
        Some(match s {
            "C" => AuditAction::C,
            "R" => AuditAction::R,
            "U" => AuditAction::U,
            "D" => AuditAction::D,
            "E" => AuditAction::E,
            _ => return None,
        })
    }
}

/// One kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    Read,
    VRead,
    SearchType,
    /// A search across types (`GET [base]?_type=...`).
    SearchSystem,
    HistoryInstance,
    HistoryType,
    HistorySystem,
    Everything,
    Verify,
    Create,
    Update,
    /// A JSON Patch of one resource: an update.
    Patch,
    Delete,
    /// `$validate`: a write tried through the owner's rules and rolled back.
    Validate,
    Amend,
    Sign,
    Transaction,
    Batch,
    /// Checking credentials, recorded when they are refused.
    Authenticate,
    /// A request that did not get to its own record: refused for the caller's bounds, past
    /// the time limit, or failed in its handler.
    Request,
    /// A named FHIR operation (`$name`) or a gRPC method, with what it does.
    Call(&'static str, AuditAction),
}

impl Interaction {
    /// The name in the audit trail (the FHIR restful interaction, or the method).
    pub fn name(self) -> &'static str {
        match self {
            Interaction::Read => "read",
            Interaction::VRead => "vread",
            Interaction::SearchType => "search-type",
            Interaction::SearchSystem => "search-system",
            Interaction::HistoryInstance => "history-instance",
            Interaction::HistoryType => "history-type",
            Interaction::HistorySystem => "history-system",
            Interaction::Everything => "everything",
            Interaction::Verify => "verify",
            Interaction::Create => "create",
            Interaction::Update => "update",
            Interaction::Patch => "patch",
            Interaction::Delete => "delete",
            Interaction::Validate => "validate",
            Interaction::Amend => "amend",
            Interaction::Sign => "sign",
            Interaction::Transaction => "transaction",
            Interaction::Batch => "batch",
            Interaction::Authenticate => "authenticate",
            Interaction::Request => "request",
            Interaction::Call(name, _) => name,
        }
    }

    pub fn action(self) -> AuditAction {
        match self {
            Interaction::Read
            | Interaction::VRead
            | Interaction::SearchType
            | Interaction::SearchSystem
            | Interaction::HistoryInstance
            | Interaction::HistoryType
            | Interaction::HistorySystem
            | Interaction::Everything
            | Interaction::Verify => AuditAction::R,
            Interaction::Create => AuditAction::C,
            Interaction::Update | Interaction::Patch | Interaction::Amend => AuditAction::U,
            Interaction::Delete => AuditAction::D,
            Interaction::Sign
            | Interaction::Validate
            | Interaction::Transaction
            | Interaction::Batch
            | Interaction::Authenticate
            | Interaction::Request => AuditAction::E,
            Interaction::Call(_, a) => a,
        }
    }

    pub fn code(self) -> &'static str {
        self.action().as_str()
    }
}
