//! Unit tests of the flow table: one per transition, plus the invariant checker the simulation uses.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::{FlowCounters, FlowId, FlowTable, Input, Output, Queued, Slot, NONE};

impl<T> FlowTable<T> {
    /// Checks every structural invariant; O(n).
    pub(super) fn check_invariants(&self) {
        assert!(
            self.len() <= self.max_flows,
            "cap exceeded: {} > {}",
            self.len(),
            self.max_flows
        );
        assert_eq!(self.by_client.len(), self.heap.len(), "map and heap disagree");
        let occupied = self.slots.iter().filter(|s| s.flow.is_some()).count();
        assert_eq!(occupied, self.heap.len(), "one heap entry per live flow");
        for (pos, q) in self.heap.iter().enumerate() {
            if pos > 0 {
                assert!(
                    self.heap[(pos - 1) / 2].deadline <= q.deadline,
                    "heap order broken at {pos}"
                );
            }
            let s = &self.slots[q.slot as usize];
            assert_eq!(s.link as usize, pos, "heap back-link broken");
            let f = s.flow.as_ref().expect("heap entry of a vacant slot");
            assert!(q.deadline <= f.deadline(), "queued deadline later than the real one");
            assert_eq!(self.by_client.get(&f.client), Some(&q.slot), "map entry missing");
        }
        let mut free = 0;
        let mut seen = HashSet::new();
        let mut next = self.free_head;
        while next != NONE {
            assert!(seen.insert(next), "free list loops");
            let s = &self.slots[next as usize];
            assert!(s.flow.is_none(), "occupied slot on the free list");
            assert_ne!(s.generation, u32::MAX, "retired slot on the free list");
            free += 1;
            next = s.link;
        }
        let retired = self
            .slots
            .iter()
            .filter(|s| s.flow.is_none() && s.generation == u32::MAX)
            .count();
        assert_eq!(occupied + free + retired, self.slots.len(), "slots leaked");
    }
}

pub(super) fn v4(n: u32) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + n), 40_000 + (n % 20_000) as u16))
}

fn v6(n: u16) -> SocketAddr {
    SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n), 5353))
}

fn ms(base: Instant, ms: u64) -> Instant {
    base + Duration::from_millis(ms)
}

fn run<T>(table: &mut FlowTable<T>, input: Input<T>) -> Vec<Output<T>> {
    let mut out = Vec::new();
    table.handle(input, &mut out);
    table.check_invariants();
    out
}

/// Drives a new client through detection to a created flow.
fn create(table: &mut FlowTable<u32>, client: SocketAddr, timeout_ms: u64, state: u32, now: Instant) -> FlowId {
    assert_eq!(
        run(table, Input::ClientDatagram { client, now }),
        [Output::NeedsDetection { client }]
    );
    let idle_timeout = Duration::from_millis(timeout_ms);
    match run(
        table,
        Input::Detected {
            client,
            idle_timeout,
            state,
            now,
        },
    )[..]
    {
        [Output::Created { flow }] => flow,
        ref other => panic!("expected Created, got {other:?}"),
    }
}

#[test]
fn unknown_client_needs_detection_and_creates_nothing() {
    let mut t = FlowTable::<u32>::new(10);
    let now = Instant::now();
    assert_eq!(
        run(&mut t, Input::ClientDatagram { client: v4(1), now }),
        [Output::NeedsDetection { client: v4(1) }]
    );
    assert_eq!(
        run(&mut t, Input::ClientDatagram { client: v4(1), now }),
        [Output::NeedsDetection { client: v4(1) }]
    );
    assert!(t.is_empty());
    assert_eq!(t.next_deadline(), None);
    assert_eq!(t.counters(), FlowCounters::default());
}

#[test]
fn detected_creates_and_later_datagrams_skip_detection() {
    let mut t = FlowTable::new(10);
    let base = Instant::now();
    let flow = create(&mut t, v4(1), 1000, 7, base);
    assert_eq!(t.len(), 1);
    assert_eq!(t.get(flow), Some(&7));
    assert_eq!(t.client(flow), Some(v4(1)));
    assert_eq!(t.find(v4(1)), Some(flow));
    assert_eq!(t.next_deadline(), Some(ms(base, 1000)));
    for i in 1..5 {
        assert_eq!(
            run(
                &mut t,
                Input::ClientDatagram {
                    client: v4(1),
                    now: ms(base, i * 100)
                }
            ),
            [Output::Forward { flow }]
        );
    }
    *t.get_mut(flow).unwrap() = 8;
    assert_eq!(t.get(flow), Some(&8));
    assert_eq!(t.iter().collect::<Vec<_>>(), [(flow, v4(1), &8)]);
    assert_eq!(t.counters().created, 1);
}

