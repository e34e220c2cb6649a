//! Reconciliation of a bank-feed provider's statement with the payment ledger. A cashier
//! imports the provider's statement for one day (a CSV file of its transactions), and every
//! difference with the ledger's credits from that provider and day is reported: a transaction
//! missing on either side, duplicated, with a different amount, or dated on another day.
//! This module is pure (no I/O, no store). The caller reads the file and the ledger rows and
//! passes them to [`parse_statement`] and then [`compare`].
//!
//! # The statement file
//!
//! A CSV file like the ones bank-feed providers and Vietnamese banks export:
//!
//! ```text
//! transaction_id,date,amount,memo
//! FT24065000001,2024-03-05 09:14:02,250.000,"VP1A2B3C4D thanh toan, vien phi"
//! FT24065000002,05/03/2024,"1,250,000 VND",
//! FT24065000003,2024-03-05T17:40,90000đ,"two
//! lines, and a ""quoted"" word"
//! ```
//!
//! **Encoding and lines.** The file is UTF-8, with or without a byte-order mark. Lines end in
//! `\n` or `\r\n`. A carriage return outside quotes that is not followed by `\n` is an error.
//! Blank lines (empty, or only spaces and tabs) are skipped anywhere in the file. Lines are
//! numbered the way a text editor numbers them: the first line of the file is line 1, and
//! blank lines are counted. A row is named by the line it starts on.
//!
//! **Fields.** Fields are separated by commas and quoted as in RFC 4180. A field in double
//! quotes may contain commas, line breaks (a `\r\n` inside becomes `\n`) and quotes, written
//! twice (`""`). Spaces or tabs around a quoted field are ignored. These are errors: a quote
//! inside a field that does not start with one, anything other than a comma or the end of the
//! line after a closing quote, and a quote that is never closed. Every value is trimmed of
//! surrounding whitespace. Every row must have as many fields as the header: a memo that
//! contains a comma must be quoted.
//!
//! **Header.** The first line that is not blank names the columns. Names are matched ignoring
//! case and surrounding spaces. The columns may come in any order, and unknown columns are
//! ignored.
//!
//! | Column           | Also named                 |                                          |
//! |------------------|----------------------------|------------------------------------------|
//! | `transaction_id` | `id`, `reference`          | required                                 |
//! | `date`           | `transaction_date`, `when` | required                                 |
//! | `amount`         |                            | required                                 |
//! | `memo`           | `description`              | optional; the memo is empty without it   |
//!
//! Two columns with the same meaning (say `id` and `reference`) are an error, so the import
//! never has to guess which one to trust.
//!
//! **`transaction_id`**: the provider's transaction id, 1 to 128 characters after trimming,
//! with no control characters. Ids are compared exactly, so case matters.
//!
//! **`date`**: the local (Vietnam) date of the transaction, written either as `YYYY-MM-DD`
//! (`2024-03-05`) or as `dd/mm/yyyy`, the form Vietnamese bank exports use (`05/03/2024`,
//! day first; the day and the month may have one digit, `5/3/2024`). Either form may be
//! followed by a space or a `T` and a time `HH:MM` or `HH:MM:SS` (24-hour, two digits each).
//! The time is checked, then ignored. The value is taken as Vietnam local time, so a time
//! zone (`Z`, `+07:00`) or fractional seconds are an error rather than a silent shift of day.
//!
//! **`amount`**: money in, in whole đồng, from 1 to 1 000 000 000 000:
//! - digits only (`250000`), or with `.` or `,` as the thousands separator. Only one of the two
//!   may be used in a value, in correct groups of three (`250.000`, `1,250,000`), and a grouped
//!   value does not begin with `0`;
//! - optional surrounding spaces, and an optional currency suffix `VND` (any case), `đ` or
//!   `₫`, with or without a space before it (`250.000 VND`, `90000đ`).
//!
//! A statement lists money in only, so a zero, negative (`-5`) or fractional (`1.5`) amount
//! is an error. So is a wrongly grouped one (`25.00`, which would be read as either 25 or
//! 2,500), and so is anything else (`12a`, `+5`, `1 250 000`).
//!
//! **`memo`** (or `description`): free text, possibly empty.
//!
//! **Limits**: at most 100 000 data rows (blank lines are not counted), and each field at
//! most 1 000 characters. Beyond either limit the file is refused.
//!
//! **Errors.** The first error stops the import. Its message names the line and says what is
//! wrong. For a problem with the quoting or the length of a field, it also names the field
//! (counted from 1, with its column name once the header is known). For example:
//!
//! ```text
//! line 7: amount `12a` is not a whole number of đồng
//! line 4: 3 fields, but the header has 4 (a memo that contains a comma must be quoted)
//! line 9, field 4 (memo): a quoted field is never closed (a quote inside a quoted field is written twice: "")
//! ```
//!
//! # The comparison
//!
//! [`compare`] takes the statement's day, its rows, and the ledger's credits from the same
//! provider and day. It groups both sides by transaction id. For each id:
//! - the id is on more than one line of the statement, or recorded by more than one ledger
//!   row: one [`Difference::Duplicated`] that lists all of its statement lines and all of its
//!   notices (either list may be empty), and nothing else for that id;
//! - otherwise, the statement row is dated on another day than the statement's:
//!   [`Difference::OtherDay`] only. It is not compared further, and a ledger row with the same
//!   id is not reported as missing;
//! - otherwise, the id is only in the statement: [`Difference::MissingInLedger`]; only in the
//!   ledger: [`Difference::MissingInStatement`]; on both sides with different amounts:
//!   [`Difference::AmountMismatch`]. Equal rows produce nothing.
//!
//! The differences are sorted by transaction id (byte order, so `T10` comes before `T9`) and
//! then by [`Difference::code`]. The same inputs in any order give the same report.

use chrono::NaiveDate;
use std::collections::{BTreeMap, BTreeSet};

/// The largest amount believed, the same as the ledger's.
const MAX_AMOUNT: i64 = crate::ledger::MAX_AMOUNT;
/// At most this many data rows in one statement.
const MAX_ROWS: usize = 100_000;
/// At most this many characters in one field.
const MAX_FIELD_CHARS: usize = 1_000;
/// At most this many characters in a transaction id.
const MAX_ID_CHARS: usize = 128;

/// One transaction of a provider's statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementRow {
    /// The 1-based line number in the file (header is line 1), for messages.
    pub line: usize,
    pub transaction_id: String,
    /// Whole đồng, > 0 for money in.
    pub amount: i64,
    /// The local (Vietnam) date of the transaction, from the `date` column.
    pub date: NaiveDate,
    /// The memo / description, possibly empty.
    pub memo: String,
}

/// One credit of the ledger from the same provider (what billing recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub transaction_id: String,
    pub amount: i64,
    /// The PaymentNotice id that records it.
    pub notice: String,
}

