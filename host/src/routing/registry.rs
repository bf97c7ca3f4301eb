//! The registry: an immutable snapshot of loaded plugins and the backends built from the configuration,
//! swapped whole behind an atomic pointer. A connection keeps the snapshot it started with.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use abi_stable::std_types::{RNone, RResult, RSome, RStr};
use pmmux_plugin_api::ffi::{BackendBox, BackendSpec};
use pmmux_plugin_api::UdpRouting;

use crate::config::{BackendConfig, Config, Priority, Routing};
use crate::plugins::LoadedPlugin;
use crate::routing::matchers::Matchers;
use crate::routing::offenders;

/// Consecutive plugin errors after which a backend is taken out of routing for a cool-down.
pub const MAX_CONSECUTIVE_PLUGIN_ERRORS: u32 = 16;
/// The first cool-down of a backend taken out for plugin errors; it doubles each time the errors
/// go on right after it returns (a success in between starts over), up to [`MAX_COOLDOWN`].
pub const FIRST_COOLDOWN: Duration = Duration::from_secs(5);
/// The longest cool-down.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(300);
/// At most one "plugin error" line per backend this often; the errors in between are counted and
/// the next line says how many.
pub const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// Protocols the host provides itself.
pub const BUILTIN_PROTOCOLS: &[&str] = &["pass", "noop"];

/// What answers for a backend.
pub enum BackendKind {
    /// Built-in: matches whatever its matchers allow and forwards to the target.
    Pass,
    /// Built-in: matches whatever its matchers allow, reads and discards.
    Noop,
    /// A plugin's backend object.
    Plugin(BackendBox),
}

/// Counters that outlive registry swaps (kept by backend name).
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Connections open right now.
    pub live: AtomicUsize,
    /// Connections routed here in total.
    pub routed: AtomicU64,
    /// Plugin errors (panics) in total.
    pub plugin_errors: AtomicU64,
    /// Health-check state (up unless checks say otherwise).
    pub health: crate::routing::health::HealthCell,
}

/// One backend, ready for routing.
pub struct Backend {
    /// Its configuration.
    pub config: BackendConfig,
    /// Its implementation. Declared before `plugin`: the plugin's object is dropped (through its
    /// vtable) while the library that holds that code is still mapped.
    pub kind: BackendKind,
    /// The plugin providing it (None for built-ins); the last reference to an old version closes
    /// its library.
    pub plugin: Option<Arc<LoadedPlugin>>,
    /// Live counters.
    pub stats: Arc<BackendStats>,
    /// Unique in the process (never reused): tells flows of one client to different backends apart.
    pub uid: u64,
    /// Whether its UDP clients keep a flow or each datagram is routed on its own: the backend's
    /// `udp_routing` key, else what its plugin declares, else a flow.
    pub udp_routing: UdpRouting,
    consecutive_errors: AtomicU32,
    /// Out of routing until this many ms after [`epoch`]; 0 when in routing.
    cooling_until_ms: AtomicU64,
    /// Cool-downs in a row (no success in between): the next one lasts 2^n × [`FIRST_COOLDOWN`].
    cooldowns: AtomicU32,
    /// When the last "plugin error" line was written, and errors not logged since.
    error_log: Mutex<(Option<Instant>, u64)>,
}

/// The instant cool-down deadlines count from.
fn epoch() -> Instant {
    static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
    *EPOCH
}

fn ms_since_epoch(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch()).as_millis()).unwrap_or(u64::MAX)
}

impl Backend {
    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Its tier.
    pub fn priority(&self) -> Priority {
        self.config.priority
    }

    /// Its host-side matchers.
    pub fn matchers(&self) -> &Matchers {
        &self.config.matchers
    }

    /// `name@version` of the plugin behind it, or `builtin`.
    pub fn plugin_label(&self) -> String {
        match &self.plugin {
            Some(p) => format!("{}@{}", p.name, p.version),
            None => "builtin".to_owned(),
        }
    }

