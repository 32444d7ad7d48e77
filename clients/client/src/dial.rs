//! Dialling a service: one endpoint configuration, tries with backoff, and errors that tell a bad
//! address apart from a service that did not answer.

use std::time::Duration;

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::{Backoff, addr_list, endpoint_uri};

/// How to reach a service: the connect timeout, how many more tries after a failed connect,
/// HTTP/2 keepalive for long-lived streams, and TLS. Build one from the caller's settings and dial
/// as many services with it as needed.
#[derive(Clone, Debug)]
pub struct Dialer {
    connect_timeout: Duration,
    retries: u32,
    keepalive: Option<Duration>,
    tls: Option<ClientTlsConfig>,
}

/// Why a service could not be dialled.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The address cannot be read (`reason` says why, quoting it).
    #[error("{reason}")]
    BadAddress { addr: String, reason: String },
    /// Nothing answered at the address, after every try.
    #[error("cannot reach {addr}: {reason} (tried {attempts} time{})", if *.attempts == 1 { "" } else { "s" })]
    Unreachable {
        addr: String,
        attempts: u32,
        /// The innermost cause, e.g. "Connection refused (os error 111)".
        reason: String,
    },
}

impl Dialer {
    /// One try with a 10 s connect timeout, and no keepalive.
    pub fn new() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            retries: 0,
            keepalive: None,
            tls: None,
        }
    }

    /// How long one connect may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How many more times [`Dialer::connect`] tries after a failed connect, waiting a
    /// [`Backoff`] between tries.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Dials over TLS with these settings (`https://`; see [`crate::ClientTlsFiles`]).
    pub fn tls(mut self, tls: ClientTlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// HTTP/2 keepalive: a ping every `interval` (even with no call in flight), and the
    /// connection is given up when one goes unanswered that long. For long-lived streams, so that
    /// a dead server or network is found within about twice `interval` instead of never.
    pub fn keepalive(mut self, interval: Duration) -> Self {
        self.keepalive = Some(interval);
        self
    }

    /// Connects to `addrs`: one `host:port` (optionally with `http://`), or several separated by
    /// commas (the servers of one service), each tried in order, the whole list once plus the
    /// retries. Calls on the channel have no deadline of their own.
    pub async fn connect(&self, addrs: &str) -> Result<Channel, DialError> {
        let endpoints = self.endpoints(addrs)?;
        let mut backoff = Backoff::new();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match try_each(&endpoints, 0).await {
                Ok((channel, _)) => return Ok(channel),
                Err(err) if attempts > self.retries => {
                    return Err(unreachable(addrs, attempts, &err));
                }
                Err(_) => tokio::time::sleep(backoff.next_delay()).await,
            }
        }
    }

    /// Connects to one of `addrs` (as [`Dialer::connect`] reads them), going once through the
    /// list from the one at `first` (wrapping round), with no retries; answers the channel and
    /// the index of the address that took it. For a client that lost its server and goes on
    /// with another: it starts past one that answered but then did not serve, so a server that
    /// still accepts connections without serving them (frozen) is not dialled forever.
    pub async fn connect_from(
        &self,
        addrs: &str,
        first: usize,
    ) -> Result<(Channel, usize), DialError> {
        let endpoints = self.endpoints(addrs)?;
        try_each(&endpoints, first)
            .await
            .map_err(|err| unreachable(addrs, 1, &err))
    }

    /// A channel to `addr` that connects on its first call, and reconnects by itself after the
    /// service comes back: for a server whose dependency may start after it (the bank and its
    /// lock service). Fails only on an address that cannot be read.
    pub fn lazy(&self, addr: &str) -> Result<Channel, DialError> {
        Ok(self.endpoint(addr)?.connect_lazy())
    }

    /// The endpoints of every address in `addrs`, or the error naming the one that is wrong.
    fn endpoints(&self, addrs: &str) -> Result<Vec<Endpoint>, DialError> {
        addr_list(addrs)
            .map_err(|reason| DialError::BadAddress {
                addr: addrs.to_owned(),
                reason,
            })?
            .iter()
            .map(|addr| self.endpoint(addr))
            .collect()
    }

    fn endpoint(&self, addr: &str) -> Result<Endpoint, DialError> {
        let bad = |reason: String| DialError::BadAddress {
            addr: addr.to_owned(),
            reason,
        };
        let mut uri = endpoint_uri(addr).map_err(bad)?;
        if self.tls.is_some() {
            // tonic runs TLS only for an https URI; with http it would dial in plaintext.
            uri = uri.replacen("http://", "https://", 1);
        }
        let mut endpoint = Endpoint::from_shared(uri)
            .map_err(|e| bad(format!("`{addr}` is not a valid address: {e}")))?
            .connect_timeout(self.connect_timeout);
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| bad(format!("TLS settings for `{addr}`: {e}")))?;
        }
        Ok(match self.keepalive {
            Some(interval) => endpoint
                .http2_keep_alive_interval(interval)
                .keep_alive_timeout(interval)
                .keep_alive_while_idle(true),
            None => endpoint,
        })
    }
}