/// One difference between a statement and the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// In the statement, not in the ledger.
    MissingInLedger {
        transaction_id: String,
        amount: i64,
        line: usize,
    },
    /// In the ledger, not in the statement.
    MissingInStatement {
        transaction_id: String,
        amount: i64,
        notice: String,
    },
    /// The same transaction id on several lines of the statement (lines listed), or recorded
    /// by several ledger rows (notices listed). Both lists are complete and sorted; either may
    /// be empty.
    Duplicated {
        transaction_id: String,
        lines: Vec<usize>,
        notices: Vec<String>,
    },
    /// Both sides have it, with different amounts.
    AmountMismatch {
        transaction_id: String,
        statement: i64,
        ledger: i64,
        line: usize,
        notice: String,
    },
    /// A statement row dated on another day than the statement's.
    OtherDay {
        transaction_id: String,
        date: NaiveDate,
        line: usize,
    },
}

impl Difference {
    /// A stable machine code: "missing-in-ledger", "missing-in-statement", "duplicated",
    /// "amount-mismatch", "other-day".
    pub fn code(&self) -> &'static str {
        match self {
            Difference::MissingInLedger { .. } => "missing-in-ledger",
            Difference::MissingInStatement { .. } => "missing-in-statement",
            Difference::Duplicated { .. } => "duplicated",
            Difference::AmountMismatch { .. } => "amount-mismatch",
            Difference::OtherDay { .. } => "other-day",
        }
    }

    /// One sentence in English for the report, naming the transaction id, amounts (plain
    /// integers of đồng) and line/notice.
    pub fn describe(&self) -> String {
        match self {
            Difference::MissingInLedger {
                transaction_id,
                amount,
                line,
            } => format!(
                "Transaction {transaction_id} of {amount} đồng is in the statement \
                 (line {line}) but not in the ledger."
            ),
            Difference::MissingInStatement {
                transaction_id,
                amount,
                notice,
            } => format!(
                "Transaction {transaction_id} of {amount} đồng is in the ledger \
                 (notice {notice}) but not in the statement."
            ),
            Difference::Duplicated {
                transaction_id,
                lines,
                notices,
            } => {
                let in_statement = match lines.as_slice() {
                    [] => "is not in the statement".to_string(),
                    [one] => format!("is on statement line {one}"),
                    many => format!("is on statement lines {}", join(many)),
                };
                let in_ledger = match notices.as_slice() {
                    [] => "is not in the ledger".to_string(),
                    [one] => format!("is recorded by notice {one}"),
                    many => format!("is recorded by notices {}", join(many)),
                };
                format!(
                    "Transaction {transaction_id} is duplicated: it {in_statement} and {in_ledger}."
                )
            }
            Difference::AmountMismatch {
                transaction_id,
                statement,
                ledger,
                line,
                notice,
            } => format!(
                "Transaction {transaction_id} is {statement} đồng in the statement (line {line}) \
                 but {ledger} đồng in the ledger (notice {notice})."
            ),
            Difference::OtherDay {
                transaction_id,
                date,
                line,
            } => format!(
                "Transaction {transaction_id} (statement line {line}) is dated {date}, \
                 not the statement's day."
            ),
        }
    }

    /// The transaction id the difference is about.
    pub fn transaction_id(&self) -> &str {
        match self {
            Difference::MissingInLedger { transaction_id, .. }
            | Difference::MissingInStatement { transaction_id, .. }
            | Difference::Duplicated { transaction_id, .. }
            | Difference::AmountMismatch { transaction_id, .. }
            | Difference::OtherDay { transaction_id, .. } => transaction_id,
        }
    }
}

/// `a`, `a and b`, `a, b and c`.
fn join<T: std::fmt::Display>(items: &[T]) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(if i + 1 == items.len() { " and " } else { ", " });
        }
        out.push_str(&item.to_string());
    }
    out
}

/// Every difference between a statement of `day` and the ledger's rows of the same provider
/// and day, in a deterministic order (sorted by transaction id, then by code). The rules are
/// in the module's documentation.
pub fn compare(
    day: NaiveDate,
    statement: &[StatementRow],
    ledger: &[LedgerRow],
) -> Vec<Difference> {
    let mut by_id_statement: BTreeMap<&str, Vec<&StatementRow>> = BTreeMap::new();
    for row in statement {
        by_id_statement
            .entry(row.transaction_id.as_str())
            .or_default()
            .push(row);
    }
    let mut by_id_ledger: BTreeMap<&str, Vec<&LedgerRow>> = BTreeMap::new();
    for row in ledger {
        by_id_ledger
            .entry(row.transaction_id.as_str())
            .or_default()
            .push(row);
    }
    let ids: BTreeSet<&str> = by_id_statement
        .keys()
        .chain(by_id_ledger.keys())
        .copied()
        .collect();

    let mut differences = Vec::new();
    for id in ids {
        let s = by_id_statement
            .get(id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let l = by_id_ledger.get(id).map(Vec::as_slice).unwrap_or_default();
        let transaction_id = id.to_string();
        if s.len() > 1 || l.len() > 1 {
            let mut lines: Vec<usize> = s.iter().map(|r| r.line).collect();
            lines.sort_unstable();
            let mut notices: Vec<String> = l.iter().map(|r| r.notice.clone()).collect();
            notices.sort_unstable();
            differences.push(Difference::Duplicated {
                transaction_id,
                lines,
                notices,
            });
            continue;
        }
        match (s.first(), l.first()) {
            (Some(s), _) if s.date != day => differences.push(Difference::OtherDay {
                transaction_id,
                date: s.date,
                line: s.line,
            }),
            (Some(s), None) => differences.push(Difference::MissingInLedger {
                transaction_id,
                amount: s.amount,
                line: s.line,
            }),
            (None, Some(l)) => differences.push(Difference::MissingInStatement {
                transaction_id,
                amount: l.amount,
                notice: l.notice.clone(),
            }),
            (Some(s), Some(l)) if s.amount != l.amount => {
                differences.push(Difference::AmountMismatch {
                    transaction_id,
                    statement: s.amount,
                    ledger: l.amount,
                    line: s.line,
                    notice: l.notice.clone(),
                })
            }
            _ => {}
        }
    }
    // Already in id order with at most one difference per id; sorted explicitly so that the
    // documented order holds whatever the rules above become.
    differences.sort_by(|a, b| (a.transaction_id(), a.code()).cmp(&(b.transaction_id(), b.code())));
    differences
}

/// Parses a statement. Errors name the line (and column) and say what is wrong, e.g.
/// "line 7: amount `12a` is not a whole number of đồng". The format is in the module's
/// documentation.
pub fn parse_statement(csv: &str) -> Result<Vec<StatementRow>, String> {
    let text = csv.strip_prefix('\u{feff}').unwrap_or(csv);
    let mut reader = Reader::new(text);

    let header = loop {
        match reader.next_record().map_err(|e| e.message(&[]))? {
            None => {
                return Err(format!(
                    "line {}: the file has no header: the first line must name the columns \
                     transaction_id, date and amount",
                    reader.line
                ));
            }
            Some(record) if record.is_blank() => continue,
            Some(record) => break record,
        }
    };
    let layout = Layout::of(&header)?;

    let mut rows = Vec::new();
    while let Some(record) = reader.next_record().map_err(|e| e.message(&layout.names))? {
        if record.is_blank() {
            continue;
        }
        if rows.len() == MAX_ROWS {
            return Err(format!(
                "line {}: more than {MAX_ROWS} data rows, the limit of one statement",
                record.line
            ));
        }
        rows.push(layout.row(&record)?);
    }
    Ok(rows)
}

/// Where each known column is in the rows.
struct Layout {
    /// The header's names, trimmed as written, for messages.
    names: Vec<String>,
    transaction_id: usize,
    date: usize,
    amount: usize,
    memo: Option<usize>,
}

/// The columns the statement reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Column {
    TransactionId,
    Date,
    Amount,
    Memo,
}

