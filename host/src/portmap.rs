//! NAT port mapping: asks the gateway (UPnP IGD, NAT-PMP or PCP) to forward a public port to each
//! listener that has a `public_port`, renews the mappings before they expire, makes them again when
//! the gateway forgets them, and removes them when the listener goes away or pmmux stops.
//!
//! [`engine`] is the sans-I/O state machine (what to do and when); [`driver`] runs it on the
//! runtime and carries out its requests through [`upnp`] (igd-next) or [`pmp`] (crab_nat, NAT-PMP
//! and PCP); [`discover`] finds the gateway and this host's address toward it. A gateway that is
//! absent or refuses is a warning and a retry with backoff, never a reason to stop serving.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub(crate) mod config;
pub(crate) mod discover;
pub(crate) mod driver;
pub(crate) mod engine;
pub(crate) mod pmp;
pub(crate) mod render;
pub(crate) mod upnp;

pub(crate) use config::PortMappingConfig;
pub(crate) use driver::PortMapper;

/// The public port a listener asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PublicPort {
    /// This port.
    Fixed(u16),
    /// Whichever port the gateway gives (`?`).
    Any,
}

/// The transport of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Transport {
    /// `tcp` or `udp`.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// A port-mapping protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// UPnP Internet Gateway Device (WANIPConnection).
    Upnp,
    /// NAT-PMP (RFC 6886).
    Pmp,
    /// PCP (RFC 6887).
    Pcp,
}

impl Protocol {
    /// `upnp`, `pmp` or `pcp`.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Upnp => "upnp",
            Protocol::Pmp => "pmp",
            Protocol::Pcp => "pcp",
        }
    }
}

/// Port mapping as `/status` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PortMapStatus {
    /// False when no listener has a `public_port`.
    pub enabled: bool,
    /// The protocol in use (`upnp`, `pmp`, `pcp`), once a gateway answered.
    pub protocol: Option<String>,
    /// The gateway's address, once found.
    pub gateway: Option<String>,
    /// The gateway's external address, once told.
    pub external_address: Option<String>,
    /// The last gateway-wide error (no gateway, no answer).
    pub last_error: Option<String>,
    /// Failed gateway discoveries since start.
    #[serde(default)]
    pub discovery_failures: u64,
    /// One entry per listener and transport with a `public_port`.
    pub mappings: Vec<MappingStatus>,
}

/// One mapping as `/status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MappingStatus {
    /// Listener name.
    pub listener: String,
    /// `tcp` or `udp`.
    pub transport: String,
    /// The local port traffic is forwarded to.
    pub internal_port: u16,
    /// The public port asked for (`?`: any).
    pub requested_public_port: String,
    /// The public port the gateway granted, while active.
    pub public_port: Option<u16>,
    /// `pending`, `requesting`, `active` or `failed`.
    pub state: String,
    /// Seconds until the mapping expires unless renewed (`None`: permanent or not active).
    pub lifetime_left_s: Option<u64>,
    /// Renewals since the mapping was first made.
    pub renewals: u64,
    /// Failed requests since start.
    pub failures: u64,
    /// The last error, until the next success.
    pub last_error: Option<String>,
}

/// This host's address as the gateway sees it, and the gateway's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route {
    /// The gateway.
    pub gateway: IpAddr,
    /// This host's address on the gateway's network.
    pub local: IpAddr,
}
