//! The port-mapping engine: a sans-I/O state machine that decides, for every wanted mapping, when to
//! ask the gateway for it, when to renew it, when to check that the gateway still has it, when to
//! remove it and how long to wait after a failure. It never touches a socket or a clock: the driver
//! ([`super::driver`]) feeds it the time and the gateway's answers, and carries out the one
//! [`Action`] it asks for at a time.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{Protocol, PublicPort, Transport};

/// Identity of one mapping: the listener it serves and the transport.
pub(crate) type Key = (String, Transport);

/// One mapping the configuration asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Want {
    /// The listener's name.
    pub listener: String,
    /// TCP or UDP.
    pub transport: Transport,
    /// The local port traffic goes to (the listener's bound port).
    pub internal_port: u16,
    /// The local address the listener is bound to, if it is a specific one (else: the host's
    /// address toward the gateway).
    pub internal_ip: Option<IpAddr>,
    /// The public port asked for.
    pub public: PublicPort,
}

impl Want {
    fn key(&self) -> Key {
        (self.listener.clone(), self.transport)
    }
}

/// What the engine asks the driver to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Find the gateway and the protocol it speaks; answer with [`Engine::on_discovered`].
    Discover,
    /// Create or renew a mapping; answer with [`Engine::on_mapped`].
    Map {
        /// The mapping.
        want: Want,
        /// The public port to ask for (`None`: any).
        public_port: Option<u16>,
        /// Lifetime to ask for, in seconds.
        lifetime_s: u32,
        /// Whether this renews a mapping the gateway granted before.
        renewal: bool,
    },
    /// Remove a mapping; answer with [`Engine::on_unmapped`].
    Unmap {
        /// The mapping.
        want: Want,
        /// The public port the gateway granted.
        public_port: u16,
    },
    /// Ask the gateway whether it still has our mappings; answer with [`Engine::on_probed`].
    Probe,
}

/// The gateway that answered discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GatewayInfo {
    /// The protocol it speaks (and the driver will use).
    pub protocol: Protocol,
    /// Its address.
    pub address: IpAddr,
    /// Its external address, when it told.
    pub external_ip: Option<IpAddr>,
    /// NAT-PMP / PCP epoch (seconds since the gateway's mapping state began).
    pub epoch: Option<u32>,
}

/// A mapping the gateway granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Granted {
    /// The public port.
    pub public_port: u16,
    /// Granted lifetime in seconds (0: permanent).
    pub lifetime_s: u32,
    /// External address, when the answer carried it.
    pub external_ip: Option<IpAddr>,
    /// NAT-PMP / PCP epoch of the answer.
    pub epoch: Option<u32>,
}

/// A failed request to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// What went wrong, for the log and the status.
    pub message: String,
    /// The gateway did not answer (or is gone): discover it again before the next request.
    pub gateway_lost: bool,
}

/// What a probe found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProbeReport {
    /// External address.
    pub external_ip: Option<IpAddr>,
    /// NAT-PMP / PCP epoch.
    pub epoch: Option<u32>,
    /// UPnP: the gateway's mappings as (transport, public port, internal port) to our address;
    /// `None` when the protocol cannot list them.
    pub present: Option<Vec<(Transport, u16, u16)>>,
}

/// Timing of the engine, from `[port_mapping]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// Lifetime asked for.
    pub lifetime_s: u32,
    /// Renew this long before a mapping expires.
    pub renewal_lead_s: u32,
}

impl Timing {
    /// How often the gateway is asked whether it still has our mappings: a third of the
    /// lifetime, between 5 s and 60 s, so a restarted gateway is noticed well before a renewal.
    pub fn probe_interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.lifetime_s / 3).clamp(5, 60))
    }

    /// When to renew a mapping granted for `lifetime_s`: `renewal_lead_s` before it expires, but
    /// never in the first half of its life (a lead as long as the lifetime would renew at once).
    pub fn renew_after(&self, lifetime_s: u32) -> Option<Duration> {
        (lifetime_s > 0).then(|| {
            let s = lifetime_s
                .saturating_sub(self.renewal_lead_s)
                .max(lifetime_s / 2)
                .max(1);
            Duration::from_secs(u64::from(s))
        })
    }
}

/// First wait after a failure; it doubles per failure up to [`MAX_BACKOFF`].
pub(crate) const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(60);

