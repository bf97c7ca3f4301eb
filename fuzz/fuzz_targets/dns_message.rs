//! The DNS query parser (`dns` plugin): the input as a UDP message and as a TCP stream (length
//! prefix), the parsed query's presentation, the name matcher, and the health check's reply reader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmmux_dns::message::{parse_query, parse_tcp, presentation, Parse, Query};

fn read(query: &Query) {
    let _ = (query.qname(), query.qtype_name(), query.recursion_desired());
    let name = presentation(&query.labels);
    assert!(!name.is_empty(), "a name is at least `.`");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(query) = parse_query(data) {
        read(&query);
    }
    if let Parse::Complete(query) = parse_tcp(data) {
        read(&query);
    }
    let _ = pmmux_dns::health_verdict(data);
});
