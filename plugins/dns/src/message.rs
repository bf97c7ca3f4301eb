//! Parsing a DNS query (RFC 1035 §4.1) from untrusted bytes, for detection only: nothing is resolved
//! or answered. [`parse_query`] reads one whole message (a UDP datagram); [`parse_tcp`] reads the
//! first message of a DNS-over-TCP stream (RFC 7766: a 2-byte big-endian length, then the message)
//! from however many bytes have arrived.
//!
//! What counts as a query here (anything else is refused with the reason):
//! * header: QR = 0, opcode QUERY (0), TC = 0, RCODE = 0; AA, RD, RA, Z, AD and CD are free. Other
//!   opcodes (NOTIFY, UPDATE, DSO, the obsolete IQUERY and STATUS) are refused: they are not lookups
//!   and carry no name to route on in the same sense;
//! * exactly one question (QDCOUNT = 1, RFC 9619), no answers; no authority records except the one
//!   SOA an IXFR query carries (RFC 1995 §3); at most [`MAX_ADDITIONAL`] additional records (EDNS
//!   OPT, TSIG or SIG(0)), of which at most one OPT, owned by the root (RFC 6891 §6.1.1);
//! * the question name in plain labels (1 to 63 bytes each, 255 bytes in all on the wire, any byte
//!   values): a compression pointer cannot point backwards from the first question, so one there is
//!   refused, as are the reserved label types 01 and 10;
//! * QCLASS IN, CH, HS or ANY; any QTYPE;
//! * the records after the question well formed: owner names in labels or a compression pointer to
//!   an earlier offset (never followed), RDATA inside the message, EDNS options filling the OPT
//!   RDATA exactly; and nothing after the last record.
//!
//! Every read is bounds-checked, nothing indexes out of bounds, and the work is linear in the input.

use crate::rrtype;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 12;
/// Smallest query: the header, the root name, QTYPE and QCLASS.
pub const MIN_QUERY_LEN: usize = HEADER_LEN + 1 + 4;
/// Longest name on the wire, length bytes and the root label included (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// Most additional records accepted in a query: an OPT and a TSIG or SIG(0).
pub const MAX_ADDITIONAL: u16 = 2;

/// Class `IN`.
pub const CLASS_IN: u16 = 1;
/// Class `CH` (Chaos, used for `version.bind` and the like).
pub const CLASS_CH: u16 = 3;
/// Class `HS` (Hesiod).
pub const CLASS_HS: u16 = 4;
/// QCLASS `ANY`.
pub const CLASS_ANY: u16 = 255;

/// The EDNS parameters of a query's OPT record (RFC 6891 §6.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// The requestor's UDP payload size (the OPT record's CLASS).
    pub udp_payload_size: u16,
    /// EDNS version (0 today).
    pub version: u8,
    /// The DO bit: DNSSEC records wanted.
    pub dnssec_ok: bool,
}

/// A parsed DNS query: the header fields that matter and its one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Transaction ID.
    pub id: u16,
    /// The header's flag word (QR, opcode, AA, TC, RD, RA, Z, AD, CD, RCODE), as sent.
    pub flags: u16,
    /// QNAME's labels, as sent (case preserved), without the empty root label; empty for the root.
    pub labels: Vec<Vec<u8>>,
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
    /// The OPT record's parameters, when the query has one.
    pub edns: Option<Edns>,
}

impl Query {
    /// Whether the client asked for recursion (RD).
    pub fn recursion_desired(&self) -> bool {
        self.flags & 0x0100 != 0
    }

    /// QNAME in presentation form, as `dns.qname` reports it: see [`presentation`].
    pub fn qname(&self) -> String {
        presentation(&self.labels)
    }

    /// QTYPE's mnemonic (`A`, `AAAA`, `HTTPS`, ...), or `TYPE<n>`.
    pub fn qtype_name(&self) -> String {
        rrtype::name(self.qtype)
    }
}

/// A name in presentation form, lowercase, without the trailing dot; the root is `.`. Inside a
/// label, `.` and `\` are escaped with `\`, and bytes other than printable ASCII are written `\DDD`
/// (decimal), as in RFC 1035 §5.1 master files.
pub fn presentation(labels: &[Vec<u8>]) -> String {
    if labels.is_empty() {
        return ".".to_owned();
    }
    let mut out = String::new();
    for (i, label) in labels.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for &b in label {
            match b {
                b'.' | b'\\' => {
                    out.push('\\');
                    out.push(char::from(b));
                }
                0x21..=0x7e => out.push(char::from(b.to_ascii_lowercase())),
                _ => out.push_str(&format!("\\{b:03}")),
            }
        }
    }
    out
}

/// The outcome of parsing a stream that may still be arriving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse<T> {
    /// The whole message was there and is a well-formed query.
    Complete(T),
    /// Everything so far is consistent with a query; more bytes are needed to decide.
    Incomplete,
    /// The bytes cannot be (the start of) a query; the text says why.
    Invalid(&'static str),
}

