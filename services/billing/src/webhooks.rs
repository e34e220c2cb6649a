//! Bank-feed webhooks and the VNPay IPN: each provider's signature, checked exactly as the
//! provider specifies, over the raw bytes as received and in constant time, before anything
//! else is read; then the body becomes one [`Credit`], the model every provider maps to.
//! `docs/bank-webhooks.md` of this crate holds the formats and the published vectors.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Sha256, Sha512};

/// The providers that tell the hospital of a credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    Sepay,
    Casso,
    Payos,
    Vnpay,
    /// Cash at the cashier's desk (not a bank feed; recorded in the same ledger).
    Cash,
    /// A card at the desk's terminal.
    Card,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Sepay => "sepay",
            Provider::Casso => "casso",
            Provider::Payos => "payos",
            Provider::Vnpay => "vnpay",
            Provider::Cash => "cash",
            Provider::Card => "card",
        }
    }

    pub fn parse(s: &str) -> Option<Provider> {
        Some(match s {
            "sepay" => Provider::Sepay,
            "casso" => Provider::Casso,
            "payos" => Provider::Payos,
            "vnpay" => Provider::Vnpay,
            _ => return None,
        })
    }
}

/// Why a delivery is refused before it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No signature (or API key) where the provider sends one.
    Unsigned,
    /// The signature does not match the bytes.
    BadSignature,
    /// The signed timestamp is more than [`MAX_SKEW_SECS`] from now.
    Stale,
    /// Signed, but not a body this provider sends.
    Malformed(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unsigned => write!(f, "the delivery carries no signature"),
            Refusal::BadSignature => write!(f, "the signature does not match the body"),
            Refusal::Stale => write!(
                f,
                "the signed timestamp is more than {MAX_SKEW_SECS} seconds from now"
            ),
            Refusal::Malformed(m) => {
                write!(
                    f,
                    "the signed body is not a delivery this webhook takes: {m}"
                )
            }
        }
    }
}

impl Refusal {
    /// The error a provider is answered with: a signature that fails is `BL_01` (401),
    /// a signed body that is not one the provider sends `BL_02` (422).
    pub fn error(&self) -> hospital_core::Error {
        let code = match self {
            Refusal::Malformed(_) => crate::codes::MALFORMED_DELIVERY,
            _ => crate::codes::UNVERIFIED_DELIVERY,
        };
        hospital_core::Error::new(code, self.to_string())
    }
}

/// How far a signed timestamp may be from now.
pub const MAX_SKEW_SECS: i64 = 300;

/// One incoming credit, whatever the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credit {
    pub provider: Provider,
    /// The provider's id of the transaction: the idempotency key with the provider.
    pub transaction_id: String,
    /// Money in (a transfer out is refused by the caller).
    pub incoming: bool,
    /// The hospital account credited.
    pub account: String,
    /// Whole đồng.
    pub amount: i64,
    /// The transfer memo as the bank wrote it.
    pub memo: String,
    /// The bank's reference (e.g. `MBVCB.3278907687`).
    pub bank_reference: String,
    /// The provider's time of the transaction, as it wrote it.
    pub at: String,
    /// An order reference the provider carries (payOS `orderCode`, VNPay `vnp_TxnRef`).
    pub order: Option<String>,
}

fn hmac_ok<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]], hex_sig: &str) -> bool {
    let Ok(sig) = hex::decode(hex_sig.trim()) else {
        return false;
    };
    let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(key) else {
        return false;
    };
    for p in parts {
        mac.update(p);
    }
    // `verify_slice` compares in constant time.
    mac.verify_slice(&sig).is_ok()
}

/// Hex HMAC-SHA256 of `msg`.
pub fn hmac_sha256_hex(key: &[u8], msg: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(key)
        .expect("HMAC takes any key length");
    mac.update(msg);
    hex::encode(mac.finalize().into_bytes())
}

