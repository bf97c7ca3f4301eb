//! The UDP flow table: a sans-I/O core mapping client addresses to forwarded flows, with idle expiry.
//! The key is a client address by default; the driver keys flows by client and lane (a session
//! flow per client, or one per client and per-message backend), which the table treats alike.
//!
//! The I/O layer owns the listening socket, the upstream sockets and the timer; this table owns the
//! decisions. It is driven by [`Input`]s and answers with [`Output`]s through [`FlowTable::handle`],
//! and time is always passed in (never read here), so a seeded simulation can drive it over a
//! virtual clock. `T` is whatever the I/O layer keeps per flow (an upstream socket, the backend); the
//! table hands it back when a flow ends ([`Output::Expired`]) or cannot start
//! ([`Output::Rejected`], [`Output::AlreadyExists`]), so closing the upstream socket is never missed.
//!
//! # How the I/O layer uses it
//!
//! - A datagram from `client` on the listening socket: `handle(ClientDatagram { client, now })`.
//!   [`Output::Forward`] says send it upstream through that flow's socket ([`FlowTable::get`]);
//!   [`Output::NeedsDetection`] says ask the backends, then send [`Input::Detected`] with the chosen
//!   backend's idle timeout and the new per-flow state, or drop the datagram if nothing matches.
//!   [`Output::Created`] (or [`Output::AlreadyExists`]) then says where the datagram goes.
//! - A reply on a flow's upstream socket: `handle(UpstreamActivity { flow, now })`, then send it to
//!   [`FlowTable::client`] through the listening socket — unless the flow was just expired.
//! - The timer: sleep until [`FlowTable::next_deadline`], then `handle(Tick { now })` and close the
//!   upstream of every [`Output::Expired`]. Re-arm after every call that may change the deadline
//!   (creation, tick); a refresh never makes the next deadline earlier.
//!
//! # Semantics
//!
//! - **Idle time** counts from the last datagram *either way*: replies from the upstream keep a flow
//!   alive as client datagrams do (a DNS- or QUIC-like flow whose client is quiet while the server
//!   streams must not be cut). A flow expires once `last_seen + idle_timeout <= now`.
//! - **The deadline is authoritative.** [`Input::Tick`] expires every due flow, whatever the traffic;
//!   an input that meets a flow already past its deadline before the tick came (a late timer) expires
//!   it too rather than reviving it, so whether a flow exists never depends on when ticks run.
//! - **The cap** ([`FlowTable::new`]'s `max_flows`) counts live flows. [`Input::Detected`] on a full
//!   table first expires the flows already due, then rejects if it is still full
//!   ([`Output::Rejected`], state handed back; the I/O layer logs "flow table full" at a bounded rate).
//! - **A race of detections**: [`Input::Detected`] for a client that already has a live flow keeps
//!   the existing flow (refreshed), and answers [`Output::AlreadyExists`] with the new state handed
//!   back, to be dropped; the datagram goes through the existing flow. Not counted as a rejection.
//! - **Stale ids**: a [`FlowId`] is a slot index plus a generation; inputs and accessors given the id
//!   of a flow that has ended do nothing and return `None`, even once the slot holds a newer flow.
//! - Times earlier than the latest seen for a flow never shorten it (`last_seen` only moves forward).
//!   Durations saturate: an idle timeout of [`Duration::MAX`] never expires.
//!
//! # Cost
//!
//! A datagram of a known client is one hash lookup and a store (no allocation, no reordering).
//! Deadlines are lazy: a min-heap holds exactly one entry per live flow, keyed by the deadline the
//! flow had when it was queued, which is never later than its real one. A tick pops due entries; an
//! entry whose flow was refreshed since is re-keyed to the real deadline and sifted down. So a tick
//! costs O((expired + refreshed-since-queued) · log n), and the heap never grows past the live flows.
//! The heap is indexed (each flow knows its position), so early expiry is
//! O(log n) and leave nothing stale behind.
//!
//! # Memory
//!
//! Per flow, excluding `T`: the slot record (56 bytes on 64-bit targets: address, last-seen time,
//! idle timeout, generation, heap link), one heap entry (16 bytes) and one hash-map entry (36 bytes +
//! 1 control byte, at most 7/8 full). With vectors and the map grown by doubling, that is at most
//! about 110–250 bytes per flow plus `size_of::<T>()` (measured at 100,000 flows: see
//! [`FlowTable::memory_bytes`] and the `hundred_thousand_flows` test). Capacity is kept at its high
//! mark, which the cap bounds.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[cfg(test)]
pub(crate) mod sim;
#[cfg(test)]
mod tests;

/// No slot (end of the free list).
const NONE: u32 = u32::MAX;