    /// Whether it may be routed to (not cooling down after repeated plugin errors).
    pub fn is_enabled(&self) -> bool {
        let until = self.cooling_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        if ms_since_epoch(Instant::now()) < until {
            return false;
        }
        if self
            .cooling_until_ms
            .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::info!(backend = self.name(), plugin = %self.plugin_label(), "backend back in routing after its plugin-error cool-down");
        }
        true
    }

    /// Records a successful plugin call.
    pub fn plugin_ok(&self) {
        if self.consecutive_errors.load(Ordering::Relaxed) != 0 {
            self.consecutive_errors.store(0, Ordering::Relaxed);
        }
        if self.cooldowns.load(Ordering::Relaxed) != 0 {
            self.cooldowns.store(0, Ordering::Relaxed);
        }
    }

    /// Records a plugin error from hook `hook`, caused by `client` when there is one: the client is
    /// charged ([`offenders`]); one line per [`ERROR_LOG_EVERY`] per backend says so; after
    /// [`MAX_CONSECUTIVE_PLUGIN_ERRORS`] in a row the backend leaves routing for a cool-down.
    pub fn plugin_error(&self, hook: &str, error: &str, client: Option<SocketAddr>) {
        let now = Instant::now();
        self.stats.plugin_errors.fetch_add(1, Ordering::Relaxed);
        let client_ip = client.map(|c| c.ip());
        // 0.0.0.0 stands for every client of a Unix socket (no address to charge).
        if let Some(ip) = client_ip.filter(|ip| !ip.is_unspecified()) {
            if let Some(refused) = offenders::charge(ip, now) {
                tracing::warn!(client = %ip, backend = self.name(), plugin = %self.plugin_label(), refused_s = refused.as_secs(), errors = offenders::MAX_CLIENT_ERRORS, "client refused after repeated plugin errors");
            }
        }
        self.log_error(now, hook, error, client_ip);
        let n = self.consecutive_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= MAX_CONSECUTIVE_PLUGIN_ERRORS && self.cooling_until_ms.load(Ordering::Relaxed) == 0 {
            self.consecutive_errors.store(0, Ordering::Relaxed);
            let level = self.cooldowns.fetch_add(1, Ordering::Relaxed).min(16);
            let cooldown = FIRST_COOLDOWN.saturating_mul(1 << level).min(MAX_COOLDOWN);
            let until = ms_since_epoch(now + cooldown).max(1);
            self.cooling_until_ms.store(until, Ordering::Relaxed);
            tracing::error!(backend = self.name(), plugin = %self.plugin_label(), errors = n, cooldown_s = cooldown.as_secs(), "backend out of routing after repeated plugin errors; it returns after the cool-down");
        }
    }

    /// One line per [`ERROR_LOG_EVERY`]: a burst of errors (a client repeating the bytes that
    /// trigger a bug, or a broken plugin) writes one, with how many were not logged since.
    fn log_error(&self, now: Instant, hook: &str, error: &str, client: Option<std::net::IpAddr>) {
        let mut log = self.error_log.lock().unwrap_or_else(|p| p.into_inner());
        if log.0.is_some_and(|last| now.duration_since(last) < ERROR_LOG_EVERY) {
            log.1 += 1;
            return;
        }
        let not_logged = std::mem::take(&mut log.1);
        log.0 = Some(now);
        drop(log);
        let client = client.map_or_else(|| "-".to_owned(), |c| c.to_string());
        tracing::warn!(backend = self.name(), plugin = %self.plugin_label(), hook, %client, error, not_logged_since_last = not_logged, "plugin error, treated as no match (one line per 10 s per backend)");
    }
}

/// A problem found while building the registry; the backend concerned stays out of routing. Each
/// message says where the backend is written (`file:line:column`, or `-b NAME` for the quick
/// start) and what would fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildIssue {
    /// No loaded plugin provides the protocol.
    #[error(
        "{at}: backend `{backend}` is not in routing: no loaded plugin provides protocol `{protocol}` \
         (available: {}); fix: set protocol to one of those, or put a plugin that provides `{protocol}` \
         into {plugin_dir}",
        available.join(", ")
    )]
    MissingProtocol {
        /// Where the backend is written.
        at: String,
        /// Backend name.
        backend: String,
        /// Protocol asked for.
        protocol: String,
        /// The protocols that can be used now: built-in, then those of the loaded plugins.
        available: Vec<String>,
        /// The plugin folder.
        plugin_dir: String,
    },
    /// The plugin refused the backend's configuration.
    #[error(
        "{at}: backend `{backend}` {}: plugin `{plugin}` ({file}) refused its configuration: {reason}; \
         fix: {}",
        if *.kept_previous { "keeps its previous configuration" } else { "is not in routing" },
        match params_at { Some(p) => format!("its [backend.params] at {p}"), None => format!("its [[backend]] at {at}") }
    )]
    Refused {
        /// Where the backend is written.
        at: String,
        /// Where its `[backend.params]` is, when it has one.
        params_at: Option<String>,
        /// Backend name.
        backend: String,
        /// Plugin label.
        plugin: String,
        /// Plugin file.
        file: String,
        /// The plugin's message.
        reason: String,
        /// Whether the backend built before this change stays in routing.
        kept_previous: bool,
    },
    /// The backend forwards to its target (its plugin says so) but has none.
    #[error(
        "{at}: backend `{backend}` {}: protocol `{protocol}` forwards clients to a target and the \
         backend has none; fix: add target = \"host:port\" to its [[backend]] at {at}",
        if *.kept_previous { "keeps its previous configuration" } else { "is not in routing" }
    )]
    NoTarget {
        /// Where the backend is written.
        at: String,
        /// Backend name.
        backend: String,
        /// Its protocol.
        protocol: String,
        /// Whether the backend built before this change stays in routing.
        kept_previous: bool,
    },
}