/// Parses one whole message (a UDP datagram) as a query; the error says why it is not one.
pub fn parse_query(message: &[u8]) -> Result<Query, &'static str> {
    parse(message).map_err(|e| match e {
        Error::Short(part) => part,
        Error::Invalid(why) => why,
    })
}

/// Parses the first message of a DNS-over-TCP stream from the bytes received so far.
///
/// [`Parse::Complete`] needs the length prefix and the whole message it announces; bytes after it
/// (pipelined queries) are ignored. Before that the answer is [`Parse::Incomplete`], unless the
/// bytes already there rule a query out ([`Parse::Invalid`], usually within the first six bytes).
/// Once `Invalid` or `Complete`, more bytes never change the answer.
pub fn parse_tcp(stream: &[u8]) -> Parse<Query> {
    let Some((prefix, rest)) = stream.split_first_chunk::<2>() else {
        return Parse::Incomplete;
    };
    let len = usize::from(u16::from_be_bytes(*prefix));
    if len < MIN_QUERY_LEN {
        return Parse::Invalid("length prefix too small for a DNS query");
    }
    match rest.get(..len) {
        Some(message) => match parse_query(message) {
            Ok(query) => Parse::Complete(query),
            Err(why) => Parse::Invalid(why),
        },
        // Part of the message: only what is there can rule it out.
        None => match parse(rest) {
            Err(Error::Invalid(why)) => Parse::Invalid(why),
            Err(Error::Short(_)) | Ok(_) => Parse::Incomplete,
        },
    }
}

enum Error {
    /// The input ended inside this part of the message.
    Short(&'static str),
    /// Not a well-formed query.
    Invalid(&'static str),
}

/// A bounds-checked cursor; `part` names what is being read, for [`Error::Short`].
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    part: &'static str,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(Error::Short(self.part))?;
        let slice = self.buf.get(self.pos..end).ok_or(Error::Short(self.part))?;
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, Error> {
        let b = *self.buf.get(self.pos).ok_or(Error::Short(self.part))?;
        self.pos += 1;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }

    fn u32(&mut self) -> Result<u32, Error> {
        Ok((u32::from(self.u16()?) << 16) | u32::from(self.u16()?))
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }
}

fn invalid<T>(why: &'static str) -> Result<T, Error> {
    Err(Error::Invalid(why))
}

/// The checks, in wire order, each made as soon as its bytes are there (so a prefix that fails
/// fails for the same reason as the whole message).
fn parse(buf: &[u8]) -> Result<Query, Error> {
    let mut r = Reader {
        buf,
        pos: 0,
        part: "message ends inside the header",
    };
    let id = r.u16()?;
    let high = r.u8()?;
    if high & 0x80 != 0 {
        return invalid("a response (QR = 1), not a query");
    }
    if high & 0x78 != 0 {
        return invalid("opcode is not QUERY");
    }
    if high & 0x02 != 0 {
        return invalid("TC (truncated) set in a query");
    }
    let low = r.u8()?;
    if low & 0x0f != 0 {
        return invalid("RCODE set in a query");
    }
    if r.u16()? != 1 {
        return invalid("QDCOUNT is not 1");
    }
    if r.u16()? != 0 {
        return invalid("answer records in a query");
    }
    let authority = r.u16()?;
    if authority > 1 {
        return invalid("authority records in a query");
    }
    let additional = r.u16()?;
    if additional > MAX_ADDITIONAL {
        return invalid("too many additional records for a query");
    }

    r.part = "message ends inside the question";
    let labels = question_name(&mut r)?;
    let qtype = r.u16()?;
    let qclass = r.u16()?;
    if !matches!(qclass, CLASS_IN | CLASS_CH | CLASS_HS | CLASS_ANY) {
        return invalid("QCLASS is not IN, CH, HS or ANY");
    }
    if authority == 1 && qtype != rrtype::IXFR {
        return invalid("authority records in a query other than IXFR");
    }

    r.part = "message ends inside a record";
    if authority == 1 {
        let soa = record(&mut r)?;
        if soa.kind != rrtype::SOA {
            return invalid("the authority record of an IXFR query is not an SOA");
        }
    }
    let mut edns = None;
    for _ in 0..additional {
        let rr = record(&mut r)?;
        if rr.kind == rrtype::OPT {
            if edns.is_some() {
                return invalid("more than one OPT record");
            }
            if !rr.root_owner {
                return invalid("OPT record not owned by the root");
            }
            check_edns_options(rr.rdata)?;
            edns = Some(Edns {
                udp_payload_size: rr.class,
                version: (rr.ttl >> 16) as u8,
                dnssec_ok: rr.ttl & 0x8000 != 0,
            });
        }
    }
    if !r.at_end() {
        return invalid("bytes after the last record");
    }
    Ok(Query {
        id,
        flags: u16::from_be_bytes([high, low]),
        labels,
        qtype,
        qclass,
        edns,
    })
}

/// QNAME: plain labels up to the root label; no compression (nothing precedes it to point at).
fn question_name(r: &mut Reader<'_>) -> Result<Vec<Vec<u8>>, Error> {
    let mut labels = Vec::new();
    let mut wire_len = 0usize;
    loop {
        let len = r.u8()?;
        match len & 0xc0 {
            0 => {}
            0xc0 => return invalid("compression pointer in the question"),
            _ => return invalid("reserved label type in the question"),
        }
        wire_len += 1 + usize::from(len);
        if wire_len > MAX_NAME_LEN {
            return invalid("question name longer than 255 bytes");
        }
        if len == 0 {
            return Ok(labels);
        }
        labels.push(r.bytes(usize::from(len))?.to_vec());
    }
}

/// A resource record after the question, read for structure only.
struct Record<'a> {
    root_owner: bool,
    kind: u16,
    class: u16,
    ttl: u32,
    rdata: &'a [u8],
}

