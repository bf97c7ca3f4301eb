//! Unit tests of the pending table, one per transition, and a seeded simulation against a model
//! that checks the bounds and that every held datagram comes back exactly once, in order.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::{Held, Input, Output, PendingLimits, PendingTable};

fn client(n: u32) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + n), 40_000 + (n % 20_000) as u16))
}

const TIMEOUT: Duration = Duration::from_millis(3000);

fn limits(max_clients: usize) -> PendingLimits {
    PendingLimits {
        max_clients,
        max_datagrams: 8,
        max_bytes: 4096,
        timeout: TIMEOUT,
    }
}

/// A table plus a clock, with one call per input returning what it said.
struct T {
    table: PendingTable<u32>,
    base: Instant,
}

impl T {
    fn new(limits: PendingLimits) -> T {
        T {
            table: PendingTable::new(limits),
            base: Instant::now(),
        }
    }
    fn at(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }
    fn run(&mut self, input: Input<'_, u32>) -> Vec<Output<u32>> {
        let mut out = Vec::new();
        self.table.handle(input, &mut out);
        out
    }
    fn datagram(&mut self, c: u32, bytes: &[u8], ms: u64) -> Vec<Output<u32>> {
        let now = self.at(ms);
        self.run(Input::Datagram {
            client: client(c),
            datagram: bytes,
            now,
        })
    }
    fn hold(&mut self, c: u32, state: u32, bytes: &[u8], ms: u64) -> Vec<Output<u32>> {
        let now = self.at(ms);
        self.run(Input::Hold {
            client: client(c),
            state,
            datagram: bytes,
            now,
        })
    }
    /// A new client's first datagram, held.
    fn start(&mut self, c: u32, bytes: &[u8], ms: u64) {
        assert_eq!(self.datagram(c, bytes, ms), [Output::Detect { client: client(c) }]);
        assert_eq!(self.hold(c, c, bytes, ms), [Output::Held { client: client(c) }]);
    }
    fn tick(&mut self, ms: u64) -> Vec<Output<u32>> {
        let now = self.at(ms);
        self.run(Input::Tick { now })
    }
}

fn held(state: u32, datagrams: &[&[u8]]) -> Held<u32> {
    Held {
        state,
        datagrams: datagrams.iter().map(|d| d.to_vec()).collect(),
    }
}

#[test]
fn datagrams_are_held_in_order_and_released_once_decided() {
    let mut t = T::new(limits(4));
    assert!(t.table.is_empty() && t.table.next_deadline().is_none());
    t.start(1, b"OL", 0);
    assert_eq!(t.datagram(1, b"OLDx", 5), [Output::Appended { client: client(1) }]);
    let (state, datagrams) = t.table.get_mut(client(1)).expect("pending");
    assert_eq!((*state, datagrams), (1, &[b"OL".to_vec(), b"OLDx".to_vec()][..]));
    *state = 7;
    assert_eq!(t.table.held_bytes(), 6);
    assert_eq!(
        t.run(Input::Release { client: client(1) }),
        [Output::Released {
            client: client(1),
            held: held(7, &[b"OL", b"OLDx"])
        }]
    );
    assert!(t.table.is_empty() && t.table.next_deadline().is_none());
    assert_eq!(t.table.held_bytes(), 0);
    // Released twice, or never pending: nothing.
    assert!(t.run(Input::Release { client: client(1) }).is_empty());
    // The same client again starts a new detection.
    assert_eq!(t.datagram(1, b"x", 10), [Output::Detect { client: client(1) }]);
    let c = t.table.counters();
    assert_eq!((c.held, c.released, c.expired, c.full, c.rejected), (1, 1, 0, 0, 0));
}

