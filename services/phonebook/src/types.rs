//! The phone book's validated values: names and their lookup keys, numbers (through
//! libphonenumber's rules), labels, entry ids and etags. Everything a client sends passes through
//! one of these parsers before it reaches storage; the `request` submodule reads each request
//! message with them, once.

mod request;

use std::{fmt, panic::AssertUnwindSafe, str::FromStr};

use phonenumber::{Mode, country};
use township_kit::fields;
use unicode_normalization::{UnicodeNormalization, char::is_combining_mark};

use crate::Error;

pub use request::{Change, Deletion, Listing, Lookup, MAX_BATCH_ENTRIES, NewEntry, Search};

/// Longest name, in characters after trimming.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest label, in characters after trimming.
pub const MAX_LABEL_CHARS: usize = 64;
/// Longest number text accepted for parsing (no real number comes close).
const MAX_NUMBER_CHARS: usize = 64;
/// Longest search query, in characters after trimming.
const MAX_QUERY_CHARS: usize = 200;

/// How a name is matched: Unicode NFKD, accents removed, full case folding, and white space
/// trimmed and collapsed to single spaces. `"  Zoë  Ø'Brien "` and `"ZOE ø'brien"` share a key.
/// Keys are what the book indexes and compares; they are never shown.
///
/// Accents are the combining marks that languages treat as optional diacritics: the Combining
/// Diacritical Marks blocks, and the vowel points of Hebrew and Arabic. The vowel signs of Indic
/// and other scripts, and Japanese voicing marks, are parts of letters and are kept (`मीना` and
/// `मोना` are different names; so are `カ` and `ガ`).
pub fn match_key(text: &str) -> String {
    let stripped: String = text.nfkd().filter(|c| !is_accent(*c)).collect();
    let folded = caseless::default_case_fold_str(&stripped);
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_accent(c: char) -> bool {
    is_combining_mark(c)
        && matches!(u32::from(c),
            0x0300..=0x036F // Combining Diacritical Marks
            | 0x1AB0..=0x1AFF // ... Extended
            | 0x1DC0..=0x1DFF // ... Supplement
            | 0x20D0..=0x20FF // ... for Symbols
            | 0xFE20..=0xFE2F // Combining Half Marks
            | 0x0591..=0x05C7 // Hebrew points and cantillation
            | 0x0610..=0x061A | 0x064B..=0x065F | 0x0670 | 0x06D6..=0x06ED // Arabic harakat
        )
}

/// Control characters and Unicode noncharacters (U+FDD0..U+FDEF and every U+xFFFE, U+xFFFF):
/// never part of a name or label.
fn is_forbidden(c: char) -> bool {
    let u = u32::from(c);
    c.is_control() || (0xFDD0..=0xFDEF).contains(&u) || u & 0xFFFE == 0xFFFE
}

/// A person's or business's name as shown: any script, trimmed, 1 to 200 characters, no control
/// characters, and with something left after normalisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name {
    text: String,
    key: String,
}

impl Name {
    /// Validates `text` as the request field `field`.
    pub fn parse(field: &str, text: &str) -> Result<Self, Error> {
        let text = fields::one_line(field, text, MAX_NAME_CHARS)?;
        if text.chars().any(is_forbidden) {
            return Err(Error::invalid(
                field,
                "must not contain control characters or noncharacters",
            ));
        }
        let key = match_key(text);
        if key.is_empty() {
            return Err(Error::invalid(
                field,
                "must contain more than combining marks",
            ));
        }
        Ok(Self {
            text: text.to_owned(),
            key,
        })
    }

    /// The name as shown.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The name's [`match_key`].
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// The region that numbers written without a country code belong to (`--region`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region(country::Id);

impl Region {
    /// `digits` of a national number written with this region's national prefix (`0` in GB and
    /// DE, `1` in the US) as E.164 digits: the prefix dropped, the country code put first.
    /// `None` when they do not start with the prefix, or the region has none.
    pub fn as_international(self, digits: &str) -> Option<String> {
        let metadata = phonenumber::metadata::DATABASE.by_id(self.to_string().as_str())?;
        let rest = digits.strip_prefix(metadata.national_prefix()?)?;
        (!rest.is_empty()).then(|| format!("{}{rest}", metadata.country_code()))
    }
}

impl FromStr for Region {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        country::Id::from_str(&text.trim().to_ascii_uppercase())
            .map(Region)
            .map_err(|_| format!("{text:?} is not an ISO 3166 region code such as US, GB or DE"))
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_ref())
    }
}

