//! Reading request fields the same way in every service: the rules that more than one service
//! applies to its text fields, each refusal an [`InvalidField`] naming the field.

use crate::status::InvalidField;

/// `text` without its surrounding white space, if that has 1 to `max_chars` characters (Unicode
/// scalar values) and no control character: the one rule for names and other one-line text.
pub fn one_line<'t>(field: &str, text: &'t str, max_chars: usize) -> Result<&'t str, InvalidField> {
    let text = text.trim();
    let chars = text.chars().count();
    if chars == 0 {
        return Err(InvalidField::new(field, "must not be empty"));
    }
    if chars > max_chars {
        return Err(InvalidField::new(
            field,
            format!("must be at most {max_chars} characters (got {chars})"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(InvalidField::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_text_is_trimmed_counted_in_characters_and_free_of_controls() {
        assert_eq!(one_line("name", "  Zoë  ", 3), Ok("Zoë"));
        assert_eq!(
            one_line("name", "   ", 3).unwrap_err().to_string(),
            "name: must not be empty"
        );
        assert_eq!(
            one_line("name", "abcd", 3).unwrap_err().to_string(),
            "name: must be at most 3 characters (got 4)"
        );
        assert_eq!(
            one_line("name", "a\u{7}b", 3).unwrap_err().to_string(),
            "name: must not contain control characters"
        );
    }
}
