use std::net::{IpAddr, Ipv4Addr};

use super::*;

const EXT: IpAddr = IpAddr::V4(Ipv4Addr::new(100, 128, 40, 1));
const GW: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1));

fn timing() -> Timing {
    Timing {
        lifetime_s: 30,
        renewal_lead_s: 10,
    }
}

fn want(name: &str, t: Transport, port: u16, public: PublicPort) -> Want {
    Want {
        listener: name.into(),
        transport: t,
        internal_port: port,
        internal_ip: None,
        public,
    }
}

fn info(protocol: Protocol, epoch: Option<u32>) -> GatewayInfo {
    GatewayInfo {
        protocol,
        address: GW,
        external_ip: Some(EXT),
        epoch,
    }
}

fn granted(port: u16, lifetime_s: u32, epoch: Option<u32>) -> Granted {
    Granted {
        public_port: port,
        lifetime_s,
        external_ip: None,
        epoch,
    }
}

fn refused(msg: &str) -> Failure {
    Failure {
        message: msg.into(),
        gateway_lost: false,
    }
}

/// An engine with one active TCP mapping 8080 -> public 18080 (NAT-PMP epoch 100 at `t0`).
fn active(t0: Instant) -> (Engine, Want) {
    let mut e = Engine::new(timing(), t0);
    let w = want("web", Transport::Tcp, 8080, PublicPort::Fixed(18080));
    e.set_wanted(vec![w.clone()], t0);
    assert_eq!(e.next_action(t0), Some(Action::Discover));
    e.on_discovered(Ok(info(Protocol::Pmp, Some(100))), t0);
    let Some(Action::Map {
        want: got,
        public_port,
        lifetime_s,
        renewal,
    }) = e.next_action(t0)
    else {
        panic!("expected a map request");
    };
    assert_eq!(
        (got, public_port, lifetime_s, renewal),
        (w.clone(), Some(18080), 30, false)
    );
    e.on_mapped(&w, false, Ok(granted(18080, 30, Some(100))), t0);
    (e, w)
}

#[test]
fn nothing_wanted_means_nothing_to_do() {
    let t0 = Instant::now();
    let mut e = Engine::new(timing(), t0);
    assert_eq!(e.next_action(t0), None);
    assert_eq!(e.next_deadline(), None);
    assert!(e.is_idle());
}

#[test]
fn a_mapping_is_renewed_lead_seconds_before_it_expires() {
    let t0 = Instant::now();
    let (mut e, w) = active(t0);
    let s = e.status(t0);
    assert_eq!(s.mappings[0].state, "active");
    assert_eq!(s.mappings[0].public_port, Some(18080));
    assert_eq!(s.mappings[0].lifetime_left_s, Some(30));
    assert_eq!(s.external_address.as_deref(), Some("100.128.40.1"));
    assert_eq!(s.protocol.as_deref(), Some("pmp"));
    // The probe comes every lifetime/3 = 10 s; the renewal at 30 - 10 = 20 s.
    assert_eq!(e.next_deadline(), Some(t0 + Duration::from_secs(10)));
    assert_eq!(e.next_action(t0 + Duration::from_secs(9)), None);
    assert_eq!(e.next_action(t0 + Duration::from_secs(10)), Some(Action::Probe));
    e.on_probed(
        Ok(ProbeReport {
            external_ip: Some(EXT),
            epoch: Some(110),
            present: None,
        }),
        t0 + Duration::from_secs(10),
    );
    assert_eq!(e.next_action(t0 + Duration::from_secs(19)), None);
    let t20 = t0 + Duration::from_secs(20);
    assert_eq!(
        e.next_action(t20),
        Some(Action::Map {
            want: w.clone(),
            public_port: Some(18080),
            lifetime_s: 30,
            renewal: true
        })
    );
    e.on_mapped(&w, true, Ok(granted(18080, 30, Some(120))), t20);
    let s = e.status(t20);
    assert_eq!((s.mappings[0].renewals, s.mappings[0].lifetime_left_s), (1, Some(30)));
}

#[test]
fn renewal_never_falls_in_the_first_half_of_a_lifetime() {
    let t = Timing {
        lifetime_s: 3600,
        renewal_lead_s: 60,
    };
    assert_eq!(t.renew_after(3600), Some(Duration::from_secs(3540)));
    // The gateway granted less than the lead: renew halfway.
    assert_eq!(t.renew_after(100), Some(Duration::from_secs(50)));
    assert_eq!(t.renew_after(0), None, "permanent");
    assert_eq!(t.probe_interval(), Duration::from_secs(60));
    assert_eq!(timing().probe_interval(), Duration::from_secs(10));
}

