//! `township doctor history`: what a patient said and was told, oldest first, a page at a time
//! or every page with `--all`.

use township_proto::doctor::v1::{Exchange, GetHistoryRequest};

use super::{HistoryArgs, connect, keys::KeyStore};
use crate::{connect::unary, error::CliError, global::Global, output::print_json};

/// Prints one page of the patient's history (with a hint to the next one), or every page with
/// `--all`.
pub(super) async fn history(args: HistoryArgs, global: &Global) -> Result<(), CliError> {
    let patient_key = KeyStore::new()?.get(&args.name)?.unwrap_or_default();
    let doctor = connect(global).await?;
    let page_size = args.paging.page_size();
    let mut page_token = args.paging.first_token();
    let mut shown = 0usize;
    let mut session = String::new();
    loop {
        let request = GetHistoryRequest {
            patient_name: args.name.clone(),
            page_size,
            page_token,
            patient_key: patient_key.clone(),
        };
        let page = doctor
            .client()
            .get_history(unary(request, global))
            .await
            .map_err(|s| doctor.error(s))?
            .into_inner();
        for exchange in &page.exchanges {
            print_exchange(global, exchange, &mut session);
        }
        shown += page.exchanges.len();
        match args.paging.after_page(page.next_page_token, global) {
            Some(next) => page_token = next,
            None => break,
        }
    }
    if shown == 0 && !global.json {
        if args.paging.continues() {
            println!("no more exchanges");
        } else {
            println!("no history for {:?}", args.name);
        }
    }
    Ok(())
}

/// Prints one exchange: `> said` and `< answered`, after a `# TIME  session started STARTED`
/// line when its session differs from the one printed before (`session`); or one JSON object.
fn print_exchange(global: &Global, exchange: &Exchange, session: &mut String) {
    let time = exchange.time.as_ref().map(ToString::to_string);
    let started = exchange
        .session_started
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    if global.json {
        print_json(&serde_json::json!({
            "session_started": started,
            "time": time,
            "patient_text": exchange.patient_text,
            "doctor_text": exchange.doctor_text,
        }));
        return;
    }
    if *session != started {
        session.clone_from(&started);
        println!(
            "# {}  session started {started}",
            time.as_deref().unwrap_or("(no time)"),
        );
    }
    println!("> {}", line_breaks_as_spaces(&exchange.patient_text));
    println!("< {}", line_breaks_as_spaces(&exchange.doctor_text));
}

/// `text` with any line breaks made spaces, so each exchange stays two lines.
fn line_breaks_as_spaces(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_lines_never_break() {
        assert_eq!(line_breaks_as_spaces("a\nb\r\nc"), "a b  c");
        assert_eq!(line_breaks_as_spaces("plain"), "plain");
    }
}
