//! `township lock`: take a lock by hand (and hold it for a while), see who holds and waits, or
//! which lock-server leads. With several lock-servers in `--addr` (elected on etcd), each command
//! goes to the leader.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use tonic::{Status, transport::Channel};
use township_lock_client::{Error as LockError, LEADER_TRAILER, LockClient, Mode};
use township_proto::lock::v1::{
    InspectRequest, InspectResponse, LeaderRequest, lock_service_client::LockServiceClient,
};

use crate::{
    connect::{Connection, addr_of, connect, dialer, unary},
    error::CliError,
    global::Global,
    output::print_json,
};
use township_proto::town;

/// `township lock ...`.
#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(subcommand)]
    command: LockCommand,
}

#[derive(Debug, Subcommand)]
enum LockCommand {
    /// Acquire a lock, hold it (kept alive) for --hold, then release it.
    Acquire {
        /// The resource, e.g. account/42.
        resource: String,
        /// Shared (read) or exclusive (write).
        #[arg(long, value_enum, default_value_t = CliMode::Write)]
        mode: CliMode,
        /// Lease lifetime without refresh (1s to 5m).
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// How long to hold the lock before releasing it.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        hold: Duration,
        /// How long to wait for the grant.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
    /// Show holders and waiters of every resource starting with PREFIX.
    Inspect {
        /// Resource-name prefix; empty shows every resource.
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Print which lock-server leads and its fencing epoch (exit 1 while none is elected).
    Leader,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CliMode {
    Read,
    Write,
}

/// Runs `township lock`.
pub async fn run(args: LockArgs, global: &Global) -> Result<(), CliError> {
    // The first server of --addr that answers: a `LockServiceClient` for inspecting and asking
    // who leads; for leases, a `LockClient` of every server in --addr, which finds the leader.
    let lock = Connection::open(&town::LOCK, global, |channel| channel).await?;
    match args.command {
        LockCommand::Acquire {
            resource,
            mode,
            ttl,
            hold,
            wait,
        } => {
            let mode = match mode {
                CliMode::Read => Mode::Read,
                CliMode::Write => Mode::Write,
            };
            let owner = format!("township-cli@{}", std::process::id());
            let client = LockClient::dial(dialer(global)?, &addr_of(&town::LOCK, global), owner)
                .map_err(|err| CliError::Usage(err.to_string()))?
                .with_ttl(ttl)
                .with_wait(wait);
            let lease = client
                .acquire(&[(&resource, mode)])
                .await
                .map_err(|err| lock_error(&lock, err))?;
            let token = lease.token(&resource).unwrap_or_default();
            if global.json {
                print_json(&serde_json::json!({
                    "event": "acquired", "resource": resource, "lease_id": lease.id(),
                    "fencing_token": token, "mode": mode.as_str(),
                }));
            } else {
                println!(
                    "acquired {resource} ({mode:?}) lease {} fencing token {token}",
                    lease.id()
                );
            }
            tokio::select! {
                () = tokio::time::sleep(hold) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            let lost = lease.is_lost();
            lease
                .release()
                .await
                .map_err(|err| lock_error(&lock, err))?;
            if global.json {
                print_json(
                    &serde_json::json!({ "event": "released", "resource": resource, "lost": lost }),
                );
            } else {
                println!("released {resource}");
            }
            Ok(())
        }
        LockCommand::Leader => leader(&lock, global).await,
        LockCommand::Inspect { prefix } => {
            let reply = match inspect(lock.client(), &prefix, global).await {
                // A lock-server that does not lead names the leader: ask it there.
                Err(status) => match named_leader(&status) {
                    Some(leader) => {
                        let channel = connect(lock.service(), &leader, global).await?;
                        inspect(channel, &prefix, global).await
                    }
                    None => Err(status),
                },
                answer => answer,
            }
            .map_err(|s| lock.error(s))?;
            for resource in reply.resources {
                if global.json {
                    print_json(&serde_json::json!({
                        "resource": resource.resource,
                        "holders": resource.holders.iter().map(|h| serde_json::json!({
                            "principal": h.principal, "owner": h.owner, "mode": h.mode().as_str_name(),
                            "fencing_token": h.fencing_token,
                            "lease_age": h.lease_age.map(|d| d.to_string()),
                            "expires_at": h.expires_at.map(|t| t.to_string()),
                        })).collect::<Vec<_>>(),
                        "waiters": resource.waiters.iter().map(|w| serde_json::json!({
                            "owner": w.owner, "mode": w.mode().as_str_name(),
                            "waiting_for": w.waiting_for.map(|d| d.to_string()),
                        })).collect::<Vec<_>>(),
                    }));
                    continue;
                }
                println!("{}", resource.resource);
                for h in &resource.holders {
                    let age = h.lease_age.map(|d| d.to_string()).unwrap_or_default();
                    let principal = if h.principal.is_empty() {
                        "(no certificate)"
                    } else {
                        &h.principal
                    };
                    println!(
                        "  holder {} {} token {} age {age} principal {principal}",
                        h.mode().as_str_name(),
                        h.owner,
                        h.fencing_token,
                    );
                }
                for w in &resource.waiters {
                    let waited = w.waiting_for.map(|d| d.to_string()).unwrap_or_default();
                    println!(
                        "  waiter {} {} waiting {waited}",
                        w.mode().as_str_name(),
                        w.owner
                    );
                }
            }
            Ok(())
        }
    }
}

/// `township lock leader`: who leads, as the first lock-server of --addr that answers says.
async fn leader(lock: &Connection<Channel>, global: &Global) -> Result<(), CliError> {
    let reply = LockServiceClient::new(lock.client())
        .leader(unary(LeaderRequest {}, global))
        .await
        .map_err(|s| lock.error(s))?
        .into_inner();
    // A single lock-server leads without an advertised address: the one dialled.
    let leader = match (reply.leader.is_empty(), reply.serving) {
        (true, true) => lock.addr().to_owned(),
        _ => reply.leader,
    };
    if global.json {
        print_json(&serde_json::json!({
            "leader": leader, "epoch": reply.epoch, "answered_by_leader": reply.serving,
        }));
    } else if !leader.is_empty() {
        println!("leader {leader} epoch {}", reply.epoch);
    }
    if leader.is_empty() {
        return Err(CliError::Rejected(format!(
            "no lock-server leads now (an election is under way, or etcd cannot be reached); \
             the last epoch seen is {}",
            reply.epoch
        )));
    }
    Ok(())
}

/// Inspect on `channel`.
async fn inspect(
    channel: Channel,
    prefix: &str,
    global: &Global,
) -> Result<InspectResponse, Status> {
    let request = InspectRequest {
        resource_prefix: prefix.to_owned(),
    };
    LockServiceClient::new(channel)
        .inspect(unary(request, global))
        .await
        .map(tonic::Response::into_inner)
}

/// The leader a lock-server that does not lead names in its answer.
fn named_leader(status: &Status) -> Option<String> {
    let named = status.metadata().get(LEADER_TRAILER)?.to_str().ok()?;
    Some(named.to_owned())
}

/// The command's error for a failed [`LockClient`] call: a service that could not be reached
/// exits 3, an answer exits 1 with its status code, as for every other command.
fn lock_error(lock: &Connection<Channel>, err: LockError) -> CliError {
    let status = match err {
        LockError::Unavailable(reason) => {
            return CliError::Unreachable {
                service: lock.service(),
                addr: lock.addr().to_owned(),
                attempts: 1,
                reason,
            };
        }
        LockError::TimedOut(message) => Status::deadline_exceeded(message),
        LockError::LeaseGone(message) => Status::not_found(message),
        LockError::Refused { code, message } => Status::new(code, message),
        LockError::OutOfTurn(message) => Status::internal(message),
    };
    CliError::Status {
        service: lock.service(),
        status,
    }
}
