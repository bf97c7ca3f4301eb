//! The frames of a decrypted Initial packet (RFC 9000 §12.4, §19): only PADDING, PING, ACK, CRYPTO
//! and CONNECTION_CLOSE (transport) may appear there; anything else means the packet is not a QUIC
//! client's. The CRYPTO frames are returned for reassembly.

use crate::packet::varint;

/// Frame type PADDING.
pub const PADDING: u8 = 0x00;
/// Frame type PING.
pub const PING: u8 = 0x01;
/// Frame type ACK.
pub const ACK: u8 = 0x02;
/// Frame type ACK with ECN counts.
pub const ACK_ECN: u8 = 0x03;
/// Frame type CRYPTO.
pub const CRYPTO: u8 = 0x06;
/// Frame type CONNECTION_CLOSE of the transport (0x1d, the application's, is not allowed in Initial).
pub const CONNECTION_CLOSE: u8 = 0x1c;
/// The largest stream offset plus one (RFC 9000 §19.6: offset + length must stay below 2^62).
const MAX_OFFSET: u64 = 1 << 62;

/// A CRYPTO frame: `data` belongs at `offset` of the Initial crypto stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CryptoFrame<'a> {
    /// Stream offset of the first byte.
    pub offset: u64,
    /// The frame's data.
    pub data: &'a [u8],
}

/// Parses every frame of an Initial payload; `Err` says what makes it not a client's Initial.
pub fn crypto_frames(payload: &[u8]) -> Result<Vec<CryptoFrame<'_>>, &'static str> {
    if payload.is_empty() {
        return Err("packet without frames");
    }
    let mut frames = Vec::new();
    let mut pos = 0;
    while let Some(&kind) = payload.get(pos) {
        pos += 1;
        let mut next = || varint(payload, &mut pos).ok_or("truncated frame");
        match kind {
            PADDING | PING => {}
            ACK | ACK_ECN => {
                let _largest = next()?;
                let _delay = next()?;
                let ranges = next()?;
                let _first_range = next()?;
                for _ in 0..ranges {
                    // Each range takes at least two bytes: a count beyond the payload is truncated.
                    next()?;
                    next()?;
                }
                if kind == ACK_ECN {
                    for _ in 0..3 {
                        next()?;
                    }
                }
            }
            CRYPTO => {
                let offset = next()?;
                let len = next()?;
                let end = offset.checked_add(len).filter(|&e| e < MAX_OFFSET);
                let start = pos;
                let data = end
                    .and_then(|_| usize::try_from(len).ok())
                    .and_then(|l| start.checked_add(l))
                    .and_then(|stop| payload.get(start..stop))
                    .ok_or("CRYPTO frame longer than the packet")?;
                pos += data.len();
                frames.push(CryptoFrame { offset, data });
            }
            CONNECTION_CLOSE => {
                let _code = next()?;
                let _frame_type = next()?;
                let reason = next()?;
                pos = usize::try_from(reason)
                    .ok()
                    .and_then(|r| pos.checked_add(r))
                    .filter(|&p| p <= payload.len())
                    .ok_or("CONNECTION_CLOSE reason longer than the packet")?;
            }
            _ => return Err("frame type not allowed in an Initial packet"),
        }
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_frames() {
        let payload = [
            PING,
            PADDING,
            ACK,
            5,
            0,
            1,
            2,
            1,
            1,
            ACK_ECN,
            1,
            0,
            0,
            0,
            1,
            2,
            3,
            CRYPTO,
            0x40,
            0x10,
            3,
            b'a',
            b'b',
            b'c',
            CONNECTION_CLOSE,
            1,
            0,
            2,
            b'h',
            b'i',
            PADDING,
        ];
        let frames = crypto_frames(&payload).expect("valid");
        assert_eq!(
            frames,
            vec![CryptoFrame {
                offset: 16,
                data: b"abc"
            }]
        );
    }

    #[test]
    fn refused_frames() {
        assert_eq!(crypto_frames(&[]), Err("packet without frames"));
        assert_eq!(
            crypto_frames(&[0x08, 0]),
            Err("frame type not allowed in an Initial packet")
        );
        assert_eq!(
            crypto_frames(&[0x1d, 0, 0]),
            Err("frame type not allowed in an Initial packet")
        );
        assert_eq!(
            crypto_frames(&[0x40, 0x06]),
            Err("frame type not allowed in an Initial packet")
        );
        assert_eq!(
            crypto_frames(&[CRYPTO, 0, 4, 1, 2]),
            Err("CRYPTO frame longer than the packet")
        );
        assert_eq!(crypto_frames(&[CRYPTO, 0]), Err("truncated frame"));
        assert_eq!(
            crypto_frames(&[CRYPTO, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 0]),
            Err("CRYPTO frame longer than the packet")
        );
        assert_eq!(crypto_frames(&[ACK, 0, 0, 0x3f, 0, 1, 1]), Err("truncated frame"));
        assert_eq!(
            crypto_frames(&[CONNECTION_CLOSE, 0, 0, 9, 1]),
            Err("CONNECTION_CLOSE reason longer than the packet")
        );
    }
}