#[test]
fn a_refusal_is_retried_with_doubling_backoff_and_logged_once() {
    let t0 = Instant::now();
    let mut e = Engine::new(timing(), t0);
    let w = want("web", Transport::Udp, 5353, PublicPort::Any);
    e.set_wanted(vec![w.clone()], t0);
    e.next_action(t0);
    e.on_discovered(Ok(info(Protocol::Upnp, None)), t0);
    let Some(Action::Map { public_port: None, .. }) = e.next_action(t0) else {
        panic!("`?` asks for no particular port");
    };
    let ev = e.on_mapped(&w, false, Err(refused("ConflictInMappingEntry")), t0);
    assert!(matches!(&ev[0], Event::MapFailed { first: true, retry_in, .. } if *retry_in == Duration::from_secs(1)));
    assert_eq!(e.status(t0).mappings[0].state, "failed");
    assert_eq!(e.next_action(t0), None);
    let t1 = t0 + Duration::from_secs(1);
    assert!(matches!(e.next_action(t1), Some(Action::Map { .. })));
    let ev = e.on_mapped(&w, false, Err(refused("ConflictInMappingEntry")), t1);
    assert!(matches!(&ev[0], Event::MapFailed { first: false, retry_in, .. } if *retry_in == Duration::from_secs(2)));
    assert_eq!(e.next_deadline(), Some(t1 + Duration::from_secs(2)));
    assert_eq!(e.status(t1).mappings[0].failures, 2);
}

#[test]
fn an_absent_gateway_is_searched_again_with_backoff() {
    let t0 = Instant::now();
    let mut e = Engine::new(timing(), t0);
    e.set_wanted(vec![want("web", Transport::Tcp, 80, PublicPort::Fixed(80))], t0);
    assert_eq!(e.next_action(t0), Some(Action::Discover));
    let lost = Failure {
        message: "no gateway answered".into(),
        gateway_lost: true,
    };
    assert!(matches!(
        e.on_discovered(Err(lost.clone()), t0),
        Event::GatewayMissing { first: true, .. }
    ));
    assert_eq!(e.next_action(t0), None);
    assert_eq!(e.next_deadline(), Some(t0 + Duration::from_secs(1)));
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(e.next_action(t1), Some(Action::Discover));
    assert!(matches!(
        e.on_discovered(Err(lost), t1),
        Event::GatewayMissing { first: false, .. }
    ));
    assert_eq!(e.next_deadline(), Some(t1 + Duration::from_secs(2)));
    let s = e.status(t1);
    assert_eq!((s.discovery_failures, s.mappings[0].state.as_str()), (2, "failed"));
}

#[test]
fn a_gateway_that_stops_answering_is_discovered_again() {
    let t0 = Instant::now();
    let (mut e, w) = active(t0);
    let t20 = t0 + Duration::from_secs(20);
    e.on_probed(Ok(ProbeReport::default()), t0 + Duration::from_secs(10));
    assert!(matches!(e.next_action(t20), Some(Action::Map { renewal: true, .. })));
    let lost = Failure {
        message: "connection refused".into(),
        gateway_lost: true,
    };
    e.on_mapped(&w, true, Err(lost), t20);
    assert_eq!(e.next_action(t20), Some(Action::Discover));
    e.on_discovered(Ok(info(Protocol::Upnp, None)), t20);
    assert!(matches!(
        e.next_action(t20),
        Some(Action::Map {
            public_port: Some(18080),
            ..
        })
    ));
}

#[test]
fn an_epoch_going_back_remakes_every_mapping() {
    let t0 = Instant::now();
    let (mut e, w) = active(t0);
    let t10 = t0 + Duration::from_secs(10);
    assert_eq!(e.next_action(t10), Some(Action::Probe));
    // 10 s later the epoch should be about 110; 3 says the gateway started again.
    let ev = e.on_probed(
        Ok(ProbeReport {
            external_ip: Some(EXT),
            epoch: Some(3),
            present: None,
        }),
        t10,
    );
    assert!(matches!(&ev[..], [Event::Forgotten { keys, .. }] if keys == &vec![("web".to_owned(), Transport::Tcp)]));
    assert_eq!(
        e.next_action(t10),
        Some(Action::Map {
            want: w,
            public_port: Some(18080),
            lifetime_s: 30,
            renewal: false
        })
    );
}

#[test]
fn a_normal_epoch_keeps_the_mappings() {
    let t0 = Instant::now();
    let (mut e, _) = active(t0);
    let t10 = t0 + Duration::from_secs(10);
    e.next_action(t10);
    let ev = e.on_probed(
        Ok(ProbeReport {
            external_ip: Some(EXT),
            epoch: Some(109),
            present: None,
        }),
        t10,
    );
    assert!(ev.is_empty());
    assert_eq!(e.next_action(t10), None);
}

