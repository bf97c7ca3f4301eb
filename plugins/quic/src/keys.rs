//! The client Initial keys of QUIC v1 and v2 (RFC 9001 §5.2, RFC 9369 §3.3) and their use:
//! removing header protection (§5.4, AES-128 mask) and opening the AEAD payload (§5.3,
//! AEAD_AES_128_GCM). [`ClientInitialKeys::seal`] does the reverse, to build test packets.

use aes::cipher::{generic_array::GenericArray, BlockEncrypt};
use aes::Aes128;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;

use crate::packet::{InitialPacket, Version};

/// The initial salt of QUIC v1 (RFC 9001 §5.2).
pub const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f,
    0x0a,
];
/// The initial salt of QUIC v2 (RFC 9369 §3.3.1).
pub const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e,
    0xd9,
];
/// AEAD tag length of AES-128-GCM.
pub const TAG_LEN: usize = 16;
/// Header protection sample length (RFC 9001 §5.4.2).
pub const SAMPLE_LEN: usize = 16;

/// The raw client Initial key material (RFC 9001 Appendix A.1 lists it for a known DCID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMaterial {
    /// `client_initial_secret`.
    pub secret: [u8; 32],
    /// AEAD key (`quic key`, `quicv2 key` in v2).
    pub key: [u8; 16],
    /// AEAD IV (`quic iv`).
    pub iv: [u8; 12],
    /// Header protection key (`quic hp`).
    pub hp: [u8; 16],
}

/// Why a packet could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Too short to hold a packet number sample and an AEAD tag.
    TooShort,
    /// The AEAD tag did not verify: not encrypted with this DCID's client keys.
    Decrypt,
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label<const N: usize>(prk: &Hkdf<Sha256>, label: &str) -> [u8; N] {
    let full = [b"tls13 ", label.as_bytes()].concat();
    let mut info = Vec::with_capacity(4 + full.len());
    info.extend_from_slice(&(N as u16).to_be_bytes());
    info.push(full.len() as u8);
    info.extend_from_slice(&full);
    info.push(0);
    let mut out = [0u8; N];
    // HKDF-SHA256 can expand up to 8160 bytes; N is at most 32, so this cannot fail.
    let _ = prk.expand(&info, &mut out);
    out
}

/// Derives the client Initial key material for a Destination Connection ID.
pub fn key_material(version: Version, dcid: &[u8]) -> KeyMaterial {
    let (salt, prefix) = match version {
        Version::V1 => (&SALT_V1, "quic"),
        Version::V2 => (&SALT_V2, "quicv2"),
    };
    let (_, initial) = Hkdf::<Sha256>::extract(Some(salt), dcid);
    let secret: [u8; 32] = expand_label(&initial, "client in");
    // A 32-byte PRK is always long enough.
    let client = Hkdf::<Sha256>::from_prk(&secret).unwrap_or(initial);
    KeyMaterial {
        secret,
        key: expand_label(&client, &format!("{prefix} key")),
        iv: expand_label(&client, &format!("{prefix} iv")),
        hp: expand_label(&client, &format!("{prefix} hp")),
    }
}

/// A decrypted Initial packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The (truncated) packet number, as sent.
    pub packet_number: u64,
    /// The frames.
    pub payload: Vec<u8>,
}

/// The ready-to-use client Initial keys of one DCID.
pub struct ClientInitialKeys {
    aead: Aes128Gcm,
    iv: [u8; 12],
    hp: Aes128,
}

impl std::fmt::Debug for ClientInitialKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientInitialKeys")
    }
}

impl ClientInitialKeys {
    /// The keys for `dcid` in `version`.
    pub fn new(version: Version, dcid: &[u8]) -> Self {
        let material = key_material(version, dcid);
        ClientInitialKeys {
            aead: Aes128Gcm::new(GenericArray::from_slice(&material.key)),
            iv: material.iv,
            hp: Aes128::new(GenericArray::from_slice(&material.hp)),
        }
    }

    /// The header protection mask of a sample.
    fn mask(&self, sample: &[u8]) -> [u8; 16] {
        let mut block = GenericArray::clone_from_slice(sample);
        self.hp.encrypt_block(&mut block);
        block.into()
    }

    fn nonce(&self, packet_number: u64) -> [u8; 12] {
        let mut nonce = self.iv;
        for (n, p) in nonce.iter_mut().skip(4).zip(packet_number.to_be_bytes()) {
            *n ^= p;
        }
        nonce
    }

    /// Removes header protection and opens the payload of a client Initial packet.
    pub fn open(&self, packet: &InitialPacket<'_>) -> Result<Opened, OpenError> {
        let bytes = packet.bytes;
        let pn_offset = packet.pn_offset;
        let sample = bytes
            .get(pn_offset + 4..pn_offset + 4 + SAMPLE_LEN)
            .ok_or(OpenError::TooShort)?;
        let mask = self.mask(sample);
        let mut header = bytes.get(..pn_offset).ok_or(OpenError::TooShort)?.to_vec();
        let Some(first) = header.first_mut() else {
            return Err(OpenError::TooShort);
        };
        *first ^= mask[0] & 0x0f;
        let pn_len = usize::from(*first & 0x03) + 1;
        let protected_pn = bytes.get(pn_offset..pn_offset + pn_len).ok_or(OpenError::TooShort)?;
        let mut packet_number = 0u64;
        for (&b, &m) in protected_pn.iter().zip(mask.iter().skip(1)) {
            let b = b ^ m;
            header.push(b);
            packet_number = packet_number << 8 | u64::from(b);
        }
        let ciphertext = bytes.get(pn_offset + pn_len..).ok_or(OpenError::TooShort)?;
        if ciphertext.len() < TAG_LEN {
            return Err(OpenError::TooShort);
        }
        let nonce = self.nonce(packet_number);
        let payload = self
            .aead
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: ciphertext,
                    aad: &header,
                },
            )
            .map_err(|_| OpenError::Decrypt)?;
        Ok(Opened { packet_number, payload })
    }

    /// Builds a protected client Initial packet: `header` is the unprotected long header up to and
    /// including the Length field (which must count the packet number, `payload` and the tag),
    /// `pn_len` 1 to 4 bytes of `packet_number`, then `payload` is sealed and the header protected.
    /// The payload must be long enough for a header protection sample (at least 20 - `pn_len`
    /// bytes with the tag); `None` otherwise.
    pub fn seal(&self, header: &[u8], packet_number: u64, pn_len: usize, payload: &[u8]) -> Option<Vec<u8>> {
        if !(1..=4).contains(&pn_len) || header.is_empty() {
            return None;
        }
        let mut packet = header.to_vec();
        let pn_offset = packet.len();
        packet[0] = (packet[0] & !0x03) | (pn_len as u8 - 1);
        let pn_bytes = packet_number.to_be_bytes();
        packet.extend_from_slice(pn_bytes.get(8 - pn_len..)?);
        let nonce = self.nonce(packet_number);
        let sealed = self
            .aead
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: payload,
                    aad: &packet,
                },
            )
            .ok()?;
        packet.extend_from_slice(&sealed);
        let mask = self.mask(packet.get(pn_offset + 4..pn_offset + 4 + SAMPLE_LEN)?);
        packet[0] ^= mask[0] & 0x0f;
        for (b, m) in packet.iter_mut().skip(pn_offset).take(pn_len).zip(mask.iter().skip(1)) {
            *b ^= m;
        }
        Some(packet)
    }
}
