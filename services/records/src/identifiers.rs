//! Vietnamese identifiers as types that cannot hold an invalid value, and whose `Debug` and
//! `Display` never print the number (personal data stays out of logs).
//! Systems are those of the Vietnam core FHIR guide (hl7vn/vn-core-ig).

use std::fmt;

pub const NATIONAL_ID: &str = "http://fhir.ehealth.gov.vn/core/sid/national_id";
pub const CITIZEN_ID: &str = "http://fhir.ehealth.gov.vn/core/sid/citizen_id";
pub const INSURANCE_NUMBER: &str = "http://fhir.ehealth.gov.vn/core/sid/insurance_number";
pub const PASSPORT: &str = "http://fhir.ehealth.gov.vn/core/sid/passport_number";
pub const PATIENT_INTERNAL_ID: &str = "http://fhir.ehealth.gov.vn/core/sid/patient-internal-id";

const PROVINCES: &str = include_str!("../data/provinces.csv");

/// The name of the province with a 3-digit birth-registration code, if the code exists.
pub fn province_name(code: &str) -> Option<&'static str> {
    PROVINCES
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(','))
        .find(|(c, _)| *c == code)
        .map(|(_, n)| n)
}

/// Sex as encoded in a personal ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Male,
    Female,
}

/// A 12-digit personal ID (CCCD / căn cước): province (3), century and sex (1), year (2),
/// serial (6). There is no check digit.
#[derive(Clone, PartialEq, Eq)]
pub struct Cccd(String);

impl Cccd {
    pub fn parse(s: &str) -> Result<Cccd, String> {
        if s.len() != 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err("a personal ID is exactly 12 digits".into());
        }
        if province_name(&s[..3]).is_none() {
            return Err(format!("`{}` is not a province code", &s[..3]));
        }
        if s.as_bytes()[3] > b'5' {
            return Err("the 4th digit (century and sex) must be 0-5".into());
        }
        Ok(Cccd(s.to_owned()))
    }

    /// The full birth year encoded in the ID.
    pub fn birth_year(&self) -> i32 {
        let c = i32::from(self.0.as_bytes()[3] - b'0');
        let yy: i32 = self.0[4..6].parse().unwrap_or(0);
        1900 + (c / 2) * 100 + yy
    }

    pub fn sex(&self) -> Sex {
        if (self.0.as_bytes()[3] - b'0').is_multiple_of(2) {
            Sex::Male
        } else {
            Sex::Female
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Cccd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cccd(***{})", &self.0[9..])
    }
}

/// A BHYT card number: group (2 letters), benefit digit (1-5), province (2), 10 digits.
#[derive(Clone, PartialEq, Eq)]
pub struct BhytCardNumber(String);

impl BhytCardNumber {
    pub fn parse(s: &str) -> Result<BhytCardNumber, String> {
        let b = s.as_bytes();
        let ok = b.len() == 15
            && b[..2].iter().all(u8::is_ascii_uppercase)
            && (b'1'..=b'5').contains(&b[2])
            && b[3..].iter().all(u8::is_ascii_digit);
        if ok {
            Ok(BhytCardNumber(s.to_owned()))
        } else {
            Err("a BHYT card number is 2 capital letters, a benefit digit 1-5 and 12 digits".into())
        }
    }

    pub fn benefit_level(&self) -> u32 {
        u32::from(self.0.as_bytes()[2] - b'0')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BhytCardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BhytCardNumber({}***)", &self.0[..3])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quang_ngai_man_born_1985_parses() {
        let id = Cccd::parse("051085000123").unwrap();
        assert_eq!(id.birth_year(), 1985);
        assert_eq!(id.sex(), Sex::Male);
        let young = Cccd::parse("051305000123").unwrap();
        assert_eq!(young.birth_year(), 2005);
        assert_eq!(young.sex(), Sex::Female);
    }

    #[test]
    fn bad_personal_ids_are_refused() {
        assert!(Cccd::parse("05108500012").is_err());
        assert!(Cccd::parse("05108500012a").is_err());
        assert!(
            Cccd::parse("003085000123").is_err(),
            "003 is not a province"
        );
        assert!(Cccd::parse("051685000123").is_err());
    }

    #[test]
    fn debug_never_shows_the_number() {
        let s = format!("{:?}", Cccd::parse("051085000123").unwrap());
        assert!(!s.contains("051085"));
        let s = format!("{:?}", BhytCardNumber::parse("DN4510123456789").unwrap());
        assert!(!s.contains("0123456789"));
    }

    #[test]
    fn bhyt_card_numbers_follow_the_pattern() {
        assert_eq!(
            BhytCardNumber::parse("DN4510123456789")
                .unwrap()
                .benefit_level(),
            4
        );
        assert!(BhytCardNumber::parse("DN6510123456789").is_err());
        assert!(BhytCardNumber::parse("dn4510123456789").is_err());
        assert!(BhytCardNumber::parse("DN451012345678").is_err());
    }
}
