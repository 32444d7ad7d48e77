//! The doctor's validated values (patients' names, what a patient says) and each request message
//! read once into the domain request a handler passes on: the handlers hold no validation of
//! their own.

use township_kit::{
    fields,
    paging::{PageRequest, PageTokens, Scope},
};
use township_proto::doctor::v1::{self as pb, doctor_service_server::SERVICE_NAME, patient_line};
use unicode_normalization::UnicodeNormalization;

use crate::Error;

/// Longest patient name, in characters after trimming.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest line a patient may say, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

/// A patient's name: any Unicode text, 1 to 100 characters after trimming, no control characters.
/// Names are data (stored in SQL columns), never paths. The same patient whatever the case, the
/// white space, or how accents were typed (composed or not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatientName {
    name: String,
    key: String,
}

impl PatientName {
    /// Validates the request field `field`.
    pub fn parse(field: &'static str, text: &str) -> Result<Self, Error> {
        let name = fields::one_line(field, text, MAX_NAME_CHARS)?;
        let folded: String = caseless::default_case_fold_str(&name.nfc().collect::<String>());
        let key = folded
            .nfc()
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Self {
            name: name.to_owned(),
            key,
        })
    }

    /// The name as given, trimmed.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// How the records know the patient: Unicode NFC, case-folded (`Straße` = `STRASSE`), white
    /// space collapsed.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Validates what a patient says: 1 to 2000 characters, not only white space.
pub fn patient_text(text: &str) -> Result<&str, Error> {
    let chars = text.chars().count();
    if text.trim().is_empty() {
        return Err(Error::invalid("text", "must not be empty"));
    }
    if chars > MAX_TEXT_CHARS {
        return Err(Error::invalid(
            "text",
            format!("must be at most {MAX_TEXT_CHARS} characters (got {chars})"),
        ));
    }
    Ok(text)
}

/// Longest patient key accepted (a real one has 64 characters).
pub const MAX_KEY_CHARS: usize = 128;

/// Validates a presented patient key: at most [`MAX_KEY_CHARS`]; empty means none.
pub fn patient_key(key: &str) -> Result<String, Error> {
    if key.len() > MAX_KEY_CHARS {
        return Err(Error::invalid(
            "patient_key",
            format!("must be at most {MAX_KEY_CHARS} characters"),
        ));
    }
    Ok(key.to_owned())
}

/// A StartSession request: who comes in, with what key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartSession {
    /// The patient.
    pub patient: PatientName,
    /// The key they present (see [`patient_key`]).
    pub key: String,
}

impl TryFrom<&pb::StartSessionRequest> for StartSession {
    type Error = Error;

    fn try_from(r: &pb::StartSessionRequest) -> Result<Self, Error> {
        Ok(Self {
            patient: PatientName::parse("patient_name", &r.patient_name)?,
            key: patient_key(&r.patient_key)?,
        })
    }
}

/// A Reply request: what the patient says, in which session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Say {
    /// The session (any text: an unknown one is NOT_FOUND, not invalid).
    pub session_id: String,
    /// What the patient says (see [`patient_text`]).
    pub text: String,
}

impl TryFrom<pb::ReplyRequest> for Say {
    type Error = Error;

    fn try_from(r: pb::ReplyRequest) -> Result<Self, Error> {
        patient_text(&r.text)?;
        Ok(Self {
            session_id: r.session_id,
            text: r.text,
        })
    }
}

/// The first message of a Converse stream: it must name the patient (and carry their key).
pub fn converse_opening(line: Option<pb::PatientLine>) -> Result<StartSession, Error> {
    match line {
        Some(pb::PatientLine {
            kind: Some(patient_line::Kind::PatientName(name)),
            patient_key: key,
        }) => Ok(StartSession {
            patient: PatientName::parse("patient_name", &name)?,
            key: patient_key(&key)?,
        }),
        _ => Err(Error::invalid(
            "patient_name",
            "the first message must name the patient",
        )),
    }
}

/// A later message of a Converse stream: what the patient says.
pub fn converse_text(line: pb::PatientLine) -> Result<String, Error> {
    match line.kind {
        Some(patient_line::Kind::Text(text)) => patient_text(&text).map(str::to_owned),
        _ => Err(Error::invalid(
            "text",
            "only the first message names the patient; later ones carry text",
        )),
    }
}

/// A GetHistory request: whose history, and which page of it.
#[derive(Debug)]
pub struct HistoryQuery {
    /// The patient.
    pub patient: PatientName,
    /// The key they present.
    pub key: String,
    /// Which page; a position is an exchange id.
    pub page: PageRequest<i64>,
}