#[test]
fn the_probe_timeout_counts_from_the_first_datagram() {
    let mut t = T::new(limits(4));
    t.start(1, b"a", 100);
    assert_eq!(t.table.next_deadline(), Some(t.at(3100)));
    // Later datagrams do not push the deadline.
    assert_eq!(t.datagram(1, b"b", 3000), [Output::Appended { client: client(1) }]);
    assert_eq!(t.table.next_deadline(), Some(t.at(3100)));
    assert!(t.tick(3099).is_empty());
    assert_eq!(
        t.tick(3100),
        [Output::Expired {
            client: client(1),
            held: held(1, &[b"a", b"b"])
        }]
    );
    assert!(t.table.is_empty() && t.table.next_deadline().is_none());
    assert_eq!(t.table.counters().expired, 1);
}

#[test]
fn a_datagram_after_the_deadline_expires_the_client_first_then_starts_anew() {
    let mut t = T::new(limits(4));
    t.start(1, b"a", 0);
    assert_eq!(
        t.datagram(1, b"late", 3000),
        [
            Output::Expired {
                client: client(1),
                held: held(1, &[b"a"])
            },
            Output::Detect { client: client(1) }
        ]
    );
    assert!(t.table.is_empty());
}

#[test]
fn expiry_order_follows_deadlines_and_ties_keep_arrival_order() {
    let mut t = T::new(limits(8));
    assert!(t.tick(0).is_empty()); // time 0 of the table
    t.start(3, b"c", 20);
    t.start(1, b"a", 0);
    t.start(2, b"b", 0);
    let out = t.tick(3020);
    let order: Vec<SocketAddr> = out
        .iter()
        .map(|o| match o {
            Output::Expired { client, .. } => *client,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(order, [client(1), client(2), client(3)]);
}

#[test]
fn a_client_reaching_its_datagram_bound_is_decided_without_the_new_one() {
    let mut t = T::new(limits(4));
    t.start(1, &[0], 0);
    for i in 1..8u8 {
        assert_eq!(t.datagram(1, &[i], 1), [Output::Appended { client: client(1) }]);
    }
    let eight: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i]).collect();
    assert_eq!(t.table.get_mut(client(1)).expect("pending").1, &eight[..]);
    match &t.datagram(1, &[8], 2)[..] {
        [Output::Full { client: c, held }] => {
            assert_eq!(*c, client(1));
            assert_eq!((held.state, &held.datagrams), (1, &eight));
        }
        other => panic!("{other:?}"),
    }
    assert!(t.table.is_empty());
    assert_eq!(t.table.counters().full, 1);
}

#[test]
fn a_client_reaching_its_byte_bound_is_decided_without_the_new_one() {
    let mut t = T::new(limits(4));
    t.start(1, &[1; 3000], 0);
    // Exactly at the bound still fits.
    assert_eq!(t.datagram(1, &[2; 1096], 1), [Output::Appended { client: client(1) }]);
    assert_eq!(t.table.held_bytes(), 4096);
    match &t.datagram(1, &[3], 2)[..] {
        [Output::Full { held, .. }] => assert_eq!(held.datagrams, [vec![1; 3000], vec![2; 1096]]),
        other => panic!("{other:?}"),
    }
    // A first datagram larger than the bound alone is never held.
    assert_eq!(t.datagram(2, &[0; 4097], 3), [Output::Detect { client: client(2) }]);
    assert_eq!(
        t.hold(2, 2, &[0; 4097], 3),
        [Output::Full {
            client: client(2),
            held: held(2, &[])
        }]
    );
    assert!(t.table.is_empty());
}

#[test]
fn the_client_cap_rejects_new_clients_unless_some_are_due() {
    let mut t = T::new(limits(2));
    t.start(1, b"a", 0);
    t.start(2, b"b", 1000);
    assert!(t.table.is_full());
    assert_eq!(t.datagram(3, b"c", 2000), [Output::Detect { client: client(3) }]);
    assert_eq!(
        t.hold(3, 3, b"c", 2000),
        [Output::Rejected {
            client: client(3),
            state: 3
        }]
    );
    // Pending clients still get their datagrams held.
    assert_eq!(t.datagram(1, b"a2", 2000), [Output::Appended { client: client(1) }]);
    // Once client 1 is due (no tick came yet), the cap makes room by expiring it.
    assert_eq!(
        t.hold(3, 3, b"c", 3000),
        [
            Output::Expired {
                client: client(1),
                held: held(1, &[b"a", b"a2"])
            },
            Output::Held { client: client(3) }
        ]
    );
    assert_eq!(t.table.len(), 2);
    let c = t.table.counters();
    assert_eq!((c.held, c.rejected, c.expired), (3, 1, 1));
}

