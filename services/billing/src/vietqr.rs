//! VietQR (NAPAS 247) payment codes: the EMVCo merchant-presented format with the NAPAS
//! consumer-account template, as `docs/vietqr.md` of this crate describes. [`encode`] writes
//! the payload of one bill; [`decode`] reads any payload back and refuses what a bank app would
//! refuse (a bad CRC, a length that lies, a missing tag, an impossible amount).

use std::fmt;

/// The NAPAS GUID of tag 38.00.
pub const NAPAS_GUID: &str = "A000000727";
/// Transfer to an account (38.02).
pub const TO_ACCOUNT: &str = "QRIBFTTA";
/// Transfer to a card (38.02).
pub const TO_CARD: &str = "QRIBFTTC";
/// VND (ISO 4217 numeric), tag 53.
pub const VND: &str = "704";

/// CRC-16/CCITT-FALSE: polynomial 0x1021, initial 0xFFFF, not reflected, no final XOR.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Why a payload is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QrError {
    /// Records do not parse: a non-digit id or length, a length running past the end.
    Malformed(String),
    /// A required record is missing or out of place.
    Missing(&'static str),
    /// A record's value is not allowed.
    Invalid { tag: String, why: String },
    /// The CRC does not match the content.
    Crc { stated: String, computed: String },
}

impl fmt::Display for QrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QrError::Malformed(m) => write!(f, "malformed VietQR payload: {m}"),
            QrError::Missing(t) => write!(f, "VietQR payload lacks tag {t}"),
            QrError::Invalid { tag, why } => write!(f, "VietQR tag {tag}: {why}"),
            QrError::Crc { stated, computed } => {
                write!(
                    f,
                    "VietQR CRC {stated} does not match the content ({computed})"
                )
            }
        }
    }
}

impl std::error::Error for QrError {}

/// What one payment code asks the payer's bank to do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Payment {
    /// The acquirer BIN of the receiving bank (6 digits, from `banks.csv`).
    pub bin: String,
    /// The receiving account (or card) number.
    pub account: String,
    /// Transfer to a card (`QRIBFTTC`) instead of an account.
    pub to_card: bool,
    /// Whole đồng; `None` for a static (reusable) code where the payer types the amount.
    pub amount: Option<u64>,
    /// 62.01: the bill number.
    pub bill_number: Option<String>,
    /// 62.05: a reference label.
    pub reference: Option<String>,
    /// 62.08: the purpose, which becomes the transfer memo (it carries the payment code).
    pub purpose: Option<String>,
    /// 52: merchant category code (`8062` hospitals), optional.
    pub category: Option<String>,
    /// 59 / 60: merchant name and city, optional.
    pub merchant_name: Option<String>,
    pub merchant_city: Option<String>,
}

fn record(out: &mut String, id: &str, value: &str) {
    out.push_str(id);
    out.push_str(&format!("{:02}", value.len()));
    out.push_str(value);
}

/// Text a payload may carry: Vietnamese transliterated (`Viện phí` → `Vien phi`), only
/// printable ASCII kept, at most `max` characters.
pub fn ascii_text(s: &str, max: usize) -> String {
    hospital_core::store::text::strip_marks(s)
        .chars()
        .filter(|c| (' '..='~').contains(c))
        .take(max)
        .collect()
}

/// Checks what [`encode`] would emit.
fn check(p: &Payment) -> Result<(), QrError> {
    let invalid = |tag: &str, why: &str| QrError::Invalid {
        tag: tag.into(),
        why: why.into(),
    };
    if p.bin.len() != 6 || !p.bin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("38.01.00", "the bank BIN is 6 digits"));
    }
    if p.account.is_empty()
        || p.account.len() > 19
        || !p.account.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(invalid(
            "38.01.01",
            "the account is 1 to 19 letters or digits",
        ));
    }
    if p.amount == Some(0) {
        return Err(invalid("54", "the amount is positive"));
    }
    if p.amount.is_some_and(|a| a.to_string().len() > 13) {
        return Err(invalid("54", "the amount has at most 13 digits"));
    }
    for (tag, v, max) in [
        ("62.01", &p.bill_number, 25),
        ("62.05", &p.reference, 25),
        ("62.08", &p.purpose, 25),
        ("59", &p.merchant_name, 25),
        ("60", &p.merchant_city, 15),
        ("52", &p.category, 4),
    ] {
        if let Some(v) = v
            && (v.is_empty() || v.len() > max || !v.chars().all(|c| (' '..='~').contains(&c)))
        {
            return Err(invalid(
                tag,
                &format!("1 to {max} printable ASCII characters (transliterate Vietnamese)"),
            ));
        }
    }
    Ok(())
}

