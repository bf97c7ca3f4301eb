//! `openvpn`: its TCP and UDP detection, serving, and health verdict over the input (see
//! [`pmmux_fuzz::plugin_target`]).
#![no_main]

pmmux_fuzz::plugin_target!("openvpn", "", pmmux_openvpn::OpenVpn::new, pmmux_fuzz::Datagrams::Whole);
