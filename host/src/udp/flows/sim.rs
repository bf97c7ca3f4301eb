//! Seeded simulation of the flow table against a reference model, and the 100k-flow memory test.
//!
//! Thousands of clients send datagrams at random virtual times; detections pick random per-backend
//! timeouts, some race, some match nothing; upstreams reply at random; ticks come both at random and
//! when [`FlowTable::next_deadline`] says (as the I/O layer's timer would), and stale
//! ids of ended flows are replayed at random. Every output is checked against a model that keeps, per client, the last activity and
//! the timeout in a plain map plus an ordered set of deadlines — nothing of the table's lazy heap.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::tests::v4;
use super::{FlowCounters, FlowId, FlowTable, Input, Output};

/// xorshift64*: tiny, deterministic, good enough to shuffle events (also drives the pending
/// table's simulation).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const CLIENTS: u32 = 5_000;
const HOT_CLIENTS: u32 = 200;
const MS: u64 = 1_000_000;

#[derive(Clone, Copy)]
struct ModelFlow {
    id: FlowId,
    last_seen: u64,
    timeout: u64,
    token: u64,
}

impl ModelFlow {
    fn deadline(&self) -> u64 {
        self.last_seen + self.timeout
    }
}

struct Sim {
    rng: Rng,
    table: FlowTable<u64>,
    out: Vec<Output<u64>>,
    base: Instant,
    /// Virtual time, nanoseconds after `base`.
    now: u64,
    /// Advance in whole milliseconds (deadlines often fall exactly on an event) or in nanoseconds.
    grain_ms: bool,
    max_flows: usize,
    model: HashMap<u32, ModelFlow>,
    deadlines: BTreeSet<(u64, u32)>,
    counters: FlowCounters,
    ended: Vec<FlowId>,
    issued: HashSet<FlowId>,
    next_token: u64,
    peak: usize,
}

impl Sim {
    fn new(seed: u64, max_flows: usize, grain_ms: bool) -> Self {
        Sim {
            rng: Rng(seed),
            table: FlowTable::new(max_flows),
            out: Vec::new(),
            base: Instant::now(),
            now: 0,
            grain_ms,
            max_flows,
            model: HashMap::new(),
            deadlines: BTreeSet::new(),
            counters: FlowCounters::default(),
            ended: Vec::new(),
            issued: HashSet::new(),
            next_token: 0,
            peak: 0,
        }
    }

    fn instant(&self, t: u64) -> Instant {
        self.base + Duration::from_nanos(t)
    }

    fn handle(&mut self, input: Input<u64>) {
        self.out.clear();
        self.table.handle(input, &mut self.out);
    }

    fn model_insert(&mut self, client: u32, f: ModelFlow) {
        self.deadlines.insert((f.deadline(), client));
        self.model.insert(client, f);
    }

    fn model_remove(&mut self, client: u32) -> ModelFlow {
        let f = self.model.remove(&client).expect("model flow");
        assert!(self.deadlines.remove(&(f.deadline(), client)));
        self.ended.push(f.id);
        f
    }

    fn model_refresh(&mut self, client: u32) {
        let mut f = self.model_remove(client);
        self.ended.pop();
        f.last_seen = f.last_seen.max(self.now);
        self.model_insert(client, f);
    }

    fn alive(&self, client: u32) -> Option<bool> {
        self.model.get(&client).map(|f| f.deadline() > self.now)
    }

    /// Checks that `out[range]` expires exactly `expected` (any order), with their ids and states.
    fn check_expired(&mut self, outputs: &[Output<u64>], expected: &[u32]) {
        assert_eq!(
            outputs.len(),
            expected.len(),
            "expired count at t={}: {outputs:?}",
            self.now
        );
        let mut want: HashMap<FlowId, (u32, u64)> = HashMap::new();
        for &c in expected {
            let f = self.model[&c];
            assert!(f.deadline() <= self.now, "model bug: expecting an early expiry");
            want.insert(f.id, (c, f.token));
        }
        for o in outputs {
            let Output::Expired { flow, client, state } = o else {
                panic!("expected Expired, got {o:?}")
            };
            let (c, token) = want
                .remove(flow)
                .unwrap_or_else(|| panic!("unexpected (early?) expiry {o:?}"));
            assert_eq!((*client, *state), (v4(c), token));
        }
        for &c in expected {
            self.model_remove(c);
            self.counters.expired += 1;
        }
    }

    fn due(&self) -> Vec<u32> {
        self.deadlines.range(..=(self.now, u32::MAX)).map(|&(_, c)| c).collect()
    }

    fn tick(&mut self) {
        self.handle(Input::Tick {
            now: self.instant(self.now),
        });
        let out = std::mem::take(&mut self.out);
        let due = self.due();
        self.check_expired(&out, &due);
        self.out = out;
        // Exactly the flows within their timeout remain, and the timer is never armed late.
        assert_eq!(self.table.len(), self.model.len());
        match self.deadlines.first() {
            None => assert_eq!(self.table.next_deadline(), None),
            Some(&(first, _)) => {
                let next = self.table.next_deadline().expect("a deadline while flows are held");
                assert!(next > self.instant(self.now) && next <= self.instant(first));
            }
        }
    }