impl Column {
    fn of(name: &str) -> Option<Column> {
        match name.trim().to_lowercase().as_str() {
            "transaction_id" | "id" | "reference" => Some(Column::TransactionId),
            "date" | "transaction_date" | "when" => Some(Column::Date),
            "amount" => Some(Column::Amount),
            "memo" | "description" => Some(Column::Memo),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Column::TransactionId => "transaction_id",
            Column::Date => "date",
            Column::Amount => "amount",
            Column::Memo => "memo",
        }
    }
}

impl Layout {
    fn of(header: &Record) -> Result<Layout, String> {
        let names: Vec<String> = header
            .fields
            .iter()
            .map(|f| f.text.trim().to_string())
            .collect();
        let mut found: [Option<usize>; 4] = [None; 4];
        let columns = [
            Column::TransactionId,
            Column::Date,
            Column::Amount,
            Column::Memo,
        ];
        for (index, name) in names.iter().enumerate() {
            let Some(column) = Column::of(name) else {
                continue;
            };
            let Some(slot) = columns.iter().position(|c| *c == column) else {
                continue;
            };
            if let Some(earlier) = found[slot] {
                return Err(format!(
                    "line {}: columns `{}` and `{}` both give the {}; keep only one",
                    header.line,
                    names[earlier],
                    name,
                    column.name()
                ));
            }
            found[slot] = Some(index);
        }
        let required = |slot: usize, aliases: &str| {
            found[slot].ok_or_else(|| {
                format!(
                    "line {}: the header has no `{}` column{aliases} (required: transaction_id, \
                     date and amount)",
                    header.line,
                    columns[slot].name()
                )
            })
        };
        Ok(Layout {
            transaction_id: required(0, " (nor `id` or `reference`)")?,
            date: required(1, " (nor `transaction_date` or `when`)")?,
            amount: required(2, "")?,
            memo: found[3],
            names,
        })
    }

    fn row(&self, record: &Record) -> Result<StatementRow, String> {
        let line = record.line;
        if record.fields.len() != self.names.len() {
            return Err(format!(
                "line {line}: {} field{}, but the header has {} (a memo that contains a comma \
                 must be quoted)",
                record.fields.len(),
                if record.fields.len() == 1 { "" } else { "s" },
                self.names.len()
            ));
        }
        let field = |index: usize| record.fields.get(index).map_or("", |f| f.text.trim());
        let transaction_id = parse_transaction_id(field(self.transaction_id))
            .map_err(|e| format!("line {line}: {e}"))?;
        let date = parse_date(field(self.date)).map_err(|e| format!("line {line}: {e}"))?;
        let amount = parse_amount(field(self.amount)).map_err(|e| format!("line {line}: {e}"))?;
        let memo = self.memo.map_or("", field).to_string();
        Ok(StatementRow {
            line,
            transaction_id,
            amount,
            date,
            memo,
        })
    }
}

/// A transaction id: trimmed, 1 to 128 characters, no control characters.
fn parse_transaction_id(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("transaction_id is empty".to_string());
    }
    if s.chars().count() > MAX_ID_CHARS {
        return Err(format!(
            "transaction_id `{s}` is longer than {MAX_ID_CHARS} characters"
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(format!(
            "transaction_id `{}` contains a control character",
            s.escape_debug()
        ));
    }
    Ok(s.to_string())
}

/// A date `YYYY-MM-DD` or `dd/mm/yyyy`, optionally followed by a space or `T` and a time
/// `HH:MM` or `HH:MM:SS`, which is checked and ignored.
fn parse_date(s: &str) -> Result<NaiveDate, String> {
    if s.is_empty() {
        return Err("date is empty".to_string());
    }
    let malformed = || {
        format!(
            "date `{s}` is not YYYY-MM-DD or dd/mm/yyyy, optionally followed by a time HH:MM \
             or HH:MM:SS (Vietnam local time, no time zone)"
        )
    };
    let (day, time) = match s.find([' ', 'T']) {
        // Both separators are one byte long.
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    };
    if let Some(time) = time
        && !is_time(time)
    {
        return Err(malformed());
    }
    let (year, month, day) = if let Some(ymd) = split3(day, '-') {
        match ymd {
            (y, m, d) if y.len() == 4 && m.len() == 2 && d.len() == 2 => (y, m, d),
            _ => return Err(malformed()),
        }
    } else if let Some(dmy) = split3(day, '/') {
        match dmy {
            (d, m, y)
                if (1..=2).contains(&d.len()) && (1..=2).contains(&m.len()) && y.len() == 4 =>
            {
                (y, m, d)
            }
            _ => return Err(malformed()),
        }
    } else {
        return Err(malformed());
    };
    let (Some(year), Some(month), Some(day)) = (digits(year), digits(month), digits(day)) else {
        return Err(malformed());
    };
    let year = i32::try_from(year).map_err(|_| malformed())?;
    let month = u32::try_from(month).map_err(|_| malformed())?;
    let day = u32::try_from(day).map_err(|_| malformed())?;
    NaiveDate::from_ymd_opt(year, month, day)
        .ok_or_else(|| format!("date `{s}` is not a day of the calendar"))
}

/// `a<sep>b<sep>c`, exactly three parts.
fn split3(s: &str, sep: char) -> Option<(&str, &str, &str)> {
    let mut parts = s.split(sep);
    let parts3 = (parts.next()?, parts.next()?, parts.next()?);
    match parts.next() {
        None => Some(parts3),
        Some(_) => None,
    }
}

/// The value of a non-empty string of ASCII digits (at most 4 of them, as dates use).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `HH:MM` or `HH:MM:SS`, two digits each, a valid time of day.
fn is_time(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return false;
    }
    let limits = [24, 60, 60];
    parts
        .iter()
        .zip(limits)
        .all(|(part, limit)| part.len() == 2 && digits(part).is_some_and(|v| v < limit))
}

