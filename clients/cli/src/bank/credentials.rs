//! Where `township bank` finds its credentials: the customer's PIN (a file, the environment or
//! a prompt without echo) and the staff's admin token (a file), each a usage error when missing.

use std::{io::IsTerminal, path::Path};

use tonic::metadata::AsciiMetadataValue;

use super::PinSource;
use crate::error::CliError;

/// The env var holding the PIN when no `--pin-file` is given.
const PIN_ENV: &str = "TOWNSHIP_BANK_PIN";
/// The env var holding the new PIN of `township bank pin` when no `--new-pin-file` is given.
const NEW_PIN_ENV: &str = "TOWNSHIP_BANK_NEW_PIN";

/// The PIN: from `--pin-file`, else env TOWNSHIP_BANK_PIN, else asked without echo on a terminal.
pub(super) fn read_pin(source: &PinSource, prompt: &str) -> Result<String, CliError> {
    read_secret(source.pin_file.as_deref(), "--pin-file", PIN_ENV, prompt)
}

/// The new PIN: from `--new-pin-file`, else env TOWNSHIP_BANK_NEW_PIN, else asked twice without
/// echo on a terminal (the two must agree).
pub(super) fn read_new_pin(file: Option<&Path>) -> Result<String, CliError> {
    let pin = read_secret(file, "--new-pin-file", NEW_PIN_ENV, "New PIN: ")?;
    if file.is_none() && std::env::var(NEW_PIN_ENV).is_err() {
        let again = read_secret(None, "--new-pin-file", NEW_PIN_ENV, "New PIN again: ")?;
        if again != pin {
            return Err(CliError::Usage("the two new PINs differ".to_owned()));
        }
    }
    Ok(pin)
}

/// A PIN from `file` (its first line), else env `env`, else a prompt without echo on a terminal.
fn read_secret(
    file: Option<&Path>,
    flag: &str,
    env: &str,
    prompt: &str,
) -> Result<String, CliError> {
    if let Some(path) = file {
        return first_line(path, "PIN file");
    }
    if let Some(pin) = std::env::var(env).ok().filter(|p| !p.trim().is_empty()) {
        return Ok(pin.trim().to_owned());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(format!(
            "no PIN: give {flag} FILE or set {env} (stdin is not a terminal to ask on)"
        )));
    }
    rpassword::prompt_password(prompt)
        .map(|pin| pin.trim().to_owned())
        .map_err(|e| CliError::Usage(format!("cannot read the PIN: {e}")))
}

/// The admin token from `path`, ready to send as `authorization: Bearer <token>`.
pub(super) fn admin_token(path: &Path) -> Result<AsciiMetadataValue, CliError> {
    let token = first_line(path, "admin token file")?;
    bearer(&token).map_err(|()| {
        CliError::Usage(format!(
            "the admin token file {} does not hold a token",
            path.display()
        ))
    })
}

/// The first line of `path`, trimmed; an unreadable or empty file is a usage error.
fn first_line(path: &Path, what: &str) -> Result<String, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("cannot read the {what} {}: {e}", path.display())))?;
    let line = text.lines().next().unwrap_or_default().trim();
    if line.is_empty() {
        return Err(CliError::Usage(format!(
            "the {what} {} is empty",
            path.display()
        )));
    }
    Ok(line.to_owned())
}

/// `Bearer <token>` as a metadata value.
pub(super) fn bearer(token: &str) -> Result<AsciiMetadataValue, ()> {
    format!("Bearer {token}").parse().map_err(|_| ())
}