/// The payload of `p`, with its CRC. Records in the order banks' examples use: 00, 01, 38,
/// 52, 53, 54, 58, 59, 60, 62, 63.
pub fn encode(p: &Payment) -> Result<String, QrError> {
    check(p)?;
    let mut beneficiary = String::new();
    record(&mut beneficiary, "00", &p.bin);
    record(&mut beneficiary, "01", &p.account);
    let mut napas = String::new();
    record(&mut napas, "00", NAPAS_GUID);
    record(&mut napas, "01", &beneficiary);
    record(
        &mut napas,
        "02",
        if p.to_card { TO_CARD } else { TO_ACCOUNT },
    );
    if napas.len() > 99 {
        return Err(QrError::Invalid {
            tag: "38".into(),
            why: "the account template exceeds 99 characters".into(),
        });
    }
    let mut out = String::new();
    record(&mut out, "00", "01");
    record(&mut out, "01", if p.amount.is_some() { "12" } else { "11" });
    record(&mut out, "38", &napas);
    if let Some(c) = &p.category {
        record(&mut out, "52", c);
    }
    record(&mut out, "53", VND);
    if let Some(a) = p.amount {
        record(&mut out, "54", &a.to_string());
    }
    record(&mut out, "58", "VN");
    if let Some(n) = &p.merchant_name {
        record(&mut out, "59", n);
    }
    if let Some(c) = &p.merchant_city {
        record(&mut out, "60", c);
    }
    let mut additional = String::new();
    for (id, v) in [
        ("01", &p.bill_number),
        ("05", &p.reference),
        ("08", &p.purpose),
    ] {
        if let Some(v) = v {
            record(&mut additional, id, v);
        }
    }
    if !additional.is_empty() {
        if additional.len() > 99 {
            return Err(QrError::Invalid {
                tag: "62".into(),
                why: "the additional data exceeds 99 characters".into(),
            });
        }
        record(&mut out, "62", &additional);
    }
    out.push_str("6304");
    let crc = crc16(out.as_bytes());
    out.push_str(&format!("{crc:04X}"));
    Ok(out)
}

/// One record: its id and value.
fn records(s: &str, what: &str) -> Result<Vec<(String, String)>, QrError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        if i + 4 > b.len() {
            return Err(QrError::Malformed(format!(
                "{what}: a record header is cut off at character {i}"
            )));
        }
        let head = &s[i..i + 4];
        if !head.bytes().all(|c| c.is_ascii_digit()) {
            return Err(QrError::Malformed(format!(
                "{what}: `{head}` at character {i} is not a 2-digit id and a 2-digit length"
            )));
        }
        let len: usize = head[2..].parse().unwrap_or(0);
        if len == 0 {
            return Err(QrError::Malformed(format!(
                "{what}: record {} at character {i} is empty",
                &head[..2]
            )));
        }
        let end = i + 4 + len;
        if end > b.len() {
            return Err(QrError::Malformed(format!(
                "{what}: record {} announces {len} characters; only {} follow",
                &head[..2],
                b.len() - i - 4
            )));
        }
        out.push((head[..2].to_owned(), s[i + 4..end].to_owned()));
        i = end;
    }
    Ok(out)
}

/// A payload read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub payment: Payment,
    /// `12` dynamic (one bill), `11` static.
    pub dynamic: bool,
    /// Every top-level record in order, as read.
    pub records: Vec<(String, String)>,
}

