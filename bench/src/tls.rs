//! TLS: what mutual TLS costs, each figure over mutual TLS beside the same over plaintext, in
//! alternating rounds of the same run, on the same binaries started alike:
//!
//! - GetTime at 16 clients (time-server `--keepalive 0s`, as in the time benchmark);
//! - a lock Session cycle (acquire + release on a Session stream) at 1 client and at 16 clients
//!   on distinct resources, as in the lock benchmark;
//! - new connections per second: each client dials a new connection (TCP, the TLS handshake with
//!   both certificates verified, HTTP/2), makes one GetTime on it and drops it, again and again.
//!   Every dial is a full handshake, as a new process's is: each connection gets a fresh client
//!   TLS configuration, so no session is resumed.
//!
//! The certificates come from the real CLI, `township certs init` and `township certs issue
//! --name bench`, into a temporary directory; the servers require a client certificate
//! (`--tls-client-ca`), and the clients dial `127.0.0.1` (the servers' certificates name it) with
//! `township-client`'s `Dialer`, as every Township client does.

use std::{path::Path, time::Duration};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use township_client::{ClientTlsFiles, Dialer};
use township_proto::time::v1::{GetTimeRequest, time_service_client::TimeServiceClient};

use crate::{
    load::{self, Plan, Window},
    lock::LOCK_SERVER,
    lock_client::{self, Api, UNCAPPED},
    report::Report,
    row::{Durable, Row},
    server::{self, Server},
    targets::Target,
    time,
};

/// The least ratio, mutual TLS ÷ plaintext in ops/s, that the GetTime and lock targets ask.
const AT_LEAST: f64 = 0.8;

/// Concurrent clients of the GetTime and new-connection rows.
const CLIENTS: usize = 16;

/// How the clients reach the servers, in the order of each scenario's rows: mutual TLS first,
/// so the ratio column is mutual TLS ÷ plaintext.
#[derive(Clone, Copy, PartialEq)]
enum Transport {
    // The discriminants index each side's CPU tallies.
    MutualTls = 0,
    Plaintext = 1,
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Transport::MutualTls => "mutual TLS",
            Transport::Plaintext => "plaintext",
        }
    }
}

/// The servers of one transport and how to dial them.
struct Side {
    transport: Transport,
    dialer: Dialer,
    time: Server,
    lock: Server,
    _data: [tempfile::TempDir; 2],
}

impl Side {
    /// Starts a time-server (`--keepalive 0s`) and a lock-server (caps raised, see
    /// [`UNCAPPED`]), each with `tls_args(service)` (empty for plaintext), health-checked through
    /// `dialer`.
    async fn start(
        transport: Transport,
        dialer: Dialer,
        tls_args: impl Fn(&str) -> Vec<String>,
    ) -> anyhow::Result<Self> {
        let data = [temp_dir()?, temp_dir()?];
        let args = |service: &str, own: &[&str]| {
            let mut args: Vec<String> = own.iter().map(|a| (*a).to_owned()).collect();
            args.extend(tls_args(service));
            args
        };
        let time_args = args("time", &["--keepalive", "0s"]);
        let lock_args = args("lock", &UNCAPPED);
        let time = start(&time_args, "time-server", data[0].path(), &dialer).await?;
        let lock = start(&lock_args, "lock-server", data[1].path(), &dialer).await?;
        Ok(Self {
            transport,
            dialer,
            time,
            lock,
            _data: data,
        })
    }

    /// The server that `load` loads.
    fn server(&self, load: Load) -> &Server {
        match load {
            Load::Time => &self.time,
            Load::Lock => &self.lock,
        }
    }
}

fn temp_dir() -> anyhow::Result<tempfile::TempDir> {
    tempfile::tempdir().context("cannot create a temporary data dir")
}

async fn start(
    args: &[String],
    binary: &str,
    data: &Path,
    dialer: &Dialer,
) -> anyhow::Result<Server> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    server::start_dialing(binary, data, &args, dialer).await
}

/// Runs the TLS scenarios: the servers over mutual TLS and over plaintext taking turns, round
/// after round.
pub async fn run(plan: &Plan) -> anyhow::Result<Report> {
    let certs = Certs::make().await?;
    let sides = [
        Side::start(Transport::MutualTls, certs.dialer()?, |service| {
            certs.server_args(service)
        })
        .await?,
        Side::start(Transport::Plaintext, Dialer::new(), |_| Vec::new()).await?,
    ];
    let mut report = Report::default();
    let request = GetTimeRequest {
        time_zone: "UTC".into(),
    };

    let which = format!("GetTime, {CLIENTS} clients");
    let rows = measure(
        plan,
        &sides,
        Load::Time,
        &which,
        &mut report,
        async |side, window| {
            let addr = side.time.addr.to_string();
            time::grpc_dialing(&side.dialer, &addr, CLIENTS, &request, window).await
        },
    )
    .await?;
    report.targets.push(Target::ratio_at_least(
        format!("GetTime over mutual TLS ≥ {AT_LEAST}× plaintext, {CLIENTS} clients"),
        &rows[0],
        &rows[1],
        AT_LEAST,
    ));
    report.rows.extend(rows);

    for (clients, some) in [(1, "1 client"), (CLIENTS, "16 clients, distinct resources")] {
        let which = format!("lock Session cycle, {some}");
        let resources: Vec<String> = (0..clients).map(|i| format!("bench/{i}")).collect();
        let rows = measure(
            plan,
            &sides,
            Load::Lock,
            &which,
            &mut report,
            async |side, window| {
                let addr = side.lock.addr.to_string();
                lock_client::round(&side.dialer, &addr, &resources, Api::Session, window).await
            },
        )
        .await?;
        report.targets.push(Target::ratio_at_least(
            format!("lock Session cycle over mutual TLS ≥ {AT_LEAST}× plaintext, {some}"),
            &rows[0],
            &rows[1],
            AT_LEAST,
        ));
        report.rows.extend(rows);
    }

    let which = format!("new connections: dial, handshake, one GetTime, close; {CLIENTS} clients");
    let rows = measure(
        plan,
        &sides,
        Load::Time,
        &which,
        &mut report,
        async |side, window| {
            let addr = side.time.addr.to_string();
            connections(&side.dialer, &addr, &request, window).await
        },
    )
    .await?;
    report.rows.extend(rows);
    Ok(report)
}

