//! `redis`: its TCP and UDP detection, serving, and health verdict over the input (see
//! [`pmmux_fuzz::plugin_target`]).
#![no_main]

pmmux_fuzz::plugin_target!("redis", "", pmmux_redis::Redis::new, pmmux_fuzz::Datagrams::Whole);
