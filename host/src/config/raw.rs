//! The configuration file as serde reads it: every table and key, strictly (`deny_unknown_fields`),
//! with spans kept where validation reports a place. [`super::validate`] turns it into [`super::Config`].

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{Strategy, DEFAULT_PREVIEW_LIMIT};
use crate::config::Priority;
use crate::routing::matchers::MatchersConfig;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default = "default_plugin_dir")]
    pub(super) plugin_dir: PathBuf,
    #[serde(default, rename = "listener")]
    pub(super) listeners: Vec<RawListener>,
    #[serde(default)]
    pub(super) routing: RawRouting,
    #[serde(default, rename = "backend")]
    pub(super) backends: Vec<RawBackend>,
    #[serde(default)]
    pub(super) reload: RawReload,
    pub(super) admin: Option<RawAdmin>,
    #[serde(default)]
    pub(super) health: crate::routing::health::config::RawProtocolHealth,
    #[serde(default)]
    pub(super) limits: RawLimits,
    pub(super) port_mapping: Option<crate::portmap::config::RawPortMapping>,
    pub(super) access_log: Option<RawAccessLog>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccessLog {
    pub(super) path: PathBuf,
    #[serde(default)]
    pub(super) format: crate::ops::access_log::Format,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLimits {
    pub(super) max_connections: Option<Spanned<usize>>,
    pub(super) max_previews: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawReload {
    pub(super) quiet_period_ms: u64,
    pub(super) rescan_interval_ms: u64,
    pub(super) watch_config: bool,
}

impl Default for RawReload {
    fn default() -> Self {
        RawReload {
            quiet_period_ms: 400,
            rescan_interval_ms: 10_000,
            watch_config: true,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) address: Spanned<String>,
    #[serde(default)]
    pub(super) allow_remote: bool,
}

pub(super) fn default_plugin_dir() -> PathBuf {
    PathBuf::from("plugins")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub(super) address: Spanned<String>,
    pub(super) name: Option<String>,
    #[serde(default = "default_transport")]
    pub(super) transport: Spanned<Vec<String>>,
    pub(super) strategy: Option<Strategy>,
    pub(super) accept_proxy_protocol: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(super) reuse_port: bool,
    pub(super) defer_accept: Option<bool>,
    pub(super) max_connections: Option<Spanned<usize>>,
    pub(super) max_connections_per_ip: Option<Spanned<usize>>,
    pub(super) public_port: Option<Spanned<crate::portmap::config::RawPublicPort>>,
    #[serde(default = "default_listen")]
    pub(super) listen: Spanned<bool>,
    pub(super) mode: Option<Spanned<String>>,
    pub(super) owner: Option<Spanned<String>>,
    pub(super) group: Option<Spanned<String>>,
}

pub(super) fn default_listen() -> Spanned<bool> {
    Spanned::new(0..0, true)
}

pub(super) fn default_transport() -> Spanned<Vec<String>> {
    Spanned::new(0..0, vec!["tcp".to_owned()])
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRouting {
    pub(super) strategy: Strategy,
    pub(super) probe_timeout_ms: u64,
    pub(super) preview_limit: Spanned<usize>,
    pub(super) on_timeout: Option<Spanned<String>>,
    pub(super) connect_timeout_ms: u64,
    pub(super) drain_timeout_ms: u64,
    pub(super) max_udp_flows: usize,
    pub(super) max_failovers: u32,
    pub(super) max_udp_pending: usize,
    pub(super) idle_timeout_ms: u64,
    pub(super) half_closed_timeout_ms: u64,
}

impl Default for RawRouting {
    fn default() -> Self {
        RawRouting {
            strategy: Strategy::FirstAvailable,
            probe_timeout_ms: 3000,
            preview_limit: Spanned::new(0..0, DEFAULT_PREVIEW_LIMIT),
            on_timeout: None,
            connect_timeout_ms: 5000,
            drain_timeout_ms: 30_000,
            max_udp_flows: 100_000,
            max_failovers: 3,
            max_udp_pending: 1024,
            idle_timeout_ms: super::DEFAULT_IDLE_TIMEOUT_MS,
            half_closed_timeout_ms: super::DEFAULT_HALF_CLOSED_TIMEOUT_MS,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub(super) name: Spanned<String>,
    pub(super) protocol: Spanned<String>,
    pub(super) target: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) priority: Priority,
    #[serde(default = "default_weight")]
    pub(super) weight: Spanned<u32>,
    #[serde(default, rename = "match")]
    pub(super) matchers: MatchersConfig,
    pub(super) params: Option<Spanned<toml::Table>>,
    #[serde(default = "default_udp_idle_timeout_ms")]
    pub(super) udp_idle_timeout_ms: u64,
    pub(super) idle_timeout_ms: Option<u64>,
    pub(super) udp_routing: Option<UdpRoutingKey>,
    pub(super) proxy_protocol: Option<crate::proxy_protocol::Version>,
    pub(super) transparent: Option<Spanned<bool>>,
    pub(super) health: Option<Spanned<crate::routing::health::config::RawHealth>>,
}

pub(super) fn default_weight() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

/// `[[backend]] udp_routing`.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub(super) enum UdpRoutingKey {
    Flow,
    PerMessage,
}

pub(super) fn default_udp_idle_timeout_ms() -> u64 {
    60_000
}
