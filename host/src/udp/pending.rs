//! UDP clients still being detected: a sans-I/O table holding the datagrams of each client whose
//! detection is undecided (some backend said `NeedMore` and none that would win has matched), bounded
//! per client (datagrams and bytes), in clients per listener, and in time.
//!
//! A QUIC ClientHello may span two or more Initial datagrams; a plugin that sees only the first says
//! `NeedMore`. Rather than give up on such a client, the I/O layer holds its datagrams here (it has no
//! flow yet) and asks the still-undecided backends again about all of them on each new one
//! (`detect_datagrams`). Once detection decides, the table hands the datagrams back, oldest first, to
//! be handed to the chosen backend in order: nothing is lost.
//!
//! Like [`super::flows`], the table is driven by [`Input`]s and answers with [`Output`]s through
//! [`PendingTable::handle`]; time is passed in, never read. `S` is the I/O layer's detection state of
//! one client (a [`crate::routing::router::Router`]); the table hands it back with the datagrams.
//!
//! # How the I/O layer uses it
//!
//! - A datagram from a client that has no flow: `handle(Datagram { client, datagram, now })`.
//!   [`Output::Detect`]: the client is not pending; ask the backends about this datagram alone, and if
//!   that is undecided, `handle(Hold { client, state, datagram, now })`. [`Output::Appended`]: ask the
//!   still-undecided backends about every held datagram ([`PendingTable::get_mut`]); once that
//!   decides, `handle(Release { client })` and act on [`Output::Released`].
//! - The timer: sleep until [`PendingTable::next_deadline`], then `handle(Tick { now })`.
//! - [`Output::Expired`] (the probe timeout passed) and [`Output::Full`] (a per-client bound would be
//!   passed; the datagram of that input was not held) end detection: backends still undecided count
//!   as `NoMatch`; route the held datagrams (and, for `Full`, the new one after them) if some backend
//!   matched, else drop and count them. [`Output::Rejected`]: too many clients pending; drop the
//!   datagram and the state, count it, log at a bounded rate.
//!
//! # Semantics
//!
//! - A client's deadline is its first held datagram's time plus the timeout; later datagrams do not
//!   extend it (detection is bounded in time as a TCP preview is). The deadline is authoritative:
//!   a [`Input::Datagram`] meeting a pending client already past it expires that client first
//!   ([`Output::Expired`]) and then answers [`Output::Detect`] as for a new client.
//! - [`Input::Hold`] on a table holding `max_clients` clients first expires the clients already due,
//!   then refuses if still full. A first datagram that alone passes the per-client bytes ends
//!   detection at once ([`Output::Full`] with no datagram held).
//!
//! # Memory
//!
//! Per pending client: at most `max_datagrams` datagrams of at most `max_bytes` bytes in all, each
//! stored in an exactly sized buffer (24 bytes of vector header each), plus the entry (about 100 bytes
//! and `size_of::<S>()`), a hash-map and an ordered-map entry (about 60 bytes together). With
//! `max_clients` clients at most, the table never holds more than about
//! `max_clients × (max_bytes + 24 × max_datagrams + 160 + size_of::<S>())` bytes, plus whatever `S`
//! allocates (a router: one state per backend).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

/// Most datagrams held per undecided client: a ClientHello with post-quantum key shares and many
/// extensions fills two or three QUIC Initials; eight leaves room for retransmissions.
pub(crate) const MAX_HELD_DATAGRAMS: usize = 8;

/// The bounds of one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PendingLimits {
    /// Most clients pending at once (per listener): `[routing] max_udp_pending`.
    pub max_clients: usize,
    /// Most datagrams held per client ([`MAX_HELD_DATAGRAMS`]).
    pub max_datagrams: usize,
    /// Most bytes held per client, payloads added up: `[routing] preview_limit`.
    pub max_bytes: usize,
    /// How long a client may stay undecided after its first datagram: `[routing] probe_timeout_ms`.
    pub timeout: Duration,
}

/// What happened, fed to [`PendingTable::handle`].
#[derive(Debug)]
pub(crate) enum Input<'a, S> {
    /// A datagram from `client`, which has no flow.
    Datagram {
        /// Where it came from.
        client: SocketAddr,
        /// Its payload (copied only if held).
        datagram: &'a [u8],
        /// When it arrived.
        now: Instant,
    },
    /// Detection of `client`'s first datagram was undecided (after [`Output::Detect`]): hold it.
    Hold {
        /// The client.
        client: SocketAddr,
        /// The I/O layer's detection state, handed back when detection ends.
        state: S,
        /// The datagram that was asked about.
        datagram: &'a [u8],
        /// When it arrived.
        now: Instant,
    },
    /// Detection of a pending client decided (after [`Output::Appended`]): hand its datagrams back.
    Release {
        /// The client.
        client: SocketAddr,
    },
    /// The timer fired: expire every client whose deadline is at or before `now`.
    Tick {
        /// The time now.
        now: Instant,
    },
}