fn backoff(failures: u32) -> Duration {
    MIN_BACKOFF
        .saturating_mul(1u32 << failures.saturating_sub(1).min(10))
        .min(MAX_BACKOFF)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Ask the gateway at `due`.
    Pending { due: Instant },
    /// A request is with the driver.
    InFlight,
    /// Granted; renew at `renew_at` (never, for a permanent one).
    Active {
        renew_at: Option<Instant>,
        expires: Option<Instant>,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    want: Want,
    state: State,
    granted: Option<u16>,
    renewals: u64,
    failures: u32,
    failures_total: u64,
    last_error: Option<String>,
}

#[derive(Debug, Clone)]
enum Gateway {
    Unknown {
        due: Instant,
    },
    Discovering,
    Known {
        info: GatewayInfo,
        epoch_at: Instant,
        next_probe: Instant,
        probing: bool,
    },
}

/// Something worth a log line, returned with each outcome so the driver logs it once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// The gateway was found.
    GatewayFound(GatewayInfo),
    /// No gateway answered (logged as a warning on the first failure only).
    GatewayMissing { message: String, first: bool },
    /// A mapping was made or renewed.
    Mapped {
        key: Key,
        external: Option<IpAddr>,
        public_port: u16,
        lifetime_s: u32,
        renewal: bool,
    },
    /// The gateway refused a mapping or did not answer.
    MapFailed {
        key: Key,
        message: String,
        retry_in: Duration,
        first: bool,
    },
    /// A mapping was removed (or removing it failed).
    Unmapped {
        key: Key,
        public_port: u16,
        error: Option<String>,
    },
    /// The gateway lost our mappings (restart) or one of them; they are made again.
    Forgotten { keys: Vec<Key>, why: &'static str },
    /// The external address changed.
    ExternalAddressChanged { from: Option<IpAddr>, to: IpAddr },
}

/// The engine.
#[derive(Debug)]
pub(crate) struct Engine {
    timing: Timing,
    entries: BTreeMap<Key, Entry>,
    /// Mappings no longer wanted, still on the gateway: removed before anything else.
    removals: Vec<(Want, u16)>,
    gateway: Gateway,
    external_ip: Option<IpAddr>,
    last_error: Option<String>,
    discovery_failures_total: u64,
    /// Discoveries failed in a row (the backoff).
    discovery_failures: u32,
}

impl Engine {
    /// An engine with nothing wanted yet.
    pub fn new(timing: Timing, now: Instant) -> Engine {
        Engine {
            timing,
            entries: BTreeMap::new(),
            removals: Vec::new(),
            gateway: Gateway::Unknown { due: now },
            external_ip: None,
            last_error: None,
            discovery_failures_total: 0,
            discovery_failures: 0,
        }
    }

    /// Replaces the set of wanted mappings: new ones are made, ones no longer wanted (or wanted
    /// differently) are removed from the gateway, the rest are left alone.
    pub fn set_wanted(&mut self, wanted: Vec<Want>, now: Instant) {
        let mut next = BTreeMap::new();
        for want in wanted {
            let key = want.key();
            match self.entries.remove(&key) {
                Some(e) if e.want == want => {
                    next.insert(key, e);
                }
                old => {
                    if let Some(Entry {
                        want: w,
                        granted: Some(p),
                        ..
                    }) = old
                    {
                        self.removals.push((w, p));
                    }
                    next.insert(
                        key,
                        Entry {
                            want,
                            state: State::Pending { due: now },
                            granted: None,
                            renewals: 0,
                            failures: 0,
                            failures_total: 0,
                            last_error: None,
                        },
                    );
                }
            }
        }
        for (_, e) in std::mem::take(&mut self.entries) {
            if let Some(p) = e.granted {
                self.removals.push((e.want, p));
            }
        }
        self.entries = next;
    }

    /// Stops wanting everything: the next actions remove every granted mapping.
    pub fn shutdown(&mut self, now: Instant) {
        self.set_wanted(Vec::new(), now);
    }

    /// True when nothing is wanted and nothing is left to remove.
    pub fn is_idle(&self) -> bool {
        self.entries.is_empty() && self.removals.is_empty()
    }

    /// The next thing to do now, if any (the driver carries it out, answers, then asks again).
    pub fn next_action(&mut self, now: Instant) -> Option<Action> {
        let known = match &mut self.gateway {
            Gateway::Unknown { due } => {
                if (!self.entries.is_empty() || !self.removals.is_empty()) && *due <= now {
                    if self.entries.is_empty() {
                        // Nothing wanted and no gateway: the removals cannot be carried out.
                        self.removals.clear();
                        return None;
                    }
                    self.gateway = Gateway::Discovering;
                    return Some(Action::Discover);
                }
                return None;
            }
            Gateway::Discovering => return None,
            Gateway::Known { .. } => true,
        };
        debug_assert!(known);
        if let Some((want, public_port)) = self.removals.pop() {
            return Some(Action::Unmap { want, public_port });
        }
        let lifetime_s = self.timing.lifetime_s;
        for e in self.entries.values_mut() {
            let due = match e.state {
                State::Pending { due } => due <= now,
                State::Active { renew_at: Some(at), .. } => at <= now,
                _ => false,
            };
            if due {
                let renewal = matches!(e.state, State::Active { .. });
                let public_port = e.granted.or(match e.want.public {
                    PublicPort::Fixed(p) => Some(p),
                    PublicPort::Any => None,
                });
                e.state = State::InFlight;
                return Some(Action::Map {
                    want: e.want.clone(),
                    public_port,
                    lifetime_s,
                    renewal,
                });
            }
        }
        if let Gateway::Known {
            next_probe, probing, ..
        } = &mut self.gateway
        {
            let any_active = self.entries.values().any(|e| matches!(e.state, State::Active { .. }));
            if !*probing && *next_probe <= now && any_active {
                *probing = true;
                return Some(Action::Probe);
            }
        }
        None
    }

    /// When [`Engine::next_action`] may have something to do (`None`: only after new input).
    pub fn next_deadline(&self) -> Option<Instant> {
        let gateway = match &self.gateway {
            Gateway::Unknown { due } if !self.entries.is_empty() => return Some(*due),
            Gateway::Known { next_probe, .. } => Some(*next_probe),
            _ => None,
        };
        self.entries
            .values()
            .filter_map(|e| match e.state {
                State::Pending { due } => Some(due),
                State::Active { renew_at, .. } => renew_at,
                State::InFlight => None,
            })
            .chain(gateway)
            .min()
    }

    /// The answer to [`Action::Discover`].
    pub fn on_discovered(&mut self, result: Result<GatewayInfo, Failure>, now: Instant) -> Event {
        match result {
            Ok(info) => {
                if let Some(ip) = info.external_ip {
                    self.external_ip = Some(ip);
                }
                self.last_error = None;
                self.discovery_failures = 0;
                // A new gateway (or the same one after it was lost) may not have our mappings.
                for e in self.entries.values_mut() {
                    if e.state != State::InFlight {
                        e.state = State::Pending { due: now };
                    }
                }
                self.gateway = Gateway::Known {
                    info: info.clone(),
                    epoch_at: now,
                    next_probe: now + self.timing.probe_interval(),
                    probing: false,
                };
                Event::GatewayFound(info)
            }
            Err(f) => {
                self.discovery_failures += 1;
                self.gateway = Gateway::Unknown {
                    due: now + backoff(self.discovery_failures),
                };
                self.discovery_failures_total += 1;
                let first = self.last_error.as_deref() != Some(f.message.as_str());
                self.last_error = Some(f.message.clone());
                for e in self.entries.values_mut() {
                    e.last_error = Some(f.message.clone());
                }
                Event::GatewayMissing {
                    message: f.message,
                    first,
                }
            }
        }
    }

    /// The answer to [`Action::Map`].
    pub fn on_mapped(
        &mut self,
        want: &Want,
        renewal: bool,
        result: Result<Granted, Failure>,
        now: Instant,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let key = &want.key();
        let Some(e) = self
            .entries
            .get_mut(key)
            .filter(|e| e.want == *want && e.state == State::InFlight)
        else {
            // No longer wanted (or wanted differently) while the request was out: remove what the
            // gateway granted.
            if let Ok(g) = &result {
                let removal = (want.clone(), g.public_port);
                if !self.removals.contains(&removal) {
                    self.removals.push(removal);
                }
            }
            return events;
        };
        match result {
            Ok(g) => {
                e.failures = 0;
                e.last_error = None;
                if renewal {
                    e.renewals += 1;
                }
                e.granted = Some(g.public_port);
                e.state = State::Active {
                    renew_at: self.timing.renew_after(g.lifetime_s).map(|d| now + d),
                    expires: (g.lifetime_s > 0).then(|| now + Duration::from_secs(u64::from(g.lifetime_s))),
                };
                events.push(Event::Mapped {
                    key: key.clone(),
                    external: g.external_ip.or(self.external_ip),
                    public_port: g.public_port,
                    lifetime_s: g.lifetime_s,
                    renewal,
                });
                if let Some(ip) = g.external_ip {
                    events.extend(self.note_external_ip(ip));
                }
                if let Some(epoch) = g.epoch {
                    events.extend(self.note_epoch(epoch, now));
                }
            }
            Err(f) => {
                e.failures += 1;
                e.failures_total += 1;
                let retry_in = backoff(e.failures);
                let first = e.last_error.as_deref() != Some(f.message.as_str());
                e.last_error = Some(f.message.clone());
                e.state = State::Pending { due: now + retry_in };
                if f.gateway_lost {
                    e.state = State::Pending { due: now };
                    self.lose_gateway(now, &f.message);
                }
                events.push(Event::MapFailed {
                    key: key.clone(),
                    message: f.message,
                    retry_in,
                    first,
                });
            }
        }
        events
    }

    /// The answer to [`Action::Unmap`].
    pub fn on_unmapped(&mut self, want: &Want, public_port: u16, result: Result<(), Failure>, now: Instant) -> Event {
        let error = result.err().map(|f| {
            if f.gateway_lost {
                self.lose_gateway(now, &f.message);
            }
            f.message
        });
        Event::Unmapped {
            key: want.key(),
            public_port,
            error,
        }
    }

    /// The answer to [`Action::Probe`].
    pub fn on_probed(&mut self, result: Result<ProbeReport, Failure>, now: Instant) -> Vec<Event> {
        let interval = self.timing.probe_interval();
        if let Gateway::Known {
            next_probe, probing, ..
        } = &mut self.gateway
        {
            *probing = false;
            *next_probe = now + interval;
        }
        let report = match result {
            Ok(r) => r,
            Err(f) => {
                if f.gateway_lost {
                    self.lose_gateway(now, &f.message);
                }
                self.last_error = Some(f.message);
                return Vec::new();
            }
        };
        let mut events = Vec::new();
        if let Some(ip) = report.external_ip {
            events.extend(self.note_external_ip(ip));
        }
        if let Some(epoch) = report.epoch {
            events.extend(self.note_epoch(epoch, now));
        }
        if let Some(present) = report.present {
            let mut keys = Vec::new();
            for (key, e) in &mut self.entries {
                if let (State::Active { .. }, Some(p)) = (e.state, e.granted) {
                    if !present.contains(&(e.want.transport, p, e.want.internal_port)) {
                        e.state = State::Pending { due: now };
                        keys.push(key.clone());
                    }
                }
            }
            if !keys.is_empty() {
                events.push(Event::Forgotten {
                    keys,
                    why: "the gateway no longer lists it",
                });
            }
        }
        events
    }

    fn lose_gateway(&mut self, now: Instant, message: &str) {
        self.last_error = Some(message.to_owned());
        if !matches!(self.gateway, Gateway::Unknown { .. }) {
            self.gateway = Gateway::Unknown { due: now };
        }
    }

    fn note_external_ip(&mut self, ip: IpAddr) -> Option<Event> {
        let from = self.external_ip.replace(ip);
        (from.is_some() && from != Some(ip)).then_some(Event::ExternalAddressChanged { from, to: ip })
    }

    /// NAT-PMP / PCP: an epoch smaller than the time passed since the last one says the gateway
    /// restarted and lost its mappings (RFC 6886 §3.6, RFC 6887 §8.5): every mapping is made again.
    fn note_epoch(&mut self, epoch: u32, now: Instant) -> Option<Event> {
        let Gateway::Known { info, epoch_at, .. } = &mut self.gateway else {
            return None;
        };
        let restarted = info.epoch.is_some_and(|before| {
            let elapsed = now.saturating_duration_since(*epoch_at).as_secs();
            let expected = u64::from(before) + elapsed * 7 / 8;
            u64::from(epoch) + 2 < expected
        });
        info.epoch = Some(epoch);
        *epoch_at = now;
        if !restarted {
            return None;
        }
        let mut keys = Vec::new();
        for (key, e) in &mut self.entries {
            if matches!(e.state, State::Active { .. }) {
                e.state = State::Pending { due: now };
                keys.push(key.clone());
            }
        }
        Some(Event::Forgotten {
            keys,
            why: "the gateway restarted (its epoch went back)",
        })
    }
}

mod status;
#[cfg(test)]
mod tests;
