//! Locating client Initial packets in a UDP datagram (RFC 9000 §17.2, RFC 9369 §3): the long header,
//! its version, connection IDs, token and length, and the coalesced packets that follow. Header
//! protection is still on: [`crate::keys`] removes it.

/// QUIC version 1 on the wire (RFC 9000).
pub const VERSION_1: u32 = 0x0000_0001;
/// QUIC version 2 on the wire (RFC 9369).
pub const VERSION_2: u32 = 0x6b33_43cf;
/// A client pads every datagram carrying an Initial to at least this many bytes (RFC 9000 §14.1); a
/// server discards smaller ones.
pub const MIN_INITIAL_DATAGRAM: usize = 1200;
/// The shortest Destination Connection ID of a client's first Initial (RFC 9000 §7.2).
pub const MIN_CLIENT_DCID: usize = 8;
/// The longest connection ID in QUIC v1 and v2 (RFC 9000 §17.2).
pub const MAX_CID: usize = 20;
/// The most coalesced packets read from one datagram.
pub const MAX_PACKETS_PER_DATAGRAM: usize = 64;

/// A QUIC version this plugin can decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// QUIC version 1 (RFC 9000, RFC 9001).
    V1,
    /// QUIC version 2 (RFC 9369): other salt, labels and packet type bits.
    V2,
}

impl Version {
    /// The version of a version field, if supported.
    pub fn from_wire(version: u32) -> Option<Self> {
        match version {
            VERSION_1 => Some(Version::V1),
            VERSION_2 => Some(Version::V2),
            _ => None,
        }
    }

    /// The long-header packet type bits of an Initial packet (RFC 9000 §17.2, RFC 9369 §3.2).
    pub fn initial_type(self) -> u8 {
        match self {
            Version::V1 => 0b00,
            Version::V2 => 0b01,
        }
    }

    /// The long-header packet type bits of a Retry packet.
    pub fn retry_type(self) -> u8 {
        match self {
            Version::V1 => 0b11,
            Version::V2 => 0b00,
        }
    }

    /// The `quic.version` property: `1` or `2`.
    pub fn name(self) -> &'static str {
        match self {
            Version::V1 => "1",
            Version::V2 => "2",
        }
    }

    /// The version field on the wire.
    pub fn wire(self) -> u32 {
        match self {
            Version::V1 => VERSION_1,
            Version::V2 => VERSION_2,
        }
    }
}

/// A client Initial packet inside a datagram, header protection still on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialPacket<'a> {
    /// The packet's version.
    pub version: Version,
    /// The Destination Connection ID (from which the Initial keys derive).
    pub dcid: &'a [u8],
    /// The whole packet: header, protected packet number and protected payload (AEAD tag included).
    pub bytes: &'a [u8],
    /// Where the (protected) packet number starts in [`InitialPacket::bytes`].
    pub pn_offset: usize,
}

/// Reads a variable-length integer (RFC 9000 §16) at `*pos`, advancing it.
pub fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let first = *buf.get(*pos)?;
    let len = 1usize << (first >> 6);
    let bytes = buf.get(*pos..pos.checked_add(len)?)?;
    let mut value = u64::from(first & 0x3f);
    for &b in bytes.iter().skip(1) {
        value = value << 8 | u64::from(b);
    }
    *pos += len;
    Some(value)
}

/// One long-header packet's fields, as far as this module needs them.
struct LongHeader<'a> {
    version: u32,
    packet_type: u8,
    dcid: &'a [u8],
    /// For Initial, 0-RTT and Handshake packets: where the packet number starts and where the packet
    /// ends (from the Length field), relative to the packet's first byte.
    body: Option<(usize, usize)>,
}

/// Reads the long header at the start of `buf`; `Err` says why it is not one this module accepts.
fn long_header(buf: &[u8]) -> Result<LongHeader<'_>, &'static str> {
    let first = *buf.first().ok_or("empty")?;
    if first & 0x80 == 0 {
        return Err("short header packet");
    }
    let version = u32::from_be_bytes(
        buf.get(1..5)
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .ok_or("truncated version")?,
    );
    if version == 0 {
        return Err("version negotiation packet");
    }
    let mut pos = 5;
    let dcid_len = usize::from(*buf.get(pos).ok_or("truncated header")?);
    let dcid = buf.get(pos + 1..pos + 1 + dcid_len).ok_or("truncated connection id")?;
    pos += 1 + dcid_len;
    let scid_len = usize::from(*buf.get(pos).ok_or("truncated header")?);
    pos += 1 + scid_len;
    if dcid_len > MAX_CID || scid_len > MAX_CID {
        // Only v1 and v2 limit them; other versions are refused later anyway.
        if Version::from_wire(version).is_some() {
            return Err("connection id longer than 20 bytes");
        }
    }
    if pos > buf.len() {
        return Err("truncated connection id");
    }
    let packet_type = (first >> 4) & 0x03;
    let Some(v) = Version::from_wire(version) else {
        return Ok(LongHeader {
            version,
            packet_type,
            dcid,
            body: None,
        });
    };
    if packet_type == v.retry_type() {
        return Ok(LongHeader {
            version,
            packet_type,
            dcid,
            body: None,
        });
    }
    if packet_type == v.initial_type() {
        let token_len = varint(buf, &mut pos).ok_or("truncated token length")?;
        let token_len = usize::try_from(token_len).map_err(|_| "token longer than the datagram")?;
        pos = pos
            .checked_add(token_len)
            .filter(|&p| p <= buf.len())
            .ok_or("token longer than the datagram")?;
    }
    let length = varint(buf, &mut pos).ok_or("truncated length")?;
    let end = usize::try_from(length)
        .ok()
        .and_then(|l| pos.checked_add(l))
        .filter(|&e| e <= buf.len())
        .ok_or("packet longer than the datagram")?;
    Ok(LongHeader {
        version,
        packet_type,
        dcid,
        body: Some((pos, end)),
    })
}

