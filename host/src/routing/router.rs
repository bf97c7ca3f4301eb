//! The routing decision for one connection, with no I/O: host-side matchers first, then each
//! backend's detection over the growing preview, then the strategy picks among the matches, honouring
//! priority tiers (vip > normal > standby > fallback).
//!
//! A match is final only when no backend still saying `NeedMore` could beat it: one in a higher tier,
//! or (first-available) an earlier one in the same tier, or (least-requests and the balancing strategies) any in the same tier.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec};
use pmmux_plugin_api::ffi::Detection;
use pmmux_plugin_api::{ConnInfo, Property};

use crate::config::{Priority, Strategy};
use crate::routing::registry::{Backend, BackendKind, Registry};
use crate::routing::strategy::{self, Candidate};

mod datagrams;

/// Where one backend stands for this connection.
#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Out of the running (matchers, `NoMatch`, plugin error, disabled).
    Out,
    /// Said `NeedMore`, or not asked yet.
    Pending,
    /// Said `Match`, with these properties.
    Matched(RVec<Property>),
}

/// What the router decided after a step.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Route to `backends[index]`, attaching these properties.
    Route {
        /// Index into the registry's backends.
        index: usize,
        /// Properties from the matching backend.
        properties: RVec<Property>,
    },
    /// Wait for more bytes.
    Wait,
    /// No backend matches.
    NoMatch,
}

/// Which detection hook a router asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    /// `detect_tcp`, over a growing preview.
    Tcp,
    /// `can_handle_message`, over one whole datagram.
    Udp,
    /// `detect_datagrams`, over every datagram of a client so far.
    Datagrams,
}

impl Hook {
    fn name(self) -> &'static str {
        match self {
            Hook::Tcp => "detect",
            Hook::Udp => "can_handle_message",
            Hook::Datagrams => "detect_datagrams",
        }
    }
}

/// What a router routes: a TCP connection or a UDP client's datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A TCP connection's preview.
    Tcp,
    /// A UDP client's datagrams.
    Udp,
}

/// The detection state of one connection.
pub struct Router {
    registry: Arc<Registry>,
    strategy: Strategy,
    transport: Transport,
    states: Vec<State>,
    peer: SocketAddr,
    local: SocketAddr,
    listener: Arc<str>,
    /// The listener's turn counter (`round-robin`, `weighted`, `random`).
    turns: Arc<AtomicU64>,
    /// The client came over a Unix socket: `peer` and `local` are placeholders, not addresses.
    unix_client: bool,
}