/// Hex HMAC-SHA512 of `msg`.
pub fn hmac_sha512_hex(key: &[u8], msg: &[u8]) -> String {
    let mut mac = <Hmac<Sha512> as hmac::digest::KeyInit>::new_from_slice(key)
        .expect("HMAC takes any key length");
    mac.update(msg);
    hex::encode(mac.finalize().into_bytes())
}

/// Equality of secrets in time independent of where they differ.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    // Compare MACs of both under a fixed key: equal length, constant-time comparison.
    let key = b"hospital-billing-secret-compare";
    let ha = hmac_sha256_hex(key, a);
    hmac_ok::<Hmac<Sha256>>(key, &[b], &ha)
}

fn fresh(signed_secs: i64, now_secs: i64) -> Result<(), Refusal> {
    if (signed_secs - now_secs).abs() > MAX_SKEW_SECS {
        Err(Refusal::Stale)
    } else {
        Ok(())
    }
}

fn json(raw: &[u8]) -> Result<Value, Refusal> {
    serde_json::from_slice(raw).map_err(|e| Refusal::Malformed(e.to_string()))
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn whole_dong(v: &Value, key: &str) -> Result<i64, Refusal> {
    v.get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| Refusal::Malformed(format!("`{key}` is not a whole number of đồng")))
}

/// How a SePay webhook is authenticated (chosen per webhook in SePay's console).
#[derive(Debug, Clone)]
pub enum SepayAuth {
    /// `Authorization: Apikey <key>`.
    ApiKey(String),
    /// `X-SePay-Timestamp` and `X-SePay-Signature: sha256=<hex>` over `"{timestamp}.{body}"`.
    Hmac(String),
}

/// A SePay delivery. `header` reads a request header by (lower-case) name.
pub fn sepay(
    auth: &SepayAuth,
    header: &dyn Fn(&str) -> Option<String>,
    raw: &[u8],
    now_secs: i64,
) -> Result<Credit, Refusal> {
    match auth {
        SepayAuth::ApiKey(key) => {
            let given = header("authorization").ok_or(Refusal::Unsigned)?;
            let (scheme, value) = given.trim().split_once(' ').ok_or(Refusal::BadSignature)?;
            if !scheme.eq_ignore_ascii_case("apikey")
                || !same_secret(value.trim().as_bytes(), key.as_bytes())
            {
                return Err(Refusal::BadSignature);
            }
        }
        SepayAuth::Hmac(key) => {
            let (Some(ts), Some(sig)) = (header("x-sepay-timestamp"), header("x-sepay-signature"))
            else {
                return Err(Refusal::Unsigned);
            };
            let hex_sig = sig
                .trim()
                .strip_prefix("sha256=")
                .ok_or(Refusal::BadSignature)?;
            if !hmac_ok::<Hmac<Sha256>>(key.as_bytes(), &[ts.trim().as_bytes(), b".", raw], hex_sig)
            {
                return Err(Refusal::BadSignature);
            }
            let t: i64 = ts.trim().parse().map_err(|_| Refusal::BadSignature)?;
            fresh(t, now_secs)?;
        }
    }
    let v = json(raw)?;
    let id = text(&v, "id");
    if id.is_empty() {
        return Err(Refusal::Malformed("no `id`".into()));
    }
    Ok(Credit {
        provider: Provider::Sepay,
        transaction_id: id,
        incoming: text(&v, "transferType") == "in",
        account: text(&v, "accountNumber"),
        amount: whole_dong(&v, "transferAmount")?,
        memo: [text(&v, "content"), text(&v, "description")]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
        bank_reference: text(&v, "referenceCode"),
        at: text(&v, "transactionDate"),
        order: None,
    })
}