    fn datagram(&mut self, client: u32) {
        let addr = v4(client);
        self.handle(Input::ClientDatagram {
            client: addr,
            now: self.instant(self.now),
        });
        match self.alive(client) {
            Some(true) => {
                assert_eq!(
                    self.out,
                    [Output::Forward {
                        flow: self.model[&client].id
                    }]
                );
                self.model_refresh(client);
                return;
            }
            Some(false) => {
                let out = std::mem::take(&mut self.out);
                self.check_expired(&out[..1], &[client]);
                assert_eq!(out[1..], [Output::NeedsDetection { client: addr }]);
            }
            None => assert_eq!(self.out, [Output::NeedsDetection { client: addr }]),
        }
        if self.rng.chance(10) {
            return; // no backend matched: the datagram is dropped
        }
        if self.rng.chance(10) {
            self.advance(); // detection took a while
        }
        let racing = self.rng.chance(3);
        self.detected(client);
        if racing {
            self.detected(client);
        }
    }

    fn detected(&mut self, client: u32) {
        let addr = v4(client);
        let timeout = if self.grain_ms {
            (1 + self.rng.below(10_000)) * MS
        } else {
            1 + self.rng.below(10_000 * MS)
        };
        let token = self.next_token;
        self.next_token += 1;
        let now = self.instant(self.now);
        let idle_timeout = Duration::from_nanos(timeout);
        self.handle(Input::Detected {
            client: addr,
            idle_timeout,
            state: token,
            now,
        });
        let mut out = std::mem::take(&mut self.out);
        let last = out.pop().expect("an answer");
        if self.alive(client) == Some(true) {
            assert!(out.is_empty());
            assert_eq!(
                last,
                Output::AlreadyExists {
                    flow: self.model[&client].id,
                    state: token
                }
            );
            self.model_refresh(client);
            return;
        }
        let mut expected = Vec::new();
        if self.alive(client) == Some(false) {
            expected.push(client);
        }
        if self.model.len() - expected.len() >= self.max_flows {
            expected = self.due();
        }
        self.check_expired(&out, &expected);
        if self.model.len() >= self.max_flows {
            assert_eq!(
                last,
                Output::Rejected {
                    client: addr,
                    state: token
                }
            );
            self.counters.rejected += 1;
            return;
        }
        let Output::Created { flow } = last else {
            panic!("expected Created, got {last:?}")
        };
        assert!(self.issued.insert(flow), "flow id {flow} issued twice");
        self.counters.created += 1;
        self.model_insert(
            client,
            ModelFlow {
                id: flow,
                last_seen: self.now,
                timeout,
                token,
            },
        );
        self.peak = self.peak.max(self.model.len());
    }

    fn random_held(&mut self) -> Option<u32> {
        for _ in 0..8 {
            let c = self.pick_client();
            if self.model.contains_key(&c) {
                return Some(c);
            }
        }
        None
    }

    fn upstream(&mut self) {
        let Some(client) = self.random_held() else {
            return self.stale();
        };
        let flow = self.model[&client].id;
        self.handle(Input::UpstreamActivity {
            flow,
            now: self.instant(self.now),
        });
        if self.alive(client) == Some(true) {
            assert!(self.out.is_empty());
            self.model_refresh(client);
        } else {
            let out = std::mem::take(&mut self.out);
            self.check_expired(&out, &[client]);
        }
    }

    /// An ended flow's id does nothing, whatever its slot holds now.
    fn stale(&mut self) {
        if self.ended.is_empty() {
            return;
        }
        let flow = self.ended[self.rng.below(self.ended.len() as u64) as usize];
        assert_eq!((self.table.get(flow), self.table.client(flow)), (None, None));
        let now = self.instant(self.now);
        self.handle(Input::UpstreamActivity { flow, now });
        assert!(self.out.is_empty(), "a stale id reached a flow: {:?}", self.out);
    }

    fn pick_client(&mut self) -> u32 {
        if self.rng.chance(50) {
            self.rng.below(u64::from(HOT_CLIENTS)) as u32
        } else {
            self.rng.below(u64::from(CLIENTS)) as u32
        }
    }

    /// Moves the clock forward, firing the timer on the way when it is armed (most of the time).
    fn advance(&mut self) {
        let step = match (self.grain_ms, self.rng.below(100)) {
            (_, 0..40) => 0,
            (true, 40..95) => MS,
            (true, _) => (2 + self.rng.below(4)) * MS,
            (false, 40..90) => self.rng.below(MS / 5),
            (false, _) => MS + self.rng.below(3 * MS),
        };
        let target = self.now + step;
        while let Some(next) = self.table.next_deadline() {
            let at = next.duration_since(self.base).as_nanos() as u64;
            if at > target || self.rng.chance(20) {
                break;
            }
            self.now = self.now.max(at);
            self.tick();
        }
        self.now = target;
    }

