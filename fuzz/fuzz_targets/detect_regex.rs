//! `regex`: its TCP and UDP detection, serving, and health verdict over the input (see
//! [`pmmux_fuzz::plugin_target`]).
#![no_main]

pmmux_fuzz::plugin_target!(
    "regex",
    r"patterns = ['^SSH-2\.0-', '(?i)^(get|post) /', '^\x16\x03[\x00-\x04]']",
    pmmux_regex::RegexProbe::new,
    pmmux_fuzz::Datagrams::Whole,
    pmmux_fuzz::Segments::Unordered,
);