/// What a pending client leaves behind when its detection ends.
pub(crate) struct Held<S> {
    /// The I/O layer's detection state.
    pub state: S,
    /// The client's datagrams, oldest first.
    pub datagrams: Vec<Vec<u8>>,
}

impl<S> fmt::Debug for Held<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sizes: Vec<usize> = self.datagrams.iter().map(Vec::len).collect();
        f.debug_struct("Held")
            .field("datagrams", &sizes)
            .finish_non_exhaustive()
    }
}

impl<S: PartialEq> PartialEq for Held<S> {
    fn eq(&self, other: &Self) -> bool {
        self.state == other.state && self.datagrams == other.datagrams
    }
}

/// What to do, appended by [`PendingTable::handle`] to the caller's vector.
#[derive(Debug, PartialEq)]
pub(crate) enum Output<S> {
    /// `client` is not pending: ask the backends about this datagram alone; if undecided, send
    /// [`Input::Hold`].
    Detect {
        /// The client.
        client: SocketAddr,
    },
    /// The datagram was held after the client's others: ask the still-undecided backends about all
    /// of them ([`PendingTable::get_mut`]); once decided, send [`Input::Release`].
    Appended {
        /// The client.
        client: SocketAddr,
    },
    /// [`Input::Hold`] was done: wait for the client's next datagram or its deadline.
    Held {
        /// The client.
        client: SocketAddr,
    },
    /// Too many clients pending: drop the datagram and `state` (count it, log at a bounded rate).
    Rejected {
        /// The client.
        client: SocketAddr,
        /// The state given with [`Input::Hold`].
        state: S,
    },
    /// The input's datagram would pass the client's bounds and was not held: decide now with what
    /// was asked (undecided backends count as `NoMatch`); if routed, the held datagrams go first,
    /// then this one.
    Full {
        /// The client.
        client: SocketAddr,
        /// Its state and the datagrams held before this one (none for a too large first one).
        held: Held<S>,
    },
    /// The client's deadline passed: decide now (undecided backends count as `NoMatch`).
    Expired {
        /// The client.
        client: SocketAddr,
        /// Its state and datagrams.
        held: Held<S>,
    },
    /// Answer to [`Input::Release`].
    Released {
        /// The client.
        client: SocketAddr,
        /// Its state and datagrams.
        held: Held<S>,
    },
}

/// Totals since the table was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PendingCounters {
    /// Clients that started pending.
    pub held: u64,
    /// Clients released by a decision.
    pub released: u64,
    /// Clients whose deadline passed.
    pub expired: u64,
    /// Clients that reached a per-client bound.
    pub full: u64,
    /// Clients refused because the table was full.
    pub rejected: u64,
}

/// One pending client. Times are nanoseconds since the table's first `now`.
struct Entry<S> {
    state: S,
    datagrams: Vec<Vec<u8>>,
    bytes: usize,
    /// The key of its deadline in [`PendingTable::deadlines`].
    key: (u64, u64),
}

/// The table of pending clients. See the [module documentation](self).
pub(crate) struct PendingTable<S> {
    limits: PendingLimits,
    entries: HashMap<SocketAddr, Entry<S>>,
    /// `(deadline, sequence number)` → client: exactly one per entry, earliest first.
    deadlines: BTreeMap<(u64, u64), SocketAddr>,
    next_seq: u64,
    /// The instant that time 0 stands for: the first `now` seen.
    base: Option<Instant>,
    counters: PendingCounters,
}