/// A valid phone number: E.164 for storage and comparison, international format for people.
/// An extension (`ext. 46`) is part of its identity: the same number with another extension is
/// another number. It is stored as E.164 with RFC 3966's `;ext=46` after it (only stored so:
/// the parser does not read that form back).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Number {
    identity: String,
    display: String,
}

/// What separates a number's extension from its E.164 in [`Number::identity`] (RFC 3966).
const EXTENSION: &str = ";ext=";

impl Number {
    /// Parses and validates `text` with libphonenumber, reading national numbers in `region`.
    pub fn parse(field: &str, text: &str, region: Region) -> Result<Self, Error> {
        // NFKC: fullwidth digits and other compatibility forms read as plain digits.
        let text: String = text.trim().nfkc().collect();
        let text = text.as_str();
        if text.is_empty() {
            return Err(Error::invalid(field, "must not be empty"));
        }
        if text.chars().count() > MAX_NUMBER_CHARS {
            return Err(Error::invalid(
                field,
                format!("must be at most {MAX_NUMBER_CHARS} characters"),
            ));
        }
        // The parser is third-party code driven by client input: a panic in it must become a
        // clear rejection, never a dropped connection.
        let parsed = std::panic::catch_unwind(AssertUnwindSafe(|| {
            phonenumber::parse(Some(region.0), text)
                .ok()
                .filter(phonenumber::is_valid)
                .map(|number| {
                    let e164 = number.format().mode(Mode::E164).to_string();
                    Number {
                        identity: match number.extension() {
                            Some(extension) => format!("{e164}{EXTENSION}{}", &**extension),
                            None => e164,
                        },
                        // International format, the extension as its country writes one.
                        display: number.format().mode(Mode::International).to_string(),
                    }
                })
        }));
        match parsed {
            Ok(Some(number)) => Ok(number),
            _ => Err(Error::invalid(
                field,
                format!(
                    "{text:?} is not a valid phone number (numbers without +country code are read as {region})"
                ),
            )),
        }
    }

    /// E.164, e.g. `+12015550123` (without the extension).
    pub fn e164(&self) -> &str {
        self.identity
            .split_once(EXTENSION)
            .map_or(self.identity.as_str(), |(e164, _)| e164)
    }

    /// The extension, e.g. `46`, if any.
    pub fn extension(&self) -> Option<&str> {
        self.identity
            .split_once(EXTENSION)
            .map(|(_, extension)| extension)
    }

    /// What tells numbers apart, as stored: E.164, then `;ext=46` if it has an extension.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// International format, e.g. `+1 201-555-0123`; an extension as its country writes one
    /// (`+1 201-555-0123 ext. 46`, `+44 20 7946 0958 x46`).
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Rebuilds a number read back from storage (already validated when it was written).
    pub fn from_stored(identity: String, display: String) -> Self {
        Self { identity, display }
    }
}

/// A free-text label such as `home` or `work`: trimmed, 0 to 64 characters, no control characters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Label(String);

