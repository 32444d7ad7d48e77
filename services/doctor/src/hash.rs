//! SLIP's `HASH(D, N)` as ELIZA used it to pick one of MEMORY's four transformations: a
//! mid-square hash of the last six-character chunk of a word, encoded in IBM 7090 BCD.

/// The number of characters in one 7090 machine word (one SLIP cell's datum).
const CHUNK: usize = 6;

/// `HASH(w, n)`: the last chunk of `w` (`w` cut into 6-character chunks from its start, the last
/// one right-padded with spaces; an empty word is six spaces), each character encoded by
/// [`bcd`] into 6 bits, first character most significant, giving a 36-bit `d`; then
/// `(((d mod 2^35)^2 mod 2^64) >> (35 - n/2)) mod 2^n`. Deterministic and total: `n` above 64 is
/// taken as 64. ELIZA uses `n = 2`; `HASH("HERE", 2) == 3`.
pub fn hash(word: &str, n: u32) -> u64 {
    let n = n.min(64);
    let d = last_chunk_code(word) % (1 << 35);
    let squared = d.wrapping_mul(d);
    let shifted = squared >> (35 - n / 2);
    match 1u64.checked_shl(n) {
        Some(modulus) => shifted % modulus,
        None => shifted,
    }
}

/// The 36-bit code of the word's last chunk, space-padded.
fn last_chunk_code(word: &str) -> u64 {
    let chars: Vec<char> = word.chars().collect();
    let start = chars.len().saturating_sub(1) / CHUNK * CHUNK;
    let chunk = chars.get(start..).unwrap_or_default();
    let padding = std::iter::repeat_n(' ', CHUNK - chunk.len());
    chunk
        .iter()
        .copied()
        .chain(padding)
        .fold(0, |d, ch| (d << 6) | u64::from(bcd(ch)))
}

/// The IBM 7090 BCD code of a character (6 bits): digits 0–9 are octal 00–11, `=` 13, `'` 14,
/// `+` 20, A–I 21–31, `.` 33, `)` 34, `-` 40, J–R 41–51, `$` 53, `*` 54, space 60, `/` 61, S–Z
/// 62–71, `,` 73, `(` 74; any other character: the low 6 bits of its code point.
pub fn bcd(ch: char) -> u8 {
    let offset = |base: char, first: u8| first + (ch as u8 - base as u8);
    match ch {
        '0'..='9' => offset('0', 0o00),
        '=' => 0o13,
        '\'' => 0o14,
        '+' => 0o20,
        'A'..='I' => offset('A', 0o21),
        '.' => 0o33,
        ')' => 0o34,
        '-' => 0o40,
        'J'..='R' => offset('J', 0o41),
        '$' => 0o53,
        '*' => 0o54,
        ' ' => 0o60,
        '/' => 0o61,
        'S'..='Z' => offset('S', 0o62),
        ',' => 0o73,
        '(' => 0o74,
        other => (u32::from(other) & 0o77) as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn here_hashes_to_3_with_n_2_as_the_issue_checks() {
        assert_eq!(hash("HERE", 2), 3);
    }

    #[test]
    fn the_bcd_table_matches_the_7090_codes() {
        assert_eq!(bcd('0'), 0o00);
        assert_eq!(bcd('9'), 0o11);
        assert_eq!(bcd('A'), 0o21);
        assert_eq!(bcd('I'), 0o31);
        assert_eq!(bcd('J'), 0o41);
        assert_eq!(bcd('R'), 0o51);
        assert_eq!(bcd('S'), 0o62);
        assert_eq!(bcd('Z'), 0o71);
        assert_eq!(bcd(' '), 0o60);
        assert_eq!(bcd('\''), 0o14);
        assert_eq!(bcd('('), 0o74);
        assert_eq!(bcd('?'), 0o77, "'?' is not in the table: its low 6 bits");
        assert_eq!(bcd('É'), 0o11, "U+00C9: its low 6 bits");
    }

    #[test]
    fn the_last_chunk_is_space_padded_to_six_characters() {
        assert_eq!(last_chunk_code("HERE"), 0o30_25_51_25_60_60);
        assert_eq!(last_chunk_code("ALWAYS"), 0o21_43_66_21_70_62);
        assert_eq!(
            last_chunk_code("INVENTED"),
            0o25_24_60_60_60_60,
            "chunk ED____"
        );
        assert_eq!(last_chunk_code(""), 0o60_60_60_60_60_60);
    }

    /// Values computed by hand (and re-checked with a calculator), step by step:
    ///
    /// - `ALWAYS`, n = 7 (the value Weizenbaum quotes in the 1966 paper, page 38: 14):
    ///   d = 0o214366217062 = 0x463D91E32 (< 2^35, unchanged); d² mod 2^64 = 0x45BA970EE053C1C4;
    ///   >> 32 = 0x45BA970E; mod 2^7 = 0x0E = 14.
    /// - `BROTHER`, n = 2: last chunk `R     ` = 0o516060606060 = 0xA70C30C30; mod 2^35 drops
    ///   the top bit: 0x270C30C30; d² mod 2^64 = 0xF4B7700591B48900; >> 34 = 0x3D2DDC01;
    ///   mod 4 = 1.
    /// - `YOU`, n = 2: `YOU   ` = 0o704664606060; mod 2^35 = 0x626D30C30;
    ///   d² mod 2^64 = 0xD7C7E7DB57B48900; >> 34 = 0x35F1F9F6; mod 4 = 2.
    /// - `DON'T`, n = 2: `DON'T ` = 0o244645146360 = 0x52694CCF0;
    ///   d² mod 2^64 = 0x87A084B4D98F6100; >> 34 = 0x21E8212D; mod 4 = 1.
    /// - `TIME`, n = 2: `TIME  ` = 0o633144256060; mod 2^35 = 0x4D9915C30;
    ///   d² mod 2^64 = 0x8572A252EF928900; >> 34 = 0x215CA894; mod 4 = 0.
    /// - the empty word, n = 2: six spaces 0o606060606060; mod 2^35 = 0x430C30C30;
    ///   d² mod 2^64 = 0x8F621AAD91B48900; >> 34 = 0x23D886AB; mod 4 = 3.
    /// - `MOTHER`, n = 15: 0o444663302551; mod 2^35 = 0x126CD8569;
    ///   d² mod 2^64 = 0x537CB36C1BB04511; >> 28 = 0x537CB36C1; mod 2^15 = 0x36C1 = 14017.
    #[test]
    fn hand_computed_hash_values_hold() {
        assert_eq!(hash("ALWAYS", 7), 14);
        assert_eq!(hash("BROTHER", 2), 1);
        assert_eq!(hash("YOU", 2), 2);
        assert_eq!(hash("DON'T", 2), 1);
        assert_eq!(hash("TIME", 2), 0);
        assert_eq!(hash("", 2), 3);
        assert_eq!(hash("MOTHER", 15), 14017);
    }

    #[test]
    fn hash_is_total_for_any_n() {
        assert_eq!(hash("HERE", 0), 0);
        assert!(hash("HERE", 64) > 0);
        assert_eq!(hash("HERE", 1000), hash("HERE", 64));
    }
}
