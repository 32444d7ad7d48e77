//! Money as people write it. The APIs carry amounts as integer cents (`int64`, never floating
//! point); these two functions are the one reading and the one writing of an amount like `12.34`,
//! for every client that shows or takes money (the CLI, the ATM) and any server that says an
//! amount in words.

/// Parses an amount typed by a person, e.g. `12.34`, `12`, `0.5` or `1,000.00`, into cents —
/// exactly, never through floating point. At most two decimals; no sign.
pub fn parse_cents(text: &str) -> Result<i64, String> {
    let cleaned: String = text
        .trim()
        .chars()
        .filter(|c| *c != ',' && *c != '_')
        .collect();
    let (whole, fraction) = cleaned.split_once('.').unwrap_or((&cleaned, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !(digits(whole) || (whole.is_empty() && digits(fraction)))
        || (!fraction.is_empty() && !digits(fraction))
    {
        return Err(format!("`{text}` is not an amount like 12.34"));
    }
    if fraction.len() > 2 {
        return Err(format!("`{text}` has more than two decimals"));
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole
            .parse()
            .map_err(|_| format!("`{text}` is too large"))?
    };
    let fraction: i64 = format!("{fraction:0<2}")
        .parse()
        .map_err(|_| format!("`{text}` is not an amount"))?;
    whole
        .checked_mul(100)
        .and_then(|c| c.checked_add(fraction))
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Formats cents as a decimal amount: `1234` → `12.34`, `-5` → `-0.05`.
pub fn format_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_text_is_an_amount_or_a_refusal_never_a_panic(text in ".{0,40}") {
            let _ = parse_cents(&text);
        }

        #[test]
        fn a_written_amount_reads_back_exactly(cents in 0i64..=i64::MAX) {
            proptest::prop_assert_eq!(parse_cents(&format_cents(cents)), Ok(cents));
        }
    }

    #[test]
    fn amounts_typed_by_people_parse_exactly() {
        assert_eq!(parse_cents("12.34"), Ok(1234));
        assert_eq!(parse_cents("12"), Ok(1200));
        assert_eq!(parse_cents("0.5"), Ok(50));
        assert_eq!(parse_cents(".05"), Ok(5));
        assert_eq!(parse_cents("1,000.10"), Ok(100_010));
        assert_eq!(parse_cents("0.1"), Ok(10), "no floating-point drift");
        for bad in [
            "",
            "-1",
            "1.234",
            "abc",
            "1.2.3",
            "1e3",
            ".",
            "99999999999999999999",
        ] {
            assert!(parse_cents(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cents_format_with_two_decimals() {
        assert_eq!(format_cents(1234), "12.34");
        assert_eq!(format_cents(5), "0.05");
        assert_eq!(format_cents(-5), "-0.05");
        assert_eq!(format_cents(0), "0.00");
    }
}