impl BuildIssue {
    /// Whether the backend is out of routing because of it (not kept at its previous version).
    pub fn out_of_routing(&self) -> bool {
        !matches!(
            self,
            BuildIssue::Refused {
                kept_previous: true,
                ..
            } | BuildIssue::NoTarget {
                kept_previous: true,
                ..
            }
        )
    }
}

/// Where a backend is written, for messages: `file:line:column`, or `-b NAME` in a quick start.
pub(crate) fn backend_at(config: &Config, bc: &BackendConfig) -> String {
    if config.path.as_os_str().is_empty() {
        format!("-b {}", bc.name)
    } else {
        bc.place.in_file(&config.path)
    }
}

/// Where a backend's `[backend.params]` table is, when it has one written in a file.
fn params_at(config: &Config, bc: &BackendConfig) -> Option<String> {
    let own_table = bc.params_place.line != bc.place.line || bc.params_place.column != bc.place.column;
    (own_table && !config.path.as_os_str().is_empty()).then(|| bc.params_place.in_file(&config.path))
}

/// The protocols backends can use with `plugins` loaded: the built-in ones, then the plugins' in
/// name order.
pub(crate) fn available_protocols(plugins: &[Arc<LoadedPlugin>]) -> Vec<String> {
    let mut from_plugins: Vec<String> = plugins.iter().flat_map(|p| p.protocols.iter().cloned()).collect();
    from_plugins.sort();
    BUILTIN_PROTOCOLS
        .iter()
        .map(|p| (*p).to_owned())
        .chain(from_plugins)
        .collect()
}

/// An immutable routing snapshot.
pub struct Registry {
    /// Routing settings.
    pub routing: Routing,
    /// Plugins loaded, by file name order.
    pub plugins: Vec<Arc<LoadedPlugin>>,
    /// Backends in configuration order (those that could not be built are absent).
    pub backends: Vec<Arc<Backend>>,
    /// Index into `backends` of the `on_timeout` backend.
    pub on_timeout: Option<usize>,
}

impl Registry {
    /// A snapshot with no backends, in force until the plugins are loaded.
    pub fn empty(config: &Config) -> Registry {
        Registry {
            routing: config.routing.clone(),
            plugins: Vec::new(),
            backends: Vec::new(),
            on_timeout: None,
        }
    }

