//! The QUIC Initial decoder (`quic` plugin): long-header parsing, Initial key derivation, header
//! protection and AEAD opening, frame parsing, CRYPTO reassembly and the ClientHello inside.
//!
//! Random bytes never get past the AEAD tag, so the first input byte picks a mode:
//! * `0`: the rest is raw datagrams (alone, and twice in a row), as a client would send them;
//! * `1`: the rest is a TLS handshake message; it is cut into CRYPTO frames of 64 to 1,024 bytes
//!   (bits 3-6 of the mode byte; bit 2 picks QUIC v2, bit 7 sends all but the first in reverse),
//!   each sealed into its own Initial with real keys, and judged;
//! * `2`: the rest is the plaintext frames of one Initial, sealed and judged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmmux_quic::detect::judge;
use pmmux_quic::frames::crypto_frames;
use pmmux_quic::keys::ClientInitialKeys;
use pmmux_quic::packet::{initial_packets, varint, Version};

const DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

fn push_varint(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0x3f => out.push(v as u8),
        0x40..=0x3fff => out.extend_from_slice(&(v as u16 | 0x4000).to_be_bytes()),
        0x4000..=0x3fff_ffff => out.extend_from_slice(&(v as u32 | 0x8000_0000).to_be_bytes()),
        _ => out.extend_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes()),
    }
}

/// One client Initial of `version` carrying `frames`, padded to a 1,200-byte datagram. The Length
/// is always a 4-byte varint, so the header is 20 bytes.
fn seal(version: Version, pn: u64, frames: &[u8]) -> Option<Vec<u8>> {
    const HEADER: usize = 1 + 4 + 1 + DCID.len() + 1 + 1 + 4;
    let type_bits = if version == Version::V2 { 0x10 } else { 0x00 };
    let mut header = vec![0xc0 | type_bits];
    header.extend_from_slice(&version.wire().to_be_bytes());
    header.push(DCID.len() as u8);
    header.extend_from_slice(&DCID);
    header.extend_from_slice(&[0, 0]); // no SCID, no token
    let mut payload = frames.to_vec();
    payload.resize(payload.len().max(1200 - HEADER - 4 - 16), 0);
    let length = u32::try_from(4 + payload.len() + 16).ok()?;
    header.extend_from_slice(&(length | 0x8000_0000).to_be_bytes());
    ClientInitialKeys::new(version, &DCID).seal(&header, pn, 4, &payload)
}

fn raw(data: &[u8]) {
    let _ = judge(&[data]);
    let _ = judge(&[data, data]);
    if let Ok(packets) = initial_packets(data) {
        for packet in packets {
            let _ = ClientInitialKeys::new(packet.version, packet.dcid).open(&packet);
        }
    }
    let _ = crypto_frames(data);
    let mut pos = 0;
    while varint(data, &mut pos).is_some() {}
}

fn hello(mode: u8, message: &[u8]) {
    let version = if mode & 0x04 == 0 { Version::V1 } else { Version::V2 };
    let chunk = 64 + usize::from((mode >> 3) & 0x0f) * 64;
    let mut datagrams: Vec<Vec<u8>> = Vec::new();
    for (i, part) in message.chunks(chunk).take(8).enumerate() {
        let mut frame = vec![0x06];
        push_varint(&mut frame, (i * chunk) as u64);
        push_varint(&mut frame, part.len() as u64);
        frame.extend_from_slice(part);
        let Some(datagram) = seal(version, i as u64, &frame) else {
            return;
        };
        datagrams.push(datagram);
    }
    if mode & 0x80 != 0 && datagrams.len() > 1 {
        datagrams[1..].reverse();
    }
    let refs: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
    let _ = judge(&refs);
}

fn frames(mode: u8, frames: &[u8]) {
    let version = if mode & 0x04 == 0 { Version::V1 } else { Version::V2 };
    if let Some(datagram) = seal(version, u64::from(mode >> 3), frames) {
        let _ = judge(&[&datagram]);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => raw(rest),
        1 => hello(mode, rest),
        _ => frames(mode, rest),
    }
});
