//! `tinc`: its TCP and UDP detection, serving, and health verdict over the input (see
//! [`pmmux_fuzz::plugin_target`]).
#![no_main]

pmmux_fuzz::plugin_target!("tinc", "", pmmux_tinc::Tinc::new, pmmux_fuzz::Datagrams::Whole);
