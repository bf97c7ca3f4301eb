//! UDP detection over several datagrams of one client: the first alone through `can_handle_message`,
//! then all of them so far through `detect_datagrams` (plugin-api 1.1; a plugin built against 1.0 gets
//! the default body, which judges the newest datagram alone). Every answer goes through the router's
//! one verdict function, as TCP detection does. The datagrams themselves are held by the UDP driver's
//! pending table ([`crate::udp::pending`]).

use std::sync::Arc;

use abi_stable::std_types::{RResult, RSlice};

use super::{builtin_match, verdict, Decision, Hook, Router, State};
use crate::routing::registry::BackendKind;

impl Router {
    /// Asks the backends still undecided about a UDP client's datagrams so far, oldest first, and
    /// decides if it can. One datagram is asked through `can_handle_message`, several through
    /// `detect_datagrams`. With `last` (probe timeout, per-client bounds reached) backends still
    /// undecided count as `NoMatch` and the router must decide; no datagram with `last` only decides.
    pub fn step_datagrams(&mut self, datagrams: &[&[u8]], last: bool) -> Decision {
        match datagrams {
            [] => {}
            [only] => self.ask_pending(Hook::Udp, only),
            several => self.ask_pending_datagrams(several),
        }
        if last {
            for s in &mut self.states {
                if *s == State::Pending {
                    *s = State::Out;
                }
            }
        }
        self.decide()
    }

    fn ask_pending_datagrams(&mut self, datagrams: &[&[u8]]) {
        let slices: Vec<RSlice<'_, u8>> = datagrams.iter().map(|d| RSlice::from_slice(d)).collect();
        let registry = Arc::clone(&self.registry);
        for (i, backend) in registry.backends.iter().enumerate() {
            if self.states[i] != State::Pending {
                continue;
            }
            let answer = match &backend.kind {
                BackendKind::Pass | BackendKind::Noop => RResult::ROk(builtin_match()),
                BackendKind::Plugin(object) => {
                    object.detect_datagrams(&self.conn_info(&[]), RSlice::from_slice(&slices))
                }
            };
            self.states[i] = verdict(backend, Hook::Datagrams, self.peer, answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::Path;
    use std::sync::Arc;

    use abi_stable::std_types::RVec;

    use super::super::{Decision, Router, State};
    use crate::config::Strategy;
    use crate::routing::registry::Registry;

    /// A router over built-in `pass` backends in these tiers, with these states forced.
    fn router(tiers: &[&str], states: &[State]) -> Router {
        let mut text = String::from("[[listener]]\naddress = \"127.0.0.1:1\"\ntransport = [\"udp\"]\n");
        for (i, t) in tiers.iter().enumerate() {
            text += &format!(
                "[[backend]]\nname = \"b{i}\"\nprotocol = \"pass\"\ntarget = \"127.0.0.1:2\"\npriority = \"{t}\"\n"
            );
        }
        let config = crate::config::parse(Path::new("/t.toml"), &text).expect("config");
        let (registry, issues) = Registry::build(&config, Vec::new(), None);
        assert!(issues.is_empty());
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let mut r = Router::for_datagrams(Arc::new(registry), Strategy::FirstAvailable, Arc::from("l"), addr, addr);
        r.states = states.to_vec();
        r
    }

    fn index(d: Decision) -> Option<usize> {
        match d {
            Decision::Route { index, .. } => Some(index),
            Decision::Wait | Decision::NoMatch => None,
        }
    }

    #[test]
    fn an_undecided_higher_tier_holds_a_lower_match_until_the_last_step() {
        let states = [State::Pending, State::Matched(RVec::new())];
        let mut r = router(&["normal", "fallback"], &states);
        assert_eq!(r.step_datagrams(&[], false), Decision::Wait);
        assert_eq!(index(r.step_datagrams(&[], true)), Some(1));
    }

    #[test]
    fn the_last_step_with_nothing_matched_is_no_match() {
        let mut r = router(&["normal", "normal"], &[State::Pending, State::Out]);
        assert_eq!(r.step_datagrams(&[], false), Decision::Wait);
        assert_eq!(r.step_datagrams(&[], true), Decision::NoMatch);
    }

    #[test]
    fn several_datagrams_ask_only_backends_still_undecided() {
        // b0 was ruled out by an earlier datagram; b1 (pass) matches when asked about the rest.
        let mut r = router(&["vip", "normal"], &[State::Out, State::Pending]);
        assert_eq!(index(r.step_datagrams(&[b"a", b"b"], false)), Some(1));
    }
}
