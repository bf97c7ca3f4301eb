//! pmmux plugin `mqtt`: matches an MQTT client by its first packet, a CONNECT (MQTT 3.1, 3.1.1 and
//! 5.0; the OASIS MQTT 3.1.1 standard §3.1 and MQTT 5.0 §3.1). Takes no params. Detection only:
//! matched connections are forwarded to the backend's `target`.
//!
//! What is checked, in order, as the bytes arrive (so a foreign protocol is refused from its first
//! byte, which must be `0x10`):
//! * the fixed header: packet type CONNECT with flags 0, then the remaining length as a variable
//!   byte integer (at most four bytes);
//! * the protocol name and level: `MQTT` with level 4 (3.1.1) or 5 (5.0), or `MQIsdp` with level 3
//!   (3.1);
//! * the connect flags (reserved bit clear, will QoS not 3, no will QoS or retain without a will)
//!   and the keep alive;
//! * for 5.0, the properties' length (the properties are skipped);
//! * the client identifier: a length-prefixed UTF-8 string, inside the remaining length.
//!
//! The verdict comes once the client identifier is complete; the will, user name and password that
//! may follow are not waited for.
//!
//! Properties on a match: `mqtt.version` (`3.1`, `3.1.1` or `5.0`) and `mqtt.client_id` (possibly
//! empty: the server then assigns one).

use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection, Property};

/// What the first bytes of a connection say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A CONNECT, as far as its client identifier.
    Complete(Connect),
    /// Valid so far; more bytes are needed.
    Incomplete,
    /// Not an MQTT CONNECT, with the reason.
    Invalid(&'static str),
}

/// The parts of a CONNECT packet the backend reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// `3.1`, `3.1.1` or `5.0`.
    pub version: &'static str,
    /// The client identifier.
    pub client_id: String,
}

/// A cursor over the preview; running out of bytes means "incomplete".
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Parse> {
        let end = self.pos.checked_add(n).ok_or(Parse::Invalid("length overflow"))?;
        let out = self.bytes.get(self.pos..end).ok_or(Parse::Incomplete)?;
        self.pos = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, Parse> {
        self.take(1).map(|b| b.first().copied().unwrap_or_default())
    }

    fn u16(&mut self) -> Result<usize, Parse> {
        let hi = self.byte()?;
        let lo = self.byte()?;
        Ok(usize::from(u16::from_be_bytes([hi, lo])))
    }

    /// A variable byte integer (MQTT 5.0 §1.5.5): at most four bytes, 7 bits each.
    fn varint(&mut self) -> Result<usize, Parse> {
        let mut value = 0usize;
        for i in 0..4 {
            let b = self.byte()?;
            value |= usize::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Parse::Invalid("variable byte integer longer than four bytes"))
    }

    /// Checks that the bytes seen so far start `expected`, then takes all of it.
    fn expect(&mut self, expected: &[u8], why: &'static str) -> Result<(), Parse> {
        let seen = self.bytes.get(self.pos..).unwrap_or_default();
        let n = seen.len().min(expected.len());
        if seen.get(..n) != expected.get(..n) {
            return Err(Parse::Invalid(why));
        }
        self.take(expected.len()).map(|_| ())
    }
}

/// Parses the start of a connection as an MQTT CONNECT.
pub fn parse(preview: &[u8]) -> Parse {
    match parse_connect(preview) {
        Ok(connect) => Parse::Complete(connect),
        Err(verdict) => verdict,
    }
}

fn parse_connect(preview: &[u8]) -> Result<Connect, Parse> {
    let mut r = Reader { bytes: preview, pos: 0 };
    r.expect(&[0x10], "not a CONNECT packet with flags 0")?;
    let remaining = r.varint()?;
    let body_start = r.pos;
    // The protocol name: its length's first byte is 0, the second says which name.
    r.expect(&[0], "protocol name length")?;
    let name: &[u8] = match r.byte()? {
        4 => b"MQTT",
        6 => b"MQIsdp",
        _ => return Err(Parse::Invalid("protocol name is neither MQTT nor MQIsdp")),
    };
    r.expect(name, "protocol name is neither MQTT nor MQIsdp")?;
    let version = match (name, r.byte()?) {
        (b"MQTT", 4) => "3.1.1",
        (b"MQTT", 5) => "5.0",
        (b"MQIsdp", 3) => "3.1",
        _ => return Err(Parse::Invalid("unknown protocol level")),
    };
    let flags = r.byte()?;
    let will = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    if flags & 0x01 != 0 {
        return Err(Parse::Invalid("reserved connect flag set"));
    }
    if will_qos == 3 || (!will && (will_qos != 0 || will_retain)) {
        return Err(Parse::Invalid("invalid will flags"));
    }
    r.u16()?; // keep alive
    if version == "5.0" {
        let len = r.varint()?;
        r.take(len)?;
    }
    let id_len = r.u16()?;
    let id = r.take(id_len)?;
    if r.pos - body_start > remaining {
        return Err(Parse::Invalid("client identifier beyond the remaining length"));
    }
    let client_id = std::str::from_utf8(id).map_err(|_| Parse::Invalid("client identifier is not UTF-8"))?;
    if client_id.contains('\0') {
        return Err(Parse::Invalid("client identifier contains U+0000"));
    }
    Ok(Connect {
        version,
        client_id: client_id.to_owned(),
    })
}

/// An `mqtt` backend.
#[derive(Debug, Clone, Default)]
pub struct Mqtt;

impl Mqtt {
    /// Builds the backend; `mqtt` has no params, so any given are an error.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        spec.no_params()?;
        Ok(Mqtt)
    }

    /// Detection over the bytes previewed so far.
    pub fn detect_stream(&self, preview: &[u8]) -> Detection {
        match parse(preview) {
            Parse::Complete(connect) => Detection::Match(vec![
                Property::new("mqtt.version", connect.version),
                Property::new("mqtt.client_id", connect.client_id),
            ]),
            Parse::Incomplete => Detection::NeedMore,
            Parse::Invalid(_) => Detection::NoMatch,
        }
    }
}

impl Backend for Mqtt {
    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        self.detect_stream(preview)
    }
}

export_plugin! {
    name: "mqtt",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "mqtt" => Mqtt::new },
}
