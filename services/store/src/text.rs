//! Folding of human text for string search: Vietnamese names match with and without
//! diacritics and case, and `đ`/`Đ` (a letter of its own, not a decomposable accent) folds to `d`.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Lower-cases, strips combining marks and folds `đ` to `d`; whitespace runs become one space.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.nfd() {
        if is_combining_mark(c) {
            continue;
        }
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        match c {
            'đ' | 'Đ' => out.push('d'),
            _ => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// Vietnamese written without its marks, case kept (`Viện phí Đợt 1` → `Vien phi Dot 1`):
/// what a bank memo or a QR payload may carry.
pub fn strip_marks(s: &str) -> String {
    s.nfd()
        .filter(|c| !is_combining_mark(*c))
        .map(|c| match c {
            'đ' => 'd',
            'Đ' => 'D',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{fold, strip_marks};

    #[test]
    fn marks_are_stripped_and_case_kept() {
        assert_eq!(strip_marks("Viện phí Đợt 1"), "Vien phi Dot 1");
    }

    #[test]
    fn vietnamese_names_fold_to_plain_lower_case() {
        assert_eq!(fold("Nguyễn Văn An"), "nguyen van an");
        assert_eq!(fold("ĐẶNG  Thị   Đào"), "dang thi dao");
        assert_eq!(fold("Quảng Ngãi"), "quang ngai");
    }
}
