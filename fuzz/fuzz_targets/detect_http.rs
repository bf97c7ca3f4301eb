//! `http`: its TCP and UDP detection, serving, and health verdict over the input (see
//! [`pmmux_fuzz::plugin_target`]).
#![no_main]

pmmux_fuzz::plugin_target!(
    "http",
    "",
    pmmux_http::Http::new,
    pmmux_fuzz::Datagrams::Whole,
    pmmux_fuzz::Segments::Agree,
);
