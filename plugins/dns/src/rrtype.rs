//! DNS RR type mnemonics (IANA "Resource Record (RR) TYPEs"): the names `dns.qtype` reports and the
//! `qtype` param accepts, and the generic `TYPE<n>` form of RFC 3597 §5 for everything else.

/// Type numbers and their mnemonics, in numeric order: data types, the EDNS and transaction
/// pseudo-types, and the query-only types (`IXFR`, `AXFR`, `MAILB`, `MAILA`, `ANY`).
pub const KNOWN: &[(u16, &str)] = &[
    (1, "A"),
    (2, "NS"),
    (3, "MD"),
    (4, "MF"),
    (5, "CNAME"),
    (6, "SOA"),
    (7, "MB"),
    (8, "MG"),
    (9, "MR"),
    (10, "NULL"),
    (11, "WKS"),
    (12, "PTR"),
    (13, "HINFO"),
    (14, "MINFO"),
    (15, "MX"),
    (16, "TXT"),
    (17, "RP"),
    (18, "AFSDB"),
    (19, "X25"),
    (20, "ISDN"),
    (21, "RT"),
    (22, "NSAP"),
    (23, "NSAP-PTR"),
    (24, "SIG"),
    (25, "KEY"),
    (26, "PX"),
    (27, "GPOS"),
    (28, "AAAA"),
    (29, "LOC"),
    (30, "NXT"),
    (31, "EID"),
    (32, "NIMLOC"),
    (33, "SRV"),
    (34, "ATMA"),
    (35, "NAPTR"),
    (36, "KX"),
    (37, "CERT"),
    (38, "A6"),
    (39, "DNAME"),
    (40, "SINK"),
    (41, "OPT"),
    (42, "APL"),
    (43, "DS"),
    (44, "SSHFP"),
    (45, "IPSECKEY"),
    (46, "RRSIG"),
    (47, "NSEC"),
    (48, "DNSKEY"),
    (49, "DHCID"),
    (50, "NSEC3"),
    (51, "NSEC3PARAM"),
    (52, "TLSA"),
    (53, "SMIMEA"),
    (55, "HIP"),
    (56, "NINFO"),
    (57, "RKEY"),
    (58, "TALINK"),
    (59, "CDS"),
    (60, "CDNSKEY"),
    (61, "OPENPGPKEY"),
    (62, "CSYNC"),
    (63, "ZONEMD"),
    (64, "SVCB"),
    (65, "HTTPS"),
    (66, "DSYNC"),
    (99, "SPF"),
    (100, "UINFO"),
    (101, "UID"),
    (102, "GID"),
    (103, "UNSPEC"),
    (104, "NID"),
    (105, "L32"),
    (106, "L64"),
    (107, "LP"),
    (108, "EUI48"),
    (109, "EUI64"),
    (249, "TKEY"),
    (250, "TSIG"),
    (251, "IXFR"),
    (252, "AXFR"),
    (253, "MAILB"),
    (254, "MAILA"),
    (255, "ANY"),
    (256, "URI"),
    (257, "CAA"),
    (258, "AVC"),
    (259, "DOA"),
    (260, "AMTRELAY"),
    (261, "RESINFO"),
    (262, "WALLET"),
    (263, "CLA"),
    (264, "IPN"),
    (32768, "TA"),
    (32769, "DLV"),
];

/// `A`.
pub const A: u16 = 1;
/// `SOA`.
pub const SOA: u16 = 6;
/// `OPT`, the EDNS pseudo-record (RFC 6891).
pub const OPT: u16 = 41;
/// `IXFR`, incremental zone transfer (RFC 1995).
pub const IXFR: u16 = 251;
/// `AXFR`, full zone transfer (RFC 5936).
pub const AXFR: u16 = 252;
/// `ANY` (RFC 1035's `*`).
pub const ANY: u16 = 255;

/// The mnemonic of a type, or `TYPE<n>` when it has none here.
pub fn name(kind: u16) -> String {
    match KNOWN.binary_search_by_key(&kind, |&(n, _)| n) {
        Ok(at) => KNOWN
            .get(at)
            .map_or_else(|| generic(kind), |&(_, name)| name.to_owned()),
        Err(_) => generic(kind),
    }
}

fn generic(kind: u16) -> String {
    format!("TYPE{kind}")
}

/// A type written as a mnemonic or as `TYPE<n>` (both case-insensitive, `n` decimal, 0 to 65535).
pub fn parse(text: &str) -> Option<u16> {
    let upper = text.to_ascii_uppercase();
    if let Some(&(kind, _)) = KNOWN.iter().find(|&&(_, name)| name == upper) {
        return Some(kind);
    }
    let digits = upper.strip_prefix("TYPE")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(KNOWN.windows(2).all(|w| matches!(w, [a, b] if a.0 < b.0)));
        for &(kind, name) in KNOWN {
            assert_eq!(parse(name), Some(kind), "{name}");
        }
    }

    #[test]
    fn names_and_generic_form() {
        assert_eq!(name(1), "A");
        assert_eq!(name(28), "AAAA");
        assert_eq!(name(65), "HTTPS");
        assert_eq!(name(255), "ANY");
        assert_eq!(name(0), "TYPE0");
        assert_eq!(name(54), "TYPE54");
        assert_eq!(name(65535), "TYPE65535");
    }

    #[test]
    fn parsing_is_case_insensitive_and_accepts_type_n() {
        assert_eq!(parse("aaaa"), Some(28));
        assert_eq!(parse("Https"), Some(65));
        assert_eq!(parse("nsap-ptr"), Some(23));
        assert_eq!(parse("TYPE28"), Some(28));
        assert_eq!(parse("type65534"), Some(65534));
        assert_eq!(parse("TYPE007"), Some(7));
        for bad in [
            "",
            "AAA",
            "TYPE",
            "TYPE-1",
            "TYPE+1",
            "TYPE65536",
            "TYPE 1",
            " A",
            "*",
            "28",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