/// Reads `payload`: the CRC first, then every record; refuses anything malformed.
pub fn decode(payload: &str) -> Result<Decoded, QrError> {
    if !payload.is_ascii() {
        return Err(QrError::Malformed(
            "a payload is ASCII; this one has other characters".into(),
        ));
    }
    if payload.len() < 8 {
        return Err(QrError::Malformed("too short".into()));
    }
    let recs = records(payload, "payload")?;
    let (last_id, crc) = recs.last().cloned().ok_or(QrError::Missing("63"))?;
    if last_id != "63" {
        return Err(QrError::Missing("63"));
    }
    if crc.len() != 4 || !crc.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(QrError::Invalid {
            tag: "63".into(),
            why: "the CRC is 4 hex digits".into(),
        });
    }
    let computed = format!("{:04X}", crc16(&payload.as_bytes()[..payload.len() - 4]));
    if !computed.eq_ignore_ascii_case(&crc) {
        return Err(QrError::Crc {
            stated: crc,
            computed,
        });
    }
    if recs.first().map(|(id, v)| (id.as_str(), v.as_str())) != Some(("00", "01")) {
        return Err(QrError::Missing("00 (first, `01`)"));
    }
    let invalid = |tag: &str, why: &str| QrError::Invalid {
        tag: tag.into(),
        why: why.into(),
    };
    let get = |id: &str| recs.iter().find(|(i, _)| i == id).map(|(_, v)| v.as_str());
    for (i, (id, _)) in recs.iter().enumerate() {
        if recs[..i].iter().any(|(j, _)| j == id) {
            return Err(invalid(id, "the tag appears twice"));
        }
    }
    let dynamic = match get("01") {
        Some("12") => true,
        Some("11") | None => false,
        Some(_) => return Err(invalid("01", "point of initiation is 11 or 12")),
    };
    let napas = records(get("38").ok_or(QrError::Missing("38"))?, "tag 38")?;
    let sub = |id: &str| napas.iter().find(|(i, _)| i == id).map(|(_, v)| v.as_str());
    if sub("00") != Some(NAPAS_GUID) {
        return Err(invalid("38.00", "the GUID is A000000727"));
    }
    let beneficiary = records(sub("01").ok_or(QrError::Missing("38.01"))?, "tag 38.01")?;
    let ben = |id: &str| {
        beneficiary
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, v)| v.clone())
    };
    let bin = ben("00").ok_or(QrError::Missing("38.01.00"))?;
    let account = ben("01").ok_or(QrError::Missing("38.01.01"))?;
    let to_card = match sub("02") {
        Some(TO_ACCOUNT) => false,
        Some(TO_CARD) => true,
        _ => return Err(invalid("38.02", "the service is QRIBFTTA or QRIBFTTC")),
    };
    if get("53") != Some(VND) {
        return Err(invalid("53", "the currency is 704 (VND)"));
    }
    if get("58") != Some("VN") {
        return Err(invalid("58", "the country is VN"));
    }
    let amount = match get("54") {
        None => None,
        Some(a) => Some(parse_amount(a).ok_or_else(|| {
            invalid(
                "54",
                &format!("`{a}` is not a positive amount of digits with at most one `.`"),
            )
        })?),
    };
    if dynamic && amount.is_none() {
        return Err(QrError::Missing("54 (a dynamic code carries its amount)"));
    }
    let additional = match get("62") {
        Some(v) => records(v, "tag 62")?,
        None => Vec::new(),
    };
    let add = |id: &str| {
        additional
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, v)| v.clone())
    };
    let payment = Payment {
        bin,
        account,
        to_card,
        amount,
        bill_number: add("01"),
        reference: add("05"),
        purpose: add("08"),
        category: get("52").map(str::to_owned),
        merchant_name: get("59").map(str::to_owned),
        merchant_city: get("60").map(str::to_owned),
    };
    check(&payment)?;
    Ok(Decoded {
        payment,
        dynamic,
        records: recs,
    })
}

