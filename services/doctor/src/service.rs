//! The gRPC face of the doctor: reads each request into its domain request (see
//! [`crate::types`]), calls the [`Practice`], and answers; errors leave through
//! [`crate::Error`]'s one `From<Error> for Status`. The interactive `Converse` stream runs from a
//! task of its own.

use std::{pin::Pin, sync::Arc};

use tokio::sync::mpsc;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};
use township_kit::{Shutdown, paging::PageTokens};
use township_proto::doctor::v1::{self as pb, doctor_line, doctor_service_server::DoctorService};

use crate::{
    Reply,
    practice::{Opened, Practice},
    types::{HistoryQuery, Say, StartSession, converse_opening, converse_text},
};

/// Doctor lines buffered for a slow Converse client.
const CONVERSE_BUFFER: usize = 16;

/// Implements `township.doctor.v1.DoctorService`.
#[derive(Clone)]
pub struct DoctorApi {
    practice: Arc<Practice>,
    tokens: PageTokens,
    shutdown: Shutdown,
}

impl DoctorApi {
    /// Serves `practice`, signing history page tokens with `tokens`; open Converse streams end
    /// with a farewell when `shutdown` fires.
    pub fn new(practice: Arc<Practice>, tokens: PageTokens, shutdown: Shutdown) -> Self {
        Self {
            practice,
            tokens,
            shutdown,
        }
    }
}

#[tonic::async_trait]
impl DoctorService for DoctorApi {
    async fn start_session(
        &self,
        request: Request<pb::StartSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let StartSession { patient, key } = StartSession::try_from(request.get_ref())?;
        let opened = self.practice.start(patient, &key).await?;
        Ok(Response::new(session_to_pb(opened)))
    }

    async fn reply(
        &self,
        request: Request<pb::ReplyRequest>,
    ) -> Result<Response<pb::ReplyResponse>, Status> {
        let Say { session_id, text } = Say::try_from(request.into_inner())?;
        let reply = self.practice.reply(&session_id, &text).await?;
        Ok(Response::new(reply_to_pb(reply)))
    }

    async fn end_session(
        &self,
        request: Request<pb::EndSessionRequest>,
    ) -> Result<Response<pb::EndSessionResponse>, Status> {
        let farewell = self.practice.end(&request.get_ref().session_id)?;
        Ok(Response::new(pb::EndSessionResponse {
            farewell: farewell.to_owned(),
        }))
    }

    type ConverseStream = Pin<Box<dyn Stream<Item = Result<pb::DoctorLine, Status>> + Send>>;

    async fn converse(
        &self,
        request: Request<Streaming<pb::PatientLine>>,
    ) -> Result<Response<Self::ConverseStream>, Status> {
        let inbound = request.into_inner();
        let (lines, outbound) = mpsc::channel(CONVERSE_BUFFER);
        let practice = self.practice.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            if let Err(status) = converse(&practice, inbound, &lines, &shutdown).await {
                // The client may be gone already: nothing more to tell it.
                let _ = lines.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(outbound))))
    }

    async fn get_history(
        &self,
        request: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        let HistoryQuery { patient, key, page } =
            HistoryQuery::parse(request.get_ref(), &self.tokens)?;
        let mut exchanges = self
            .practice
            .history(&patient, &key, page.after, page.lookahead())
            .await?;
        let next_page_token = page.finish(&self.tokens, &mut exchanges, |last| last.id);
        Ok(Response::new(pb::GetHistoryResponse {
            exchanges: exchanges
                .into_iter()
                .map(|e| pb::Exchange {
                    time: Some(timestamp(e.time_ms)),
                    session_started: Some(timestamp(e.session_started_ms)),
                    patient_text: e.patient_text,
                    doctor_text: e.doctor_text,
                    ..Default::default()
                })
                .collect(),
            next_page_token,
        }))
    }
}

type Lines = mpsc::Sender<Result<pb::DoctorLine, Status>>;

/// One interactive conversation: greeting, a reply per line, farewell when the client closes its
/// side (or the server shuts down). A failed send means the client left: the session just ends.
async fn converse(
    practice: &Practice,
    mut inbound: Streaming<pb::PatientLine>,
    lines: &Lines,
    shutdown: &Shutdown,
) -> Result<(), Status> {
    let first = tokio::select! {
        first = inbound.message() => first?,
        () = shutdown.cancelled() => return Ok(()),
    };
    let StartSession { patient, key } = converse_opening(first)?;
    let opened = practice.start(patient, &key).await?;
    let session_id = opened.session_id.clone();
    let greeting = doctor_line::Kind::Greeting(session_to_pb(opened));
    let result = answer_lines(
        practice,
        &session_id,
        &mut inbound,
        lines,
        shutdown,
        greeting,
    )
    .await;
    let farewell = practice
        .end(&session_id)
        .unwrap_or(crate::practice::FAREWELL);
    if result.is_ok() {
        let farewell = doctor_line::Kind::Farewell(pb::EndSessionResponse {
            farewell: farewell.to_owned(),
        });
        let _ = lines
            .send(Ok(pb::DoctorLine {
                kind: Some(farewell),
            }))
            .await;
    }
    result
}

async fn answer_lines(
    practice: &Practice,
    session_id: &str,
    inbound: &mut Streaming<pb::PatientLine>,
    lines: &Lines,
    shutdown: &Shutdown,
    greeting: doctor_line::Kind,
) -> Result<(), Status> {
    let mut next = Some(greeting);
    while let Some(kind) = next.take() {
        if lines
            .send(Ok(pb::DoctorLine { kind: Some(kind) }))
            .await
            .is_err()
        {
            return Ok(());
        }
        let line = tokio::select! {
            line = inbound.message() => line,
            () = shutdown.cancelled() => return Ok(()),
        };
        let text = match line {
            Ok(Some(line)) => converse_text(line)?,
            // The client closed its side, or went away.
            Ok(None) | Err(_) => return Ok(()),
        };
        let reply = practice.reply(session_id, &text).await?;
        next = Some(doctor_line::Kind::Reply(reply_to_pb(reply)));
    }
    Ok(())
}

fn session_to_pb(opened: Opened) -> pb::Session {
    pb::Session {
        session_id: opened.session_id,
        greeting: opened.greeting.text,
        display_greeting: opened.greeting.display_text,
        returning_patient: opened.previous_visits > 0,
        previous_visits: opened.previous_visits,
        patient_key: opened.patient_key.unwrap_or_default(),
    }
}

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

fn reply_to_pb(reply: Reply) -> pb::ReplyResponse {
    pb::ReplyResponse {
        text: reply.text,
        display_text: reply.display_text,
    }
}
