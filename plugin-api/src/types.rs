//! The values plugin hooks return, in plain Rust (`Vec`, `String`, `Option`), and their conversions
//! into the `#[repr(C)]` types of [`crate::ffi`]. Every conversion moves the allocation (no copy).

use abi_stable::std_types::{RString, RVec};

use crate::ffi;
pub use crate::ffi::{HealthTransport, Property, SessionCtl, UdpRouting};

/// A detection verdict (sslh's probe model: match / next / again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detection {
    /// This backend takes the connection; the properties are attached to it.
    Match(Vec<Property>),
    /// Not this backend's traffic; the host asks the next one.
    NoMatch,
    /// Cannot tell yet; ask again when more bytes have arrived (bounded by the preview limit and the
    /// probe timeout, after which the host treats it as `NoMatch`).
    NeedMore,
}

impl Detection {
    /// The properties of a `Match`, `None` for the other verdicts.
    pub fn properties(&self) -> Option<&[Property]> {
        match self {
            Detection::Match(props) => Some(props),
            Detection::NoMatch | Detection::NeedMore => None,
        }
    }
}

impl From<Detection> for ffi::Detection {
    fn from(verdict: Detection) -> Self {
        match verdict {
            Detection::Match(props) => ffi::Detection::Match(RVec::from(props)),
            Detection::NoMatch => ffi::Detection::NoMatch,
            Detection::NeedMore => ffi::Detection::NeedMore,
        }
    }
}

/// What a matched UDP backend wants done with one datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UdpAction {
    /// Send it to the target (the backend's `target` when `None`) on the client's flow; the host
    /// relays the target's replies back to the client.
    Forward(Option<String>),
    /// Send these bytes back to the client.
    Reply(Vec<u8>),
    /// The backend consumed it (it may answer later through its [`crate::ClientWriter`]).
    Consumed,
    /// Drop it.
    Drop,
}

impl From<UdpAction> for ffi::UdpAction {
    fn from(action: UdpAction) -> Self {
        match action {
            UdpAction::Forward(target) => ffi::UdpAction::Forward(target.map(RString::from).into()),
            UdpAction::Reply(bytes) => ffi::UdpAction::Reply(RVec::from(bytes)),
            UdpAction::Consumed => ffi::UdpAction::Consumed,
            UdpAction::Drop => ffi::UdpAction::Drop,
        }
    }
}

/// How a backend's target is checked for health, when its plugin knows better than a TCP connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthProbe {
    /// Over which transport the host talks to the target.
    pub transport: HealthTransport,
    /// Bytes the host sends once connected (TCP) or as one datagram (UDP); may be empty for
    /// server-speaks-first protocols (SSH).
    pub send: Vec<u8>,
}

impl From<HealthProbe> for ffi::HealthProbe {
    fn from(probe: HealthProbe) -> Self {
        ffi::HealthProbe {
            transport: probe.transport,
            send: RVec::from(probe.send),
        }
    }
}

/// A plugin's verdict on what a target answered to its [`HealthProbe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthVerdict {
    /// The target answered as a healthy server of this protocol does.
    Healthy,
    /// It did not; the text says why (logged when the backend's status changes).
    Unhealthy(String),
    /// Cannot tell yet: read more (bounded by the check's timeout and 64 KiB).
    NeedMore,
}

impl From<HealthVerdict> for ffi::HealthVerdict {
    fn from(verdict: HealthVerdict) -> Self {
        match verdict {
            HealthVerdict::Healthy => ffi::HealthVerdict::Healthy,
            HealthVerdict::Unhealthy(why) => ffi::HealthVerdict::Unhealthy(RString::from(why)),
            HealthVerdict::NeedMore => ffi::HealthVerdict::NeedMore,
        }
    }
}

impl Property {
    /// The property's name, such as `tls.sni`.
    pub fn key(&self) -> &str {
        self.key.as_str()
    }

    /// The property's value.
    pub fn value(&self) -> &str {
        self.value.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_keep_every_field() {
        let matched = ffi::Detection::from(Detection::Match(vec![Property::new("a.b", "c")]));
        assert_eq!(
            matched,
            ffi::Detection::Match(RVec::from(vec![Property::new("a.b", "c")]))
        );
        assert_eq!(ffi::Detection::from(Detection::NeedMore), ffi::Detection::NeedMore);
        let forward = ffi::UdpAction::from(UdpAction::Forward(Some("h:1".into())));
        assert_eq!(
            forward,
            ffi::UdpAction::Forward(abi_stable::std_types::RSome("h:1".into()))
        );
        let reply = ffi::UdpAction::from(UdpAction::Reply(b"hi".to_vec()));
        assert_eq!(reply, ffi::UdpAction::Reply(RVec::from(b"hi".to_vec())));
        let probe = ffi::HealthProbe::from(HealthProbe {
            transport: HealthTransport::Udp,
            send: vec![1, 2],
        });
        assert_eq!(
            (probe.transport, probe.send.as_slice()),
            (HealthTransport::Udp, &[1, 2][..])
        );
        let sick = ffi::HealthVerdict::from(HealthVerdict::Unhealthy("down".into()));
        assert_eq!(sick, ffi::HealthVerdict::Unhealthy("down".into()));
        let prop = Property::new("k", String::from("v"));
        assert_eq!((prop.key(), prop.value()), ("k", "v"));
    }
}
