//! Judging a client's datagrams (oldest first): the first must start with a client Initial that
//! opens with the client Initial keys of its DCID and whose frames are allowed in an Initial; the
//! CRYPTO frames of every Initial packet of the same version and DCID, in that and the later
//! datagrams, are reassembled from offset 0 and parsed as a ClientHello.
//!
//! Later datagrams that carry no such packet (or one that does not open, or has frames not allowed
//! in an Initial) are skipped, not held against the client: what was judged on the earlier ones
//! stands. The work is bounded: at most [`MAX_DATAGRAMS`] datagrams and [`MAX_INITIAL_PACKETS`]
//! Initial packets are read, and the crypto stream is kept up to 64 KiB
//! ([`crate::crypto_stream::MAX_CRYPTO_BYTES`]); a ClientHello still incomplete beyond those bounds
//! is not ours.

use pmmux_tls_core::client_hello::{parse_handshake, ClientHello, Parse};

use crate::crypto_stream::CryptoStream;
use crate::frames::crypto_frames;
use crate::keys::ClientInitialKeys;
use crate::packet::{initial_packets, Version};

/// The most datagrams of one client read.
pub const MAX_DATAGRAMS: usize = 64;
/// The most Initial packets decrypted for one client.
pub const MAX_INITIAL_PACKETS: usize = 64;

/// What a client's datagrams so far are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Not the first flight of a QUIC v1/v2 client; the text says why.
    NotQuic(&'static str),
    /// A client Initial decrypted, but the ClientHello is not whole yet. `started` when the crypto
    /// stream's first bytes arrived and are the start of a ClientHello.
    Incomplete {
        /// The QUIC version.
        version: Version,
        /// Whether the ClientHello's first bytes are there.
        started: bool,
    },
    /// The whole ClientHello.
    Complete {
        /// The QUIC version.
        version: Version,
        /// The parsed ClientHello.
        hello: Box<ClientHello>,
    },
}

/// Judges a client's datagrams, oldest first.
pub fn judge(datagrams: &[&[u8]]) -> Judgement {
    let Some(first) = datagrams.first() else {
        return Judgement::NotQuic("no datagram");
    };
    let packets = match initial_packets(first) {
        Ok(p) => p,
        Err(why) => return Judgement::NotQuic(why),
    };
    let Some(head) = packets.first() else {
        return Judgement::NotQuic("no Initial packet");
    };
    let (version, dcid) = (head.version, head.dcid);
    let keys = ClientInitialKeys::new(version, dcid);
    let mut stream = CryptoStream::default();
    let mut budget = MAX_INITIAL_PACKETS;
    for (i, packet) in packets.iter().enumerate().take(MAX_INITIAL_PACKETS) {
        budget = budget.saturating_sub(1);
        let frames = match keys.open(packet) {
            Ok(opened) => crypto_frames(&opened.payload).map(|f| f.into_iter().for_each(|f| stream.add(&f))),
            // The first packet decides; a coalesced one that does not open is dropped (RFC 9001 §5).
            Err(_) if i == 0 => return Judgement::NotQuic("Initial packet does not decrypt with its DCID's keys"),
            Err(_) => continue,
        };
        if let Err(why) = frames {
            return Judgement::NotQuic(why);
        }
    }
    'datagrams: for datagram in datagrams.iter().skip(1).take(MAX_DATAGRAMS - 1) {
        let Ok(packets) = initial_packets(datagram) else {
            continue;
        };
        for packet in packets.iter().filter(|p| p.version == version && p.dcid == dcid) {
            if budget == 0 {
                break 'datagrams;
            }
            budget -= 1;
            let Ok(opened) = keys.open(packet) else { continue };
            // Decoded whole before any is added: a packet with a bad frame adds nothing.
            if let Ok(frames) = crypto_frames(&opened.payload) {
                frames.iter().for_each(|f| stream.add(f));
            }
        }
    }
    let gave_up = budget == 0 || datagrams.len() >= MAX_DATAGRAMS || stream.is_full();
    match parse_handshake(stream.contiguous()) {
        Parse::Complete(hello) => Judgement::Complete {
            version,
            hello: Box::new(hello),
        },
        Parse::Invalid(why) => Judgement::NotQuic(why),
        Parse::Incomplete if gave_up => Judgement::NotQuic("ClientHello beyond the bounds kept"),
        Parse::Incomplete => Judgement::Incomplete {
            version,
            started: !stream.contiguous().is_empty(),
        },
    }
}
