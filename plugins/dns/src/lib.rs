//! pmmux plugin `dns`: matches a client whose first message is a DNS query, over UDP (the first
//! datagram) or TCP (RFC 7766: a 2-byte length, then the message), optionally only for some names
//! or query types. Detection only: matched traffic is forwarded to the backend's `target` (the host
//! relays the replies), nothing is resolved or answered here.
//!
//! Params (both optional, see [`matcher`]):
//!
//! ```toml
//! [backend.params]
//! name_suffix = ["example.com", "in-addr.arpa"]   # or one string; on label boundaries, any case
//! qtype = ["A", "AAAA"]                           # or one string; mnemonics or TYPE<n>
//! ```
//!
//! Properties on a match:
//! * `dns.qname`: the question's name, lowercase, without the trailing dot (`www.example.com`; the
//!   root is `.`); `.` and `\` inside a label and bytes outside printable ASCII are escaped as in
//!   master files (`\.`, `\\`, `\DDD`);
//! * `dns.qtype`: the question's type as a mnemonic (`A`, `AAAA`, `HTTPS`, `ANY`, ...), else
//!   `TYPE<n>`.
//!
//! Health check (when configured in the host): a UDP query for the root's `NS` records; healthy on a
//! reply with the query's id and any response code but SERVFAIL (a server that refuses or does not
//! know the root is up). A DNS server reachable over TCP only fails this check. See
//! [`health_verdict`].
//!
//! What counts as a query is in [`message`]: a header with QR = 0 and opcode QUERY, one question,
//! no answers, and nothing malformed anywhere in the message. A datagram is whole, so UDP is decided
//! at once; on TCP the backend answers `NeedMore` until the whole first message is there, or
//! `NoMatch` as soon as the bytes rule out a query (an HTTP request or a TLS ClientHello is refused
//! from its first six bytes). A query longer than the host's preview limit (16 KiB by default) never
//! completes and ends as no match; real queries are far smaller.

pub mod matcher;
pub mod message;
pub mod rrtype;

use pmmux_plugin_api::{
    export_plugin, Backend, BackendSpec, ConnInfo, Detection, HealthProbe, HealthTransport, HealthVerdict, Property,
    UdpRouting,
};

use matcher::{Matcher, Params};
use message::{parse_query, parse_tcp, Parse, Query};

/// A `dns` backend.
#[derive(Debug, Clone, Default)]
pub struct Dns {
    matcher: Matcher,
}

impl Dns {
    /// Builds the backend from its params; the error tells the user what is wrong with them.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        let params: Params = spec.params()?;
        Ok(Dns {
            matcher: Matcher::from_params(params)?,
        })
    }

    /// UDP detection over one whole datagram: `Match` or `NoMatch`, never `NeedMore`.
    pub fn detect_message(&self, message: &[u8]) -> Detection {
        match parse_query(message) {
            Ok(query) => self.verdict(&query),
            Err(_) => Detection::NoMatch,
        }
    }

    /// TCP detection over the bytes previewed so far.
    pub fn detect_stream(&self, preview: &[u8]) -> Detection {
        match parse_tcp(preview) {
            Parse::Complete(query) => self.verdict(&query),
            Parse::Incomplete => Detection::NeedMore,
            Parse::Invalid(_) => Detection::NoMatch,
        }
    }

    fn verdict(&self, query: &Query) -> Detection {
        if self.matcher.matches(query) {
            Detection::Match(properties(query))
        } else {
            Detection::NoMatch
        }
    }
}

impl Backend for Dns {
    /// Each DNS query stands alone: a resolver reusing its source port asks about any name.
    fn udp_routing(&self) -> UdpRouting {
        UdpRouting::PerMessage
    }

    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        self.detect_stream(preview)
    }

    fn can_handle_message(&self, _client: &ConnInfo<'_>, message: &[u8]) -> Detection {
        self.detect_message(message)
    }

    fn health_probe(&self) -> Option<HealthProbe> {
        Some(HealthProbe {
            transport: HealthTransport::Udp,
            send: HEALTH_QUERY.to_vec(),
        })
    }

    fn health_verdict(&self, response: &[u8], _closed: bool) -> HealthVerdict {
        health_verdict(response)
    }
}

/// The health probe: id `0x504d`, no recursion wanted, one question: `.` IN NS.
pub const HEALTH_QUERY: [u8; 17] = [0x50, 0x4d, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1];

/// Judges one reply datagram to [`HEALTH_QUERY`].
pub fn health_verdict(reply: &[u8]) -> HealthVerdict {
    if reply.len() < 12 || reply[..2] != HEALTH_QUERY[..2] || reply[2] & 0x80 == 0 {
        return HealthVerdict::Unhealthy("the answer is not a DNS reply to the check's query".into());
    }
    match reply[3] & 0x0f {
        2 => HealthVerdict::Unhealthy("answered SERVFAIL".into()),
        _ => HealthVerdict::Healthy,
    }
}

#[cfg(test)]
mod health_tests {
    use super::*;

    #[test]
    fn the_probe_is_a_query_this_plugin_itself_accepts() {
        assert!(matches!(
            Dns::default().detect_message(&HEALTH_QUERY),
            Detection::Match(_)
        ));
    }

    #[test]
    fn replies_with_the_id_are_healthy_unless_servfail() {
        let mut reply = HEALTH_QUERY.to_vec();
        reply[2] |= 0x80; // QR
        assert_eq!(health_verdict(&reply), HealthVerdict::Healthy);
        reply[3] = 5; // REFUSED: the server is up
        assert_eq!(health_verdict(&reply), HealthVerdict::Healthy);
        reply[3] = 2;
        assert!(matches!(health_verdict(&reply), HealthVerdict::Unhealthy(_)));
        // The query itself echoed back (QR clear), another id, or a short datagram.
        assert!(matches!(health_verdict(&HEALTH_QUERY), HealthVerdict::Unhealthy(_)));
        let mut other = HEALTH_QUERY.to_vec();
        other[0] = 0;
        other[2] |= 0x80;
        assert!(matches!(health_verdict(&other), HealthVerdict::Unhealthy(_)));
        assert!(matches!(health_verdict(b"\x50\x4d"), HealthVerdict::Unhealthy(_)));
    }
}

/// The `dns.*` properties of a query.
pub fn properties(query: &Query) -> Vec<Property> {
    vec![
        Property::new("dns.qname", query.qname()),
        Property::new("dns.qtype", query.qtype_name()),
    ]
}

export_plugin! {
    name: "dns",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "dns" => Dns::new },
}