#[test]
fn a_mapping_missing_from_the_upnp_table_is_made_again() {
    let t0 = Instant::now();
    let (mut e, _) = active(t0);
    let t10 = t0 + Duration::from_secs(10);
    e.next_action(t10);
    let ev = e.on_probed(
        Ok(ProbeReport {
            external_ip: Some(EXT),
            epoch: None,
            present: Some(vec![(Transport::Udp, 18080, 8080)]),
        }),
        t10,
    );
    assert!(matches!(&ev[..], [Event::Forgotten { .. }]));
    assert!(matches!(e.next_action(t10), Some(Action::Map { renewal: false, .. })));
}

#[test]
fn an_external_address_change_is_reported() {
    let t0 = Instant::now();
    let (mut e, _) = active(t0);
    let t10 = t0 + Duration::from_secs(10);
    e.next_action(t10);
    let new = IpAddr::V4(Ipv4Addr::new(100, 128, 41, 1));
    let ev = e.on_probed(
        Ok(ProbeReport {
            external_ip: Some(new),
            epoch: Some(110),
            present: None,
        }),
        t10,
    );
    assert_eq!(
        ev,
        vec![Event::ExternalAddressChanged {
            from: Some(EXT),
            to: new
        }]
    );
    assert_eq!(e.status(t10).external_address.as_deref(), Some("100.128.41.1"));
}

#[test]
fn a_listener_removed_by_reload_has_its_mapping_removed_first() {
    let t0 = Instant::now();
    let (mut e, w) = active(t0);
    let other = want("dns", Transport::Udp, 5353, PublicPort::Any);
    e.set_wanted(vec![other.clone()], t0);
    assert_eq!(
        e.next_action(t0),
        Some(Action::Unmap {
            want: w.clone(),
            public_port: 18080
        })
    );
    assert!(matches!(
        e.on_unmapped(&w, 18080, Ok(()), t0),
        Event::Unmapped { error: None, .. }
    ));
    assert!(matches!(e.next_action(t0), Some(Action::Map { want, .. }) if want == other));
    assert_eq!(e.status(t0).mappings.len(), 1);
}

#[test]
fn a_changed_public_port_replaces_the_mapping() {
    let t0 = Instant::now();
    let (mut e, w) = active(t0);
    let changed = Want {
        public: PublicPort::Fixed(28080),
        ..w.clone()
    };
    e.set_wanted(vec![changed.clone()], t0);
    assert_eq!(
        e.next_action(t0),
        Some(Action::Unmap {
            want: w,
            public_port: 18080
        })
    );
    assert!(matches!(
        e.next_action(t0),
        Some(Action::Map {
            public_port: Some(28080),
            renewal: false,
            ..
        })
    ));
}

#[test]
fn an_unchanged_set_leaves_mappings_alone() {
    let t0 = Instant::now();
    let (mut e, w) = active(t0);
    e.set_wanted(vec![w], t0);
    assert_eq!(e.next_action(t0), None);
}

#[test]
fn shutdown_removes_every_mapping_then_is_idle() {
    let t0 = Instant::now();
    let (mut e, w) = active(t0);
    let u = want("web", Transport::Udp, 8080, PublicPort::Fixed(18080));
    e.set_wanted(vec![w.clone(), u.clone()], t0);
    let Some(Action::Map { .. }) = e.next_action(t0) else {
        panic!("udp mapping expected");
    };
    e.on_mapped(&u, false, Ok(granted(18080, 30, None)), t0);
    e.shutdown(t0);
    let mut removed = Vec::new();
    while let Some(a) = e.next_action(t0) {
        let Action::Unmap { want, public_port } = a else {
            panic!("only removals after shutdown, got {a:?}");
        };
        e.on_unmapped(&want, public_port, Ok(()), t0);
        removed.push(want.transport);
    }
    removed.sort();
    assert_eq!(removed, vec![Transport::Tcp, Transport::Udp]);
    assert!(e.is_idle());
}

#[test]
fn a_mapping_granted_after_it_was_unwanted_is_removed() {
    let t0 = Instant::now();
    let mut e = Engine::new(timing(), t0);
    let w = want("web", Transport::Tcp, 8080, PublicPort::Any);
    e.set_wanted(vec![w.clone()], t0);
    e.next_action(t0);
    e.on_discovered(Ok(info(Protocol::Pcp, Some(5))), t0);
    assert!(matches!(e.next_action(t0), Some(Action::Map { .. })));
    e.shutdown(t0);
    e.on_mapped(&w, false, Ok(granted(40001, 30, Some(5))), t0);
    assert_eq!(
        e.next_action(t0),
        Some(Action::Unmap {
            want: w,
            public_port: 40001
        })
    );
}

#[test]
fn without_a_gateway_shutdown_has_nothing_to_remove() {
    let t0 = Instant::now();
    let mut e = Engine::new(timing(), t0);
    e.set_wanted(vec![want("web", Transport::Tcp, 80, PublicPort::Fixed(80))], t0);
    e.shutdown(t0);
    assert_eq!(e.next_action(t0), None);
    assert!(e.is_idle());
}