#[test]
fn hold_of_a_client_already_pending_appends_and_keeps_its_state() {
    let mut t = T::new(limits(2));
    t.start(1, b"a", 0);
    assert_eq!(t.hold(1, 99, b"b", 1), [Output::Appended { client: client(1) }]);
    assert_eq!(t.table.get_mut(client(1)).map(|(s, d)| (*s, d.len())), Some((1, 2)));
    assert_eq!(t.table.len(), 1);
}

#[test]
fn zero_limits_are_raised_to_one() {
    let t = T::new(PendingLimits {
        max_clients: 0,
        max_datagrams: 0,
        max_bytes: 0,
        timeout: Duration::ZERO,
    });
    let l = t.table.limits();
    assert_eq!((l.max_clients, l.max_datagrams), (1, 1));
}

// ---- seeded simulation ----

use crate::udp::flows::sim::Rng;

/// What the model knows of one pending client.
struct Model {
    deadline: u64,
    datagrams: Vec<Vec<u8>>,
    state: u32,
}

/// Random clients send datagrams (each carrying a unique serial number) at random virtual times;
/// some are decided at once, some held, released at random, or left to expire; ticks come at random
/// and when the table says. Every output is checked against the model, the bounds are checked after
/// every step, and every datagram that was held comes back exactly once, in its client's order.
fn simulate(seed: u64, max_clients: usize, steps: usize) {
    let limits = PendingLimits {
        max_clients,
        max_datagrams: 4,
        max_bytes: 2000,
        timeout: Duration::from_millis(400),
    };
    let mut rng = Rng(seed);
    let mut table: PendingTable<u32> = PendingTable::new(limits);
    let base = Instant::now();
    let mut now_ms = 0u64;
    let mut model: HashMap<SocketAddr, Model> = HashMap::new();
    let mut serial = 0u64;
    let (mut given_back, mut held_total) = (0u64, 0u64);
    let mut peak = 0;
    let ms = |t: u64| base + Duration::from_millis(t);
    // Checks an output that hands a client's datagrams back against the model, and forgets it.
    let mut returned = |model: &mut HashMap<SocketAddr, Model>, c: SocketAddr, h: &Held<u32>| {
        let m = model.remove(&c).expect("handed back a client the model does not hold");
        assert_eq!(h.state, m.state);
        assert_eq!(h.datagrams, m.datagrams, "datagrams lost, duplicated or reordered");
        given_back += h.datagrams.len() as u64;
    };
    for _ in 0..steps {
        now_ms += rng.below(4);
        let roll = rng.below(100);
        let mut out = Vec::new();
        if roll < 70 {
            let c = client(rng.below(30) as u32);
            serial += 1;
            let size = 8 + rng.below(1200) as usize;
            let mut bytes = serial.to_be_bytes().to_vec();
            bytes.resize(size, 0xab);
            table.handle(
                Input::Datagram {
                    client: c,
                    datagram: &bytes,
                    now: ms(now_ms),
                },
                &mut out,
            );
            let mut expect_detect = true;
            if let Some(m) = model.get(&c) {
                if m.deadline <= now_ms {
                    match out.remove(0) {
                        Output::Expired { client, held } => returned(&mut model, client, &held),
                        other => panic!("expected Expired, got {other:?}"),
                    }
                } else {
                    expect_detect = false;
                    let fits = m.datagrams.len() < 4 && m.datagrams.iter().map(Vec::len).sum::<usize>() + size <= 2000;
                    match out.remove(0) {
                        Output::Appended { client } if fits => {
                            model.get_mut(&client).expect("model").datagrams.push(bytes.clone());
                            held_total += 1;
                            if rng.below(3) == 0 {
                                let mut o = Vec::new();
                                table.handle(Input::Release { client }, &mut o);
                                match o.pop() {
                                    Some(Output::Released { client, held }) => returned(&mut model, client, &held),
                                    other => panic!("expected Released, got {other:?}"),
                                }
                            }
                        }
                        Output::Full { client, held } if !fits => returned(&mut model, client, &held),
                        other => panic!("fits={fits}: got {other:?}"),
                    }
                }
            }
            if expect_detect {
                assert_eq!(out.pop(), Some(Output::Detect { client: c }));
                // Half the new clients are decided by their first datagram alone.
                if rng.below(2) == 0 {
                    let state = serial as u32;
                    let due: Vec<SocketAddr> = if model.len() >= max_clients {
                        model
                            .iter()
                            .filter(|(_, m)| m.deadline <= now_ms)
                            .map(|(c, _)| *c)
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let mut o = Vec::new();
                    table.handle(
                        Input::Hold {
                            client: c,
                            state,
                            datagram: &bytes,
                            now: ms(now_ms),
                        },
                        &mut o,
                    );
                    let last = o.pop().expect("an answer to Hold");
                    let mut expired = 0;
                    for early in o {
                        match early {
                            Output::Expired { client, held } => {
                                assert!(due.contains(&client));
                                returned(&mut model, client, &held);
                                expired += 1;
                            }
                            other => panic!("before Hold's answer: {other:?}"),
                        }
                    }
                    assert_eq!(expired, due.len(), "every due client expires to make room");
                    match last {
                        Output::Held { client } => {
                            assert!(model.len() < max_clients);
                            model.insert(
                                client,
                                Model {
                                    deadline: now_ms + 400,
                                    datagrams: vec![bytes.clone()],
                                    state,
                                },
                            );
                            held_total += 1;
                        }
                        Output::Rejected { state: s, .. } => {
                            assert_eq!((s, model.len()), (state, max_clients));
                        }
                        other => panic!("answer to Hold: {other:?}"),
                    }
                }
            }
            assert!(out.is_empty(), "unexpected outputs {out:?}");
        } else {
            // A tick, at random or when the table asks for one.
            if roll < 85 {
                if let Some(due) = table.next_deadline() {
                    let due_ms = due.duration_since(base).as_millis() as u64;
                    assert_eq!(Some(due_ms), model.values().map(|m| m.deadline).min(), "next deadline");
                    now_ms = now_ms.max(due_ms);
                }
            }
            table.handle(Input::Tick { now: ms(now_ms) }, &mut out);
            let due = model.values().filter(|m| m.deadline <= now_ms).count();
            assert_eq!(out.len(), due, "tick expires exactly the due clients");
            for o in out {
                match o {
                    Output::Expired { client, held } => returned(&mut model, client, &held),
                    other => panic!("tick: {other:?}"),
                }
            }
        }
        assert_eq!(table.len(), model.len());
        assert!(table.len() <= max_clients);
        assert!(table.held_bytes() <= max_clients * 2000);
        for (c, m) in &model {
            assert!(table.contains(*c));
            assert!(m.datagrams.len() <= 4);
        }
        peak = peak.max(table.len());
    }
    let mut out = Vec::new();
    table.handle(Input::Tick { now: ms(now_ms + 1000) }, &mut out);
    for o in out {
        match o {
            Output::Expired { client, held } => returned(&mut model, client, &held),
            other => panic!("last tick: {other:?}"),
        }
    }
    let c = table.counters();
    assert!(table.is_empty() && model.is_empty());
    assert_eq!(given_back, held_total, "every held datagram came back exactly once");
    assert!(c.held > 100 && c.released > 10 && c.expired > 10 && c.full > 0, "{c:?}");
    if max_clients < 10 {
        assert!(c.rejected > 0 && peak == max_clients, "{c:?} peak {peak}");
    }
}

#[test]
fn simulation_with_room_to_spare() {
    for seed in [1, 2, 3] {
        simulate(seed, 1000, 20_000);
    }
}

#[test]
fn simulation_at_the_client_cap() {
    for seed in [4, 5, 6] {
        simulate(seed, 5, 20_000);
    }
}