#[test]
fn tick_expires_exactly_at_the_deadline_not_before() {
    let mut t = FlowTable::new(10);
    let base = Instant::now();
    let flow = create(&mut t, v6(1), 1000, 1, base);
    assert!(run(&mut t, Input::Tick { now: ms(base, 999) }).is_empty());
    assert!(run(
        &mut t,
        Input::Tick {
            now: base + Duration::from_nanos(999_999_999)
        }
    )
    .is_empty());
    assert_eq!(
        run(&mut t, Input::Tick { now: ms(base, 1000) }),
        [Output::Expired {
            flow,
            client: v6(1),
            state: 1
        }]
    );
    assert!(t.is_empty());
    assert_eq!(t.next_deadline(), None);
    assert_eq!(t.counters().expired, 1);
}

#[test]
fn a_refresh_postpones_expiry_and_the_tick_requeues_lazily() {
    let mut t = FlowTable::new(10);
    let base = Instant::now();
    let flow = create(&mut t, v4(1), 100, 1, base);
    run(
        &mut t,
        Input::ClientDatagram {
            client: v4(1),
            now: ms(base, 50),
        },
    );
    // The queued deadline is still the old one: a tick there re-queues without expiring.
    assert_eq!(t.next_deadline(), Some(ms(base, 100)));
    assert!(run(&mut t, Input::Tick { now: ms(base, 100) }).is_empty());
    assert_eq!(t.next_deadline(), Some(ms(base, 150)));
    assert!(run(&mut t, Input::Tick { now: ms(base, 149) }).is_empty());
    assert_eq!(
        run(&mut t, Input::Tick { now: ms(base, 150) }),
        [Output::Expired {
            flow,
            client: v4(1),
            state: 1
        }]
    );
}

#[test]
fn each_flow_keeps_its_own_backend_timeout() {
    let mut t = FlowTable::new(10);
    let base = Instant::now();
    let long = create(&mut t, v4(1), 60_000, 1, base);
    let short = create(&mut t, v4(2), 5_000, 2, base);
    assert_eq!(t.next_deadline(), Some(ms(base, 5_000)));
    assert_eq!(
        run(&mut t, Input::Tick { now: ms(base, 5_000) }),
        [Output::Expired {
            flow: short,
            client: v4(2),
            state: 2
        }]
    );
    assert!(run(&mut t, Input::Tick { now: ms(base, 59_999) }).is_empty());
    assert_eq!(
        run(&mut t, Input::Tick { now: ms(base, 60_000) }),
        [Output::Expired {
            flow: long,
            client: v4(1),
            state: 1
        }]
    );
}

#[test]
fn upstream_replies_keep_a_flow_alive() {
    let mut t = FlowTable::new(10);
    let base = Instant::now();
    let flow = create(&mut t, v4(1), 100, 1, base);
    for i in 1..=10 {
        assert!(run(
            &mut t,
            Input::UpstreamActivity {
                flow,
                now: ms(base, i * 90)
            }
        )
        .is_empty());
        assert!(run(
            &mut t,
            Input::Tick {
                now: ms(base, i * 90 + 10)
            }
        )
        .is_empty());
    }
    assert_eq!(
        run(&mut t, Input::Tick { now: ms(base, 1000) }),
        [Output::Expired {
            flow,
            client: v4(1),
            state: 1
        }]
    );
}