/// A Casso (webhook v2) delivery: `X-Casso-Signature: t=<unix ms>,v1=<hex>`, v1 the
/// HMAC-SHA512 of `"{t}." + the body re-serialised with keys sorted at every level`.
pub fn casso(
    key: &str,
    signature: Option<&str>,
    raw: &[u8],
    now_secs: i64,
) -> Result<Credit, Refusal> {
    let sig = signature.ok_or(Refusal::Unsigned)?;
    let mut t = None;
    let mut v1 = None;
    for part in sig.split(',') {
        match part.trim().split_once('=') {
            Some(("t", x)) => t = Some(x.to_owned()),
            Some(("v1", x)) => v1 = Some(x.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return Err(Refusal::BadSignature);
    };
    // The signed text is a re-serialisation: the body must parse before it can be checked.
    let body = json(raw).map_err(|_| Refusal::BadSignature)?;
    let canonical = hospital_core::store::sorted_json(&body);
    if !hmac_ok::<Hmac<Sha512>>(
        key.as_bytes(),
        &[t.as_bytes(), b".", canonical.as_bytes()],
        &v1,
    ) {
        return Err(Refusal::BadSignature);
    }
    let ms: i64 = t.parse().map_err(|_| Refusal::BadSignature)?;
    fresh(ms / 1000, now_secs)?;
    let d = body
        .get("data")
        .ok_or_else(|| Refusal::Malformed("no `data`".into()))?;
    let id = text(d, "id");
    if id.is_empty() {
        return Err(Refusal::Malformed("no `data.id`".into()));
    }
    // Casso reports money out as a negative amount.
    let amount = whole_dong(d, "amount")?;
    Ok(Credit {
        provider: Provider::Casso,
        transaction_id: id,
        incoming: amount > 0,
        account: text(d, "accountNumber"),
        amount: amount.abs(),
        memo: text(d, "description"),
        bank_reference: text(d, "reference"),
        at: text(d, "transactionDateTime"),
        order: None,
    })
}

/// payOS's signed text of an object: `key=value` pairs sorted by key, joined by `&`; null is
/// empty; arrays and objects are JSON with sorted keys; nothing is URL-encoded.
pub fn payos_data_text(data: &Value) -> String {
    let Value::Object(m) = data else {
        return String::new();
    };
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    keys.iter()
        .map(|k| format!("{k}={}", payos_value(&m[*k])))
        .collect::<Vec<_>>()
        .join("&")
}

fn payos_value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(_) | Value::Object(_) => hospital_core::store::sorted_json(v),
        other => other.to_string(),
    }
}

/// payOS's signed text of a payout request or response (sent in a header): as
/// [`payos_data_text`], with keys and values percent-encoded (RFC 3986 unreserved kept).
pub fn payos_header_text(data: &Value) -> String {
    fn enc(s: &str) -> String {
        let mut out = String::new();
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }
    let Value::Object(m) = data else {
        return String::new();
    };
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    keys.iter()
        .map(|k| format!("{}={}", enc(k), enc(&payos_value(&m[*k]))))
        .collect::<Vec<_>>()
        .join("&")
}

/// payOS's signed text of a payment-link request.
pub fn payos_link_text(d: &Value) -> String {
    format!(
        "amount={}&cancelUrl={}&description={}&orderCode={}&returnUrl={}",
        payos_value(d.get("amount").unwrap_or(&Value::Null)),
        payos_value(d.get("cancelUrl").unwrap_or(&Value::Null)),
        payos_value(d.get("description").unwrap_or(&Value::Null)),
        payos_value(d.get("orderCode").unwrap_or(&Value::Null)),
        payos_value(d.get("returnUrl").unwrap_or(&Value::Null)),
    )
}