/// Names one flow: a slot index and the slot's generation when the flow was created.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct FlowId {
    slot: u32,
    generation: u32,
}

impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.slot, self.generation)
    }
}

/// What happened, fed to [`FlowTable::handle`].
#[derive(Debug)]
pub(crate) enum Input<T, K = SocketAddr> {
    /// A datagram arrived from `client` on the listening socket.
    ClientDatagram { client: K, now: Instant },
    /// Detection chose a backend for `client` (after [`Output::NeedsDetection`]): create its flow.
    Detected {
        client: K,
        /// The chosen backend's idle timeout, fixed for the flow's life.
        idle_timeout: Duration,
        /// The I/O layer's per-flow state (upstream socket, backend).
        state: T,
        now: Instant,
    },
    /// The flow's upstream sent a reply: it refreshes the flow like a client datagram.
    UpstreamActivity { flow: FlowId, now: Instant },
    /// The timer fired: expire every flow whose deadline is at or before `now`.
    Tick { now: Instant },
}

/// What to do, appended by [`FlowTable::handle`] to the caller's vector.
#[derive(Debug, PartialEq)]
pub(crate) enum Output<T, K = SocketAddr> {
    /// Send the client's datagram upstream through this (refreshed) flow.
    Forward { flow: FlowId },
    /// No flow for this client: ask the backends, then send [`Input::Detected`] or drop the datagram.
    NeedsDetection { client: K },
    /// The flow was created: send the datagram that started detection through it.
    Created { flow: FlowId },
    /// The table is full of live flows: drop the datagram and `state` (count it, log at a bounded rate).
    Rejected { client: K, state: T },
    /// The client already had a live flow (two detections raced): send the datagram through `flow`
    /// (refreshed), drop `state`.
    AlreadyExists { flow: FlowId, state: T },
    /// The flow was idle for its timeout: close its upstream (`state`).
    Expired { flow: FlowId, client: K, state: T },
}

/// Totals since the table was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FlowCounters {
    /// Flows created.
    pub created: u64,
    /// Flows ended by their idle timeout.
    pub expired: u64,
    /// Detections refused because the table was full.
    pub rejected: u64,
}

/// One live flow. Times are nanoseconds since the table's first `now`.
struct Flow<T, K = SocketAddr> {
    client: K,
    last_seen: u64,
    idle_timeout: u64,
    state: T,
}

impl<T, K> Flow<T, K> {
    fn deadline(&self) -> u64 {
        self.last_seen.saturating_add(self.idle_timeout)
    }
}

/// A slot of the flow arena.
struct Slot<T, K = SocketAddr> {
    /// Bumped when the slot's flow ends; a slot whose generation reached `u32::MAX` is retired.
    generation: u32,
    /// The flow's position in the heap while occupied; the next free slot (or [`NONE`]) while vacant.
    link: u32,
    flow: Option<Flow<T, K>>,
}

/// A heap entry: a deadline no later than the slot's flow's real one.
#[derive(Clone, Copy)]
struct Queued {
    deadline: u64,
    slot: u32,
}

/// The flow table. See the [module documentation](self).
pub(crate) struct FlowTable<T, K = SocketAddr> {
    max_flows: usize,
    slots: Vec<Slot<T, K>>,
    free_head: u32,
    by_client: HashMap<K, u32>,
    /// Min-heap on `deadline`, exactly one entry per live flow.
    heap: Vec<Queued>,
    /// The instant that time 0 stands for: the first `now` seen.
    base: Option<Instant>,
    counters: FlowCounters,
}