    /// Builds backends for `config` from `plugins`. With a `previous` snapshot, a backend whose
    /// configuration and plugin are unchanged is reused as is; one that fails to build keeps its
    /// previous version serving; counters carry over by name. A backend whose protocol no plugin
    /// provides any more leaves routing. Every problem is reported.
    pub fn build(
        config: &Config,
        plugins: Vec<Arc<LoadedPlugin>>,
        previous: Option<&Registry>,
    ) -> (Registry, Vec<BuildIssue>) {
        let mut issues = Vec::new();
        let mut backends = Vec::new();
        let before = |name: &str| previous.and_then(|r| r.backends.iter().find(|b| b.name() == name));
        for bc in &config.backends {
            let provider = plugins.iter().find(|p| p.protocols.contains(&bc.protocol));
            let old = before(&bc.name);
            if let Some(old) = old {
                let same_plugin = match (&old.plugin, provider) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (None, _) => BUILTIN_PROTOCOLS.contains(&bc.protocol.as_str()),
                    _ => false,
                };
                if same_plugin && old.config == *bc {
                    backends.push(Arc::clone(old));
                    continue;
                }
            }
            let stats = old.map(|o| Arc::clone(&o.stats)).unwrap_or_default();
            let (kind, plugin) = match (bc.protocol.as_str(), provider) {
                ("pass", _) => (BackendKind::Pass, None),
                ("noop", _) => (BackendKind::Noop, None),
                (_, None) => {
                    issues.push(BuildIssue::MissingProtocol {
                        at: backend_at(config, bc),
                        backend: bc.name.clone(),
                        protocol: bc.protocol.clone(),
                        available: available_protocols(&plugins),
                        plugin_dir: config.plugin_dir.display().to_string(),
                    });
                    continue;
                }
                (_, Some(p)) => match new_backend(p, bc) {
                    Ok(b) if bc.target.is_none() && needs_target(&b, bc) => {
                        issues.push(BuildIssue::NoTarget {
                            at: backend_at(config, bc),
                            backend: bc.name.clone(),
                            protocol: bc.protocol.clone(),
                            kept_previous: old.is_some(),
                        });
                        if let Some(old) = old {
                            backends.push(Arc::clone(old));
                        }
                        continue;
                    }
                    Ok(b) => (BackendKind::Plugin(b), Some(Arc::clone(p))),
                    Err(reason) => {
                        issues.push(BuildIssue::Refused {
                            at: backend_at(config, bc),
                            params_at: params_at(config, bc),
                            backend: bc.name.clone(),
                            plugin: format!("{}@{}", p.name, p.version),
                            file: p.file.display().to_string(),
                            reason,
                            kept_previous: old.is_some(),
                        });
                        if let Some(old) = old {
                            backends.push(Arc::clone(old));
                        }
                        continue;
                    }
                },
            };
            let udp_routing = udp_routing(bc, &kind);
            backends.push(Arc::new(Backend {
                config: bc.clone(),
                kind,
                plugin,
                stats,
                uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
                udp_routing,
                consecutive_errors: AtomicU32::new(0),
                cooling_until_ms: AtomicU64::new(0),
                cooldowns: AtomicU32::new(0),
                error_log: Mutex::new((None, 0)),
            }));
        }
        let on_timeout = config
            .routing
            .on_timeout
            .as_ref()
            .and_then(|n| backends.iter().position(|b| b.name() == n));
        (
            Registry {
                routing: config.routing.clone(),
                plugins,
                backends,
                on_timeout,
            },
            issues,
        )
    }
}

fn new_backend(plugin: &LoadedPlugin, bc: &BackendConfig) -> Result<BackendBox, String> {
    let spec = BackendSpec {
        name: RStr::from_str(&bc.name),
        protocol: RStr::from_str(&bc.protocol),
        target: match &bc.target {
            Some(t) => RSome(RStr::from_str(t)),
            None => RNone,
        },
        priority: RStr::from_str(priority_name(bc.priority)),
        params_toml: RStr::from_str(&bc.params_toml),
    };
    let backend = match (plugin.module.new_backend())(&spec) {
        RResult::ROk(b) => b,
        RResult::RErr(e) => return Err(e.into()),
    };
    // Every backend gets its writer for answering UDP clients later (the C# InitializeAsync).
    match backend.init_udp(crate::udp::writer::client_writer()) {
        RResult::ROk(()) => Ok(backend),
        RResult::RErr(e) => Err(e.into()),
    }
}

/// Whether the plugin says `bc` forwards to its target (asked once; an error means it does not
/// say, and a backend without a target then fails per connection as before).
fn needs_target(backend: &BackendBox, bc: &BackendConfig) -> bool {
    match backend.needs_target() {
        RResult::ROk(needs) => needs,
        RResult::RErr(e) => {
            tracing::warn!(backend = %bc.name, error = %e, "plugin hook needs_target failed");
            false
        }
    }
}

/// The next [`Backend::uid`]; 0 is never given (it is the session lane of UDP flows).
static NEXT_UID: AtomicU64 = AtomicU64::new(1);

/// The backend's `udp_routing` key, else its plugin's answer (asked once; an error means a flow).
fn udp_routing(bc: &BackendConfig, kind: &BackendKind) -> UdpRouting {
    if let Some(r) = bc.udp_routing {
        return r;
    }
    match kind {
        BackendKind::Plugin(object) => match object.udp_routing() {
            RResult::ROk(r) => r,
            RResult::RErr(e) => {
                tracing::warn!(backend = %bc.name, error = %e, "plugin hook udp_routing failed; its UDP clients keep flows");
                UdpRouting::Flow
            }
        },
        BackendKind::Pass | BackendKind::Noop => UdpRouting::Flow,
    }
}

fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::Vip => "vip",
        Priority::Normal => "normal",
        Priority::Standby => "standby",
        Priority::Fallback => "fallback",
    }
}
