//! The registry: an immutable snapshot of loaded plugins and the backends built from the configuration,
//! swapped whole behind an atomic pointer. A connection keeps the snapshot it started with.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use abi_stable::std_types::{RNone, RResult, RSome, RStr};
use pmmux_plugin_api::ffi::{BackendBox, BackendSpec};

use crate::config::{BackendConfig, Config, Priority, Routing};
use crate::matchers::Matchers;
use crate::plugin::loader::is_library;
use crate::plugin::{LoadedPlugin, Loader};

/// Consecutive plugin errors after which a backend is taken out of routing until the next reload.
pub const MAX_CONSECUTIVE_PLUGIN_ERRORS: u32 = 16;

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
}

/// One backend, ready for routing.
pub struct Backend {
    /// Its configuration.
    pub config: BackendConfig,
    /// Its implementation.
    pub kind: BackendKind,
    /// The plugin providing it (None for built-ins).
    pub plugin: Option<Arc<LoadedPlugin>>,
    /// Live counters.
    pub stats: Arc<BackendStats>,
    consecutive_errors: AtomicU32,
    disabled: AtomicBool,
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

    /// Whether it may be routed to (not disabled by repeated plugin errors).
    pub fn is_enabled(&self) -> bool {
        !self.disabled.load(Ordering::Relaxed)
    }

    /// Records a successful plugin call.
    pub fn plugin_ok(&self) {
        if self.consecutive_errors.load(Ordering::Relaxed) != 0 {
            self.consecutive_errors.store(0, Ordering::Relaxed);
        }
    }

    /// Records a plugin error; after [`MAX_CONSECUTIVE_PLUGIN_ERRORS`] in a row the backend leaves routing.
    pub fn plugin_error(&self, hook: &str, error: &str) {
        self.stats.plugin_errors.fetch_add(1, Ordering::Relaxed);
        let n = self.consecutive_errors.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(backend = self.name(), plugin = %self.plugin_label(), hook, error, "plugin error, treated as no match");
        if n >= MAX_CONSECUTIVE_PLUGIN_ERRORS && !self.disabled.swap(true, Ordering::Relaxed) {
            tracing::error!(backend = self.name(), plugin = %self.plugin_label(), errors = n, "backend disabled after repeated plugin errors; it returns on the next reload");
        }
    }
}

/// A problem found while building the registry; the backend concerned stays out of routing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildIssue {
    /// No loaded plugin provides the protocol.
    #[error("backend `{backend}`: no loaded plugin provides protocol `{protocol}`; it stays out of routing until one does")]
    MissingProtocol {
        /// Backend name.
        backend: String,
        /// Protocol asked for.
        protocol: String,
    },
    /// The plugin refused the backend's configuration.
    #[error("backend `{backend}`: plugin `{plugin}` ({file}) refused its configuration: {reason}")]
    Refused {
        /// Backend name.
        backend: String,
        /// Plugin label.
        plugin: String,
        /// Plugin file.
        file: String,
        /// The plugin's message.
        reason: String,
    },
    /// A plugin file was refused.
    #[error("plugin {file} refused: {reason}")]
    PluginRefused {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
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
    /// Builds backends for `config` from `plugins`; `stats` carries counters over from a previous
    /// snapshot. Backends that cannot be built are reported and left out.
    pub fn build(
        config: &Config,
        plugins: Vec<Arc<LoadedPlugin>>,
        stats: &HashMap<String, Arc<BackendStats>>,
    ) -> (Registry, Vec<BuildIssue>) {
        let mut issues = Vec::new();
        let mut backends = Vec::new();
        for bc in &config.backends {
            let provider = plugins.iter().find(|p| p.protocols.iter().any(|proto| *proto == bc.protocol));
            let (kind, plugin) = match (bc.protocol.as_str(), provider) {
                ("pass", _) => (BackendKind::Pass, None),
                ("noop", _) => (BackendKind::Noop, None),
                (_, None) => {
                    issues.push(BuildIssue::MissingProtocol { backend: bc.name.clone(), protocol: bc.protocol.clone() });
                    continue;
                }
                (_, Some(p)) => match new_backend(p, bc) {
                    Ok(b) => (BackendKind::Plugin(b), Some(Arc::clone(p))),
                    Err(reason) => {
                        issues.push(BuildIssue::Refused {
                            backend: bc.name.clone(),
                            plugin: format!("{}@{}", p.name, p.version),
                            file: p.file.display().to_string(),
                            reason,
                        });
                        continue;
                    }
                },
            };
            backends.push(Arc::new(Backend {
                config: bc.clone(),
                kind,
                plugin,
                stats: stats.get(&bc.name).cloned().unwrap_or_default(),
                consecutive_errors: AtomicU32::new(0),
                disabled: AtomicBool::new(false),
            }));
        }
        let on_timeout = config.routing.on_timeout.as_ref().and_then(|n| backends.iter().position(|b| b.name() == n));
        (Registry { routing: config.routing.clone(), plugins, backends, on_timeout }, issues)
    }

    /// Counters of this snapshot's backends, by name, to carry into the next one.
    pub fn stats(&self) -> HashMap<String, Arc<BackendStats>> {
        self.backends.iter().map(|b| (b.name().to_owned(), Arc::clone(&b.stats))).collect()
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
    match (plugin.module.new_backend())(&spec) {
        RResult::ROk(b) => Ok(b),
        RResult::RErr(e) => Err(e.into()),
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

/// Loads every library in `dir` (sorted by file name). Refusals come back as issues; a protocol
/// already provided by an earlier plugin refuses the later one.
pub fn load_dir(loader: &Loader, dir: &Path) -> (Vec<Arc<LoadedPlugin>>, Vec<BuildIssue>) {
    let mut issues = Vec::new();
    let mut files: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_library(p)).collect(),
        Err(e) => {
            issues.push(BuildIssue::PluginRefused { file: dir.display().to_string(), reason: format!("cannot read the plugin folder: {e}") });
            Vec::new()
        }
    };
    files.sort();
    let mut plugins: Vec<Arc<LoadedPlugin>> = Vec::new();
    for file in files {
        match loader.load(&file) {
            Ok(p) => {
                if let Some(clash) = clash(&plugins, &p) {
                    issues.push(BuildIssue::PluginRefused { file: file.display().to_string(), reason: clash });
                    continue;
                }
                tracing::info!(plugin = %p.name, version = %p.version, file = %file.display(), protocols = ?p.protocols, abi = p.abi_version, "plugin loaded");
                plugins.push(Arc::new(p));
            }
            Err(e) => issues.push(BuildIssue::PluginRefused { file: file.display().to_string(), reason: e.to_string() }),
        }
    }
    (plugins, issues)
}

/// Says which protocol of `p` is already provided by a plugin in `loaded` (or is built in).
pub fn clash(loaded: &[Arc<LoadedPlugin>], p: &LoadedPlugin) -> Option<String> {
    for proto in &p.protocols {
        if BUILTIN_PROTOCOLS.contains(&proto.as_str()) {
            return Some(format!("protocol `{proto}` is built into pmmux"));
        }
        if let Some(other) = loaded.iter().find(|o| o.protocols.contains(proto)) {
            return Some(format!(
                "protocol `{proto}` is already provided by plugin `{}` ({})",
                other.name,
                other.file.display()
            ));
        }
    }
    None
}