#[test]
fn a_due_flow_is_expired_by_the_next_input_that_meets_it_never_revived() {
    let mut t = FlowTable::new(10);
    let base = Instant::now();
    let flow = create(&mut t, v4(1), 100, 1, base);
    // The timer is late: the client's datagram finds its flow past its deadline.
    assert_eq!(
        run(
            &mut t,
            Input::ClientDatagram {
                client: v4(1),
                now: ms(base, 100)
            }
        ),
        [
            Output::Expired {
                flow,
                client: v4(1),
                state: 1
            },
            Output::NeedsDetection { client: v4(1) }
        ]
    );
    let again = create(&mut t, v4(1), 100, 2, ms(base, 100));
    assert_ne!(again, flow);
    // A late reply is not forwarded either.
    assert_eq!(
        run(
            &mut t,
            Input::UpstreamActivity {
                flow: again,
                now: ms(base, 250)
            }
        ),
        [Output::Expired {
            flow: again,
            client: v4(1),
            state: 2
        }]
    );
    assert_eq!(t.counters().expired, 2);
}

#[test]
fn the_cap_rejects_and_hands_the_state_back() {
    let mut t = FlowTable::new(2);
    let base = Instant::now();
    create(&mut t, v4(1), 1000, 1, base);
    create(&mut t, v4(2), 1000, 2, base);
    assert!(t.is_full());
    let (client, now) = (v4(3), ms(base, 10));
    assert_eq!(
        run(&mut t, Input::ClientDatagram { client, now }),
        [Output::NeedsDetection { client }]
    );
    let idle_timeout = Duration::from_millis(1000);
    assert_eq!(
        run(
            &mut t,
            Input::Detected {
                client,
                idle_timeout,
                state: 3,
                now
            }
        ),
        [Output::Rejected { client, state: 3 }]
    );
    assert_eq!(t.len(), 2);
    assert_eq!(t.counters().rejected, 1);
    assert_eq!(t.find(client), None);
}

#[test]
fn a_full_table_makes_room_from_due_flows_before_rejecting() {
    let mut t = FlowTable::new(2);
    let base = Instant::now();
    let a = create(&mut t, v4(1), 100, 1, base);
    let b = create(&mut t, v4(2), 100, 2, base);
    let (client, now, idle_timeout) = (v4(3), ms(base, 100), Duration::from_millis(100));
    let out = run(
        &mut t,
        Input::Detected {
            client,
            idle_timeout,
            state: 3,
            now,
        },
    );
    assert_eq!(out.len(), 3);
    assert!(out.contains(&Output::Expired {
        flow: a,
        client: v4(1),
        state: 1
    }));
    assert!(out.contains(&Output::Expired {
        flow: b,
        client: v4(2),
        state: 2
    }));
    assert!(matches!(out[2], Output::Created { .. }));
    assert_eq!(t.len(), 1);
    assert_eq!(t.counters().rejected, 0);
}

#[test]
fn a_cap_of_zero_rejects_everything() {
    let mut t = FlowTable::new(0);
    let now = Instant::now();
    let idle_timeout = Duration::from_secs(1);
    let out = run(
        &mut t,
        Input::Detected {
            client: v4(1),
            idle_timeout,
            state: 1,
            now,
        },
    );
    assert_eq!(
        out,
        [Output::Rejected {
            client: v4(1),
            state: 1
        }]
    );
}

#[test]
fn racing_detections_keep_the_first_flow() {
    let mut t = FlowTable::new(1);
    let base = Instant::now();
    let flow = create(&mut t, v4(1), 100, 1, base);
    // A second detection for the same client finishes later; even on a full table it is no rejection.
    let idle_timeout = Duration::from_millis(5000);
    assert_eq!(
        run(
            &mut t,
            Input::Detected {
                client: v4(1),
                idle_timeout,
                state: 2,
                now: ms(base, 80)
            }
        ),
        [Output::AlreadyExists { flow, state: 2 }]
    );
    assert_eq!(t.get(flow), Some(&1));
    assert_eq!(t.counters().rejected, 0);
    // It counted as activity, and the first flow's own timeout still applies.
    assert!(run(&mut t, Input::Tick { now: ms(base, 179) }).is_empty());
    assert_eq!(run(&mut t, Input::Tick { now: ms(base, 180) }).len(), 1);
}