impl<S> fmt::Debug for PendingTable<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingTable")
            .field("len", &self.len())
            .field("limits", &self.limits)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl<S> PendingTable<S> {
    /// An empty table with these bounds (a `max_clients` or `max_datagrams` of 0 counts as 1).
    pub(crate) fn new(limits: PendingLimits) -> Self {
        PendingTable {
            limits: PendingLimits {
                max_clients: limits.max_clients.max(1),
                max_datagrams: limits.max_datagrams.max(1),
                ..limits
            },
            entries: HashMap::new(),
            deadlines: BTreeMap::new(),
            next_seq: 0,
            base: None,
            counters: PendingCounters::default(),
        }
    }

    /// Applies `input`, appending what to do to `out` (which is not cleared).
    pub(crate) fn handle(&mut self, input: Input<'_, S>, out: &mut Vec<Output<S>>) {
        match input {
            Input::Datagram { client, datagram, now } => {
                let now = self.ns(now);
                let Some(entry) = self.entries.get(&client) else {
                    return out.push(Output::Detect { client });
                };
                if entry.key.0 <= now {
                    if let Some(held) = self.take(client) {
                        self.counters.expired += 1;
                        out.push(Output::Expired { client, held });
                    }
                    return out.push(Output::Detect { client });
                }
                self.append(client, datagram, out);
            }
            Input::Hold {
                client,
                state,
                datagram,
                now,
            } => {
                let now = self.ns(now);
                if self.entries.contains_key(&client) {
                    // Detection already pending for this client: keep its state, add the datagram.
                    return self.append(client, datagram, out);
                }
                if datagram.len() > self.limits.max_bytes {
                    self.counters.full += 1;
                    let held = Held {
                        state,
                        datagrams: Vec::new(),
                    };
                    return out.push(Output::Full { client, held });
                }
                if self.is_full() {
                    self.expire_due(now, out);
                }
                if self.is_full() {
                    self.counters.rejected += 1;
                    return out.push(Output::Rejected { client, state });
                }
                let key = (now.saturating_add(duration_ns(self.limits.timeout)), self.next_seq);
                self.next_seq += 1;
                self.deadlines.insert(key, client);
                let mut datagrams = Vec::with_capacity(2.min(self.limits.max_datagrams));
                datagrams.push(datagram.to_vec());
                self.entries.insert(
                    client,
                    Entry {
                        state,
                        datagrams,
                        bytes: datagram.len(),
                        key,
                    },
                );
                self.counters.held += 1;
                out.push(Output::Held { client });
            }
            Input::Release { client } => {
                if let Some(held) = self.take(client) {
                    self.counters.released += 1;
                    out.push(Output::Released { client, held });
                }
            }
            Input::Tick { now } => {
                let now = self.ns(now);
                self.expire_due(now, out);
            }
        }
    }

    /// A pending client's detection state and its datagrams so far, oldest first.
    pub(crate) fn get_mut(&mut self, client: SocketAddr) -> Option<(&mut S, &[Vec<u8>])> {
        self.entries
            .get_mut(&client)
            .map(|e| (&mut e.state, e.datagrams.as_slice()))
    }

    /// Whether `client` is pending.
    pub(crate) fn contains(&self, client: SocketAddr) -> bool {
        self.entries.contains_key(&client)
    }

    /// Every pending client.
    pub(crate) fn clients(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.entries.keys().copied()
    }

    /// When the I/O layer should next send [`Input::Tick`]; `None` when no client is pending.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let (&(deadline, _), _) = self.deadlines.first_key_value()?;
        self.base?.checked_add(Duration::from_nanos(deadline))
    }

    /// Clients pending now.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no client is pending.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `max_clients` clients are pending.
    pub(crate) fn is_full(&self) -> bool {
        self.len() >= self.limits.max_clients
    }

    /// The bounds in force (as given to [`PendingTable::new`], zeros raised to 1).
    pub(crate) fn limits(&self) -> PendingLimits {
        self.limits
    }

    /// Totals of clients held, released, expired, full and rejected.
    #[cfg(test)]
    pub(crate) fn counters(&self) -> PendingCounters {
        self.counters
    }

    /// Bytes of datagrams held now, all clients together.
    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> usize {
        self.entries.values().map(|e| e.bytes).sum()
    }

    // ---- internals ----

    /// `now` as nanoseconds since the first `now` seen (earlier instants count as 0).
    fn ns(&mut self, now: Instant) -> u64 {
        let base = *self.base.get_or_insert(now);
        duration_ns(now.saturating_duration_since(base))
    }

    /// Adds a datagram to a pending client, or ends its detection if that would pass its bounds.
    fn append(&mut self, client: SocketAddr, datagram: &[u8], out: &mut Vec<Output<S>>) {
        let Some(entry) = self.entries.get_mut(&client) else {
            return out.push(Output::Detect { client });
        };
        let fits = entry.datagrams.len() < self.limits.max_datagrams
            && entry.bytes.saturating_add(datagram.len()) <= self.limits.max_bytes;
        if fits {
            entry.datagrams.push(datagram.to_vec());
            entry.bytes += datagram.len();
            out.push(Output::Appended { client });
        } else if let Some(held) = self.take(client) {
            self.counters.full += 1;
            out.push(Output::Full { client, held });
        }
    }

    /// Removes a pending client from both maps.
    fn take(&mut self, client: SocketAddr) -> Option<Held<S>> {
        let entry = self.entries.remove(&client)?;
        self.deadlines.remove(&entry.key);
        Some(Held {
            state: entry.state,
            datagrams: entry.datagrams,
        })
    }

    fn expire_due(&mut self, now: u64, out: &mut Vec<Output<S>>) {
        while let Some((&(deadline, seq), &client)) = self.deadlines.first_key_value() {
            if deadline > now {
                break;
            }
            // Both maps hold exactly the same clients; a deadline without its entry is dropped.
            match self.take(client) {
                Some(held) => {
                    self.counters.expired += 1;
                    out.push(Output::Expired { client, held });
                }
                None => {
                    self.deadlines.remove(&(deadline, seq));
                }
            }
        }
    }
}

/// A duration in nanoseconds, saturating.
fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
