//! pmmux plugin `stun`: matches a client whose first message is a STUN request or indication
//! (RFC 5389 / RFC 8489), over UDP (the first datagram) or TCP (the same framing on the stream,
//! RFC 8489 §6.2.2). Detection only: matched traffic is forwarded to the backend's `target`.
//!
//! What matches (see [`message`] for the format checks): a header whose first two bits are zero,
//! whose length is a multiple of 4 and equals the datagram's size minus 20 (over TCP: delimits the
//! message), with the magic cookie 0x2112A442; attributes that fill the length exactly; and a correct
//! FINGERPRINT when one is present. The class must be **request or indication**: a client opens with
//! one of those (a Binding request, a Binding indication as an ICE keepalive, a TURN Allocate
//! request, a Send indication); success and error responses answer a request and are refused, which
//! also keeps a server's replies from being taken for a new client. The method must be one of
//! `methods`, by default Binding only.
//!
//! Classic STUN (RFC 3489) carries no magic cookie, so only its header shape identifies it — weak
//! evidence on a shared port. It is refused unless `classic = true`, which accepts RFC 3489 Binding
//! requests over UDP (with `binding` among the methods); RFC 3489 had no TCP transport for them, so
//! over TCP the cookie is always required.
//!
//! ```toml
//! [backend.params]
//! methods = ["binding", "allocate"]   # or one string; default "binding"
//! classic = true                      # default false
//! ```
//!
//! Method names: `binding`, `allocate`, `refresh`, `send`, `data`, `create-permission`,
//! `channel-bind` (TURN, RFC 8656), `connect`, `connection-bind`, `connection-attempt` (RFC 6062).
//! TURN ChannelData messages (first two bits 01) are not STUN messages and never match.
//!
//! Properties on a match: `stun.method` (a name above, else `0x` and three hex digits), `stun.class`
//! (`request` or `indication`), and `stun.classic = true` for a RFC 3489 message.
//!
//! Over TCP the backend answers `NoMatch` as soon as the first bytes rule STUN out (the first byte's
//! top bits, the type, the length, the cookie) and `NeedMore` until the 20-byte header and then the
//! whole message are there.

pub mod message;

use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection, Property, UdpRouting};

use message::{join_type, method_name, parse_message, parse_stream, split_type, Class, Message, Parse, METHODS};

/// The backend's `[backend.params]`, as written by the user.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Method names to accept; default `binding`.
    #[serde(default, deserialize_with = "pmmux_plugin_api::params::string_or_list")]
    pub methods: Option<Vec<String>>,
    /// Also accept RFC 3489 Binding requests (no magic cookie) over UDP.
    #[serde(default)]
    pub classic: bool,
}

/// A `stun` backend.
#[derive(Debug, Clone)]
pub struct Stun {
    methods: Vec<u16>,
    classic: bool,
}

impl Default for Stun {
    fn default() -> Self {
        Stun {
            methods: vec![message::METHOD_BINDING],
            classic: false,
        }
    }
}

impl Stun {
    /// Builds the backend from its params; the error tells the user what is wrong with them.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        Self::from_params(spec.params()?)
    }

    /// Validates the params.
    pub fn from_params(params: Params) -> Result<Self, String> {
        let methods = match params.methods {
            None => vec![message::METHOD_BINDING],
            Some(list) if list.is_empty() => {
                return Err("params.methods: the list is empty; omit `methods` to accept Binding".into())
            }
            Some(list) => list
                .iter()
                .map(|name| {
                    let lower = name.to_ascii_lowercase();
                    METHODS
                        .iter()
                        .find(|(n, _)| *n == lower)
                        .map(|(_, m)| *m)
                        .ok_or_else(|| {
                            let known: Vec<&str> = METHODS.iter().map(|(n, _)| *n).collect();
                            format!("params.methods: unknown method `{name}`; known: {}", known.join(", "))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        if params.classic && !methods.contains(&message::METHOD_BINDING) {
            return Err("params.classic: RFC 3489 messages are Binding requests; add `binding` to `methods`".into());
        }
        Ok(Stun {
            methods,
            classic: params.classic,
        })
    }

    /// UDP detection over one whole datagram: `Match` or `NoMatch`, never `NeedMore`.
    pub fn detect_message(&self, datagram: &[u8]) -> Detection {
        match parse_message(datagram, self.classic) {
            Ok(m) => self.verdict(&m),
            Err(_) => Detection::NoMatch,
        }
    }

    /// TCP detection over the bytes previewed so far.
    pub fn detect_stream(&self, preview: &[u8]) -> Detection {
        // Refuse an unwanted type from its first byte, and as soon as its two bytes are there.
        if let Some(&first) = preview.first() {
            let possible = self.methods.iter().any(|&method| {
                [Class::Request, Class::Indication]
                    .into_iter()
                    .any(|class| join_type(method, class).to_be_bytes()[0] == first)
            });
            if !possible {
                return Detection::NoMatch;
            }
        }
        if let Some(&[a, b]) = preview.get(..2) {
            if !self.wants(split_type(u16::from_be_bytes([a, b]))) {
                return Detection::NoMatch;
            }
        }
        match parse_stream(preview) {
            Parse::Complete(m) => self.verdict(&m),
            Parse::Incomplete => Detection::NeedMore,
            Parse::Invalid(_) => Detection::NoMatch,
        }
    }

    fn wants(&self, (method, class): (u16, Class)) -> bool {
        matches!(class, Class::Request | Class::Indication) && self.methods.contains(&method)
    }

    fn verdict(&self, m: &Message) -> Detection {
        if self.wants((m.method, m.class)) {
            Detection::Match(properties(m))
        } else {
            Detection::NoMatch
        }
    }
}

impl Backend for Stun {
    /// Binding requests stand alone (each gets its own answer); TURN methods (allocations,
    /// permissions, channels) are a session with one server, so they keep a flow.
    fn udp_routing(&self) -> UdpRouting {
        if self.methods.iter().all(|&m| m == message::METHOD_BINDING) {
            UdpRouting::PerMessage
        } else {
            UdpRouting::Flow
        }
    }

    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        self.detect_stream(preview)
    }

    fn can_handle_message(&self, _client: &ConnInfo<'_>, message: &[u8]) -> Detection {
        self.detect_message(message)
    }
}

/// The `stun.*` properties of a message.
pub fn properties(m: &Message) -> Vec<Property> {
    let mut props = vec![
        Property::new("stun.method", method_name(m.method)),
        Property::new("stun.class", m.class.name()),
    ];
    if m.classic {
        props.push(Property::new("stun.classic", "true"));
    }
    props
}

export_plugin! {
    name: "stun",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "stun" => Stun::new },
}
