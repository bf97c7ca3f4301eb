//! The `[port_mapping]` table (how to reach the gateway) and a listener's `public_port`.

use std::net::IpAddr;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::PublicPort;

/// Default lifetime asked for, in seconds.
pub const DEFAULT_LIFETIME_S: u32 = 3600;
/// Default renewal lead, in seconds.
pub const DEFAULT_RENEWAL_LEAD_S: u32 = 60;
/// Shortest lifetime accepted: gateways clamp shorter ones anyway (PCP's suggested minimum is
/// 120 s) and a renewal every few seconds only adds load.
pub const MIN_LIFETIME_S: u32 = 10;

/// Which protocol to speak to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolChoice {
    /// PCP, then NAT-PMP, then UPnP IGD: the first that answers.
    #[default]
    Auto,
    /// UPnP IGD only.
    Upnp,
    /// NAT-PMP only.
    Pmp,
    /// PCP only.
    Pcp,
}

/// The validated `[port_mapping]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMappingConfig {
    /// Protocol.
    pub protocol: ProtocolChoice,
    /// The gateway's address (`None`: the default route's gateway; for UPnP, whoever answers
    /// the SSDP search).
    pub gateway: Option<IpAddr>,
    /// The network interface to search on and take this host's address from (`None`: the one
    /// toward the gateway).
    pub interface: Option<String>,
    /// Lifetime asked for each mapping, in seconds.
    pub lifetime_s: u32,
    /// Renew this many seconds before a mapping expires.
    pub renewal_lead_s: u32,
}

impl Default for PortMappingConfig {
    fn default() -> Self {
        PortMappingConfig {
            protocol: ProtocolChoice::Auto,
            gateway: None,
            interface: None,
            lifetime_s: DEFAULT_LIFETIME_S,
            renewal_lead_s: DEFAULT_RENEWAL_LEAD_S,
        }
    }
}

/// `[port_mapping]` as serde reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPortMapping {
    #[serde(default)]
    protocol: ProtocolChoice,
    gateway: Option<Spanned<String>>,
    interface: Option<String>,
    lifetime_s: Option<Spanned<u32>>,
    renewal_lead_s: Option<Spanned<u32>>,
}

type Report<'a> = dyn FnMut(Option<Range<usize>>, String) + 'a;

/// Validates `[port_mapping]` (absent: the defaults).
pub(crate) fn validate(raw: Option<RawPortMapping>, report: &mut Report<'_>) -> PortMappingConfig {
    let Some(raw) = raw else {
        return PortMappingConfig::default();
    };
    let gateway = raw.gateway.and_then(|g| match g.get_ref().parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            report(
                Some(g.span()),
                format!("port_mapping.gateway `{}` is not an IP address", g.get_ref()),
            );
            None
        }
    });
    let lifetime_s = match raw.lifetime_s {
        Some(l) if *l.get_ref() < MIN_LIFETIME_S => {
            report(
                Some(l.span()),
                format!("port_mapping.lifetime_s must be at least {MIN_LIFETIME_S}"),
            );
            DEFAULT_LIFETIME_S
        }
        Some(l) => l.into_inner(),
        None => DEFAULT_LIFETIME_S,
    };
    let renewal_lead_s = match raw.renewal_lead_s {
        Some(l) if *l.get_ref() >= lifetime_s => {
            report(
                Some(l.span()),
                format!("port_mapping.renewal_lead_s must be below lifetime_s ({lifetime_s})"),
            );
            DEFAULT_RENEWAL_LEAD_S.min(lifetime_s / 2)
        }
        Some(l) => l.into_inner(),
        None => DEFAULT_RENEWAL_LEAD_S.min(lifetime_s / 2),
    };
    if raw.interface.as_deref().is_some_and(|i| i.is_empty() || i.len() > 15) {
        report(
            None,
            "port_mapping.interface must be an interface name (1 to 15 bytes)".into(),
        );
    }
    PortMappingConfig {
        protocol: raw.protocol,
        gateway,
        interface: raw.interface.filter(|i| !i.is_empty()),
        lifetime_s,
        renewal_lead_s,
    }
}

/// A listener's `public_port`: a port number, or `"?"` for any.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawPublicPort {
    /// A number.
    Number(i64),
    /// `"?"`.
    Text(String),
}

/// Reads `public_port`; `Err` says why it is not one.
pub(crate) fn public_port(raw: &RawPublicPort) -> Result<PublicPort, String> {
    match raw {
        RawPublicPort::Number(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p > 0)
            .map(PublicPort::Fixed)
            .ok_or_else(|| format!("public_port {n} is not a port (1..=65535)")),
        RawPublicPort::Text(t) if t == "?" => Ok(PublicPort::Any),
        RawPublicPort::Text(t) => Err(format!(
            "public_port `{t}` is not a port number or \"?\" (any port the gateway gives)"
        )),
    }
}
