//! `bittorrent`: its TCP and UDP detection, serving, and health verdict over the input (see
//! [`pmmux_fuzz::plugin_target`]).
#![no_main]

pmmux_fuzz::plugin_target!(
    "bittorrent",
    "",
    pmmux_bittorrent::BitTorrent::new,
    pmmux_fuzz::Datagrams::Whole
);