impl Default for Dialer {
    fn default() -> Self {
        Self::new()
    }
}

/// Connects to the first of `endpoints` that answers, from the one at `first` (wrapping round):
/// its channel and index, or the last failure.
async fn try_each(
    endpoints: &[Endpoint],
    first: usize,
) -> Result<(Channel, usize), tonic::transport::Error> {
    let mut failed = None;
    for offset in 0..endpoints.len() {
        let index = (first + offset) % endpoints.len();
        match endpoints[index].connect().await {
            Ok(channel) => return Ok((channel, index)),
            Err(err) => failed = Some(err),
        }
    }
    Err(failed.expect("an address list is never empty"))
}

fn unreachable(addrs: &str, attempts: u32, err: &tonic::transport::Error) -> DialError {
    DialError::Unreachable {
        addr: addrs.to_owned(),
        attempts,
        reason: root_cause(err),
    }
}

/// The innermost error message ("Connection refused (os error 111)"), which says the most.
pub fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreadable_address_is_refused_before_any_try() {
        let err = Dialer::new()
            .retries(5)
            .connect("nowhere")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, DialError::BadAddress { reason, .. } if reason.contains("`nowhere`")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_after_every_try() {
        // A port that was just free: bound, read, and closed again.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let err = Dialer::new()
            .retries(2)
            .connect(&format!("127.0.0.1:{port}"))
            .await
            .unwrap_err();
        match err {
            DialError::Unreachable {
                attempts, reason, ..
            } => {
                assert_eq!(attempts, 3);
                assert!(reason.contains("refused"), "{reason}");
            }
            other => panic!("expected Unreachable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn connect_from_goes_once_round_the_list_from_the_address_given() {
        // Listening sockets take a connection in the kernel's backlog, which is all a connect
        // needs; a port that was just free refuses.
        let open = [
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        ];
        let [a, b] = open.each_ref().map(|l| l.local_addr().unwrap().to_string());
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .to_string();
        let dialer = Dialer::new();
        let index = |list: String, first| {
            let dialer = dialer.clone();
            async move { dialer.connect_from(&list, first).await.map(|(_, i)| i) }
        };
        assert_eq!(index(format!("{a},{b}"), 0).await.unwrap(), 0);
        assert_eq!(index(format!("{a},{b}"), 1).await.unwrap(), 1);
        assert_eq!(index(format!("{closed},{b}"), 0).await.unwrap(), 1);
        assert_eq!(
            index(format!("{a},{closed}"), 1).await.unwrap(),
            0,
            "wraps round"
        );
        let err = index(format!("{closed},{closed}"), 1).await.unwrap_err();
        assert!(
            matches!(err, DialError::Unreachable { attempts: 1, .. }),
            "{err:?}"
        );
    }
}
