//! pmmux plugin `rdp`: matches a client whose first bytes are an RDP connection request: a TPKT
//! header (version 3) carrying an X.224 Connection Request TPDU (code 0xE0), MS-RDPBCGR §2.2.1.1.
//!
//! Params (optional):
//!
//! ```toml
//! [backend.params]
//! mstshash = ["alice", "bob"]   # or one string; matched case-insensitively against the cookie
//! ```
//!
//! With `mstshash`, only requests carrying `Cookie: mstshash=<user>` for one of those users match.
//!
//! Properties on a match:
//! * `rdp.mstshash`: the user in the `Cookie: mstshash=` token, when present;
//! * `rdp.requested_protocols`: when the RDP_NEG_REQ is present, its protocols comma-separated:
//!   `rdp` (0), `ssl`, `hybrid`, `rdstls`, `hybrid_ex`, `rdsaad`, else `0xNNNNNNNN` for unknown bits.
//!
//! The backend answers `NeedMore` until the whole TPKT packet is there, and `NoMatch` as soon as the
//! header rules a request out (first byte not 3, reserved byte not 0, a length under 11 or over
//! [`MAX_LEN`], a length indicator disagreeing with it, another TPDU code, a non-zero DST-REF or
//! class).

use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection, Property};
use serde::Deserialize;

/// The longest connection request accepted (TPKT length); real ones are under 100 bytes.
pub const MAX_LEN: usize = 4096;
const COOKIE: &[u8] = b"Cookie: mstshash=";
const PROTOCOLS: [(u32, &str); 5] = [
    (0x01, "ssl"),
    (0x02, "hybrid"),
    (0x04, "rdstls"),
    (0x08, "hybrid_ex"),
    (0x10, "rdsaad"),
];

/// The backend's `[backend.params]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Users whose `mstshash` cookie this backend takes.
    #[serde(default, deserialize_with = "pmmux_plugin_api::params::string_or_list")]
    pub mstshash: Option<Vec<String>>,
}

/// An `rdp` backend.
#[derive(Debug, Clone, Default)]
pub struct Rdp {
    users: Option<Vec<String>>,
}

impl Rdp {
    /// Builds the backend from its params; the error tells the user what is wrong with them.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        let params: Params = spec.params()?;
        let users = match params.mstshash {
            None => None,
            Some(list) if list.is_empty() => {
                return Err("params.mstshash: the list is empty; omit `mstshash` to accept every request".into())
            }
            Some(list) => {
                for user in &list {
                    if user.is_empty() || user.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                        return Err(format!(
                            "params.mstshash: `{user}` is not a user name (empty, or spaces or control characters)"
                        ));
                    }
                }
                Some(list)
            }
        };
        Ok(Rdp { users })
    }

    /// The detection over the bytes seen so far, with this backend's `mstshash` filter.
    pub fn detect_preview(&self, preview: &[u8]) -> Detection {
        match parse(preview) {
            Parse::Incomplete => Detection::NeedMore,
            Parse::Invalid => Detection::NoMatch,
            Parse::Complete(request) => {
                if let Some(users) = &self.users {
                    let wanted = request
                        .mstshash
                        .as_deref()
                        .is_some_and(|got| users.iter().any(|u| u.eq_ignore_ascii_case(got)));
                    if !wanted {
                        return Detection::NoMatch;
                    }
                }
                Detection::Match(properties(&request))
            }
        }
    }
}

impl Backend for Rdp {
    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        self.detect_preview(preview)
    }
}

/// What a connection request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The user of the `Cookie: mstshash=` token.
    pub mstshash: Option<String>,
    /// RDP_NEG_REQ `requestedProtocols`, when present.
    pub requested_protocols: Option<u32>,
}

/// The outcome of parsing the bytes seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A whole connection request.
    Complete(Request),
    /// A valid prefix.
    Incomplete,
    /// Not an RDP connection request.
    Invalid,
}

/// Parses the TPKT + X.224 Connection Request at the start of `preview`.
pub fn parse(preview: &[u8]) -> Parse {
    // Each header byte is checked as soon as it arrives: (offset, check given the bytes so far).
    let byte = |i: usize| preview.get(i).copied();
    let header_ok = |i: usize, b: u8| -> bool {
        match i {
            0 => b == 3,
            1 => b == 0,
            5 => b == 0xe0,
            6 | 7 | 10 => b == 0,
            _ => true,
        }
    };
    for i in 0..11 {
        match byte(i) {
            None => return Parse::Incomplete,
            Some(b) if !header_ok(i, b) => return Parse::Invalid,
            Some(_) => {}
        }
        if i == 3 {
            let len = usize::from(u16::from_be_bytes([byte(2).unwrap_or(0), byte(3).unwrap_or(0)]));
            if !(11..=MAX_LEN).contains(&len) {
                return Parse::Invalid;
            }
        }
        if i == 4 {
            let len = usize::from(u16::from_be_bytes([byte(2).unwrap_or(0), byte(3).unwrap_or(0)]));
            if usize::from(byte(4).unwrap_or(0)) + 5 != len {
                return Parse::Invalid;
            }
        }
    }
    let len = usize::from(u16::from_be_bytes([byte(2).unwrap_or(0), byte(3).unwrap_or(0)]));
    let Some(mut rest) = preview.get(11..len) else {
        return Parse::Incomplete;
    };
    let mut mstshash = None;
    // Optional cookie or routing token, ended by CR LF (MS-RDPBCGR §2.2.1.1).
    if rest.first().is_some_and(|&b| b != 0x01) {
        let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Parse::Invalid;
        };
        let token = rest.get(..end).unwrap_or_default();
        if let Some(user) = token.strip_prefix(COOKIE) {
            mstshash = Some(String::from_utf8_lossy(user).into_owned());
        }
        rest = rest.get(end + 2..).unwrap_or_default();
    }
    let mut requested_protocols = None;
    if !rest.is_empty() {
        // RDP_NEG_REQ: type 1, flags, length 8 (LE), requestedProtocols (LE u32).
        match rest.get(..8) {
            Some(&[1, _, 8, 0, a, b, c, d]) => requested_protocols = Some(u32::from_le_bytes([a, b, c, d])),
            _ => return Parse::Invalid,
        }
    }
    Parse::Complete(Request {
        mstshash,
        requested_protocols,
    })
}

/// `requestedProtocols` as names, as in the `rdp.requested_protocols` property.
pub fn protocol_names(protocols: u32) -> String {
    if protocols == 0 {
        return "rdp".to_owned();
    }
    let mut names: Vec<String> = PROTOCOLS
        .iter()
        .filter(|(bit, _)| protocols & bit != 0)
        .map(|(_, name)| (*name).to_owned())
        .collect();
    let known = PROTOCOLS.iter().fold(0, |all, (bit, _)| all | bit);
    if protocols & !known != 0 {
        names.push(format!("0x{:08x}", protocols & !known));
    }
    names.join(",")
}

/// The `rdp.*` properties of a request.
pub fn properties(request: &Request) -> Vec<Property> {
    let mut props = Vec::new();
    if let Some(user) = &request.mstshash {
        props.push(Property::new("rdp.mstshash", user.as_str()));
    }
    if let Some(protocols) = request.requested_protocols {
        props.push(Property::new("rdp.requested_protocols", protocol_names(protocols)));
    }
    props
}

export_plugin! {
    name: "rdp",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "rdp" => Rdp::new },
}
