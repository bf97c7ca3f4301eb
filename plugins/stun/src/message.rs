//! Parsing STUN messages (RFC 5389 / RFC 8489 §5, §14) from untrusted bytes, for detection only:
//! nothing is authenticated or answered.
//!
//! A message is a 20-byte header — two zero bits, a 14-bit message type that interleaves a 12-bit
//! method and a 2-bit class, a 16-bit length (a multiple of 4, the bytes after the header), the
//! magic cookie 0x2112A442 and a 96-bit transaction id — then attributes, each a 2-byte type, a
//! 2-byte length and a value padded to a multiple of 4. The attributes must fill the length exactly.
//! A FINGERPRINT attribute (RFC 8489 §14.7), when present, must be the last one, 4 bytes long, and
//! hold the CRC-32 of the message before it XOR 0x5354554E: a wrong fingerprint is not STUN.
//! MESSAGE-INTEGRITY cannot be checked without the key and is not.
//!
//! Classic STUN (RFC 3489) has no magic cookie: those 4 bytes are part of a 128-bit transaction id.
//! [`parse_message`] accepts such a message only when asked to, and only as a Binding request (the
//! only request a RFC 3489 client sends first).

/// The magic cookie (RFC 8489 §5).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of the header.
pub const HEADER_LEN: usize = 20;
/// Attribute type FINGERPRINT (RFC 8489 §14.7).
pub const ATTR_FINGERPRINT: u16 = 0x8028;
/// What the CRC-32 is XORed with in FINGERPRINT.
pub const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// Method Binding (RFC 8489 §18.2).
pub const METHOD_BINDING: u16 = 0x001;

/// Method names, as used in params and the `stun.method` property: Binding (RFC 8489), the TURN
/// methods (RFC 8656) and the TURN-TCP methods (RFC 6062).
pub const METHODS: &[(&str, u16)] = &[
    ("binding", 0x001),
    ("allocate", 0x003),
    ("refresh", 0x004),
    ("send", 0x006),
    ("data", 0x007),
    ("create-permission", 0x008),
    ("channel-bind", 0x009),
    ("connect", 0x00A),
    ("connection-bind", 0x00B),
    ("connection-attempt", 0x00C),
];

/// The method's name from [`METHODS`], else `0x` and three hex digits.
pub fn method_name(method: u16) -> String {
    match METHODS.iter().find(|(_, m)| *m == method) {
        Some((name, _)) => (*name).to_owned(),
        None => format!("0x{method:03x}"),
    }
}

/// A message's class (RFC 8489 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 0b00.
    Request,
    /// 0b01.
    Indication,
    /// 0b10.
    SuccessResponse,
    /// 0b11.
    ErrorResponse,
}

impl Class {
    /// The name used in the `stun.class` property.
    pub fn name(self) -> &'static str {
        match self {
            Class::Request => "request",
            Class::Indication => "indication",
            Class::SuccessResponse => "success-response",
            Class::ErrorResponse => "error-response",
        }
    }
}

/// Splits a 14-bit message type into method and class (RFC 8489 §5, figure 3): the class bits are
/// bits 4 (C0) and 8 (C1), the method the other twelve.
pub fn split_type(message_type: u16) -> (u16, Class) {
    let class = match ((message_type >> 4) & 1) | ((message_type >> 7) & 2) {
        0 => Class::Request,
        1 => Class::Indication,
        2 => Class::SuccessResponse,
        _ => Class::ErrorResponse,
    };
    let method = (message_type & 0x000F) | ((message_type >> 1) & 0x0070) | ((message_type >> 2) & 0x0F80);
    (method, class)
}

/// The message type of `method` (12 bits) and `class`: the inverse of [`split_type`].
pub fn join_type(method: u16, class: Class) -> u16 {
    let class_bits = match class {
        Class::Request => 0x000,
        Class::Indication => 0x010,
        Class::SuccessResponse => 0x100,
        Class::ErrorResponse => 0x110,
    };
    (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | class_bits
}

/// A well-formed STUN message's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    /// The 12-bit method.
    pub method: u16,
    /// The class.
    pub class: Class,
    /// True for a RFC 3489 message (no magic cookie).
    pub classic: bool,
    /// Whether a (correct) FINGERPRINT attribute was present.
    pub fingerprint: bool,
    /// Header plus attributes, in bytes.
    pub len: usize,
}

/// The outcome of looking at a possibly incomplete stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse<T> {
    /// The whole message is there and well formed.
    Complete(T),
    /// Consistent so far; more bytes are needed.
    Incomplete,
    /// Cannot be a STUN message; the text says why.
    Invalid(&'static str),
}

fn be16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

fn be32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([*b.first()?, *b.get(1)?, *b.get(2)?, *b.get(3)?]))
}

