//! Reassembling the client's Initial crypto stream from CRYPTO frames that may arrive out of order,
//! repeated or overlapping, over several packets and datagrams. Only the first
//! [`MAX_CRYPTO_BYTES`] of the stream are kept; a byte once received is never overwritten, so what
//! later frames bring cannot change a prefix already judged.

use crate::frames::CryptoFrame;

/// The part of the crypto stream kept (64 KiB); data beyond it is ignored.
pub const MAX_CRYPTO_BYTES: usize = 64 * 1024;

/// The stream received so far.
#[derive(Debug, Clone, Default)]
pub struct CryptoStream {
    /// Stream bytes from offset 0 (zero where not received).
    bytes: Vec<u8>,
    /// Which of [`CryptoStream::bytes`] were received.
    filled: Vec<bool>,
}

impl CryptoStream {
    /// Adds a frame's data (the part below [`MAX_CRYPTO_BYTES`]); bytes already received stay.
    pub fn add(&mut self, frame: &CryptoFrame<'_>) {
        let Ok(offset) = usize::try_from(frame.offset) else {
            return;
        };
        if offset >= MAX_CRYPTO_BYTES {
            return;
        }
        let keep = frame.data.len().min(MAX_CRYPTO_BYTES - offset);
        let end = offset + keep;
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
            self.filled.resize(end, false);
        }
        let dst = self
            .bytes
            .iter_mut()
            .zip(self.filled.iter_mut())
            .skip(offset)
            .take(keep);
        for ((byte, filled), &src) in dst.zip(frame.data) {
            if !*filled {
                *byte = src;
                *filled = true;
            }
        }
    }

    /// The bytes received contiguously from offset 0.
    pub fn contiguous(&self) -> &[u8] {
        let len = self.filled.iter().position(|f| !f).unwrap_or(self.filled.len());
        self.bytes.get(..len).unwrap_or_default()
    }

    /// Whether the contiguous part reached the [`MAX_CRYPTO_BYTES`] bound.
    pub fn is_full(&self) -> bool {
        self.contiguous().len() >= MAX_CRYPTO_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(offset: u64, data: &[u8]) -> CryptoFrame<'_> {
        CryptoFrame { offset, data }
    }

    #[test]
    fn out_of_order_and_overlapping() {
        let mut s = CryptoStream::default();
        s.add(&frame(4, b"efgh"));
        assert_eq!(s.contiguous(), b"");
        s.add(&frame(0, b"abc"));
        assert_eq!(s.contiguous(), b"abc");
        s.add(&frame(2, b"XYZW"));
        // The first bytes received win.
        assert_eq!(s.contiguous(), b"abcYefgh");
        s.add(&frame(10, b"k"));
        assert_eq!(s.contiguous(), b"abcYefgh");
    }

    #[test]
    fn bounded() {
        let mut s = CryptoStream::default();
        s.add(&frame(u64::MAX, b"x"));
        s.add(&frame(MAX_CRYPTO_BYTES as u64, b"x"));
        assert!(s.contiguous().is_empty());
        let big = vec![1u8; MAX_CRYPTO_BYTES + 10];
        s.add(&frame(0, &big));
        assert_eq!(s.contiguous().len(), MAX_CRYPTO_BYTES);
        assert!(s.is_full());
    }
}