/// A payOS webhook: `signature` in the body, the HMAC-SHA256 of [`payos_data_text`] of `data`.
pub fn payos(key: &str, raw: &[u8]) -> Result<Credit, Refusal> {
    let body = json(raw).map_err(|_| Refusal::Unsigned)?;
    let sig = body
        .get("signature")
        .and_then(Value::as_str)
        .ok_or(Refusal::Unsigned)?;
    let data = body.get("data").ok_or(Refusal::BadSignature)?;
    if !hmac_ok::<Hmac<Sha256>>(key.as_bytes(), &[payos_data_text(data).as_bytes()], sig) {
        return Err(Refusal::BadSignature);
    }
    let amount = whole_dong(data, "amount")?;
    let reference = text(data, "reference");
    if reference.is_empty() {
        return Err(Refusal::Malformed("no `data.reference`".into()));
    }
    Ok(Credit {
        provider: Provider::Payos,
        transaction_id: reference.clone(),
        // `code` 00: the payment succeeded; the amount is checked by the ledger.
        incoming: text(data, "code") == "00",
        account: text(data, "accountNumber"),
        amount,
        memo: text(data, "description"),
        bank_reference: reference,
        at: text(data, "transactionDateTime"),
        order: Some(text(data, "orderCode")).filter(|s| !s.is_empty()),
    })
}

/// VNPay's signed text: every `vnp_*` parameter but the hash, empty ones dropped, sorted by
/// key, keys and values form-URL-encoded, joined by `&`.
pub fn vnpay_text(params: &[(String, String)]) -> String {
    let mut kept: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, v)| {
            k.starts_with("vnp_")
                && k != "vnp_SecureHash"
                && k != "vnp_SecureHashType"
                && !v.is_empty()
        })
        .collect();
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    let enc = |s: &str| -> String { url::form_urlencoded::byte_serialize(s.as_bytes()).collect() };
    kept.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// One VNPay IPN, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VnpayIpn {
    pub txn_ref: String,
    /// Whole đồng (`vnp_Amount` / 100); `None` when `vnp_Amount` is not a whole number of
    /// đồng × 100 (answered `04` once the order is found, as VNPay orders its checks).
    pub amount: Option<i64>,
    /// Paid: `vnp_ResponseCode` and `vnp_TransactionStatus` both `00`.
    pub paid: bool,
    pub transaction_no: String,
    pub bank_reference: String,
    pub pay_date: String,
    pub order_info: String,
}

/// A VNPay IPN, from its query string. `Err` is VNPay's `97` (checksum) answer.
pub fn vnpay(secret: &str, query: &str) -> Result<VnpayIpn, Refusal> {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let hash = get("vnp_SecureHash");
    if hash.is_empty() {
        return Err(Refusal::Unsigned);
    }
    if !hmac_ok::<Hmac<Sha512>>(secret.as_bytes(), &[vnpay_text(&params).as_bytes()], &hash) {
        return Err(Refusal::BadSignature);
    }
    let amount = get("vnp_Amount")
        .parse::<i64>()
        .ok()
        .filter(|a| a % 100 == 0)
        .map(|a| a / 100);
    Ok(VnpayIpn {
        txn_ref: get("vnp_TxnRef"),
        amount,
        paid: get("vnp_ResponseCode") == "00" && get("vnp_TransactionStatus") == "00",
        transaction_no: get("vnp_TransactionNo"),
        bank_reference: get("vnp_BankTranNo"),
        pay_date: get("vnp_PayDate"),
        order_info: get("vnp_OrderInfo"),
    })
}

/// VNPay's answers to an IPN, checked in this order: checksum (`97`), order exists (`01`),
/// amount (`04`), not already confirmed (`02`), then `00`; `99` for anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VnpayAnswer {
    /// `00`: recorded (a payment credited, or a failed payment noted).
    Confirmed,
    /// `01`: no bill with that `vnp_TxnRef`.
    OrderNotFound,
    /// `02`: the bill was already paid or cancelled (money it reports waits in the cashier's
    /// queue), or this transaction was recorded before.
    AlreadyConfirmed,
    /// `04`: `vnp_Amount` is not the bill's amount (nor, for a bill part paid, what is left).
    InvalidAmount,
    /// `97`: the checksum does not verify.
    InvalidChecksum,
    /// `99`: anything else (VNPay tries again).
    Failed,
}

