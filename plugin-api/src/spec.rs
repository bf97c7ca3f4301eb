//! What a constructor and a hook are told, read as plain Rust: a backend's configuration
//! ([`BackendSpec`]: its params, target and names) and a connection's facts ([`ConnInfo`]). Both stay
//! the `#[repr(C)]` structs the host passes; these methods only read and build them.

use std::net::SocketAddr;

use abi_stable::std_types::{ROption, RSlice, RStr};
use serde::de::DeserializeOwned;

use crate::ffi::{BackendSpec, ConnInfo, FfiAddr, Property};

impl<'a> BackendSpec<'a> {
    /// A spec for calling a constructor directly (a plugin's own tests): backend `name`, `protocol`,
    /// `[backend.params]` as TOML text, no target, priority `normal`.
    pub fn new(name: &'a str, protocol: &'a str, params_toml: &'a str) -> Self {
        BackendSpec {
            name: RStr::from_str(name),
            protocol: RStr::from_str(protocol),
            target: ROption::RNone,
            priority: RStr::from_str("normal"),
            params_toml: RStr::from_str(params_toml),
        }
    }

    /// The same spec with a `target`.
    pub fn with_target(mut self, target: &'a str) -> Self {
        self.target = ROption::RSome(RStr::from_str(target));
        self
    }

    /// The backend's `[backend.params]`, deserialized into the plugin's own type. Use
    /// `#[serde(deny_unknown_fields)]` so typos are reported. The error names the param when it can
    /// (`` `sni`: invalid type: integer `5`, expected a string or a list of strings ``) and reaches
    /// the user as is.
    pub fn params<P: DeserializeOwned>(&self) -> Result<P, String> {
        let text = self.params_toml.as_str();
        toml::from_str(text).map_err(|e| match e.span().and_then(|span| key_at(text, span.start)) {
            Some(key) => format!("invalid params: `{key}`: {}", e.message()),
            None => format!("invalid params: {}", e.message()),
        })
    }

    /// Refuses any `[backend.params]`, for protocols that take none: `spec.no_params()?`.
    pub fn no_params(&self) -> Result<(), String> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct NoParams {}
        self.params::<NoParams>()
            .map(|_| ())
            .map_err(|e| format!("{e} (protocol `{}` takes no params)", self.protocol()))
    }

    /// The backend's `target`, if configured.
    pub fn target(&self) -> Option<&'a str> {
        match self.target {
            ROption::RSome(t) => Some(t.as_str()),
            ROption::RNone => None,
        }
    }

    /// The backend's `name`.
    pub fn name(&self) -> &'a str {
        self.name.as_str()
    }

    /// The protocol asked for (one of those the plugin exports).
    pub fn protocol(&self) -> &'a str {
        self.protocol.as_str()
    }

    /// The backend's `priority` tier name.
    pub fn priority(&self) -> &'a str {
        self.priority.as_str()
    }
}

/// The key written on the line where `at` (a byte offset into `text`) falls, when that line is a
/// single-line `key = value`; errors inside a value (a wrong type, a bad list item) point there.
fn key_at(text: &str, at: usize) -> Option<&str> {
    let line_start = text.get(..at)?.rfind('\n').map_or(0, |n| n + 1);
    let (key, _) = text[line_start..at].split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty()).then_some(key)
}

impl<'a> ConnInfo<'a> {
    /// Connection facts for calling hooks directly (a plugin's own tests): from `peer` to `local`
    /// on listener `listener`, with `properties` already set.
    pub fn new(peer: SocketAddr, local: SocketAddr, listener: &'a str, properties: &'a [Property]) -> Self {
        ConnInfo {
            peer: FfiAddr::from(peer),
            local: FfiAddr::from(local),
            listener: RStr::from_str(listener),
            properties: RSlice::from_slice(properties),
        }
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer.into()
    }

    /// The local address the client reached.
    pub fn local_addr(&self) -> SocketAddr {
        self.local.into()
    }

    /// The `name` of the listener (its address when unnamed).
    pub fn listener(&self) -> &'a str {
        self.listener.as_str()
    }

    /// Properties set so far (by the host or by earlier hooks).
    pub fn properties(&self) -> &'a [Property] {
        self.properties.as_slice()
    }

    /// The value of property `key`, if set.
    pub fn property(&self, key: &str) -> Option<&'a str> {
        self.properties()
            .iter()
            .find(|p| p.key() == key)
            .map(|p| p.value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct P {
        #[allow(dead_code)]
        port: u16,
    }

    #[test]
    fn param_errors_name_the_param() {
        let spec = BackendSpec::new("b", "x", "port = \"http\"");
        let err = spec.params::<P>().unwrap_err();
        assert!(err.starts_with("invalid params: `port`: invalid type: string"), "{err}");
        let err = BackendSpec::new("b", "x", "port = 1\nportt = 2")
            .params::<P>()
            .unwrap_err();
        assert!(err.contains("unknown field `portt`"), "{err}");
        assert!(BackendSpec::new("b", "x", "port = 8").params::<P>().is_ok());
    }

    #[test]
    fn no_params_refuses_any_with_the_protocol_named() {
        assert_eq!(BackendSpec::new("b", "ssh", "").no_params(), Ok(()));
        let err = BackendSpec::new("b", "ssh", "banner = 1").no_params().unwrap_err();
        assert!(
            err.contains("unknown field `banner`") && err.contains("`ssh` takes no params"),
            "{err}"
        );
    }

    #[test]
    fn accessors_read_what_constructors_built() {
        let spec = BackendSpec::new("b", "x", "").with_target("127.0.0.1:22");
        assert_eq!((spec.name(), spec.protocol(), spec.priority()), ("b", "x", "normal"));
        assert_eq!(spec.target(), Some("127.0.0.1:22"));
        let props = [Property::new("tls.sni", "a.example")];
        let peer: SocketAddr = "[::1]:4000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:443".parse().unwrap();
        let conn = ConnInfo::new(peer, local, "web", &props);
        assert_eq!(
            (conn.peer_addr(), conn.local_addr(), conn.listener()),
            (peer, local, "web")
        );
        assert_eq!(conn.property("tls.sni"), Some("a.example"));
        assert_eq!(conn.property("http.host"), None);
    }
}
