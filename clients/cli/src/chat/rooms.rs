//! `township chat rooms` and `township chat transcript`: the rooms with their members, and one
//! room's whole transcript.

use std::io::{self, Write};

use anyhow::Context;
use township_proto::chat::v1::{GetTranscriptRequest, ListRoomsRequest};

use super::{TranscriptArgs, connect, events::event_json, room_name};
use crate::{
    connect::unary,
    error::CliError,
    global::Global,
    output::{print_json, unless_broken_pipe},
};

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

/// Runs `township chat transcript`.
pub(super) async fn transcript(args: TranscriptArgs, global: &Global) -> Result<(), CliError> {
    let room = room_name(args.room);
    let chat = connect(global, false).await?;
    let request = GetTranscriptRequest { room: room.clone() };
    let reply = chat
        .client()
        .get_transcript(unary(request, global))
        .await
        .map_err(|s| chat.error(s))?
        .into_inner();
    let mut out = io::stdout().lock();
    let written = if global.json {
        reply
            .events
            .iter()
            .try_for_each(|event| writeln!(out, "{}", event_json(event)))
    } else if reply.events.is_empty() {
        writeln!(out, "no events in room {room}")
    } else {
        out.write_all(reply.text.as_bytes())
    };
    // A reader that went away early (`township chat transcript | head`) is not a failure.
    unless_broken_pipe(
        written
            .and_then(|()| out.flush())
            .context("cannot write stdout")
            .map_err(CliError::Local),
    )
}
