//! The flags every subcommand accepts (`--addr`, `--timeout`, `--retries`, `--json`), shared by
//! the command modules so that none of them imports from the binary's root.

use std::time::Duration;

use clap::Args;

/// Flags every subcommand accepts, before or after the subcommand's name.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The service's address, host:port (an http:// in front is accepted). Default: the
    /// service's env var (e.g. TOWNSHIP_TIME_ADDR), else its default port on 127.0.0.1.
    #[arg(long, global = true, value_name = "ADDR")]
    pub addr: Option<String>,

    /// Deadline for connecting and for each call.
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s",
          value_parser = humantime::parse_duration, env = "TOWNSHIP_TIMEOUT")]
    pub timeout: Duration,

    /// How many more times to try connecting when the service is unreachable (backoff of about
    /// 200 ms doubling to 2 s, with jitter).
    #[arg(
        long,
        global = true,
        value_name = "N",
        default_value_t = 3,
        env = "TOWNSHIP_RETRIES"
    )]
    pub retries: u32,

    /// Print results as JSON, one object per line.
    #[arg(long, global = true)]
    pub json: bool,
}
