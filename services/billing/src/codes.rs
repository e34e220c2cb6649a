//! Billing's own error codes (prefix `BL`), beside the platform's (`hospital_core::codes`).
//! Each is listed in `docs/errors.md`; a test keeps the catalogue in step with [`ALL`].

use hospital_core::{Code, Kind};

/// A bank feed's delivery that is unsigned, badly signed, or signed too long ago.
pub const UNVERIFIED_DELIVERY: Code = Code {
    id: "BL_01",
    kind: Kind::Unauthenticated,
    meaning: "A bank feed's delivery is unsigned, its signature does not match the bytes received, or its signed timestamp is more than 5 minutes from now; nothing is kept but an audit line (VNPay: `RspCode` 97).",
};

/// Signed, but not a body the provider sends.
pub const MALFORMED_DELIVERY: Code = Code {
    id: "BL_02",
    kind: Kind::BusinessRule,
    meaning: "A bank feed's delivery is correctly signed but is not a body its provider sends (unreadable JSON, no transaction id or reference, an amount that is not whole đồng); it is kept as received, nothing is credited.",
};

/// Money into an account that is not the hospital's.
pub const NOT_OUR_ACCOUNT: Code = Code {
    id: "BL_03",
    kind: Kind::BusinessRule,
    meaning: "The account a bank feed's delivery credits is not the hospital's receiving account; the delivery is kept as received, nothing is credited.",
};

/// The card or personal ID the cashier was shown is someone else's.
pub const COVERAGE_OF_ANOTHER_PATIENT: Code = Code {
    id: "BL_04",
    kind: Kind::BusinessRule,
    meaning: "The BHYT card or personal ID the cashier was shown belongs to another patient than the invoice's; nothing is issued.",
};

/// The card or personal ID the cashier was shown gives no coverage the records service knows.
pub const NO_COVERAGE_FOR_WHAT_WAS_SHOWN: Code = Code {
    id: "BL_05",
    kind: Kind::BusinessRule,
    meaning: "The records service knows no BHYT coverage for the card or personal ID the cashier was shown (register the card first, or issue without it as self-pay); nothing is issued.",
};

/// Every code billing defines, for the catalogue and its test.
pub const ALL: &[Code] = &[
    UNVERIFIED_DELIVERY,
    MALFORMED_DELIVERY,
    NOT_OUR_ACCOUNT,
    COVERAGE_OF_ANOTHER_PATIENT,
    NO_COVERAGE_FOR_WHAT_WAS_SHOWN,
];