/// Whole đồng of a tag-54 amount: digits, at most one `.`, positive; a fraction is refused
/// (VND has no minor unit) unless it is zero.
fn parse_amount(a: &str) -> Option<u64> {
    let (whole, frac) = a.split_once('.').unwrap_or((a, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b == b'0')
        || a.len() > 13
    {
        return None;
    }
    whole.parse().ok().filter(|&n| n > 0)
}

/// The link that opens bank app `app` (its app id, e.g. `vcb`, `icb`, `mb`) on a transfer of
/// `amount` to `account` at the bank whose short code is `bank_code`, with `memo` (the
/// vietqr.io deep-link service: `https://dl.vietqr.io/pay?app=..&am=..&tn=..&ba=acct@bank`;
/// `@` stays literal, the bank code is lower case).
pub fn deep_link(app: &str, bank_code: &str, account: &str, amount: u64, memo: &str) -> String {
    let q = |s: &str| -> String { url::form_urlencoded::byte_serialize(s.as_bytes()).collect() };
    format!(
        "https://dl.vietqr.io/pay?app={}&am={amount}&tn={}&ba={}@{}",
        q(app),
        q(memo),
        q(account),
        q(&bank_code.to_ascii_lowercase())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The valid vectors of `docs/vietqr.md`, with what they mean.
    fn vectors() -> Vec<(&'static str, Payment)> {
        let p = |bin: &str, account: &str, amount: Option<u64>| Payment {
            bin: bin.into(),
            account: account.into(),
            amount,
            ..Payment::default()
        };
        vec![
            (
                "00020101021238570010A00000072701270006970403011300110123456780208QRIBFTTA530370454061800005802VN62340107NPS68690819thanh toan don hang63042E2E",
                Payment {
                    bill_number: Some("NPS6869".into()),
                    purpose: Some("thanh toan don hang".into()),
                    ..p("970403", "0011012345678", Some(180_000))
                },
            ),
            (
                "00020101021138600010A00000072701300006970403011697040311012345670208QRIBFTTC53037045802VN63044F52",
                Payment {
                    to_card: true,
                    ..p("970403", "9704031101234567", None)
                },
            ),
            (
                "00020101021138530010A0000007270123000697041601092576788590208QRIBFTTA53037045802VN6304AE9F",
                p("970416", "257678859", None),
            ),
            (
                "00020101021138580010A000000727012800069704070114190304136010180208QRIBFTTA53037045802VN63040283",
                p("970407", "19030413601018", None),
            ),
            (
                "00020101021238570010A00000072701270006970415011300110019324180208QRIBFTTA530370454061200005802VN62170813ung ho lu lut6304C15C",
                Payment {
                    purpose: Some("ung ho lu lut".into()),
                    ..p("970415", "0011001932418", Some(120_000))
                },
            ),
            (
                "00020101021238560010A0000007270126000697041501121133666688880208QRIBFTTA530370454062500005802VN62350112HD20240001230815VP HD202400012363042EC7",
                Payment {
                    bill_number: Some("HD2024000123".into()),
                    purpose: Some("VP HD2024000123".into()),
                    ..p("970415", "113366668888", Some(250_000))
                },
            ),
        ]
    }

    #[test]
    fn the_crc_is_ccitt_false() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
    }

    #[test]
    fn every_valid_vector_is_encoded_exactly_and_read_back() {
        for (payload, payment) in vectors() {
            assert_eq!(encode(&payment).unwrap(), payload);
            let d = decode(payload).unwrap_or_else(|e| panic!("{payload}: {e}"));
            assert_eq!(d.payment, payment, "{payload}");
            assert_eq!(d.dynamic, payment.amount.is_some());
            // Lower-case CRCs, as some bank apps emit them, read the same.
            let lower = format!(
                "{}{}",
                &payload[..payload.len() - 4],
                payload[payload.len() - 4..].to_ascii_lowercase()
            );
            assert_eq!(decode(&lower).unwrap().payment, payment);
        }
    }

    #[test]
    fn every_must_be_rejected_vector_is_rejected() {
        let v5 = vectors()[4].0;
        let wrong_crc = format!("{}BBB5", &v5[..v5.len() - 4]);
        assert!(matches!(decode(&wrong_crc), Err(QrError::Crc { .. })));
        let lying_length = "00020101021138570010A00000072701270006970403011200110123456780208QRIBFTTA53037045802VN6304F4E5";
        assert!(
            matches!(decode(lying_length), Err(QrError::Malformed(_))),
            "{:?}",
            decode(lying_length)
        );
        // Truncated, a length past the end, a non-digit length, no tag 63.
        assert!(decode(&v5[..v5.len() - 10]).is_err());
        assert!(decode(&v5[..40]).is_err());
        let bad_len = v5.replacen("5802VN", "58x2VN", 1);
        assert!(matches!(decode(&bad_len), Err(QrError::Malformed(_))));
        let no_crc = &v5[..v5.len() - 8];
        assert!(decode(no_crc).is_err());
        // Amounts of 0, -5, 1.2.3 and with a space, each with a correct CRC.
        for amount in ["0", "-5", "1.2.3", "12 000"] {
            let body = format!(
                "00020101021238570010A00000072701270006970415011300110019324180208QRIBFTTA530370454{:02}{amount}5802VN6304",
                amount.len()
            );
            let payload = format!("{body}{:04X}", crc16(body.as_bytes()));
            assert!(
                matches!(decode(&payload), Err(QrError::Invalid { ref tag, .. }) if tag == "54"),
                "amount {amount:?}: {:?}",
                decode(&payload)
            );
        }
        // A multi-byte character: refused before anything else.
        assert!(decode(&v5.replace("ung ho", "ủng hộ")).is_err());
    }

    #[test]
    fn the_encoder_refuses_what_a_bank_would() {
        let ok = vectors()[5].1.clone();
        for bad in [
            Payment {
                bin: "97041".into(),
                ..ok.clone()
            },
            Payment {
                amount: Some(0),
                ..ok.clone()
            },
            Payment {
                purpose: Some("Viện phí HD2024000123".into()),
                ..ok.clone()
            },
            Payment {
                purpose: Some("x".repeat(26)),
                ..ok.clone()
            },
            Payment {
                account: "11336666888899990000".into(),
                ..ok.clone()
            },
        ] {
            assert!(encode(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(ascii_text("Viện phí Đợt 1", 25), "Vien phi Dot 1");
        assert_eq!(
            deep_link("icb", "ICB", "113366668888", 250_000, "VP HD2024000123"),
            "https://dl.vietqr.io/pay?app=icb&am=250000&tn=VP+HD2024000123&ba=113366668888@icb"
        );
    }
}