    fn step(&mut self) {
        self.advance();
        match self.rng.below(100) {
            0..65 => {
                let c = self.pick_client();
                self.datagram(c);
            }
            65..85 => self.upstream(),
            85..96 => self.tick(),
            _ => self.stale(),
        }
        self.table.check_invariants_if(self.rng.chance(1));
    }

    fn check_against_model(&self) {
        assert_eq!(self.table.len(), self.model.len());
        for (&c, f) in &self.model {
            assert_eq!(self.table.find(v4(c)), Some(f.id));
            assert_eq!(self.table.get(f.id), Some(&f.token));
        }
        assert_eq!(self.table.counters(), self.counters);
    }
}

impl<T> FlowTable<T> {
    fn check_invariants_if(&self, yes: bool) {
        // The heap is bounded by the live flows at every step; the full check is O(n), so sampled.
        assert_eq!(self.heap.len(), self.by_client.len());
        if yes {
            self.check_invariants();
        }
    }
}

fn simulate(seed: u64, max_flows: usize, grain_ms: bool, steps: usize) -> Sim {
    let mut sim = Sim::new(seed, max_flows, grain_ms);
    for i in 0..steps {
        sim.step();
        if i % 10_000 == 0 {
            sim.check_against_model();
        }
    }
    sim.check_against_model();
    sim.table.check_invariants();
    // Much later, everything has expired.
    sim.now += 11_000 * MS;
    sim.tick();
    assert!(sim.table.is_empty() && sim.model.is_empty());
    sim.check_against_model();
    println!(
        "seed {seed:#x} cap {max_flows}: {:?}, peak {} flows, {} ids checked",
        sim.counters,
        sim.peak,
        sim.issued.len()
    );
    sim
}

#[test]
fn simulation_with_room_to_spare() {
    for seed in [0x9e37_79b9_7f4a_7c15, 0xdead_beef_cafe_f00d] {
        let sim = simulate(seed, 10_000, seed % 2 == 1, 150_000);
        assert_eq!(sim.counters.rejected, 0);
        assert!(
            sim.peak >= 1_000,
            "the run must hold thousands of flows at once, held {}",
            sim.peak
        );
        assert!(sim.counters.expired > 10_000);
    }
}

#[test]
fn simulation_at_the_cap() {
    for (seed, grain_ms) in [(1, true), (0x5eed, false), (0x0123_4567_89ab_cdef, true)] {
        let sim = simulate(seed, 1_500, grain_ms, 150_000);
        assert!(
            sim.counters.rejected > 100,
            "the cap must be hit, rejected {}",
            sim.counters.rejected
        );
        assert_eq!(sim.peak, 1_500);
    }
}

#[test]
fn hundred_thousand_flows_within_the_memory_budget() {
    const FLOWS: u32 = 100_000;
    let mut table = FlowTable::<u64>::new(FLOWS as usize);
    let mut rng = Rng(42);
    let mut out = Vec::new();
    let base = Instant::now();
    let started = Instant::now();
    for c in 0..FLOWS {
        let idle_timeout = Duration::from_millis(10_000 + rng.below(60_000));
        let now = base + Duration::from_micros(u64::from(c));
        table.handle(
            Input::Detected {
                client: v4(c),
                idle_timeout,
                state: u64::from(c),
                now,
            },
            &mut out,
        );
    }
    assert_eq!(out.len(), FLOWS as usize);
    assert!(out.iter().all(|o| matches!(o, Output::Created { .. })));
    assert!(table.is_full());
    let created = started.elapsed();
    // Refresh every flow a few times: the heap must not grow.
    for round in 1..=3u64 {
        for c in 0..FLOWS {
            out.clear();
            let now = base + Duration::from_secs(round);
            table.handle(Input::ClientDatagram { client: v4(c), now }, &mut out);
            assert!(matches!(out[..], [Output::Forward { .. }]));
        }
    }
    assert_eq!(table.heap.len(), FLOWS as usize);
    table.check_invariants();
    let bytes = table.memory_bytes();
    let per_flow = bytes / FLOWS as usize;
    println!(
        "{FLOWS} flows: about {} KiB, {per_flow} B per flow including an 8-byte T; created in {created:?}",
        bytes / 1024
    );
    // The stated budget: 256 bytes per flow with an 8-byte T, capacity slack included.
    assert!(per_flow <= 256, "{per_flow} B per flow");
    out.clear();
    let started = Instant::now();
    table.handle(
        Input::Tick {
            now: base + Duration::from_secs(3 + 71),
        },
        &mut out,
    );
    println!("expired {} flows in one tick in {:?}", out.len(), started.elapsed());
    assert_eq!(out.len(), FLOWS as usize);
    assert!(table.is_empty() && table.next_deadline().is_none());
    assert_eq!(table.counters().expired, u64::from(FLOWS));
    table.check_invariants();
}
