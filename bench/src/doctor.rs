//! Doctor: Converse exchanges per second (a patient's line in, the doctor's reply out, the
//! exchange recorded) with 1 and with 16 patients at once, each on its own connection and
//! stream, and the doctor-server's footprint. No reference: there is no other ELIZA server to put
//! beside it, so the figures stand alone, with their rounds' spread.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use township_proto::doctor::v1::{
    DoctorLine, PatientLine, doctor_line, doctor_service_client::DoctorServiceClient, patient_line,
};

use crate::{
    load::{self, Plan, Window},
    report::Report,
    row::Durable,
    server,
};

/// Every exchange is recorded (`synchronous = FULL`) before the reply is sent.
const DURABLE: Durable = Durable::Yes("SQLite WAL, synchronous=FULL");

/// What the patients say, in turn: lines that reach different keywords of the script.
const LINES: [&str; 6] = [
    "I am unhappy about my work",
    "My mother takes care of me",
    "I dreamed about computers last night",
    "Perhaps you can help me",
    "You are not very aggressive",
    "Everybody laughs at me",
];

/// Runs the Converse scenario at 1 and 16 patients against one fresh doctor-server.
pub async fn run(plan: &Plan) -> anyhow::Result<Report> {
    let data = tempfile::tempdir().context("cannot create a temporary data dir")?;
    let server = server::start("doctor-server", data.path(), &[]).await?;
    let uri = format!("http://{}", server.addr);
    let mut report = Report::default();
    for patients in [1, 16] {
        let mut measured = plan
            .alternate(&[()], async |_, window| {
                conversations(&uri, patients, window).await
            })
            .await?;
        let rounds = measured.pop().context("no round")?;
        report.rows.push(rounds.row(
            format!("doctor: Converse exchanges, {patients} patient(s)"),
            "doctor-server",
            DURABLE,
        )?);
    }
    report.footprints.push(server.footprint()?);
    Ok(report)
}

/// Numbers the bench's patients, so that each conversation is a new patient's.
static NEXT_PATIENT: AtomicU64 = AtomicU64::new(0);

/// `patients` closed-loop patients, each on its own connection with one Converse stream, saying
/// a line and waiting for the reply, until the window ends.
async fn conversations(
    uri: &str,
    patients: usize,
    window: Window,
) -> anyhow::Result<Histogram<u64>> {
    let mut tasks = Vec::new();
    for patient in 0..patients {
        let channel = server::dial(uri).await.context("connect to the doctor")?;
        let (tx, outbound) = mpsc::channel(4);
        let mut replies = DoctorServiceClient::new(channel)
            .converse(ReceiverStream::new(outbound))
            .await
            .context("open Converse")?
            .into_inner();
        // A new patient each time: a returning one would need the key their first visit got.
        let name = format!(
            "bench patient {patient}.{}",
            NEXT_PATIENT.fetch_add(1, Ordering::Relaxed)
        );
        say(&tx, patient_line::Kind::PatientName(name)).await?;
        match next(&mut replies).await? {
            doctor_line::Kind::Greeting(_) => {}
            other => bail!("Converse began with {other:?}, not a greeting"),
        }
        tasks.push(tokio::task::spawn_local(async move {
            let mut turn = patient;
            load::closed_loop(window, async || {
                turn += 1;
                let line = LINES[turn % LINES.len()].to_owned();
                say(&tx, patient_line::Kind::Text(line)).await?;
                match next(&mut replies).await? {
                    doctor_line::Kind::Reply(reply) if !reply.text.is_empty() => Ok(()),
                    other => bail!("the doctor answered {other:?}, not a reply"),
                }
            })
            .await
        }));
    }
    load::merge(tasks).await
}

async fn say(tx: &mpsc::Sender<PatientLine>, kind: patient_line::Kind) -> anyhow::Result<()> {
    let line = PatientLine {
        kind: Some(kind),
        patient_key: String::new(),
    };
    tx.send(line).await.context("the Converse stream closed")
}

async fn next(replies: &mut tonic::Streaming<DoctorLine>) -> anyhow::Result<doctor_line::Kind> {
    replies
        .message()
        .await
        .context("Converse")?
        .and_then(|line| line.kind)
        .context("the Converse stream ended early")
}
