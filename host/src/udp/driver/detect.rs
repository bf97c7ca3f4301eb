//! Detection of UDP clients that have no flow yet, driving the pending table ([`crate::udp::pending`]):
//! a client's first datagram is asked about alone; while the answer is undecided its datagrams are
//! held and the still-undecided backends asked about all of them on each new one; once decided (or
//! at the probe timeout, or when a per-client bound is reached, undecided backends then counting as
//! `NoMatch`) the flow is created and every held datagram handed to the backend in order, or they are
//! all dropped and counted as unmatched.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use abi_stable::std_types::RVec;
use pmmux_plugin_api::Property;

use super::{writer, Driver, Flow, FlowKey};
use crate::routing::registry::BackendKind;
use crate::routing::router::{Decision, Router};
use crate::udp::flows;
use crate::udp::pending::{Input, Output};

impl Driver {
    /// A datagram from a client without a flow: start its detection or go on with it.
    pub(super) async fn undecided(&mut self, message: &[u8], client: SocketAddr, now: Instant) {
        let input = Input::Datagram {
            client,
            datagram: message,
            now,
        };
        for output in self.pending_input(input) {
            match output {
                Output::Detect { client } => self.detect_first(message, client, now).await,
                Output::Appended { client } => self.detect_again(client, now).await,
                other => self.conclude(other, message, now).await,
            }
        }
    }

    /// Decides the pending clients whose probe timeout has passed.
    pub(super) async fn expire_pending(&mut self, now: Instant) {
        if self.pending.next_deadline().is_none_or(|due| due > now) {
            return;
        }
        for output in self.pending_input(Input::Tick { now }) {
            self.conclude(output, &[], now).await;
        }
    }

    fn pending_input(&mut self, input: Input<'_, Router>) -> Vec<Output<Router>> {
        let mut out = Vec::new();
        self.pending.handle(input, &mut out);
        self.ctx
            .stats
            .pending
            .store(self.pending.len() as u64, Ordering::Relaxed);
        out
    }

    /// A router for `client` over the current routing snapshot, pinned for its whole detection.
    fn router(&self, client: SocketAddr) -> Router {
        let registry = self.ctx.registry.load_full();
        let strategy = self.ctx.strategy.unwrap_or(registry.routing.strategy);
        Router::for_datagrams(registry, strategy, Arc::clone(&self.ctx.name), client, self.local)
            .with_turns(Arc::clone(&self.ctx.turns))
    }

    /// Asks the backends about a new client's first datagram; holds it if that is undecided.
    async fn detect_first(&mut self, message: &[u8], client: SocketAddr, now: Instant) {
        let mut router = self.router(client);
        match router.step_datagrams(&[message], false) {
            Decision::Wait => {
                let input = Input::Hold {
                    client,
                    state: router,
                    datagram: message,
                    now,
                };
                for output in self.pending_input(input) {
                    self.conclude(output, message, now).await;
                }
            }
            decision => self.decided(client, &router, decision, &[], Some(message), now).await,
        }
    }

    /// Asks the still-undecided backends about all of a pending client's datagrams (the newest was
    /// just held); routes them or drops them once that decides.
    async fn detect_again(&mut self, client: SocketAddr, now: Instant) {
        let Some((router, datagrams)) = self.pending.get_mut(client) else {
            return;
        };
        let all: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
        let decision = router.step_datagrams(&all, false);
        if decision == Decision::Wait {
            return;
        }
        let mut decision = Some(decision);
        for output in self.pending_input(Input::Release { client }) {
            if let (Output::Released { client, held }, Some(decision)) = (output, decision.take()) {
                self.decided(client, &held.state, decision, &held.datagrams, None, now)
                    .await;
            }
        }
    }