impl Router {
    /// Starts routing a TCP connection: backends whose matchers reject it are out from the start.
    pub fn new(
        registry: Arc<Registry>,
        strategy: Strategy,
        listener: Arc<str>,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Router {
        Router::with_transport(Transport::Tcp, registry, strategy, listener, peer, local)
    }

    /// Starts routing a UDP client: as [`Router::new`], and backends that take TCP only (those
    /// sending a PROXY header) are out from the start.
    pub fn for_datagrams(
        registry: Arc<Registry>,
        strategy: Strategy,
        listener: Arc<str>,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Router {
        Router::with_transport(Transport::Udp, registry, strategy, listener, peer, local)
    }

    fn with_transport(
        transport: Transport,
        registry: Arc<Registry>,
        strategy: Strategy,
        listener: Arc<str>,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Router {
        let states = registry
            .backends
            .iter()
            .map(|b| {
                if eligible(b, transport, peer, local) {
                    State::Pending
                } else {
                    State::Out
                }
            })
            .collect();
        Router {
            registry,
            strategy,
            transport,
            states,
            peer,
            local,
            listener,
            turns: Arc::default(),
            unix_client: false,
        }
    }

    /// Marks the client as one that came over a Unix socket (its `peer` is 0.0.0.0:0, no address):
    /// a backend sending a PROXY header then names no address.
    pub fn with_unix_client(mut self, unix: bool) -> Router {
        self.unix_client = unix;
        self
    }

    /// Whether the client came over a Unix socket.
    pub fn unix_client(&self) -> bool {
        self.unix_client
    }

    /// Shares the listener's turn counter, so that `round-robin` and `weighted` take turns across
    /// its connections (a router on its own starts from turn 0).
    pub fn with_turns(mut self, turns: Arc<AtomicU64>) -> Router {
        self.turns = turns;
        self
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The snapshot this connection routes with.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Connection facts in the ABI's form, borrowing from this router.
    pub fn conn_info<'a>(&'a self, properties: &'a [Property]) -> ConnInfo<'a> {
        ConnInfo {
            peer: self.peer.into(),
            local: self.local.into(),
            listener: RStr::from_str(&self.listener),
            properties: RSlice::from_slice(properties),
        }
    }

    /// Asks every pending backend about `preview`. With `last` (client closed, preview full, probe
    /// timeout) a backend still undecided counts as `NoMatch` and the router must decide.
    pub fn step(&mut self, preview: &[u8], last: bool) -> Decision {
        self.ask_pending(Hook::Tcp, preview);
        if last {
            for s in &mut self.states {
                if *s == State::Pending {
                    *s = State::Out;
                }
            }
        }
        self.decide()
    }

    fn ask_pending(&mut self, hook: Hook, bytes: &[u8]) {
        let registry = Arc::clone(&self.registry);
        for (i, backend) in registry.backends.iter().enumerate() {
            if self.states[i] == State::Pending {
                self.states[i] = self.ask(hook, backend, bytes);
            }
        }
    }

    fn ask(&self, hook: Hook, backend: &Backend, bytes: &[u8]) -> State {
        let object = match &backend.kind {
            BackendKind::Pass | BackendKind::Noop => {
                return verdict(backend, hook, self.peer, RResult::ROk(builtin_match()))
            }
            // Plugins are never asked about zero bytes: nothing to detect yet.
            BackendKind::Plugin(_) if bytes.is_empty() && hook == Hook::Tcp => return State::Pending,
            BackendKind::Plugin(object) => object,
        };
        let conn = self.conn_info(&[]);
        let bytes = RSlice::from_slice(bytes);
        let answer = match hook {
            Hook::Tcp => object.detect_tcp(&conn, bytes),
            Hook::Udp | Hook::Datagrams => object.can_handle_message(&conn, bytes),
        };
        verdict(backend, hook, self.peer, answer)
    }

    fn decide(&mut self) -> Decision {
        let backends = &self.registry.backends;
        let tier = |i: usize| backends[i].priority();
        let best_tier: Option<Priority> = self
            .states
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, State::Matched(_)))
            .map(|(i, _)| tier(i))
            .max();
        let pending = |pred: &dyn Fn(usize) -> bool| {
            self.states
                .iter()
                .enumerate()
                .any(|(i, s)| *s == State::Pending && pred(i))
        };
        let Some(best) = best_tier else {
            return if pending(&|_| true) {
                Decision::Wait
            } else {
                Decision::NoMatch
            };
        };
        if pending(&|i| tier(i) > best) {
            return Decision::Wait;
        }
        let in_best: Vec<usize> = (0..self.states.len())
            .filter(|&i| tier(i) == best && matches!(self.states[i], State::Matched(_)))
            .collect();
        let chosen = match self.strategy {
            Strategy::FirstAvailable => {
                let first = in_best[0];
                if pending(&|i| tier(i) == best && i < first) {
                    return Decision::Wait;
                }
                first
            }
            Strategy::LeastRequests => {
                if pending(&|i| tier(i) == best) {
                    return Decision::Wait;
                }
                *in_best
                    .iter()
                    .min_by_key(|&&i| backends[i].stats.live.load(Ordering::Relaxed))
                    .unwrap_or(&in_best[0])
            }
            // The balancing strategies choose among the whole tier: wait until it has decided.
            _ if pending(&|i| tier(i) == best) => return Decision::Wait,
            balancing => in_best[self.balance(balancing, &in_best)],
        };
        let properties = match std::mem::replace(&mut self.states[chosen], State::Out) {
            State::Matched(p) => p,
            _ => RVec::new(),
        };
        Decision::Route {
            index: chosen,
            properties,
        }
    }

    /// Picks among `in_best` (indexes into the backends) by a balancing strategy; returns a
    /// position in `in_best`.
    fn balance(&self, strategy: Strategy, in_best: &[usize]) -> usize {
        let backends = &self.registry.backends;
        let candidates: Vec<Candidate<'_>> = in_best
            .iter()
            .map(|&i| Candidate {
                name: backends[i].name(),
                weight: backends[i].config.weight,
            })
            .collect();
        let turn = || self.turns.fetch_add(1, Ordering::Relaxed);
        match strategy {
            Strategy::RoundRobin => strategy::round_robin(&candidates, turn()),
            Strategy::Weighted => strategy::weighted(&candidates, turn()),
            Strategy::Random => strategy::random(&candidates, strategy::draw(turn())),
            Strategy::SourceHash => strategy::source_hash(&candidates, self.peer.ip()),
            Strategy::FirstAvailable | Strategy::LeastRequests => 0,
        }
    }

    /// After the routed backend failed to connect (it is already out of the running): leaves out
    /// backends that became unhealthy meanwhile, so that the next [`Router::step`] gives the next
    /// backend in the ranking (same tier by the strategy, then lower tiers).
    pub fn fail_over(&mut self) {
        let registry = Arc::clone(&self.registry);
        for (s, b) in self.states.iter_mut().zip(registry.backends.iter()) {
            if !b.stats.health.is_up() {
                *s = State::Out;
            }
        }
    }

    /// Names of the backends that were asked (passed their matchers), for the "unmatched" log line.
    pub fn asked(&self) -> Vec<&str> {
        let backends = &self.registry.backends;
        backends
            .iter()
            .filter(|b| eligible(b, self.transport, self.peer, self.local))
            .map(|b| b.name())
            .collect()
    }
}

/// Whether `backend` may be asked at all about a client of this transport: enabled, healthy, its
/// address and port matchers pass, and (UDP) it does not send a PROXY header, which takes TCP only.
fn eligible(backend: &Backend, transport: Transport, peer: SocketAddr, local: SocketAddr) -> bool {
    let tcp_only = backend.config.proxy_protocol.is_some() || backend.config.target_is_unix();
    backend.is_enabled()
        && backend.stats.health.is_up()
        && !(transport == Transport::Udp && tcp_only)
        && backend.matchers().matches(peer, local)
}

/// A built-in `pass` / `noop` backend matches whatever its address matchers let through, with no
/// properties.
fn builtin_match() -> Detection {
    Detection::Match(RVec::new())
}

/// The one place a detection hook's answer becomes a router state, whichever hook gave it (TCP
/// `detect`, `can_handle_message`, `detect_datagrams`, built-ins): a plugin error counts as
/// `NoMatch` (and is counted, and charged to the client), and a match whose properties fail the backend's `property` regexes
/// is no match either. The properties kept are copied into host memory, so nothing the router or
/// a flow holds points into the plugin's library.
fn verdict(backend: &Backend, hook: Hook, peer: SocketAddr, answer: RResult<Detection, RString>) -> State {
    match answer {
        RResult::ROk(verdict) => {
            if !matches!(backend.kind, BackendKind::Pass | BackendKind::Noop) {
                backend.plugin_ok();
            }
            match verdict {
                Detection::Match(props) if !backend.matchers().matches_properties(&props) => State::Out,
                Detection::Match(props) => State::Matched(host_owned(&props)),
                Detection::NoMatch => State::Out,
                Detection::NeedMore => State::Pending,
            }
        }
        RResult::RErr(e) => {
            backend.plugin_error(hook.name(), e.as_str(), Some(peer));
            State::Out
        }
    }
}

/// Copies properties a plugin returned into strings the host allocated.
fn host_owned(props: &[Property]) -> RVec<Property> {
    props
        .iter()
        .map(|p| Property::new(p.key.as_str(), p.value.as_str()))
        .collect()
}

#[cfg(test)]
mod health_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A registry of built-in `pass` backends named after their tiers, e.g. `["vip", "normal"]`.
    fn registry(tiers: &[&str]) -> Arc<Registry> {
        let mut text = String::from("[[listener]]\naddress = \"127.0.0.1:1\"\n");
        for (i, t) in tiers.iter().enumerate() {
            text += &format!(
                "[[backend]]\nname = \"b{i}\"\nprotocol = \"pass\"\ntarget = \"127.0.0.1:2\"\npriority = \"{t}\"\n"
            );
        }
        let config = crate::config::parse(Path::new("/t.toml"), &text).expect("config");
        let (reg, issues) = Registry::build(&config, Vec::new(), None);
        assert!(issues.is_empty());
        Arc::new(reg)
    }

    fn router(tiers: &[&str], strategy: Strategy, states: &[&str]) -> Router {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let mut r = Router::new(registry(tiers), strategy, Arc::from("l"), addr, addr);
        r.states = states
            .iter()
            .map(|s| match *s {
                "match" => State::Matched(RVec::new()),
                "more" => State::Pending,
                _ => State::Out,
            })
            .collect();
        r
    }

    fn routed(d: Decision) -> Option<usize> {
        match d {
            Decision::Route { index, .. } => Some(index),
            Decision::Wait => None,
            Decision::NoMatch => Some(usize::MAX),
        }
    }

    #[test]
    fn first_available_waits_only_for_earlier_backends() {
        let fa = Strategy::FirstAvailable;
        assert_eq!(
            routed(router(&["normal"; 3], fa, &["out", "match", "more"]).decide()),
            Some(1)
        );
        assert_eq!(
            routed(router(&["normal"; 3], fa, &["more", "match", "out"]).decide()),
            None
        );
        assert_eq!(
            routed(router(&["normal"; 3], fa, &["out", "out", "out"]).decide()),
            Some(usize::MAX)
        );
        assert_eq!(routed(router(&["normal"; 2], fa, &["more", "out"]).decide()), None);
    }

    #[test]
    fn tiers_beat_order() {
        let fa = Strategy::FirstAvailable;
        let tiers = ["fallback", "standby", "normal", "vip"];
        assert_eq!(
            routed(router(&tiers, fa, &["match", "match", "match", "out"]).decide()),
            Some(2)
        );
        assert_eq!(
            routed(router(&tiers, fa, &["match", "match", "out", "out"]).decide()),
            Some(1)
        );
        // A vip still deciding blocks a normal match; a fallback still deciding does not.
        assert_eq!(
            routed(router(&tiers, fa, &["out", "out", "match", "more"]).decide()),
            None
        );
        assert_eq!(
            routed(router(&tiers, fa, &["more", "out", "match", "out"]).decide()),
            Some(2)
        );
    }

    #[test]
    fn least_requests_picks_fewest_live_and_waits_for_its_tier() {
        let lr = Strategy::LeastRequests;
        let r = router(&["normal"; 3], lr, &["match", "match", "match"]);
        r.registry.backends[0].stats.live.store(5, Ordering::Relaxed);
        r.registry.backends[1].stats.live.store(2, Ordering::Relaxed);
        r.registry.backends[2].stats.live.store(3, Ordering::Relaxed);
        let mut r = r;
        assert_eq!(routed(r.decide()), Some(1));
        assert_eq!(
            routed(router(&["normal"; 3], lr, &["match", "out", "more"]).decide()),
            None
        );
    }

    #[test]
    fn last_step_turns_need_more_into_no_match() {
        let mut r = router(&["normal"; 2], Strategy::FirstAvailable, &["more", "more"]);
        // Both are built-in pass backends, which match at once when asked.
        assert_eq!(routed(r.step(b"", true)), Some(0));
    }
}