/// Whole đồng, from 1 to [`MAX_AMOUNT`]: digits, optionally grouped by thousands with `.` or
/// `,`, optionally followed by `VND`, `đ` or `₫`.
fn parse_amount(s: &str) -> Result<i64, String> {
    if s.is_empty() {
        return Err("amount is empty".to_string());
    }
    let not_whole = || format!("amount `{s}` is not a whole number of đồng");
    let body = strip_currency(s).trim_end();
    if body.starts_with('-') || body.starts_with('\u{2212}') {
        return Err(format!(
            "amount `{s}` is negative: a statement lists money in only"
        ));
    }
    if !body.bytes().any(|b| b.is_ascii_digit())
        || !body
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b',')
    {
        return Err(not_whole());
    }
    if body.bytes().all(|b| b == b'0' || b == b'.' || b == b',') {
        return Err(format!(
            "amount `{s}` is zero: a statement lists money in, at least 1 đồng each"
        ));
    }
    let badly_grouped = || {
        format!(
            "amount `{s}` is not a whole number of đồng: `.` and `,` may only separate \
             thousands, in groups of three digits (250.000 or 1,250,000)"
        )
    };
    let separator = body.chars().find(|c| *c == '.' || *c == ',');
    if let Some(separator) = separator {
        let mut groups = body.split(separator);
        let first = groups.next().unwrap_or_default();
        let first_ok = (1..=3).contains(&first.len())
            && !first.starts_with('0')
            && first.bytes().all(|b| b.is_ascii_digit());
        let rest_ok = groups.all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit()));
        if !first_ok || !rest_ok {
            return Err(badly_grouped());
        }
    }
    let too_large = || format!("amount `{s}` is more than {MAX_AMOUNT} đồng");
    let mut value: i64 = 0;
    for b in body.bytes().filter(u8::is_ascii_digit) {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(b - b'0')))
            .filter(|v| *v <= MAX_AMOUNT)
            .ok_or_else(too_large)?;
    }
    Ok(value)
}

/// `s` without a trailing `VND` (any case), `đ` or `₫`.
fn strip_currency(s: &str) -> &str {
    if let Some(at) = s.len().checked_sub(3)
        && let Some(suffix) = s.get(at..)
        && suffix.eq_ignore_ascii_case("vnd")
    {
        return &s[..at];
    }
    s.strip_suffix(['đ', '₫']).unwrap_or(s)
}

/// One field of a record, unquoted.
struct Field {
    text: String,
    quoted: bool,
}

/// One record of the file: the line it starts on, and its fields.
struct Record {
    line: usize,
    fields: Vec<Field>,
}

impl Record {
    /// An empty line, or one of spaces and tabs only.
    fn is_blank(&self) -> bool {
        match self.fields.as_slice() {
            [only] => !only.quoted && only.text.trim().is_empty(),
            _ => false,
        }
    }
}

/// How a field ended.
enum End {
    Comma,
    Line,
    File,
}

/// What is wrong with the quoting or the size of a field: the line it is on, the field's
/// position in its record (from 1).
#[derive(Debug)]
enum SyntaxError {
    NeverClosed {
        line: usize,
        field: usize,
    },
    QuoteInside {
        line: usize,
        field: usize,
    },
    AfterQuote {
        line: usize,
        field: usize,
        found: char,
    },
    CarriageReturn {
        line: usize,
        field: usize,
    },
    TooLong {
        line: usize,
        field: usize,
    },
}

impl SyntaxError {
    /// The message, naming the field by its column once the header is known.
    fn message(&self, names: &[String]) -> String {
        let (line, field) = match self {
            SyntaxError::NeverClosed { line, field }
            | SyntaxError::QuoteInside { line, field }
            | SyntaxError::AfterQuote { line, field, .. }
            | SyntaxError::CarriageReturn { line, field }
            | SyntaxError::TooLong { line, field } => (*line, *field),
        };
        let at = match names.get(field.wrapping_sub(1)) {
            Some(name) if !name.is_empty() => format!("line {line}, field {field} ({name})"),
            _ => format!("line {line}, field {field}"),
        };
        let what = match self {
            SyntaxError::NeverClosed { .. } => {
                "a quoted field is never closed (a quote inside a quoted field is written twice: \"\")"
                    .to_string()
            }
            SyntaxError::QuoteInside { .. } => "a quote inside a field that does not start with \
                 one (quote the whole field, and write each quote inside it twice: \"\")"
                .to_string(),
            SyntaxError::AfterQuote { found, .. } => format!(
                "`{}` after the closing quote (a quote inside a quoted field is written twice: \
                 \"\")",
                found.escape_debug()
            ),
            SyntaxError::CarriageReturn { .. } => {
                "a carriage return not followed by a line feed (lines end in \\n or \\r\\n)"
                    .to_string()
            }
            SyntaxError::TooLong { .. } => {
                format!("the field is longer than {MAX_FIELD_CHARS} characters")
            }
        };
        format!("{at}: {what}")
    }
}

