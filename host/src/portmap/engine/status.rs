//! The engine's report for `/status` and `/metrics`: every mapping's state, in plain values.

use std::time::Instant;

use super::{Engine, Gateway, State};
use crate::portmap::{MappingStatus, PortMapStatus, PublicPort};

impl Engine {
    /// The status of every mapping, for `/status` and `/metrics`.
    pub fn status(&self, now: Instant) -> PortMapStatus {
        let (protocol, gateway) = match &self.gateway {
            Gateway::Known { info, .. } => (Some(info.protocol), Some(info.address)),
            _ => (None, None),
        };
        PortMapStatus {
            enabled: true,
            protocol: protocol.map(|p| p.label().to_owned()),
            gateway: gateway.map(|a| a.to_string()),
            external_address: self.external_ip.map(|a| a.to_string()),
            last_error: self.last_error.clone(),
            discovery_failures: self.discovery_failures_total,
            mappings: self
                .entries
                .values()
                .map(|e| {
                    let (state, left) = match e.state {
                        State::Active { expires, .. } => {
                            ("active", expires.map(|x| x.saturating_duration_since(now).as_secs()))
                        }
                        State::InFlight => ("requesting", None),
                        State::Pending { .. } if e.failures > 0 || e.last_error.is_some() => ("failed", None),
                        State::Pending { .. } => ("pending", None),
                    };
                    MappingStatus {
                        listener: e.want.listener.clone(),
                        transport: e.want.transport.label().to_owned(),
                        internal_port: e.want.internal_port,
                        requested_public_port: match e.want.public {
                            PublicPort::Fixed(p) => p.to_string(),
                            PublicPort::Any => "?".to_owned(),
                        },
                        public_port: if state == "active" { e.granted } else { None },
                        state: state.to_owned(),
                        lifetime_left_s: left,
                        renewals: e.renewals,
                        failures: e.failures_total,
                        last_error: e.last_error.clone(),
                    }
                })
                .collect(),
        }
    }
}