#[test]
fn an_ended_flows_id_never_reaches_a_newer_one() {
    let mut t = FlowTable::new(10);
    let base = Instant::now();
    let old = create(&mut t, v4(1), 5, 1, base);
    assert_eq!(
        run(&mut t, Input::Tick { now: ms(base, 5) }),
        [Output::Expired {
            flow: old,
            client: v4(1),
            state: 1
        }]
    );
    // The slot is reused by another client's flow.
    let new = create(&mut t, v4(2), 100, 2, ms(base, 10));
    assert_eq!(new.slot, old.slot);
    assert_ne!(new, old);
    assert_eq!((t.get(old), t.client(old)), (None, None));
    assert!(t.get_mut(old).is_none());
    // A stale id neither refreshes nor removes the new flow.
    assert!(run(
        &mut t,
        Input::UpstreamActivity {
            flow: old,
            now: ms(base, 100)
        }
    )
    .is_empty());
    assert_eq!(
        run(&mut t, Input::Tick { now: ms(base, 110) }),
        [Output::Expired {
            flow: new,
            client: v4(2),
            state: 2
        }]
    );
    assert!(run(
        &mut t,
        Input::UpstreamActivity {
            flow: new,
            now: ms(base, 120)
        }
    )
    .is_empty());
    assert_eq!(
        t.counters(),
        FlowCounters {
            created: 2,
            expired: 2,
            rejected: 0,
        }
    );
}

#[test]
fn an_id_out_of_range_is_stale() {
    let mut t = FlowTable::<u32>::new(10);
    let bogus = FlowId { slot: 5, generation: 0 };
    assert!(t.get(bogus).is_none());
    assert!(run(
        &mut t,
        Input::UpstreamActivity {
            flow: bogus,
            now: Instant::now()
        }
    )
    .is_empty());
}

#[test]
fn a_slot_whose_generation_is_exhausted_is_retired() {
    let mut t = FlowTable::new(10);
    let base = Instant::now();
    create(&mut t, v4(1), 100, 1, base);
    t.slots[0].generation = u32::MAX;
    let last = t.find(v4(1)).unwrap();
    assert_eq!(last.generation, u32::MAX);
    assert_eq!(run(&mut t, Input::Tick { now: ms(base, 100) }).len(), 1);
    let next = create(&mut t, v4(2), 100, 2, base);
    assert_eq!(next.slot, 1, "the retired slot is not reused");
    assert!(t.get(last).is_none());
}

#[test]
fn huge_timeouts_saturate_and_early_instants_count_as_the_start() {
    let mut t = FlowTable::new(10);
    let base = Instant::now() + Duration::from_secs(10);
    let forever = create(&mut t, v4(1), 0, 1, base);
    let idle_timeout = Duration::MAX;
    let out = run(
        &mut t,
        Input::Detected {
            client: v4(2),
            idle_timeout,
            state: 2,
            now: base,
        },
    );
    let Output::Created { flow: kept } = out[0] else {
        panic!("{out:?}")
    };
    // A zero timeout is due at once; an instant before the first one seen counts as that one.
    let earlier = base - Duration::from_secs(5);
    assert!(run(&mut t, Input::Tick { now: earlier }).len() == 1 && t.get(forever).is_none());
    assert!(run(
        &mut t,
        Input::Tick {
            now: base + Duration::from_secs(100 * 365 * 86_400)
        }
    )
    .is_empty());
    assert_eq!(t.get(kept), Some(&2));
    // A refresh with an older time does not shorten a flow.
    let c = create(&mut t, v4(3), 100, 3, ms(base, 50));
    run(&mut t, Input::UpstreamActivity { flow: c, now: base });
    assert!(run(&mut t, Input::Tick { now: ms(base, 149) }).is_empty());
}

#[test]
fn flow_id_displays_slot_and_generation() {
    assert_eq!(FlowId { slot: 3, generation: 9 }.to_string(), "3.9");
}

#[test]
fn per_flow_record_sizes() {
    let slot = size_of::<Slot<()>>();
    let entry = size_of::<Queued>();
    let map = size_of::<(SocketAddr, u32)>() + 1;
    println!(
        "per flow, excluding T: slot {slot} B + heap entry {entry} B + map entry {map} B = {} B",
        slot + entry + map
    );
    if cfg!(target_pointer_width = "64") {
        assert_eq!(slot, 56, "the module documentation states 56 bytes");
        assert_eq!(entry, 16);
        assert_eq!(map, 37);
    }
    // A typical T (an Arc'd socket and a backend index) adds its own size to the slot only.
    assert_eq!(size_of::<Slot<(std::sync::Arc<()>, u32)>>(), slot + 16);
}