/// Reads a CSV text one record at a time, counting lines.
struct Reader<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    /// The line the next character is on.
    line: usize,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str) -> Reader<'a> {
        Reader {
            chars: text.chars().peekable(),
            line: 1,
        }
    }

    /// The next record, or `None` at the end of the text.
    fn next_record(&mut self) -> Result<Option<Record>, SyntaxError> {
        if self.chars.peek().is_none() {
            return Ok(None);
        }
        let line = self.line;
        let mut fields = Vec::new();
        loop {
            let (field, end) = self.field(fields.len() + 1)?;
            fields.push(field);
            match end {
                End::Comma => {}
                End::Line | End::File => return Ok(Some(Record { line, fields })),
            }
        }
    }

    /// Consumes a `\n` after a `\r`, or says the `\r` is alone.
    fn carriage_return(&mut self, field: usize) -> Result<End, SyntaxError> {
        if self.chars.next_if_eq(&'\n').is_some() {
            self.line += 1;
            Ok(End::Line)
        } else {
            Err(SyntaxError::CarriageReturn {
                line: self.line,
                field,
            })
        }
    }

    /// One field, the `index`-th of its record.
    fn field(&mut self, index: usize) -> Result<(Field, End), SyntaxError> {
        let mut text = String::new();
        let mut chars = 0usize;
        loop {
            let end = match self.chars.next() {
                None => End::File,
                Some(',') => End::Comma,
                Some('\n') => {
                    self.line += 1;
                    End::Line
                }
                Some('\r') => self.carriage_return(index)?,
                Some('"') if text.chars().all(|c| c == ' ' || c == '\t') => {
                    return self.quoted(index);
                }
                Some('"') => {
                    return Err(SyntaxError::QuoteInside {
                        line: self.line,
                        field: index,
                    });
                }
                Some(c) => {
                    chars += 1;
                    if chars > MAX_FIELD_CHARS {
                        return Err(SyntaxError::TooLong {
                            line: self.line,
                            field: index,
                        });
                    }
                    text.push(c);
                    continue;
                }
            };
            return Ok((
                Field {
                    text,
                    quoted: false,
                },
                end,
            ));
        }
    }

    /// The rest of a field after its opening quote.
    fn quoted(&mut self, index: usize) -> Result<(Field, End), SyntaxError> {
        let opened = self.line;
        let mut text = String::new();
        let mut chars = 0usize;
        loop {
            let c = match self.chars.next() {
                None => {
                    return Err(SyntaxError::NeverClosed {
                        line: opened,
                        field: index,
                    });
                }
                Some('"') if self.chars.next_if_eq(&'"').is_some() => '"',
                Some('"') => break,
                Some('\r') if self.chars.next_if_eq(&'\n').is_some() => {
                    self.line += 1;
                    '\n'
                }
                Some('\n') => {
                    self.line += 1;
                    '\n'
                }
                Some(c) => c,
            };
            chars += 1;
            if chars > MAX_FIELD_CHARS {
                return Err(SyntaxError::TooLong {
                    line: opened,
                    field: index,
                });
            }
            text.push(c);
        }
        let end = loop {
            match self.chars.next() {
                None => break End::File,
                Some(' ' | '\t') => {}
                Some(',') => break End::Comma,
                Some('\n') => {
                    self.line += 1;
                    break End::Line;
                }
                Some('\r') => break self.carriage_return(index)?,
                Some(found) => {
                    return Err(SyntaxError::AfterQuote {
                        line: self.line,
                        field: index,
                        found,
                    });
                }
            }
        };
        Ok((Field { text, quoted: true }, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("a valid test date")
    }

    fn march5() -> NaiveDate {
        day(2024, 3, 5)
    }

    fn srow(line: usize, id: &str, amount: i64, date: NaiveDate) -> StatementRow {
        StatementRow {
            line,
            transaction_id: id.to_string(),
            amount,
            date,
            memo: String::new(),
        }
    }

    fn lrow(id: &str, amount: i64, notice: &str) -> LedgerRow {
        LedgerRow {
            transaction_id: id.to_string(),
            amount,
            notice: notice.to_string(),
        }
    }

    /// The error of a statement that must be refused.
    fn refused(csv: &str) -> String {
        match parse_statement(csv) {
            Ok(rows) => panic!("accepted {csv:?} as {rows:?}"),
            Err(e) => e,
        }
    }

    /// The only row of a statement with one data row.
    fn one(csv: &str) -> StatementRow {
        let rows = parse_statement(csv).unwrap_or_else(|e| panic!("{csv:?}: {e}"));
        assert_eq!(rows.len(), 1, "{rows:?}");
        rows.into_iter().next().expect("one row")
    }

    /// The amount of a one-row statement, the value quoted (so that it may hold commas).
    fn amount_of(value: &str) -> Result<i64, String> {
        parse_statement(&format!(
            "transaction_id,date,amount\nT1,2024-03-05,\"{value}\"\n"
        ))
        .map(|rows| rows[0].amount)
    }

    fn date_of(value: &str) -> Result<NaiveDate, String> {
        parse_statement(&format!("transaction_id,date,amount\nT1,{value},1000\n"))
            .map(|rows| rows[0].date)
    }

    #[test]
    fn a_clean_statement_equal_to_the_ledger_has_no_differences() {
        let csv = "transaction_id,date,amount,memo\n\
                   FT1,2024-03-05 08:00,250.000,VP1A2B3C4D\n\
                   FT2,05/03/2024,\"1,250,000 VND\",\n\
                   FT3,2024-03-05,90000đ,cash\n";
        let statement = parse_statement(csv).expect("a valid statement");
        assert_eq!(statement.len(), 3);
        let ledger = [
            lrow("FT3", 90_000, "n3"),
            lrow("FT1", 250_000, "n1"),
            lrow("FT2", 1_250_000, "n2"),
        ];
        assert_eq!(compare(march5(), &statement, &ledger), vec![]);
    }

    #[test]
    fn parsed_rows_carry_line_id_amount_date_and_memo() {
        let rows = parse_statement(
            "transaction_id,date,amount,memo\nFT1,2024-03-05,250000,VP1A2B3C4D tien kham\n",
        )
        .expect("valid");
        assert_eq!(
            rows,
            vec![StatementRow {
                line: 2,
                transaction_id: "FT1".to_string(),
                amount: 250_000,
                date: march5(),
                memo: "VP1A2B3C4D tien kham".to_string(),
            }]
        );
    }

    #[test]
    fn missing_in_ledger() {
        let statement = [srow(2, "FT1", 100, march5()), srow(3, "FT2", 200, march5())];
        let ledger = [lrow("FT1", 100, "n1")];
        let got = compare(march5(), &statement, &ledger);
        assert_eq!(
            got,
            vec![Difference::MissingInLedger {
                transaction_id: "FT2".to_string(),
                amount: 200,
                line: 3
            }]
        );
        assert_eq!(got[0].code(), "missing-in-ledger");
        assert_eq!(got[0].transaction_id(), "FT2");
        assert_eq!(
            got[0].describe(),
            "Transaction FT2 of 200 đồng is in the statement (line 3) but not in the ledger."
        );
    }

    #[test]
    fn missing_in_statement() {
        let statement = [srow(2, "FT1", 100, march5())];
        let ledger = [lrow("FT1", 100, "n1"), lrow("FT9", 5000, "n9")];
        let got = compare(march5(), &statement, &ledger);
        assert_eq!(
            got,
            vec![Difference::MissingInStatement {
                transaction_id: "FT9".to_string(),
                amount: 5000,
                notice: "n9".to_string()
            }]
        );
        assert_eq!(got[0].code(), "missing-in-statement");
        assert_eq!(got[0].transaction_id(), "FT9");
        assert_eq!(
            got[0].describe(),
            "Transaction FT9 of 5000 đồng is in the ledger (notice n9) but not in the statement."
        );
    }

    #[test]
    fn duplicated_in_the_statement_lists_all_lines_and_notices_and_stops_there() {
        // Different amounts too: no AmountMismatch, the duplicate says it all.
        let statement = [srow(7, "FT1", 100, march5()), srow(3, "FT1", 999, march5())];
        let ledger = [lrow("FT1", 100, "n1")];
        let got = compare(march5(), &statement, &ledger);
        assert_eq!(
            got,
            vec![Difference::Duplicated {
                transaction_id: "FT1".to_string(),
                lines: vec![3, 7],
                notices: vec!["n1".to_string()]
            }]
        );
        assert_eq!(got[0].code(), "duplicated");
        assert_eq!(got[0].transaction_id(), "FT1");
        assert_eq!(
            got[0].describe(),
            "Transaction FT1 is duplicated: it is on statement lines 3 and 7 and is recorded by notice n1."
        );
    }

    #[test]
    fn duplicated_in_the_ledger_only() {
        let ledger = [
            lrow("FT1", 100, "n2"),
            lrow("FT1", 100, "n1"),
            lrow("FT1", 100, "n3"),
        ];
        let got = compare(march5(), &[], &ledger);
        assert_eq!(
            got,
            vec![Difference::Duplicated {
                transaction_id: "FT1".to_string(),
                lines: vec![],
                notices: vec!["n1".to_string(), "n2".to_string(), "n3".to_string()]
            }]
        );
        assert_eq!(
            got[0].describe(),
            "Transaction FT1 is duplicated: it is not in the statement and is recorded by notices n1, n2 and n3."
        );
    }

    #[test]
    fn duplicated_in_the_statement_only_even_on_another_day() {
        let statement = [
            srow(2, "FT1", 100, march5()),
            srow(4, "FT1", 100, day(2024, 3, 4)),
        ];
        let got = compare(march5(), &statement, &[]);
        assert_eq!(
            got,
            vec![Difference::Duplicated {
                transaction_id: "FT1".to_string(),
                lines: vec![2, 4],
                notices: vec![]
            }]
        );
        assert_eq!(
            got[0].describe(),
            "Transaction FT1 is duplicated: it is on statement lines 2 and 4 and is not in the ledger."
        );
    }

    #[test]
    fn amount_mismatch() {
        let statement = [srow(5, "FT1", 250_000, march5())];
        let ledger = [lrow("FT1", 200_000, "n1")];
        let got = compare(march5(), &statement, &ledger);
        assert_eq!(
            got,
            vec![Difference::AmountMismatch {
                transaction_id: "FT1".to_string(),
                statement: 250_000,
                ledger: 200_000,
                line: 5,
                notice: "n1".to_string()
            }]
        );
        assert_eq!(got[0].code(), "amount-mismatch");
        assert_eq!(got[0].transaction_id(), "FT1");
        assert_eq!(
            got[0].describe(),
            "Transaction FT1 is 250000 đồng in the statement (line 5) but 200000 đồng in the ledger (notice n1)."
        );
    }

    #[test]
    fn other_day_is_reported_alone_and_hides_the_ledger_row() {
        let statement = [
            srow(2, "FT1", 100, day(2024, 3, 4)),
            srow(3, "FT2", 100, day(2024, 3, 6)),
        ];
        // FT1 is in the ledger with another amount: still only OtherDay, and no missing.
        let ledger = [lrow("FT1", 555, "n1")];
        let got = compare(march5(), &statement, &ledger);
        assert_eq!(
            got,
            vec![
                Difference::OtherDay {
                    transaction_id: "FT1".to_string(),
                    date: day(2024, 3, 4),
                    line: 2
                },
                Difference::OtherDay {
                    transaction_id: "FT2".to_string(),
                    date: day(2024, 3, 6),
                    line: 3
                },
            ]
        );
        assert_eq!(got[0].code(), "other-day");
        assert_eq!(got[0].transaction_id(), "FT1");
        assert_eq!(
            got[0].describe(),
            "Transaction FT1 (statement line 2) is dated 2024-03-04, not the statement's day."
        );
    }

    #[test]
    fn ids_are_compared_exactly() {
        let statement = [srow(2, "ft1", 100, march5())];
        let ledger = [lrow("FT1", 100, "n1")];
        let codes: Vec<&str> = compare(march5(), &statement, &ledger)
            .iter()
            .map(Difference::code)
            .collect();
        assert_eq!(codes, vec!["missing-in-statement", "missing-in-ledger"]);
    }

    #[test]
    fn order_is_by_id_then_code_whatever_the_input_order() {
        let statement = vec![
            srow(2, "C", 100, march5()),
            srow(3, "A", 100, march5()),
            srow(4, "T10", 7, march5()),
            srow(5, "D", 1, day(2024, 1, 1)),
            srow(6, "B", 100, march5()),
            srow(7, "B", 100, march5()),
            srow(8, "T9", 100, march5()),
        ];
        let ledger = vec![
            lrow("E", 50, "n5"),
            lrow("A", 90, "n1"),
            lrow("T9", 100, "n9"),
            lrow("T10", 8, "n10"),
        ];
        let expected = vec![
            ("A", "amount-mismatch"),
            ("B", "duplicated"),
            ("C", "missing-in-ledger"),
            ("D", "other-day"),
            ("E", "missing-in-statement"),
            ("T10", "amount-mismatch"),
        ];
        let first = compare(march5(), &statement, &ledger);
        let keys: Vec<(&str, &str)> = first
            .iter()
            .map(|d| (d.transaction_id(), d.code()))
            .collect();
        assert_eq!(keys, expected);

        let mut statement_reversed = statement.clone();
        statement_reversed.reverse();
        let mut ledger_rotated = ledger.clone();
        ledger_rotated.rotate_left(1);
        assert_eq!(
            compare(march5(), &statement_reversed, &ledger_rotated),
            first
        );
        let mut ledger_reversed = ledger;
        ledger_reversed.reverse();
        assert_eq!(compare(march5(), &statement, &ledger_reversed), first);
    }

    #[test]
    fn quoting_with_commas_newlines_and_escaped_quotes() {
        let csv = "transaction_id,date,amount,memo\n\
                   FT1,2024-03-05,1000,\"VP1A2B3C4D, tien kham\"\n\
                   FT2,2024-03-05,2000,\"line one\nline two, with \"\"quotes\"\"\"\n\
                   \"FT3\",\"2024-03-05\",\"3,000\",\"\"\n\
                   FT4,2024-03-05,4000,  \"spaced\"  \n";
        let rows = parse_statement(csv).expect("valid");
        let got: Vec<(usize, &str, i64, &str)> = rows
            .iter()
            .map(|r| (r.line, r.transaction_id.as_str(), r.amount, r.memo.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (2, "FT1", 1000, "VP1A2B3C4D, tien kham"),
                (3, "FT2", 2000, "line one\nline two, with \"quotes\""),
                // The memo of FT2 took two lines: FT3 starts on line 5.
                (5, "FT3", 3000, ""),
                (6, "FT4", 4000, "spaced"),
            ]
        );
    }

    #[test]
    fn byte_order_mark_and_crlf() {
        let csv = "\u{feff}Transaction_ID,Date,Amount,Memo\r\n\
                   FT1,2024-03-05,1000,\"two\r\nlines\"\r\n\
                   FT2,2024-03-05,2000,plain\r\n";
        let rows = parse_statement(csv).expect("valid");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].transaction_id, "FT1");
        assert_eq!(rows[0].memo, "two\nlines");
        assert_eq!(rows[1].line, 4);
        assert_eq!(rows[1].memo, "plain");
        // No `\r` left anywhere, and the same as the LF file.
        let lf = csv.trim_start_matches('\u{feff}').replace("\r\n", "\n");
        assert_eq!(parse_statement(&lf).expect("valid"), rows);
    }

    #[test]
    fn a_lone_carriage_return_is_refused() {
        let e = refused("transaction_id,date,amount\rT1,2024-03-05,1\n");
        assert!(e.starts_with("line 1, field 3: a carriage return"), "{e}");
    }

    #[test]
    fn both_date_forms_with_or_without_a_time() {
        for value in [
            "2024-03-05",
            "2024-03-05 09:14",
            "2024-03-05 09:14:02",
            "2024-03-05T23:59:59",
            "05/03/2024",
            "5/3/2024",
            "05/03/2024 00:00",
            "05/03/2024T12:30:00",
            " 2024-03-05 ",
        ] {
            assert_eq!(date_of(value), Ok(march5()), "{value}");
        }
        // Day first: 03/05 is the 3rd of May.
        assert_eq!(date_of("03/05/2024"), Ok(day(2024, 5, 3)));
    }

    #[test]
    fn malformed_dates_are_refused_naming_the_line() {
        for value in [
            "2024-3-5",
            "2024/03/05",
            "05-03-2024",
            "05/03/24",
            "2024-03-05T",
            "2024-03-05 9:14",
            "2024-03-05 24:00",
            "2024-03-05 12:60",
            "2024-03-05T09:14:02Z",
            "2024-03-05T09:14:02+07:00",
            "2024-03-05 09:14:02.5",
            "5 March 2024",
            "20240305",
        ] {
            let e = date_of(value).expect_err(value);
            assert!(
                e.starts_with(&format!("line 2: date `{value}` is not YYYY-MM-DD")),
                "{e}"
            );
        }
        let e = date_of("2024-02-30").expect_err("no such day");
        assert_eq!(e, "line 2: date `2024-02-30` is not a day of the calendar");
        let e = date_of("31/04/2024").expect_err("no such day");
        assert_eq!(e, "line 2: date `31/04/2024` is not a day of the calendar");
        assert_eq!(date_of(""), Err("line 2: date is empty".to_string()));
        assert_eq!(date_of("2024-02-29"), Ok(day(2024, 2, 29)));
    }

    #[test]
    fn thousands_separators_and_currency_suffixes() {
        for (value, expected) in [
            ("250000", 250_000),
            ("250.000", 250_000),
            ("250,000", 250_000),
            ("1,250,000", 1_250_000),
            ("1.250.000", 1_250_000),
            (" 250.000 ", 250_000),
            ("250.000 VND", 250_000),
            ("250000VND", 250_000),
            ("250000 vnd", 250_000),
            ("90000đ", 90_000),
            ("90.000 đ", 90_000),
            ("90.000₫", 90_000),
            ("1", 1),
            ("007", 7),
            ("1.000.000.000.000", 1_000_000_000_000),
        ] {
            assert_eq!(amount_of(value), Ok(expected), "{value}");
        }
    }

    #[test]
    fn bad_amounts_are_refused_naming_the_line() {
        assert_eq!(
            amount_of("12a"),
            Err("line 2: amount `12a` is not a whole number of đồng".to_string())
        );
        let zero = amount_of("0").expect_err("zero");
        assert!(zero.starts_with("line 2: amount `0` is zero"), "{zero}");
        let zero = amount_of("0 VND").expect_err("zero");
        assert!(zero.starts_with("line 2: amount `0 VND` is zero"), "{zero}");
        let negative = amount_of("-5").expect_err("negative");
        assert!(
            negative.starts_with("line 2: amount `-5` is negative"),
            "{negative}"
        );
        let negative = amount_of("-250.000").expect_err("negative");
        assert!(
            negative.starts_with("line 2: amount `-250.000` is negative"),
            "{negative}"
        );
        for value in [
            "1.5",
            "25.00",
            "0.250",
            "1,5",
            "2500.00",
            "1.250,000",
            "1.25.000",
            ".250",
            "250.",
        ] {
            let e = amount_of(value).expect_err(value);
            assert!(
                e.starts_with(&format!(
                    "line 2: amount `{value}` is not a whole number of đồng: `.` and `,` may only separate thousands"
                )),
                "{e}"
            );
        }
        for value in [
            "+5",
            "1 250 000",
            "VND",
            "5 USD",
            "(5)",
            "٥",
            "1e6",
            "VND 5",
        ] {
            let e = amount_of(value).expect_err(value);
            assert_eq!(
                e,
                format!("line 2: amount `{value}` is not a whole number of đồng")
            );
        }
        for value in [
            "1000000000001",
            "1.000.000.000.001",
            "99999999999999999999999",
        ] {
            let e = amount_of(value).expect_err(value);
            assert_eq!(
                e,
                format!("line 2: amount `{value}` is more than 1000000000000 đồng")
            );
        }
        assert_eq!(amount_of(""), Err("line 2: amount is empty".to_string()));
    }

    #[test]
    fn the_header_is_matched_ignoring_case_in_any_order_with_aliases() {
        let row = one(
            "Extra, Amount ,REFERENCE, When ,Description\nignored,\"1.000\",T1,05/03/2024,memo here\n",
        );
        assert_eq!(row.transaction_id, "T1");
        assert_eq!(row.amount, 1000);
        assert_eq!(row.date, march5());
        assert_eq!(row.memo, "memo here");
        // The `;x` makes the first column unknown: `amount` is then missing.
        let e = refused("amount;x,id,date\n1,T1,2024-03-05\n");
        assert!(
            e.starts_with("line 1: the header has no `amount` column"),
            "{e}"
        );

        let row = one("id,transaction_date,amount\nT2,2024-03-05,5\n");
        assert_eq!(
            (row.transaction_id.as_str(), row.amount, row.memo.as_str()),
            ("T2", 5, "")
        );
    }

    #[test]
    fn two_columns_of_one_meaning_are_refused() {
        let e = refused("id,reference,date,amount\nA,B,2024-03-05,1\n");
        assert_eq!(
            e,
            "line 1: columns `id` and `reference` both give the transaction_id; keep only one"
        );
        let e = refused("transaction_id,date,amount,memo,Description\nA,2024-03-05,1,x,y\n");
        assert!(
            e.starts_with("line 1: columns `memo` and `Description`"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_required_column_is_refused_naming_the_header_line() {
        for (csv, column) in [
            ("date,amount\n2024-03-05,1\n", "transaction_id"),
            ("transaction_id,amount\nT1,1\n", "date"),
            ("transaction_id,date,memo\nT1,2024-03-05,x\n", "amount"),
        ] {
            let e = refused(csv);
            assert!(
                e.starts_with(&format!("line 1: the header has no `{column}` column")),
                "{e}"
            );
        }
        let e = refused("\n\n");
        assert!(e.starts_with("line 3: the file has no header"), "{e}");
        let e = refused("");
        assert!(e.starts_with("line 1: the file has no header"), "{e}");
    }

    #[test]
    fn a_row_with_another_number_of_fields_is_refused() {
        let e =
            refused("transaction_id,date,amount,memo\nT1,2024-03-05,1,ok\nT2,2024-03-05,1,a,b\n");
        assert_eq!(
            e,
            "line 3: 5 fields, but the header has 4 (a memo that contains a comma must be quoted)"
        );
        let e = refused("transaction_id,date,amount,memo\nT1,2024-03-05,1\n");
        assert!(
            e.starts_with("line 2: 3 fields, but the header has 4"),
            "{e}"
        );
    }

    #[test]
    fn an_unterminated_quote_is_refused_naming_where_it_opened() {
        let e = refused(
            "transaction_id,date,amount,memo\nT1,2024-03-05,1,ok\nT2,2024-03-05,1,\"never closed\nT3,2024-03-05,1,x\n",
        );
        assert!(
            e.starts_with("line 3, field 4 (memo): a quoted field is never closed"),
            "{e}"
        );
    }

    #[test]
    fn stray_quotes_are_refused() {
        let e = refused("transaction_id,date,amount,memo\nT1,2024-03-05,1,say \"hi\"\n");
        assert!(
            e.starts_with("line 2, field 4 (memo): a quote inside a field"),
            "{e}"
        );
        let e = refused("transaction_id,date,amount,memo\nT1,2024-03-05,\"1\"x,memo\n");
        assert!(
            e.starts_with("line 2, field 3 (amount): `x` after the closing quote"),
            "{e}"
        );
    }

    #[test]
    fn bad_transaction_ids_are_refused() {
        let e = refused("transaction_id,date,amount\n  ,2024-03-05,1\n");
        assert_eq!(e, "line 2: transaction_id is empty");
        let long = "x".repeat(129);
        let e = refused(&format!(
            "transaction_id,date,amount\n{long},2024-03-05,1\n"
        ));
        assert!(e.starts_with("line 2: transaction_id `xxx"), "{e}");
        assert!(e.ends_with("is longer than 128 characters"), "{e}");
        let ok = "đ".repeat(128);
        assert_eq!(
            one(&format!("transaction_id,date,amount\n{ok},2024-03-05,1\n")).transaction_id,
            ok
        );
        let e = refused("transaction_id,date,amount\n\"T\n1\",2024-03-05,1\n");
        assert!(
            e.starts_with("line 2: transaction_id `T\\n1` contains a control character"),
            "{e}"
        );
    }

    #[test]
    fn blank_lines_are_skipped_and_counted() {
        let csv = "\n  \ntransaction_id,date,amount\n\nT1,2024-03-05,1\n \t \n\nT2,2024-03-05,2";
        let rows = parse_statement(csv).expect("valid");
        let lines: Vec<(usize, &str)> = rows
            .iter()
            .map(|r| (r.line, r.transaction_id.as_str()))
            .collect();
        assert_eq!(lines, vec![(5, "T1"), (8, "T2")]);
        // A quoted empty field is not a blank line.
        let e = refused("transaction_id,date,amount\n\"\"\n");
        assert!(
            e.starts_with("line 2: 1 field, but the header has 3"),
            "{e}"
        );
        // A header alone is an empty statement.
        assert_eq!(parse_statement("transaction_id,date,amount\n"), Ok(vec![]));
    }

    #[test]
    fn a_field_longer_than_the_limit_is_refused() {
        let memo = "m".repeat(1000);
        assert_eq!(
            one(&format!(
                "transaction_id,date,amount,memo\nT1,2024-03-05,1,{memo}\n"
            ))
            .memo,
            memo
        );
        assert_eq!(
            one(&format!(
                "transaction_id,date,amount,memo\nT1,2024-03-05,1,\"{memo}\"\n"
            ))
            .memo,
            memo
        );
        let e = refused(&format!(
            "transaction_id,date,amount,memo\nT1,2024-03-05,1,{memo}m\n"
        ));
        assert_eq!(
            e,
            "line 2, field 4 (memo): the field is longer than 1000 characters"
        );
        let e = refused(&format!(
            "transaction_id,date,amount,memo\nT1,2024-03-05,1,\"{memo}m\"\n"
        ));
        assert_eq!(
            e,
            "line 2, field 4 (memo): the field is longer than 1000 characters"
        );
        let e = refused(&format!("transaction_id,date,amount,{memo}m\n"));
        assert_eq!(
            e,
            "line 1, field 4: the field is longer than 1000 characters"
        );
    }

    #[test]
    fn at_most_100000_data_rows() {
        let mut csv = String::from("transaction_id,date,amount\n");
        for i in 0..MAX_ROWS {
            csv.push_str(&format!("T{i},2024-03-05,1\n\n"));
        }
        assert_eq!(parse_statement(&csv).map(|rows| rows.len()), Ok(MAX_ROWS));
        csv.push_str("LAST,2024-03-05,1\n");
        let e = refused(&csv);
        assert_eq!(
            e,
            format!(
                "line {}: more than 100000 data rows, the limit of one statement",
                2 + 2 * MAX_ROWS
            )
        );
    }

    #[test]
    fn parse_then_compare_reports_lines_of_the_file() {
        let csv = "id,date,amount,memo\r\n\
                   FT1,2024-03-05,250.000,VP1A2B3C4D\r\n\
                   FT2,04/03/2024 23:59,100000,late\r\n\
                   FT3,2024-03-05,\"1,000,000 VND\",\"a, b\"\r\n\
                   FT4,2024-03-05,5000,\r\n";
        let statement = parse_statement(csv).expect("valid");
        let ledger = [
            lrow("FT1", 250_000, "n1"),
            lrow("FT2", 100_000, "n2"),
            lrow("FT3", 900_000, "n3"),
            lrow("FT5", 7000, "n5"),
        ];
        let described: Vec<String> = compare(march5(), &statement, &ledger)
            .iter()
            .map(Difference::describe)
            .collect();
        assert_eq!(
            described,
            vec![
                "Transaction FT2 (statement line 3) is dated 2024-03-04, not the statement's day.",
                "Transaction FT3 is 1000000 đồng in the statement (line 4) but 900000 đồng in the ledger (notice n3).",
                "Transaction FT4 of 5000 đồng is in the statement (line 5) but not in the ledger.",
                "Transaction FT5 of 7000 đồng is in the ledger (notice n5) but not in the statement.",
            ]
        );
    }
}
