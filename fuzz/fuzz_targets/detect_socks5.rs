//! `socks5`: its TCP and UDP detection, serving, and health verdict over the input (see
//! [`pmmux_fuzz::plugin_target`]).
#![no_main]

pmmux_fuzz::plugin_target!("socks5", "", pmmux_socks5::Socks5::new, pmmux_fuzz::Datagrams::Whole);
