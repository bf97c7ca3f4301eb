//! `ssh`: its TCP and UDP detection, serving, and health verdict over the input (see
//! [`pmmux_fuzz::plugin_target`]).
#![no_main]

pmmux_fuzz::plugin_target!("ssh", "", pmmux_ssh::Ssh::new, pmmux_fuzz::Datagrams::Whole);
