//! Host aliases: a fixed map from DNS names to IP addresses that brokers and clients consult
//! before the system resolver, like entries in `/etc/hosts` that only Strata sees.
//!
//! Written `NAME=IP,NAME=IP` (`STRATA_HOST_ALIASES`, the broker's `cluster.host_aliases`, the
//! client's `ClientConfig::host_aliases`). Their use is running the brokers of a Kubernetes
//! StatefulSet on one machine, each pod's DNS name standing for a loopback address, without
//! touching the machine's resolver; outside tests, leave them unset.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// DNS names (lower case, compared case-insensitively) and the IP address each stands for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostAliases(BTreeMap<String, IpAddr>);

impl HostAliases {
    /// No aliases.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The IP address `host` stands for, if it is an alias.
    pub fn get(&self, host: &str) -> Option<IpAddr> {
        self.0.get(&host.to_ascii_lowercase()).copied()
    }

    /// `host:port` with the host replaced by its IP address if it is an alias; otherwise
    /// `address` itself, for the system resolver.
    pub fn resolve(&self, address: &str) -> String {
        if self.0.is_empty() {
            return address.to_string();
        }
        let Some((host, port)) = address.rsplit_once(':') else {
            return address.to_string();
        };
        match (self.get(host), port.parse::<u16>()) {
            (Some(ip), Ok(port)) => SocketAddr::new(ip, port).to_string(),
            _ => address.to_string(),
        }
    }
}

/// Why a host alias list did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid host alias {entry:?}: {reason}")]
pub struct HostAliasError {
    /// The entry at fault.
    pub entry: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses `NAME=IP,NAME=IP` (spaces around entries ignored; an empty string is no aliases). A
/// name is a DNS name (letters, digits, `-`, `.`, `_`); an IP is IPv4 or IPv6 without brackets.
/// A name given twice is an error.
impl FromStr for HostAliases {
    type Err = HostAliasError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut map = BTreeMap::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let err = |reason| HostAliasError {
                entry: entry.to_string(),
                reason,
            };
            let (name, ip) = entry.split_once('=').ok_or_else(|| err("expected NAME=IP"))?;
            let name = name.trim().to_ascii_lowercase();
            if name.is_empty()
                || name.len() > 253
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
            {
                return Err(err("the name must be a DNS name (letters, digits, '-', '.', '_')"));
            }
            let ip: IpAddr = ip.trim().parse().map_err(|_| err("expected an IP address after '='"))?;
            if map.insert(name, ip).is_some() {
                return Err(err("this name appears more than once"));
            }
        }
        Ok(Self(map))
    }
}

/// `NAME=IP,NAME=IP`, what [`FromStr`] reads.
impl fmt::Display for HostAliases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, ip)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{name}={ip}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resolves_and_round_trips() {
        let a: HostAliases = " strata-0.strata-headless.default.svc.cluster.local=127.0.0.11, Broker-B=::1 "
            .parse()
            .unwrap();
        assert_eq!(
            a.resolve("strata-0.strata-headless.default.svc.cluster.local:9700"),
            "127.0.0.11:9700"
        );
        assert_eq!(a.resolve("broker-b:9"), "[::1]:9");
        assert_eq!(a.resolve("BROKER-B:9"), "[::1]:9", "names are case-insensitive");
        assert_eq!(a.resolve("other:9700"), "other:9700");
        assert_eq!(a.resolve("broker-b"), "broker-b", "no port: left to the resolver");
        assert_eq!(a.resolve("broker-b:x"), "broker-b:x");
        let again: HostAliases = a.to_string().parse().unwrap();
        assert_eq!(again, a);
        assert!("".parse::<HostAliases>().unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_entries() {
        for bad in [
            "name",
            "=127.0.0.1",
            "a b=127.0.0.1",
            "a=localhost",
            "a=[::1]",
            "a=1.2.3.4,A=1.2.3.5",
        ] {
            assert!(bad.parse::<HostAliases>().is_err(), "{bad}");
        }
    }
}