/// Which server of a side a scenario loads.
#[derive(Clone, Copy)]
enum Load {
    Time,
    Lock,
}

/// Measures scenario "tls: `which`" on both sides in alternating rounds of `round`, sampling the
/// loaded server's CPU time in each measured window. Returns the rows (mutual TLS first), and
/// adds each loaded server's footprint to `report`, with its CPU time per operation here.
async fn measure(
    plan: &Plan,
    sides: &[Side; 2],
    load: Load,
    which: &str,
    report: &mut Report,
    round: impl AsyncFn(&Side, Window) -> anyhow::Result<Histogram<u64>>,
) -> anyhow::Result<Vec<Row>> {
    let mut spent = [(Duration::ZERO, 0u64); 2];
    let measured = plan
        .alternate(sides, async |side, window| {
            let loaded = [side.server(load)];
            let cpu = server::cpu_during(window, &loaded);
            let (histogram, cpu) = tokio::join!(round(side, window), cpu);
            let histogram = histogram?;
            let spent = &mut spent[side.transport as usize];
            spent.0 += cpu?.iter().sum::<Duration>();
            spent.1 += histogram.len();
            Ok(histogram)
        })
        .await?;
    let (name, durable) = match load {
        Load::Time => ("time-server --keepalive 0s", Durable::NotApplicable),
        Load::Lock => ("lock-server, Session stream", LOCK_SERVER),
    };
    let scenario = format!("tls: {which}");
    let mut rows = Vec::new();
    for ((side, rounds), (cpu, ops)) in sides.iter().zip(&measured).zip(spent) {
        let label = side.transport.label();
        rows.push(rounds.row(&scenario, format!("{name}, {label}"), durable.clone())?);
        let mut footprint = side.server(load).footprint()?;
        footprint.server = format!("{}, {label} ({which})", footprint.server);
        footprint.cpu_us_per_op = Some(cpu.as_secs_f64() * 1e6 / ops.max(1) as f64);
        report.footprints.push(footprint);
    }
    Ok(rows)
}

/// [`CLIENTS`] closed-loop clients, each dialling a new connection to `addr`, making one GetTime
/// on it and dropping it, again and again; the latency is all three.
async fn connections(
    dialer: &Dialer,
    addr: &str,
    request: &GetTimeRequest,
    window: Window,
) -> anyhow::Result<Histogram<u64>> {
    load::each_client(
        CLIENTS,
        window,
        async |_| Ok(()),
        |(), window| {
            let (dialer, addr, request) = (dialer.clone(), addr.to_owned(), request.clone());
            async move {
                load::closed_loop(window, async || {
                    // A Dialer makes a fresh TLS client configuration on each connect: a full
                    // handshake every time, no session resumed.
                    let channel = dialer
                        .connect(&addr)
                        .await
                        .with_context(|| format!("connect to {addr}"))?;
                    TimeServiceClient::new(channel)
                        .get_time(request.clone())
                        .await
                        .context("GetTime")?;
                    Ok(())
                })
                .await
            }
        },
    )
    .await
}

/// Certificates for mutual TLS, made by the `township` CLI (beside this benchmark's executable)
/// in a temporary directory: the CA, each service's certificate and key, and the client's
/// (`bench`, principal `spiffe://township/user/bench`).
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    /// Runs `township certs init DIR` and `township certs issue --name bench DIR`.
    async fn make() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("cannot create a temporary certificate dir")?;
        let township = server::binary("township")?;
        for args in [&["init"][..], &["issue", "--name", "bench"]] {
            let output = tokio::process::Command::new(&township)
                .arg("certs")
                .args(args)
                .arg(dir.path())
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .with_context(|| format!("cannot run {}", township.display()))?;
            if !output.status.success() {
                bail!(
                    "`township certs {}` failed ({}): {}",
                    args.join(" "),
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
        }
        Ok(Self { dir })
    }

    /// A server's flags for mutual TLS: its certificate and key, and the CA its clients'
    /// certificates must be signed by.
    fn server_args(&self, service: &str) -> Vec<String> {
        let file = |name: String| self.dir.path().join(name).display().to_string();
        vec![
            "--tls-cert".into(),
            file(format!("{service}.pem")),
            "--tls-key".into(),
            file(format!("{service}.key")),
            "--tls-client-ca".into(),
            file("ca.pem".into()),
        ]
    }

    /// A dialer that trusts the CA and shows the `bench` certificate.
    fn dialer(&self) -> anyhow::Result<Dialer> {
        let dir = self.dir.path();
        let files = ClientTlsFiles {
            ca: dir.join("ca.pem"),
            identity: Some((dir.join("bench.pem"), dir.join("bench.key"))),
        };
        let tls = files.load().map_err(anyhow::Error::msg)?;
        Ok(Dialer::new().tls(tls))
    }
}
