//! Client-wide settings: where the cluster is and how connections behave.
//!
//! [`ClientConfig`] is shared by the producer, consumer and admin client built from one
//! [`crate::Client`]; each of those has its own config for its own knobs
//! ([`crate::ProducerConfig`], [`crate::ConsumerConfig`]). Every field's doc states its default
//! and bounds; [`ClientConfig::validate`] names the bad field.

use std::time::Duration;

use strata_protocol::frame::DEFAULT_MAX_FRAME_BYTES;
use strata_protocol::host_aliases::HostAliases;

use crate::error::{Error, Result};

/// The broker's default port.
pub const DEFAULT_PORT: u16 = 9700;

/// Settings for connections and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Addresses (`host:port`) to discover the cluster from. At least one. Only used to fetch
    /// metadata; after that the client talks to the brokers the metadata names. An address
    /// without a port gets [`DEFAULT_PORT`].
    pub bootstrap: Vec<String>,
    /// Sent in every request header, for the broker's logs. Default `strata-client`.
    pub client_id: Option<String>,
    /// Longest to wait for a TCP connection and the `ApiVersions` handshake. Default 10 s.
    pub connect_timeout: Duration,
    /// Longest to wait for a response (time spent queued behind other requests on the same
    /// connection included). A request that times out closes its connection — the broker
    /// answers a connection's requests in order, so everything queued behind it is stuck too —
    /// and every other request pending on it fails with [`Error::ConnectionClosed`]. Fetches get
    /// their long-poll wait on top of this. Default 30 s.
    pub request_timeout: Duration,
    /// Most requests in flight on one connection; more wait for a slot. 1..=4096, default 256.
    pub max_in_flight_requests: usize,
    /// Largest response frame accepted; a bigger one closes the connection. Default 64 MiB.
    pub max_frame_bytes: usize,
    /// Cached metadata older than this is refreshed before use. Default 5 min.
    pub metadata_max_age: Duration,
    /// Least time between two metadata refreshes forced by errors, so a broker that keeps
    /// answering `NOT_LEADER` is not hammered. Default 100 ms.
    pub metadata_refresh_backoff: Duration,
    /// DNS names standing for IP addresses, consulted before the system resolver for every
    /// broker address (bootstrap and those in metadata). For reaching brokers that advertise
    /// names this machine cannot resolve, e.g. a StatefulSet's pod names in tests. Default none.
    pub host_aliases: HostAliases,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            bootstrap: vec![format!("127.0.0.1:{DEFAULT_PORT}")],
            client_id: Some("strata-client".to_owned()),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_in_flight_requests: 256,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            metadata_max_age: Duration::from_secs(300),
            metadata_refresh_backoff: Duration::from_millis(100),
            host_aliases: HostAliases::new(),
        }
    }
}

impl ClientConfig {
    /// Defaults, bootstrapping from `bootstrap` — one address or several, comma-separated.
    pub fn new(bootstrap: &str) -> Self {
        Self {
            bootstrap: bootstrap
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(with_default_port)
                .collect(),
            ..Self::default()
        }
    }

    /// Checks every field's bounds.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        if self.bootstrap.is_empty() {
            return Err(Error::config("bootstrap", "at least one address is needed"));
        }
        if self.connect_timeout.is_zero() {
            return Err(Error::config("connect_timeout", "must be positive"));
        }
        if self.request_timeout.is_zero() {
            return Err(Error::config("request_timeout", "must be positive"));
        }
        if !(1..=4096).contains(&self.max_in_flight_requests) {
            return Err(Error::config("max_in_flight_requests", "must be in 1..=4096"));
        }
        if self.max_frame_bytes < 1024 || u32::try_from(self.max_frame_bytes).is_err() {
            return Err(Error::config("max_frame_bytes", "must be in 1 KiB..=4 GiB"));
        }
        Ok(())
    }
}

/// Appends the default port to an address that has none (`host` → `host:9700`; IPv6 literals
/// need brackets to carry a port: `[::1]:9700`).
pub(crate) fn with_default_port(addr: &str) -> String {
    let has_port = match addr.rsplit_once(':') {
        Some((host, port)) => {
            !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    };
    if has_port {
        addr.to_owned()
    } else {
        format!("{addr}:{DEFAULT_PORT}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_list_parses_and_gets_default_ports() {
        let c = ClientConfig::new("a:1, b ,[::1]:5,");
        assert_eq!(c.bootstrap, ["a:1", "b:9700", "[::1]:5"]);
        assert!(c.validate().is_ok());
        assert!(ClientConfig::new("").validate().is_err());
    }
}