impl HistoryQuery {
    /// Reads a GetHistory request; its page token must be one `tokens` issued for this patient.
    pub fn parse(r: &pb::GetHistoryRequest, tokens: &PageTokens) -> Result<Self, Error> {
        let patient = PatientName::parse("patient_name", &r.patient_name)?;
        let key = patient_key(&r.patient_key)?;
        let page = PageRequest::read(tokens, history_scope(&patient), r.page_size, &r.page_token)?;
        Ok(Self { patient, key, page })
    }
}

/// GetHistory tokens are bound to the patient (by name key: any spelling of the same patient
/// continues, another patient's does not).
fn history_scope(patient: &PatientName) -> Scope {
    Scope::rpc(&format!("{SERVICE_NAME}/GetHistory")).caller(patient.key())
}

#[cfg(test)]
mod tests {
    use super::*;
    use township_kit::status::InvalidField;

    proptest::proptest! {
        #[test]
        fn any_text_is_a_patient_or_a_refusal_and_a_patient_is_their_own_key(input in ".{0,120}") {
            if let Ok(patient) = PatientName::parse("patient_name", &input) {
                let by_key = PatientName::parse("patient_name", patient.key())
                    .expect("a key is a name");
                proptest::prop_assert_eq!(by_key.key(), patient.key());
            }
            let _ = patient_text(&input);
            let _ = patient_key(&input);
        }
    }

    fn field(err: Error) -> String {
        match err {
            Error::Invalid(InvalidField { field, .. }) => field,
            other => panic!("not INVALID_ARGUMENT: {other}"),
        }
    }

    fn history(name: &str, page_size: i32, page_token: &str) -> pb::GetHistoryRequest {
        pb::GetHistoryRequest {
            patient_name: name.into(),
            page_size,
            page_token: page_token.into(),
            patient_key: String::new(),
        }
    }

    #[test]
    fn patient_names_are_one_patient_whatever_the_case_spacing_or_composition() {
        let a = PatientName::parse("patient_name", "  Zoe\u{301}   STRASSE ").unwrap();
        let b = PatientName::parse("patient_name", "zo\u{e9} straße").unwrap();
        assert_eq!(a.key(), b.key());
        assert_eq!(a.as_str(), "Zoe\u{301}   STRASSE");
        assert_eq!(
            field(PatientName::parse("patient_name", " ").unwrap_err()),
            "patient_name"
        );
        assert!(PatientName::parse("patient_name", &"é".repeat(101)).is_err());
        assert!(PatientName::parse("patient_name", "a\tb").is_err());
    }

    #[test]
    fn converse_opens_with_a_name_then_carries_text() {
        let name = |n: &str| pb::PatientLine {
            kind: Some(patient_line::Kind::PatientName(n.into())),
            patient_key: "k".into(),
        };
        let text = |t: &str| pb::PatientLine {
            kind: Some(patient_line::Kind::Text(t.into())),
            patient_key: String::new(),
        };
        let opening = converse_opening(Some(name("Ada"))).unwrap();
        assert_eq!(
            (opening.patient.as_str(), opening.key.as_str()),
            ("Ada", "k")
        );
        let too_long = pb::PatientLine {
            patient_key: "k".repeat(MAX_KEY_CHARS + 1),
            ..name("Ada")
        };
        assert_eq!(
            field(converse_opening(Some(too_long)).unwrap_err()),
            "patient_key"
        );
        assert_eq!(
            field(converse_opening(Some(text("hi"))).unwrap_err()),
            "patient_name"
        );
        assert_eq!(field(converse_opening(None).unwrap_err()), "patient_name");
        assert_eq!(converse_text(text("Hello.")).unwrap(), "Hello.");
        assert_eq!(field(converse_text(name("Ada")).unwrap_err()), "text");
        assert_eq!(field(converse_text(text("  ")).unwrap_err()), "text");
    }

    #[test]
    fn a_history_token_serves_only_the_patient_it_was_issued_to() {
        let tokens = PageTokens::new(&[5; 32]).unwrap();
        let query = HistoryQuery::parse(&history("Ada", 1, ""), &tokens).unwrap();
        let mut rows = vec![10_i64, 11];
        let token = query.page.finish(&tokens, &mut rows, |id| *id);
        let again = HistoryQuery::parse(&history(" ADA ", 1, &token), &tokens).unwrap();
        assert_eq!(
            again.page.after,
            Some(10),
            "the same patient, spelled otherwise"
        );
        let err = HistoryQuery::parse(&history("Bob", 1, &token), &tokens).unwrap_err();
        assert_eq!(field(err), "page_token");
    }
}