impl Label {
    /// Validates `text` as the request field `field`.
    pub fn parse(field: &str, text: &str) -> Result<Self, Error> {
        let text = text.trim();
        let chars = text.chars().count();
        if chars > MAX_LABEL_CHARS {
            return Err(Error::invalid(
                field,
                format!("must be at most {MAX_LABEL_CHARS} characters (got {chars})"),
            ));
        }
        if text.chars().any(is_forbidden) {
            return Err(Error::invalid(
                field,
                "must not contain control characters or noncharacters",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The label text (possibly empty).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An entry's id: a positive integer assigned by the book, never reused, shown as decimal text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntryId(pub i64);

impl EntryId {
    /// Parses the request field `field`.
    pub fn parse(field: &str, text: &str) -> Result<Self, Error> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::invalid(field, "must not be empty"));
        }
        match canonical_number(text) {
            Some(id) => Ok(Self(id)),
            None => Err(Error::invalid(
                field,
                format!("{text:?} is not an entry id (ids are positive whole numbers)"),
            )),
        }
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A positive whole number written the one way it is printed: ASCII digits, no sign, no leading
/// zero (so `1`, `+1` and `01` are not three names for one entry).
fn canonical_number(text: &str) -> Option<i64> {
    let canonical =
        !text.is_empty() && !text.starts_with('0') && text.bytes().all(|b| b.is_ascii_digit());
    canonical.then(|| text.parse().ok()).flatten()
}

/// An entry's version: the etag clients give back to UpdateEntry and DeleteEntry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Etag(pub i64);

impl Etag {
    /// Parses the request field `field` (the text form is `v<version>`).
    pub fn parse(field: &str, text: &str) -> Result<Self, Error> {
        let text = text.trim();
        text.strip_prefix('v')
            .and_then(canonical_number)
            .map(Self)
            .ok_or_else(|| {
                Error::invalid(
                    field,
                    format!("{text:?} is not an etag (use the etag of the entry as last read)"),
                )
            })
    }
}

impl fmt::Display for Etag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// A search: the query's name key, and its digits when it reads like (part of) a number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// [`match_key`] of the query.
    pub key: String,
    /// The query's digits if it holds only digits and number punctuation (`+ - . ( )` and
    /// spaces), else empty: matched against E.164 numbers without their `+`.
    pub digits: String,
    /// The same digits read as a national number of the book's region, as E.164 digits: the
    /// national prefix dropped and the country code put first (`020 7946` in GB is `44207946`).
    /// Empty unless the query starts with the region's national prefix and not with `+`.
    pub national: String,
}

impl Query {
    /// Parses the request field `query`; national numbers are read as `region`'s.
    pub fn parse(text: &str, region: Region) -> Result<Self, Error> {
        let text = text.trim();
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(Error::invalid(
                "query",
                format!("must be at most {MAX_QUERY_CHARS} characters"),
            ));
        }
        let key = match_key(text);
        if key.is_empty() {
            return Err(Error::invalid("query", "must not be empty"));
        }
        let numberish = text
            .chars()
            .all(|c| c.is_ascii_digit() || " +-.()".contains(c));
        let digits: String = if numberish {
            text.chars().filter(char::is_ascii_digit).collect()
        } else {
            String::new()
        };
        let national = if digits.is_empty() || text.starts_with('+') {
            String::new()
        } else {
            region.as_international(&digits).unwrap_or_default()
        };
        Ok(Self {
            key,
            digits,
            national,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us() -> Region {
        "US".parse().unwrap()
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_a_number_or_a_refusal_and_a_number_reads_back_from_its_display(
            input in ".{0,40}|[+0-9 ()x.-]{0,25}",
        ) {
            if let Ok(number) = Number::parse("number", &input, us()) {
                let again = Number::parse("number", number.display(), us())
                    .expect("a number's display reads back");
                proptest::prop_assert_eq!(again.identity(), number.identity());
            }
            let _ = Name::parse("name", &input);
            let _ = Query::parse(&input, "GB".parse().unwrap());
        }
    }

    #[test]
    fn match_keys_ignore_case_accents_and_spacing() {
        assert_eq!(match_key("  Zoë   Ångström "), "zoe angstrom");
        assert_eq!(match_key("ZOE ANGSTROM"), "zoe angstrom");
        assert_eq!(match_key("Straße"), "strasse");
        assert_eq!(match_key("ＭＡＲＩＡ"), "maria");
        assert_eq!(match_key("Ἀθηνᾶ"), match_key("ἀθηνα"));
        assert_eq!(match_key("李\u{3000}小龍"), "李 小龍");
        assert_eq!(match_key("مُحَمَّد"), match_key("محمد"));
        assert_ne!(match_key("मीना"), match_key("मोना"));
        assert_ne!(match_key("カ"), match_key("ガ"));
    }

    #[test]
    fn names_are_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(Name::parse("name", "  Ada  ").unwrap().as_str(), "Ada");
        assert!(Name::parse("name", "   ").is_err());
        assert!(Name::parse("name", &"é".repeat(200)).is_ok());
        assert!(Name::parse("name", &"é".repeat(201)).is_err());
        assert!(Name::parse("name", "a\u{0}b").is_err());
        assert!(Name::parse("name", "\u{301}").is_err());
        assert!(Name::parse("name", "Smith\u{10FFFF}").is_err());
        assert!(Name::parse("name", "a\u{FDD0}").is_err());
        assert!(Name::parse("name", "Robert'); DROP TABLE entries;--").is_ok());
    }

    #[test]
    fn numbers_are_normalised_to_e164_in_the_default_region() {
        let n = Number::parse("number", "(201) 555-0123", us()).unwrap();
        assert_eq!(n.e164(), "+12015550123");
        assert_eq!(n.display(), "+1 201-555-0123");
        let fullwidth = Number::parse("number", "＋１ ２０１ ５５５ ０１２３", us()).unwrap();
        assert_eq!(fullwidth.e164(), "+12015550123");
        let uk = Number::parse("number", "+44 20 7946 0958", us()).unwrap();
        assert_eq!(uk.e164(), "+442079460958");
        let gb: Region = "gb".parse().unwrap();
        assert_eq!(
            Number::parse("number", "020 7946 0958", gb).unwrap().e164(),
            "+442079460958"
        );
    }

    #[test]
    fn invalid_numbers_are_rejected_naming_the_field() {
        for bad in [
            "",
            "12",
            "hello",
            "+999 123",
            "555-0123-555-0123-555",
            &"9".repeat(100),
        ] {
            let err = Number::parse("number", bad, us()).unwrap_err();
            assert!(err.to_string().starts_with("number: "), "{bad}: {err}");
        }
    }

    #[test]
    fn regions_are_iso_codes() {
        assert_eq!("de".parse::<Region>().unwrap().to_string(), "DE");
        assert!("XX".parse::<Region>().is_err());
        assert!("".parse::<Region>().is_err());
    }

    #[test]
    fn etags_and_ids_round_trip_and_reject_garbage() {
        assert_eq!(Etag::parse("etag", "v7").unwrap(), Etag(7));
        assert_eq!(Etag(7).to_string(), "v7");
        assert!(Etag::parse("etag", "7").is_err());
        assert!(Etag::parse("etag", "v0").is_err());
        assert_eq!(EntryId::parse("id", " 42 ").unwrap(), EntryId(42));
        assert!(EntryId::parse("id", "-1").is_err());
        assert!(EntryId::parse("id", "abc").is_err());
        for alias in ["+1", "01", "1.0", "0"] {
            assert!(EntryId::parse("id", alias).is_err(), "{alias}");
        }
        assert!(Etag::parse("etag", "v01").is_err());
    }

    #[test]
    fn queries_keep_digits_only_when_they_read_like_a_number() {
        let q = Query::parse("(201) 555", us()).unwrap();
        assert_eq!(q.digits, "201555");
        let q = Query::parse("Zoë 2", us()).unwrap();
        assert_eq!((q.key.as_str(), q.digits.as_str()), ("zoe 2", ""));
        assert!(Query::parse("  ", us()).is_err());
    }

    #[test]
    fn national_digits_are_also_read_as_the_regions_international_ones() {
        let gb: Region = "GB".parse().unwrap();
        assert_eq!(Query::parse("020 7946", gb).unwrap().national, "44207946");
        assert_eq!(Query::parse("+020 7946", gb).unwrap().national, "");
        assert_eq!(
            Query::parse("20 7946", gb).unwrap().national,
            "",
            "no national prefix"
        );
        assert_eq!(
            Query::parse("0", gb).unwrap().national,
            "",
            "the prefix alone"
        );
        let de: Region = "DE".parse().unwrap();
        assert_eq!(Query::parse("030 1234", de).unwrap().national, "49301234");
    }

    #[test]
    fn an_extension_is_part_of_a_numbers_identity() {
        let gb: Region = "GB".parse().unwrap();
        let plain = Number::parse("number", "+44 20 7946 0958", gb).unwrap();
        assert_eq!(
            (plain.identity(), plain.extension()),
            ("+442079460958", None)
        );
        for written in [
            "+44 20 7946 0958 ext. 46",
            "020 7946 0958 x46",
            "+442079460958 ext. 46",
        ] {
            let n = Number::parse("number", written, gb).unwrap();
            assert_eq!(n.e164(), "+442079460958", "{written}");
            assert_eq!(n.extension(), Some("46"), "{written}");
            assert_eq!(n.identity(), "+442079460958;ext=46", "{written}");
            assert_eq!(
                n.display(),
                "+44 20 7946 0958 x46",
                "{written}: as GB writes one"
            );
            let stored = Number::from_stored(n.identity().into(), n.display().into());
            assert_eq!(stored, n, "it reads back as it was written");
        }
    }
}
