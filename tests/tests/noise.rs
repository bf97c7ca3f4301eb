//! Random datagrams through the real `pmmux` with every UDP detector loaded: 500 sources sending
//! seeded random garbage must all land on the catch-all, none on a protocol backend (before the
//! `openvpn` detector was tightened, 82–98 of 500 such sources got OpenVPN flows). The rates of each
//! detector alone are measured by `tests/noise` (the `pmmux-noise` crate).

mod udp_common;

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use udp_common::{client_socket, exchange, Bind};

use pmmux_e2e::*;

const SOURCES: usize = 500;
const DATAGRAMS_PER_SOURCE: usize = 4;

#[test]
fn random_datagrams_from_500_sources_reach_no_protocol_backend() {
    let decoy = UdpEcho::start();
    let garbage = UdpEcho::start();
    let detectors = ["dns", "openvpn", "wireguard", "quic", "dtls", "stun", "bittorrent"];
    let mut plugins = detectors.to_vec();
    plugins.push("anyprot");
    let (_pm, ports) = udp_common::start(&plugins, &[Bind::Udp], |p| {
        let mut config = format!(
            "plugin_dir = \"plugins\"\n[[listener]]\naddress = \"127.0.0.1:{}\"\ntransport = [\"udp\"]\n",
            p[0]
        );
        for name in detectors {
            config += &format!(
                "[[backend]]\nname = \"{name}\"\nprotocol = \"{name}\"\ntarget = \"{}\"\n",
                decoy.addr()
            );
        }
        config += &format!(
            "[[backend]]\nname = \"garbage\"\nprotocol = \"anyprot\"\ntarget = \"{}\"\npriority = \"fallback\"\n",
            garbage.addr()
        );
        config
    });
    let to = loopback(ports[0]);
    let mut rng = StdRng::seed_from_u64(0x006e_6f69_7365);
    for source in 0..SOURCES {
        let socket = client_socket(udp_common::T);
        for _ in 0..DATAGRAMS_PER_SOURCE {
            let mut datagram = vec![0u8; rng.random_range(1..=1200)];
            rng.fill_bytes(&mut datagram);
            assert_eq!(exchange(&socket, to, &datagram), datagram, "source {source}");
        }
    }
    assert_eq!(garbage.datagrams(), SOURCES * DATAGRAMS_PER_SOURCE);
    assert_eq!(decoy.datagrams(), 0, "random datagrams reached a protocol backend");
}
