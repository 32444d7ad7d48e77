//! `township health ADDR [SERVICE]`: a gRPC health probe for scripts and container healthchecks.
//! Prints one line (the status) and exits 0 only when the service is SERVING.

use clap::Args;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    connect::{Connection, connect, unary},
    error::CliError,
    global::Global,
    output::print_json,
};

/// The name errors give the probed server.
const SERVICE: &str = "health";

/// Arguments of `township health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The server's address, host:port (or use --addr).
    #[arg(value_name = "ADDR")]
    target: Option<String>,

    /// The fully qualified service to ask about, e.g. township.time.v1.TimeService; empty means
    /// the whole server.
    #[arg(value_name = "SERVICE", default_value = "")]
    service: String,
}

/// Runs `township health`.
pub async fn run(args: HealthArgs, global: &Global) -> Result<(), CliError> {
    let addr = args.target.or_else(|| global.addr.clone()).ok_or_else(|| {
        CliError::Usage("health: give the server's address (ADDR or --addr)".into())
    })?;
    let channel = connect(SERVICE, &addr, global).await?;
    let health = Connection::on(channel, SERVICE, addr, HealthClient::new);
    let reply = health
        .client()
        .check(unary(
            HealthCheckRequest {
                service: args.service.clone(),
            },
            global,
        ))
        .await;
    let status = match reply {
        Ok(reply) => ServingStatus::try_from(reply.into_inner().status)
            .unwrap_or(ServingStatus::Unknown)
            .as_str_name()
            .to_owned(),
        Err(status) if status.code() == tonic::Code::NotFound => "SERVICE_UNKNOWN".to_owned(),
        Err(status) => return Err(health.error(status)),
    };
    let addr = health.addr().to_owned();
    if global.json {
        print_json(&serde_json::json!({ "addr": addr, "service": args.service, "status": status }));
    } else {
        println!("{status}");
    }
    if status == "SERVING" {
        Ok(())
    } else {
        Err(CliError::NotServing { addr, status })
    }
}
