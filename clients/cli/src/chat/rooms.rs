//! `township chat rooms` and `township chat transcript`: the rooms with their members, and one
//! room's whole transcript, a page at a time.

use std::io::{self, Write};

use township_proto::chat::v1::{GetTranscriptRequest, ListRoomsRequest};

use super::{TranscriptArgs, connect, events::event_json, room_name};
use crate::{connect::unary, error::CliError, global::Global, output::print_json};

/// Runs `township chat rooms`.
pub(super) async fn rooms(global: &Global) -> Result<(), CliError> {
    let chat = connect(global, false).await?;
    let rooms = chat
        .client()
        .list_rooms(unary(ListRoomsRequest {}, global))
        .await
        .map_err(|s| chat.error(s))?
        .into_inner()
        .rooms;
    for room in &rooms {
        if global.json {
            print_json(&serde_json::json!({
                "name": room.name, "members": room.members, "last_seq": room.last_seq,
            }));
        } else {
            let plural = if room.members == 1 { "" } else { "s" };
            println!(
                "{}  {} member{plural}  last seq {}",
                room.name, room.members, room.last_seq
            );
        }
    }
    if rooms.is_empty() && !global.json {
        println!("no rooms yet");
    }
    Ok(())
}

/// Runs `township chat transcript`: every page of the room's transcript, printed as it comes.
pub(super) async fn transcript(args: TranscriptArgs, global: &Global) -> Result<(), CliError> {
    let room = room_name(args.room);
    let chat = connect(global, false).await?;
    let mut page_token = String::new();
    let mut printed = 0usize;
    loop {
        let request = GetTranscriptRequest {
            room: room.clone(),
            page_size: i32::try_from(MAX_PAGE_SIZE).unwrap_or(i32::MAX),
            page_token,
        };
        let page = chat
            .client()
            .get_transcript(unary(request, global))
            .await
            .map_err(|s| chat.error(s))?
            .into_inner();
        printed += page.events.len();
        let mut out = io::stdout().lock();
        let written = if global.json {
            page.events
                .iter()
                .try_for_each(|event| writeln!(out, "{}", event_json(event)))
        } else if printed == 0 {
            writeln!(out, "no events in room {room}")
        } else {
            out.write_all(page.text.as_bytes())
        };
        match written.and_then(|()| out.flush()) {
            Ok(()) => {}
            // A reader that went away early (`township chat transcript | head`) is not a failure.
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(err) => {
                return Err(CliError::Local(
                    anyhow::Error::new(err).context("cannot write stdout"),
                ));
            }
        }
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        page_token = page.next_page_token;
    }
}

/// The most events GetTranscript serves a page (the convention every service keeps).
const MAX_PAGE_SIZE: u32 = 1000;