/// The client Initial packets of a datagram. The first packet must be a QUIC v1 or v2 Initial with a
/// fixed bit of 1 and a Destination Connection ID of 8 to 20 bytes, in a datagram of at least 1200
/// bytes; the Initial packets coalesced after it with the same version and DCID follow it (0-RTT and
/// Handshake packets are skipped), at most [`MAX_PACKETS_PER_DATAGRAM`]. Anything after the last length-delimited packet (a short-header
/// packet, padding) is ignored, as is a coalesced packet with another DCID (RFC 9000 §12.2).
pub fn initial_packets(datagram: &[u8]) -> Result<Vec<InitialPacket<'_>>, &'static str> {
    let header = long_header(datagram)?;
    let version = Version::from_wire(header.version).ok_or("not QUIC version 1 or 2")?;
    let first = datagram.first().copied().unwrap_or_default();
    if first & 0x40 == 0 {
        return Err("fixed bit is 0");
    }
    if header.packet_type == version.retry_type() {
        return Err("retry packet");
    }
    if header.packet_type != version.initial_type() {
        return Err("not an Initial packet");
    }
    if !(MIN_CLIENT_DCID..=MAX_CID).contains(&header.dcid.len()) {
        return Err("destination connection id shorter than a client's first (8 bytes)");
    }
    if datagram.len() < MIN_INITIAL_DATAGRAM {
        return Err("datagram shorter than 1200 bytes");
    }
    let dcid = header.dcid;
    let mut packets = Vec::new();
    let mut rest = datagram;
    let mut current = header;
    for _ in 0..MAX_PACKETS_PER_DATAGRAM {
        let Some((pn_offset, end)) = current.body else { break };
        if current.packet_type == version.initial_type() {
            packets.push(InitialPacket {
                version,
                dcid,
                bytes: rest.get(..end).unwrap_or_default(),
                pn_offset,
            });
        }
        rest = rest.get(end..).unwrap_or_default();
        match long_header(rest) {
            Ok(next) if next.version == version.wire() && next.dcid == dcid => current = next,
            _ => break,
        }
    }
    Ok(packets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_of_every_length() {
        // RFC 9000 §A.1 examples.
        for (bytes, value) in [
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c][..],
                151_288_809_941_952_652u64,
            ),
            (&[0x9d, 0x7f, 0x3e, 0x7d][..], 494_878_333),
            (&[0x7b, 0xbd][..], 15_293),
            (&[0x25][..], 37),
            (&[0x40, 0x25][..], 37),
        ] {
            let mut pos = 0;
            assert_eq!(varint(bytes, &mut pos), Some(value));
            assert_eq!(pos, bytes.len());
        }
        let mut pos = 0;
        assert_eq!(varint(&[0x80, 1], &mut pos), None);
        assert_eq!(varint(&[], &mut pos), None);
    }

    #[test]
    fn headers_that_are_not_client_initials() {
        let mut dg = vec![0u8; 1200];
        dg[..6].copy_from_slice(&[0xc0, 0, 0, 0, 1, 4]);
        assert_eq!(
            initial_packets(&dg),
            Err("destination connection id shorter than a client's first (8 bytes)")
        );
        dg[0] = 0x40;
        assert_eq!(initial_packets(&dg), Err("short header packet"));
        dg[..5].copy_from_slice(&[0xc0, 0, 0, 0, 0]);
        assert_eq!(initial_packets(&dg), Err("version negotiation packet"));
        dg[..5].copy_from_slice(&[0xf0, 0, 0, 0, 1]);
        assert_eq!(initial_packets(&dg), Err("retry packet"));
        dg[..5].copy_from_slice(&[0xe0, 0, 0, 0, 1]);
        assert_eq!(initial_packets(&dg), Err("not an Initial packet"));
        dg[..5].copy_from_slice(&[0xc0, 0xff, 0, 0, 0x1d]);
        assert_eq!(initial_packets(&dg), Err("not QUIC version 1 or 2"));
        dg[..6].copy_from_slice(&[0x80, 0, 0, 0, 1, 8]);
        assert_eq!(initial_packets(&dg), Err("fixed bit is 0"));
        dg[..6].copy_from_slice(&[0xc0, 0, 0, 0, 1, 21]);
        assert_eq!(initial_packets(&dg), Err("connection id longer than 20 bytes"));
        assert_eq!(initial_packets(&[0xc0, 0, 0]), Err("truncated version"));
    }
}