impl<T, K: Copy + Eq + Hash> fmt::Debug for FlowTable<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowTable")
            .field("len", &self.len())
            .field("max_flows", &self.max_flows)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl<T, K: Copy + Eq + Hash> FlowTable<T, K> {
    /// An empty table holding at most `max_flows` flows (capped at `u32::MAX - 1`). Nothing is
    /// allocated until flows are created.
    pub(crate) fn new(max_flows: usize) -> Self {
        FlowTable {
            max_flows: max_flows.min(NONE as usize - 1),
            slots: Vec::new(),
            free_head: NONE,
            by_client: HashMap::new(),
            heap: Vec::new(),
            base: None,
            counters: FlowCounters::default(),
        }
    }

    /// Applies `input`, appending what to do to `out` (which is not cleared: the caller reuses it).
    pub(crate) fn handle(&mut self, input: Input<T, K>, out: &mut Vec<Output<T, K>>) {
        match input {
            Input::ClientDatagram { client, now } => {
                let now = self.ns(now);
                match self.live_slot_of(client, now, out) {
                    Some(slot) => out.push(Output::Forward {
                        flow: self.refresh(slot, now),
                    }),
                    None => out.push(Output::NeedsDetection { client }),
                }
            }
            Input::Detected {
                client,
                idle_timeout,
                state,
                now,
            } => {
                let now = self.ns(now);
                if let Some(slot) = self.live_slot_of(client, now, out) {
                    let flow = self.refresh(slot, now);
                    out.push(Output::AlreadyExists { flow, state });
                    return;
                }
                if self.is_full() {
                    self.expire_due(now, out);
                }
                if self.is_full() {
                    self.counters.rejected += 1;
                    out.push(Output::Rejected { client, state });
                    return;
                }
                let flow = self.insert(client, now, duration_ns(idle_timeout), state);
                out.push(Output::Created { flow });
            }
            Input::UpstreamActivity { flow, now } => {
                let now = self.ns(now);
                if let Some(slot) = self.slot_of(flow) {
                    if self.due(slot, now) {
                        self.expire(slot, out);
                    } else {
                        self.refresh(slot, now);
                    }
                }
            }
            Input::Tick { now } => {
                let now = self.ns(now);
                self.expire_due(now, out);
            }
        }
    }

    /// The state of a live flow.
    pub(crate) fn get(&self, flow: FlowId) -> Option<&T> {
        self.slot_of(flow).and_then(|slot| self.flow(slot)).map(|f| &f.state)
    }

    /// The state of a live flow, mutably.
    pub(crate) fn get_mut(&mut self, flow: FlowId) -> Option<&mut T> {
        let slot = self.slot_of(flow)?;
        self.slots[slot as usize].flow.as_mut().map(|f| &mut f.state)
    }

    /// The client address of a live flow: where its upstream's replies go.
    #[cfg(test)]
    pub(crate) fn client(&self, flow: FlowId) -> Option<K> {
        self.slot_of(flow).and_then(|slot| self.flow(slot)).map(|f| f.client)
    }

    /// The flow of `client`, if the table holds one (possibly due but not yet ticked).
    pub(crate) fn find(&self, client: K) -> Option<FlowId> {
        self.by_client.get(&client).map(|&slot| self.id(slot))
    }

    /// Every flow held, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (FlowId, K, &T)> + '_ {
        self.slots.iter().enumerate().filter_map(|(slot, s)| {
            let f = s.flow.as_ref()?;
            let id = FlowId {
                slot: slot as u32,
                generation: s.generation,
            };
            Some((id, f.client, &f.state))
        })
    }

    /// When the I/O layer should next send [`Input::Tick`]; `None` when no flow is held. It may come
    /// before any flow is actually due (a flow refreshed since it was queued); such a tick just
    /// re-queues it. It is never later than the earliest real deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let first = self.heap.first()?;
        self.base?.checked_add(Duration::from_nanos(first.deadline))
    }

    /// Live flows held (including any already due that no tick has expired yet).
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no flow is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Whether the cap is reached: a new flow would be rejected unless some are due.
    pub(crate) fn is_full(&self) -> bool {
        self.len() >= self.max_flows
    }

    /// The cap given to [`FlowTable::new`].
    pub(crate) fn max_flows(&self) -> usize {
        self.max_flows
    }

    /// Totals of created, expired and rejected flows.
    #[cfg(test)]
    pub(crate) fn counters(&self) -> FlowCounters {
        self.counters
    }

    /// Approximate bytes allocated by the table, including `size_of::<T>()` per slot but not what
    /// `T` itself allocates. Capacity grows by doubling and is kept at its high mark.
    #[cfg(test)]
    pub(crate) fn memory_bytes(&self) -> usize {
        let map_buckets = match self.by_client.capacity() {
            0 => 0,
            c if c < 8 => (c + 1).next_power_of_two(),
            c => (c * 8 / 7).next_power_of_two(),
        };
        let map = map_buckets * (size_of::<(K, u32)>() + 1) + if map_buckets > 0 { 16 } else { 0 };
        self.slots.capacity() * size_of::<Slot<T, K>>() + self.heap.capacity() * size_of::<Queued>() + map
    }

    // ---- internals ----

    /// `now` as nanoseconds since the first `now` seen (earlier instants count as 0).
    fn ns(&mut self, now: Instant) -> u64 {
        let base = *self.base.get_or_insert(now);
        duration_ns(now.saturating_duration_since(base))
    }

    fn id(&self, slot: u32) -> FlowId {
        FlowId {
            slot,
            generation: self.slots[slot as usize].generation,
        }
    }

    fn flow(&self, slot: u32) -> Option<&Flow<T, K>> {
        self.slots[slot as usize].flow.as_ref()
    }

    /// The slot of `flow` if it is live (right generation, occupied).
    fn slot_of(&self, flow: FlowId) -> Option<u32> {
        let s = self.slots.get(flow.slot as usize)?;
        (s.generation == flow.generation && s.flow.is_some()).then_some(flow.slot)
    }

    fn due(&self, slot: u32, now: u64) -> bool {
        self.flow(slot).is_some_and(|f| f.deadline() <= now)
    }

    /// The slot of `client`'s flow if it is still within its timeout; a due one is expired here.
    fn live_slot_of(&mut self, client: K, now: u64, out: &mut Vec<Output<T, K>>) -> Option<u32> {
        let slot = *self.by_client.get(&client)?;
        if self.due(slot, now) {
            self.expire(slot, out);
            return None;
        }
        Some(slot)
    }

    /// Moves the flow's `last_seen` forward to `now`; its heap entry stays (lazy deadline).
    fn refresh(&mut self, slot: u32, now: u64) -> FlowId {
        let s = &mut self.slots[slot as usize];
        if let Some(f) = s.flow.as_mut() {
            f.last_seen = f.last_seen.max(now);
        }
        FlowId {
            slot,
            generation: s.generation,
        }
    }

    fn insert(&mut self, client: K, now: u64, idle_timeout: u64, state: T) -> FlowId {
        let flow = Flow {
            client,
            last_seen: now,
            idle_timeout,
            state,
        };
        let slot = if self.free_head != NONE {
            let slot = self.free_head;
            self.free_head = self.slots[slot as usize].link;
            self.slots[slot as usize].flow = Some(flow);
            slot
        } else {
            // The cap keeps live flows under u32::MAX; only retired slots could push past it.
            let slot = u32::try_from(self.slots.len())
                .ok()
                .filter(|&s| s != NONE)
                .expect("flow slots exhausted");
            self.slots.push(Slot {
                generation: 0,
                link: 0,
                flow: Some(flow),
            });
            slot
        };
        self.by_client.insert(client, slot);
        self.heap.push(Queued {
            deadline: now.saturating_add(idle_timeout),
            slot,
        });
        self.sift_up(self.heap.len() - 1);
        self.counters.created += 1;
        self.id(slot)
    }

    /// Removes the flow in `slot` from the arena, the map and the heap.
    fn take(&mut self, slot: u32) -> (FlowId, K, T) {
        let s = &mut self.slots[slot as usize];
        let flow = s.flow.take().expect("taking a vacant slot");
        let id = FlowId {
            slot,
            generation: s.generation,
        };
        let pos = s.link as usize;
        if s.generation == u32::MAX {
            s.link = NONE; // retired: an id of this slot could otherwise come back to life
        } else {
            s.generation += 1;
            s.link = self.free_head;
            self.free_head = slot;
        }
        self.by_client.remove(&flow.client);
        self.heap_remove(pos);
        (id, flow.client, flow.state)
    }

    fn expire(&mut self, slot: u32, out: &mut Vec<Output<T, K>>) {
        let (flow, client, state) = self.take(slot);
        self.counters.expired += 1;
        out.push(Output::Expired { flow, client, state });
    }

    /// Expires every flow due at `now`, re-queueing the refreshed ones met on the way.
    fn expire_due(&mut self, now: u64, out: &mut Vec<Output<T, K>>) {
        while let Some(&top) = self.heap.first() {
            if top.deadline > now {
                break;
            }
            let real = self.flow(top.slot).map_or(0, Flow::deadline);
            if real <= now {
                self.expire(top.slot, out);
            } else {
                self.heap[0].deadline = real;
                self.sift_down(0);
            }
        }
    }

    // ---- the indexed min-heap ----

    fn place(&mut self, pos: usize, entry: Queued) {
        self.heap[pos] = entry;
        self.slots[entry.slot as usize].link = pos as u32;
    }

    fn sift_up(&mut self, mut pos: usize) {
        let entry = self.heap[pos];
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.heap[parent].deadline <= entry.deadline {
                break;
            }
            self.place(pos, self.heap[parent]);
            pos = parent;
        }
        self.place(pos, entry);
    }

    fn sift_down(&mut self, mut pos: usize) {
        let entry = self.heap[pos];
        let len = self.heap.len();
        loop {
            let left = 2 * pos + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let child = if right < len && self.heap[right].deadline < self.heap[left].deadline {
                right
            } else {
                left
            };
            if self.heap[child].deadline >= entry.deadline {
                break;
            }
            self.place(pos, self.heap[child]);
            pos = child;
        }
        self.place(pos, entry);
    }

    fn heap_remove(&mut self, pos: usize) {
        let Some(last) = self.heap.pop() else { return };
        if pos < self.heap.len() {
            self.place(pos, last);
            if pos > 0 && self.heap[(pos - 1) / 2].deadline > last.deadline {
                self.sift_up(pos);
            } else {
                self.sift_down(pos);
            }
        }
    }
}

/// A duration in nanoseconds, saturating.
fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
