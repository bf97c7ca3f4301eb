//! `socks4`: its TCP and UDP detection, serving, and health verdict over the input (see
//! [`pmmux_fuzz::plugin_target`]).
#![no_main]

pmmux_fuzz::plugin_target!("socks4", "", pmmux_socks4::Socks4::new, pmmux_fuzz::Datagrams::Whole);