impl VnpayAnswer {
    pub fn code(self) -> &'static str {
        match self {
            VnpayAnswer::Confirmed => "00",
            VnpayAnswer::OrderNotFound => "01",
            VnpayAnswer::AlreadyConfirmed => "02",
            VnpayAnswer::InvalidAmount => "04",
            VnpayAnswer::InvalidChecksum => "97",
            VnpayAnswer::Failed => "99",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            VnpayAnswer::Confirmed => "Confirm Success",
            VnpayAnswer::OrderNotFound => "Order not Found",
            VnpayAnswer::AlreadyConfirmed => "Order already confirmed",
            VnpayAnswer::InvalidAmount => "Invalid amount",
            VnpayAnswer::InvalidChecksum => "Invalid Checksum",
            VnpayAnswer::Failed => "Unknow error",
        }
    }

    /// The answer's body, its fields in the order VNPay gives them.
    pub fn body(self) -> String {
        vnpay_answer(self.code(), self.message())
    }
}

/// VNPay's IPN answer, its fields in the order VNPay gives them.
pub fn vnpay_answer(code: &str, message: &str) -> String {
    format!(
        "{{\"RspCode\":{},\"Message\":{}}}",
        Value::String(code.into()),
        Value::String(message.into())
    )
}

/// A memo as matching sees it: marks stripped, upper case, letters and digits only (banks
/// prepend text such as `MBVCB.3278907687.`, insert spaces or truncate).
pub fn memo_key(memo: &str) -> String {
    hospital_core::store::text::strip_marks(memo)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CASSO_KEY: &str = "mgExMrjj4i7a1p8Cs6LmFbpCd8lbw4sSX4LZXPag7TKazeIogtR90tvWYTkwQbvs";
    const CASSO_T: &str = "1727948258788";
    const CASSO_V1: &str = "ed0a4bd2e826d5cb69988cdb141e6c1a080e21f3b57eb72cd78192220042b9e7dde0868fc667faea8e224900fa7904e7c88dfa098032fb2d6b6996856e8b7ff3";
    const CASSO_BODY: &str = r#"{"error":0,"data":{"id":0,"reference":"MA_GIAO_DICH_THU_NGHIEM","description":"giao dich thu nghiem","amount":599000,"runningBalance":25000000,"transactionDateTime":"2024-10-03 15:06:37","accountNumber":"88888888","bankName":"VPBank","bankAbbreviation":"VPB","virtualAccountNumber":"","virtualAccountName":"","counterAccountName":"NGUYEN VAN A","counterAccountNumber":"8888888888","counterAccountBankId":"970415","counterAccountBankName":"VietinBank"}}"#;

    #[test]
    fn the_casso_vector_verifies_and_a_changed_byte_does_not() {
        let now = 1_727_948_258;
        let sig = format!("t={CASSO_T},v1={CASSO_V1}");
        let c = casso(CASSO_KEY, Some(&sig), CASSO_BODY.as_bytes(), now).unwrap();
        assert_eq!((c.amount, c.account.as_str()), (599_000, "88888888"));
        let changed = CASSO_BODY.replace("599000", "599001");
        assert_eq!(
            casso(CASSO_KEY, Some(&sig), changed.as_bytes(), now),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            casso(CASSO_KEY, None, CASSO_BODY.as_bytes(), now),
            Err(Refusal::Unsigned)
        );
        assert_eq!(
            casso(CASSO_KEY, Some(&sig), CASSO_BODY.as_bytes(), now + 301),
            Err(Refusal::Stale)
        );
    }

    const PAYOS_DATA: &str = r#"{"accountNumber":"0123456789","amount":20000,"description":"thanh toan","reference":"FT-REFERENCE","transactionDateTime":"2025-12-12 09:00:00","virtualAccountNumber":"","counterAccountBankId":"01202001","counterAccountBankName":"","counterAccountName":"NGUYEN VAN A","counterAccountNumber":"9876543210","virtualAccountName":"","currency":"VND","orderCode":0,"paymentLinkId":"payment-link-id","code":"00","desc":"success"}"#;
    const PAYOS_SIG: &str = "302b3becca1672dff99daafae2965f40e48ea3ca39453e4bf37fbcc26807a0e8";

    #[test]
    fn the_payos_vector_verifies_and_a_changed_byte_does_not() {
        let body = format!(
            r#"{{"code":"00","desc":"success","success":true,"data":{PAYOS_DATA},"signature":"{PAYOS_SIG}"}}"#
        );
        let c = payos("test_checksum_key", body.as_bytes()).unwrap();
        assert_eq!(
            (c.transaction_id.as_str(), c.amount, c.incoming),
            ("FT-REFERENCE", 20_000, true)
        );
        let changed = body.replace("thanh toan", "thanh toan!");
        assert_eq!(
            payos("test_checksum_key", changed.as_bytes()),
            Err(Refusal::BadSignature)
        );
        let unsigned = body.replace(&format!(r#","signature":"{PAYOS_SIG}""#), "");
        assert_eq!(
            payos("test_checksum_key", unsigned.as_bytes()),
            Err(Refusal::Unsigned)
        );
    }

    /// payOS's own published cases (`data/payos-signature-cases.json`), all under the key of
    /// its SDK tests.
    #[test]
    fn every_published_payos_case_verifies() {
        let cases: Vec<Value> =
            serde_json::from_str(include_str!("../data/payos-signature-cases.json")).unwrap();
        assert_eq!(cases.len(), 24);
        for c in cases {
            let text = match c["type"].as_str().unwrap() {
                "create-payment-link" => payos_link_text(&c["payload"]),
                "body" => payos_data_text(&c["payload"]),
                "header" => payos_header_text(&c["payload"]),
                other => panic!("unknown case type {other}"),
            };
            assert_eq!(
                hmac_sha256_hex(b"test_checksum_key", text.as_bytes()),
                c["expect"].as_str().unwrap(),
                "{}: {text}",
                c["caseName"]
            );
        }
    }

    const VNPAY_TEXT: &str = "vnp_Amount=1000000&vnp_BankCode=NCB&vnp_BankTranNo=VNP14422574&vnp_CardType=ATM&vnp_OrderInfo=Thanh+toan+don+hang+2024-05-21T02%3A17%3A31.249Z&vnp_PayDate=20240521091806&vnp_ResponseCode=00&vnp_TmnCode=TEST_TMN_CODE&vnp_TransactionNo=14422574&vnp_TransactionStatus=00&vnp_TxnRef=1716257871703";
    const VNPAY_HASH: &str = "649982421beb422556a1374713c74e58e716ecbd05007c0c0e1f7effdfaf361dbf146889ca446139afe11b9954c4d5c486e99e3b86fcfab6957f29eb0be72895";

    #[test]
    fn the_vnpay_vector_verifies_in_any_parameter_order() {
        assert_eq!(
            hmac_sha512_hex(b"test_secret", VNPAY_TEXT.as_bytes()),
            VNPAY_HASH
        );
        // As VNPay sends it: unsorted, with the hash type and an empty parameter.
        let mut parts: Vec<&str> = VNPAY_TEXT.split('&').collect();
        parts.reverse();
        let query = format!(
            "{}&vnp_SecureHashType=HmacSHA512&vnp_Empty=&vnp_SecureHash={VNPAY_HASH}",
            parts.join("&")
        );
        let ipn = vnpay("test_secret", &query).unwrap();
        assert_eq!(
            (ipn.txn_ref.as_str(), ipn.amount, ipn.paid),
            ("1716257871703", Some(10_000), true)
        );
        let changed = query.replace("vnp_Amount=1000000", "vnp_Amount=2000000");
        assert_eq!(vnpay("test_secret", &changed), Err(Refusal::BadSignature));
        let unsigned = query.replace(&format!("&vnp_SecureHash={VNPAY_HASH}"), "");
        assert_eq!(vnpay("test_secret", &unsigned), Err(Refusal::Unsigned));
        assert_eq!(
            vnpay_answer("97", "Invalid Checksum"),
            r#"{"RspCode":"97","Message":"Invalid Checksum"}"#
        );
    }

    #[test]
    fn sepay_checks_its_key_or_its_signature_and_the_time() {
        let body = br#"{"id":92704,"gateway":"Vietcombank","transactionDate":"2023-03-25 14:02:37","accountNumber":"0123499999","code":null,"content":"VP12AB34","transferType":"in","description":"MBVCB.3278907687.VP12AB34.CT tu 0123","transferAmount":2277000,"referenceCode":"MBVCB.3278907687","accumulated":19077000,"subAccount":null}"#;
        let key = SepayAuth::ApiKey("sepay-key-1".into());
        let with = |h: Vec<(&'static str, String)>| {
            move |name: &str| h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
        };
        let c = sepay(
            &key,
            &with(vec![("authorization", "Apikey sepay-key-1".into())]),
            body,
            0,
        )
        .unwrap();
        assert_eq!(
            (c.transaction_id.as_str(), c.amount, c.incoming),
            ("92704", 2_277_000, true)
        );
        assert_eq!(
            sepay(
                &key,
                &with(vec![("authorization", "Apikey sepay-key-2".into())]),
                body,
                0
            ),
            Err(Refusal::BadSignature)
        );
        assert_eq!(sepay(&key, &with(vec![]), body, 0), Err(Refusal::Unsigned));

        let now = 1_764_547_200;
        let hmac_auth = SepayAuth::Hmac("sepay-secret".into());
        let signed = |ts: i64, body: &[u8]| {
            let mut msg = format!("{ts}.").into_bytes();
            msg.extend_from_slice(body);
            vec![
                ("x-sepay-timestamp", ts.to_string()),
                (
                    "x-sepay-signature",
                    format!("sha256={}", hmac_sha256_hex(b"sepay-secret", &msg)),
                ),
            ]
        };
        assert!(sepay(&hmac_auth, &with(signed(now, body)), body, now).is_ok());
        assert_eq!(
            sepay(&hmac_auth, &with(signed(now - 301, body)), body, now),
            Err(Refusal::Stale)
        );
        let mut changed = body.to_vec();
        changed[10] ^= 1;
        assert_eq!(
            sepay(&hmac_auth, &with(signed(now, body)), &changed, now),
            Err(Refusal::BadSignature)
        );
    }

    fn malformed(r: Result<Credit, Refusal>) -> String {
        match r {
            Err(Refusal::Malformed(m)) => m,
            other => panic!("not refused as malformed: {other:?}"),
        }
    }

    /// Correctly signed (or carrying the right key), but not a body the provider sends: each
    /// refused as malformed, with what is wrong; a body that cannot be verified is a signature
    /// failure, never malformed.
    #[test]
    fn signed_but_malformed_bodies_are_refused_saying_what_is_wrong() {
        let key = SepayAuth::ApiKey("k".into());
        let with_key = |name: &str| (name == "authorization").then(|| "Apikey k".to_owned());
        let sepay_of = |body: &str| sepay(&key, &with_key, body.as_bytes(), 0);
        assert!(malformed(sepay_of(r#"{"id": 1,"#)).contains("EOF while parsing"));
        assert_eq!(
            malformed(sepay_of(
                r#"{"transferType":"in","transferAmount":1000,"accountNumber":"1"}"#
            )),
            "no `id`"
        );
        for amount in ["1000.5", r#""1000""#, "null"] {
            assert_eq!(
                malformed(sepay_of(&format!(
                    r#"{{"id":7,"transferType":"in","transferAmount":{amount}}}"#
                ))),
                "`transferAmount` is not a whole number of đồng",
                "{amount}"
            );
        }
        // SePay under HMAC: signed garbage is malformed too.
        let hmac = SepayAuth::Hmac("s".into());
        let garbage = b"not json";
        let signed = |name: &str| match name {
            "x-sepay-timestamp" => Some("100".to_owned()),
            "x-sepay-signature" => Some(format!(
                "sha256={}",
                hmac_sha256_hex(b"s", &[b"100.".as_slice(), garbage].concat())
            )),
            _ => None,
        };
        assert!(malformed(sepay(&hmac, &signed, garbage, 100)).contains("expected ident"));

        // Casso signs the re-serialised JSON: a body that does not parse cannot be verified.
        let casso_sign = |t: &str, body: &str| {
            let v: Value = serde_json::from_str(body).unwrap();
            let text = format!("{t}.{}", hospital_core::store::sorted_json(&v));
            format!(
                "t={t},v1={}",
                hmac_sha512_hex(CASSO_KEY.as_bytes(), text.as_bytes())
            )
        };
        assert_eq!(
            casso(CASSO_KEY, Some("t=1000,v1=00"), br#"{"data":"#, 1),
            Err(Refusal::BadSignature)
        );
        let no_data = r#"{"error":0}"#;
        assert_eq!(
            malformed(casso(
                CASSO_KEY,
                Some(&casso_sign("1000", no_data)),
                no_data.as_bytes(),
                1
            )),
            "no `data`"
        );
        let no_id = r#"{"error":0,"data":{"amount":1000,"accountNumber":"1"}}"#;
        assert_eq!(
            malformed(casso(
                CASSO_KEY,
                Some(&casso_sign("1000", no_id)),
                no_id.as_bytes(),
                1
            )),
            "no `data.id`"
        );
        let half = r#"{"error":0,"data":{"id":9,"amount":1000.5}}"#;
        assert_eq!(
            malformed(casso(
                CASSO_KEY,
                Some(&casso_sign("1000", half)),
                half.as_bytes(),
                1
            )),
            "`amount` is not a whole number of đồng"
        );

        // payOS carries its signature in the body: unreadable JSON is unsigned.
        assert_eq!(payos("k", b"{oops"), Err(Refusal::Unsigned));
        let payos_of = |data: Value| {
            let sig = hmac_sha256_hex(b"k", payos_data_text(&data).as_bytes());
            let body = json!({"code": "00", "data": data, "signature": sig});
            payos("k", body.to_string().as_bytes())
        };
        assert_eq!(
            malformed(payos_of(json!({"amount": 1000, "code": "00"}))),
            "no `data.reference`"
        );
        assert_eq!(
            malformed(payos_of(json!({"amount": "1000", "reference": "R"}))),
            "`amount` is not a whole number of đồng"
        );
        // Zero, negative and absurd amounts are read as sent: the ledger refuses them.
        for amount in [0, -80_000, 10_000_000_000_000] {
            let c = payos_of(json!({"amount": amount, "reference": "R", "code": "00"})).unwrap();
            assert_eq!((c.amount, c.incoming), (amount, true));
        }

        // VNPay: an amount that is not whole đồng × 100 is no amount (answered 04 once the
        // order is found).
        for (raw, amount) in [
            ("15000050", None),
            ("abc", None),
            ("", None),
            ("15000000", Some(150_000)),
        ] {
            let params = vec![
                ("vnp_Amount".to_owned(), raw.to_owned()),
                ("vnp_TxnRef".to_owned(), "HD2026000001".to_owned()),
            ];
            let hash = hmac_sha512_hex(b"s", vnpay_text(&params).as_bytes());
            let query = format!("vnp_Amount={raw}&vnp_TxnRef=HD2026000001&vnp_SecureHash={hash}");
            assert_eq!(vnpay("s", &query).unwrap().amount, amount, "{raw}");
        }
    }

    #[test]
    fn memos_match_ignoring_case_spaces_punctuation_and_marks() {
        assert_eq!(
            memo_key("MBVCB.3278907687.vp12 ab-34.CT tu"),
            "MBVCB3278907687VP12AB34CTTU"
        );
        assert!(memo_key("Thanh toán viện phí VP12AB34").contains(&memo_key("vp12ab34")));
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        let _ = json!(null);
    }
}