/// Checks whatever part of the header `prefix` holds, the cookie included (STUN over TCP always
/// carries it: RFC 3489 had no TCP transport for Binding). Returns the whole message's size once the
/// length field is there. Used to refuse a non-STUN stream from its first bytes.
pub fn check_header_prefix(prefix: &[u8]) -> Result<Option<usize>, &'static str> {
    if let Some(&first) = prefix.first() {
        if first & 0xC0 != 0 {
            return Err("the first two bits are not zero");
        }
    }
    let total = match be16(prefix, 2) {
        Some(len) if len % 4 != 0 => return Err("message length is not a multiple of 4"),
        Some(len) => Some(HEADER_LEN + usize::from(len)),
        None => None,
    };
    // Compare the cookie byte by byte, so a prefix that already differs is refused.
    let cookie = MAGIC_COOKIE.to_be_bytes();
    for (got, want) in prefix.iter().skip(4).take(4).zip(cookie) {
        if *got != want {
            return Err("no magic cookie");
        }
    }
    Ok(total)
}

/// Parses the message at the start of a TCP stream (RFC 8489 §6.2.2: the same framing as over UDP,
/// the length field delimiting the message): `Incomplete` until the header and then the whole
/// message are there. Bytes after the message are ignored. The cookie is required.
pub fn parse_stream(preview: &[u8]) -> Parse<Message> {
    let total = match check_header_prefix(preview) {
        Err(why) => return Parse::Invalid(why),
        Ok(None) => return Parse::Incomplete,
        Ok(Some(total)) => total,
    };
    match preview.get(..total) {
        None => Parse::Incomplete,
        Some(message) => match parse_message(message, false) {
            Ok(m) => Parse::Complete(m),
            Err(why) => Parse::Invalid(why),
        },
    }
}

/// Parses one whole message: a UDP datagram, whose length must be exactly the header's plus its
/// length field. `classic` also accepts RFC 3489 Binding requests, which have no magic cookie.
pub fn parse_message(message: &[u8], classic: bool) -> Result<Message, &'static str> {
    let (Some(message_type), Some(length), Some(cookie)) = (be16(message, 0), be16(message, 2), be32(message, 4))
    else {
        return Err("shorter than a STUN header");
    };
    if message.len() < HEADER_LEN {
        return Err("shorter than a STUN header");
    }
    if message_type & 0xC000 != 0 {
        return Err("the first two bits are not zero");
    }
    if length % 4 != 0 {
        return Err("message length is not a multiple of 4");
    }
    if usize::from(length) != message.len() - HEADER_LEN {
        return Err("message length does not match the datagram");
    }
    let (method, class) = split_type(message_type);
    let is_classic = cookie != MAGIC_COOKIE;
    if is_classic && !(classic && method == METHOD_BINDING && class == Class::Request) {
        return Err("no magic cookie");
    }
    let fingerprint = check_attributes(message)?;
    Ok(Message {
        method,
        class,
        classic: is_classic,
        fingerprint,
        len: message.len(),
    })
}

/// Walks the attributes of a whole message (header included, length already checked). Returns
/// whether a FINGERPRINT was present; an error when the attributes overrun the message, or a
/// FINGERPRINT is misplaced, mis-sized or wrong.
fn check_attributes(message: &[u8]) -> Result<bool, &'static str> {
    let mut at = HEADER_LEN;
    while at < message.len() {
        let (Some(kind), Some(len)) = (be16(message, at), be16(message, at + 2)) else {
            return Err("truncated attribute header");
        };
        let value_at = at + 4;
        let padded = (usize::from(len) + 3) & !3;
        let next = value_at + padded;
        if next > message.len() {
            return Err("attribute overruns the message");
        }
        if kind == ATTR_FINGERPRINT {
            if len != 4 {
                return Err("FINGERPRINT is not 4 bytes");
            }
            if next != message.len() {
                return Err("FINGERPRINT is not the last attribute");
            }
            let sent = be32(message, value_at).ok_or("truncated FINGERPRINT")?;
            let covered = message.get(..at).ok_or("truncated FINGERPRINT")?;
            if crc32(covered) ^ FINGERPRINT_XOR != sent {
                return Err("wrong FINGERPRINT");
            }
            return Ok(true);
        }
        at = next;
    }
    Ok(false)
}

/// CRC-32 as in ISO 3309 / ITU-T V.42 (the one zlib and Ethernet use; RFC 8489 §14.7), bitwise:
/// messages are small.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn type_splits_into_method_and_class() {
        assert_eq!(split_type(0x0001), (METHOD_BINDING, Class::Request));
        assert_eq!(split_type(0x0011), (METHOD_BINDING, Class::Indication));
        assert_eq!(split_type(0x0101), (METHOD_BINDING, Class::SuccessResponse));
        assert_eq!(split_type(0x0111), (METHOD_BINDING, Class::ErrorResponse));
        assert_eq!(split_type(0x0003), (0x003, Class::Request));
        assert_eq!(split_type(0x0016), (0x006, Class::Indication));
        assert_eq!(split_type(0x3EEF), (0xFFF, Class::Request));
        for t in 0..0x4000u16 {
            let (method, class) = split_type(t);
            assert_eq!(join_type(method, class), t);
        }
    }

    #[test]
    fn method_names() {
        assert_eq!(method_name(1), "binding");
        assert_eq!(method_name(9), "channel-bind");
        assert_eq!(method_name(0x80), "0x080");
    }
}