fn record<'a>(r: &mut Reader<'a>) -> Result<Record<'a>, Error> {
    let root_owner = skip_name(r)?;
    let kind = r.u16()?;
    let class = r.u16()?;
    let ttl = r.u32()?;
    let rdlength = r.u16()?;
    let rdata = r.bytes(usize::from(rdlength))?;
    Ok(Record {
        root_owner,
        kind,
        class,
        ttl,
        rdata,
    })
}

/// Skips an owner name: labels, ending at the root or at a compression pointer, which must point
/// back into the message before this name (it is not followed). True when the name is the root.
fn skip_name(r: &mut Reader<'_>) -> Result<bool, Error> {
    let start = r.pos;
    let mut wire_len = 0usize;
    loop {
        let len = r.u8()?;
        match len & 0xc0 {
            0 if len == 0 => return Ok(r.pos == start + 1),
            0 => {
                wire_len += 1 + usize::from(len);
                if wire_len >= MAX_NAME_LEN {
                    return invalid("record owner name longer than 255 bytes");
                }
                r.bytes(usize::from(len))?;
            }
            0xc0 => {
                let target = (usize::from(len & 0x3f) << 8) | usize::from(r.u8()?);
                if target < HEADER_LEN || target >= start {
                    return invalid("compression pointer that does not point back to an earlier name");
                }
                return Ok(false);
            }
            _ => return invalid("reserved label type in a record owner name"),
        }
    }
}

/// EDNS options (code, length, data) must fill the OPT RDATA exactly.
fn check_edns_options(rdata: &[u8]) -> Result<(), Error> {
    let mut r = Reader {
        buf: rdata,
        pos: 0,
        part: "",
    };
    while !r.at_end() {
        let option = r.u16().and_then(|_| r.u16()).and_then(|len| r.bytes(usize::from(len)));
        if option.is_err() {
            return invalid("EDNS option overruns the OPT record");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `www.example.com A`, RD set, no EDNS.
    fn query_bytes() -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        q
    }

    #[test]
    fn minimal_query_parses() {
        let q = parse_query(&query_bytes()).expect("a query");
        assert_eq!(q.id, 0x1234);
        assert!(q.recursion_desired());
        assert_eq!(q.qname(), "www.example.com");
        assert_eq!(q.qtype_name(), "A");
        assert_eq!(q.qclass, CLASS_IN);
        assert_eq!(q.edns, None);
    }

    #[test]
    fn presentation_escapes_and_lowercases() {
        let labels = vec![b"A.b".to_vec(), b"x\\y".to_vec(), vec![b'Z', 0, b' ', 0xff]];
        assert_eq!(presentation(&labels), "a\\.b.x\\\\y.z\\000\\032\\255");
        assert_eq!(presentation(&[]), ".");
    }

    #[test]
    fn header_checks_each_give_their_reason() {
        let cases: [(usize, u8, &str); 5] = [
            (2, 0x81, "a response (QR = 1), not a query"),
            (2, 0x29, "opcode is not QUERY"),
            (2, 0x03, "TC (truncated) set in a query"),
            (3, 0x05, "RCODE set in a query"),
            (5, 0x02, "QDCOUNT is not 1"),
        ];
        for (at, value, why) in cases {
            let mut q = query_bytes();
            if let Some(b) = q.get_mut(at) {
                *b = value;
            }
            assert_eq!(parse_query(&q), Err(why));
        }
    }

    #[test]
    fn pointers_and_long_names_in_the_question_are_refused() {
        let mut q = query_bytes();
        q.truncate(HEADER_LEN);
        q.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        assert_eq!(parse_query(&q), Err("compression pointer in the question"));

        let mut q = query_bytes();
        q.truncate(HEADER_LEN);
        for _ in 0..5 {
            q.push(63);
            q.extend_from_slice(&[b'a'; 63]);
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(parse_query(&q), Err("question name longer than 255 bytes"));
    }

    #[test]
    fn tcp_needs_the_whole_message() {
        let q = query_bytes();
        let mut stream = (q.len() as u16).to_be_bytes().to_vec();
        stream.extend_from_slice(&q);
        for n in 0..stream.len() {
            assert_eq!(parse_tcp(stream.get(..n).unwrap_or_default()), Parse::Incomplete, "{n}");
        }
        assert!(matches!(parse_tcp(&stream), Parse::Complete(_)));
        assert_eq!(
            parse_tcp(&[0, 5]),
            Parse::Invalid("length prefix too small for a DNS query")
        );
    }
}