    /// Acts on an output that ends or refuses a detection. `message` is the datagram of the input
    /// that produced it (not held when the output is `Full` or `Rejected`).
    async fn conclude(&mut self, output: Output<Router>, message: &[u8], now: Instant) {
        match output {
            Output::Held { client } => {
                tracing::debug!(listener = %self.ctx.name, %client, bytes = message.len(), "UDP client undecided; its datagrams are held");
            }
            Output::Rejected { client, .. } => {
                self.ctx.stats.pending_rejected.fetch_add(1, Ordering::Relaxed);
                if self.pending_log.due(now) {
                    let rejected = self.ctx.stats.pending_rejected.load(Ordering::Relaxed);
                    tracing::warn!(listener = %self.ctx.name, %client, max_udp_pending = self.pending.limits().max_clients, rejected_total = rejected, "too many undecided UDP clients; new ones are dropped until detections end");
                }
            }
            Output::Full { client, mut held } => {
                let decision = held.state.step_datagrams(&[], true);
                self.decided(client, &held.state, decision, &held.datagrams, Some(message), now)
                    .await;
            }
            Output::Expired { client, mut held } | Output::Released { client, mut held } => {
                let decision = held.state.step_datagrams(&[], true);
                self.decided(client, &held.state, decision, &held.datagrams, None, now)
                    .await;
            }
            Output::Detect { .. } | Output::Appended { .. } => {}
        }
    }

    /// Carries out a final decision about `client`: creates its flow and hands it the held datagrams
    /// and then `last`, in order; or drops and counts them all.
    async fn decided(
        &mut self,
        client: SocketAddr,
        router: &Router,
        decision: Decision,
        held: &[Vec<u8>],
        last: Option<&[u8]>,
        now: Instant,
    ) {
        let datagrams = held.len() + usize::from(last.is_some());
        let (index, properties) = match decision {
            Decision::Route { index, properties } => (index, properties),
            Decision::Wait | Decision::NoMatch => {
                let bytes: usize = held.iter().map(Vec::len).sum::<usize>() + last.map_or(0, <[u8]>::len);
                self.ctx.stats.unmatched.fetch_add(datagrams as u64, Ordering::Relaxed);
                if self.unmatched_log.due(now) {
                    let dropped = self.ctx.stats.unmatched.load(Ordering::Relaxed);
                    tracing::info!(listener = %self.ctx.name, %client, datagrams, bytes, asked = ?router.asked(), dropped_total = dropped, "UDP datagram matched no backend; dropped");
                }
                return;
            }
        };
        let Some(flow) = self.create_flow(client, router, index, properties, datagrams, now) else {
            return;
        };
        for message in held {
            self.deliver(flow, message, client).await;
        }
        if let Some(message) = last {
            self.deliver(flow, message, client).await;
        }
    }

    /// Creates `client`'s flow to `backends[index]` of the router's snapshot (or finds the one a
    /// racing detection made, or, for a per-message backend, the one an earlier message of this
    /// client to that backend made); `None` when the flow table is full.
    fn create_flow(
        &mut self,
        client: SocketAddr,
        router: &Router,
        index: usize,
        properties: RVec<Property>,
        datagrams: usize,
        now: Instant,
    ) -> Option<flows::FlowId> {
        let backend = Arc::clone(router.registry().backends.get(index)?);
        let idle_timeout = backend.config.udp_idle_timeout;
        let is_plugin = matches!(backend.kind, BackendKind::Plugin(_));
        let input = flows::Input::Detected {
            client: FlowKey::of(client, &backend),
            idle_timeout,
            state: Flow::new(backend, properties),
            now,
        };
        let flow = match self.apply(input, now) {
            Some(flows::Output::Created { flow }) => {
                self.ctx.stats.created.fetch_add(1, Ordering::Relaxed);
                if is_plugin {
                    writer::remember(client, &self.socket);
                }
                if let Some(f) = self.flows.get(flow) {
                    let properties = f
                        .properties
                        .iter()
                        .map(|p| format!("{}={}", p.key, p.value))
                        .collect::<Vec<_>>()
                        .join(" ");
                    let routing = f.backend.udp_routing;
                    tracing::debug!(listener = %self.ctx.name, %client, backend = f.backend.name(), plugin = %f.backend.plugin_label(), %properties, datagrams, ?routing, "UDP flow created");
                }
                flow
            }
            // A per-message client's next message to the same backend, or two detections raced.
            Some(flows::Output::AlreadyExists { flow, .. }) => flow,
            _ => return None,
        };
        Some(flow)
    }
}
