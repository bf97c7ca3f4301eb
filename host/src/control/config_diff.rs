//! The difference between the running configuration and a newly validated one: a pure function, so
//! what a reload will do can be tested (and logged) before anything is touched.

use crate::config::{BackendConfig, Config, ListenerConfig};

/// What changes when `new` replaces `old`.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ConfigDiff {
    /// Listeners to bind (an address/transport not listened on before).
    pub listeners_added: Vec<ListenerConfig>,
    /// Listeners to close (their open connections go on).
    pub listeners_removed: Vec<ListenerConfig>,
    /// Listeners on the same address whose name, strategy or limits changed.
    pub listeners_changed: Vec<ListenerConfig>,
    /// Names of backends that are new.
    pub backends_added: Vec<String>,
    /// Names of backends that are gone.
    pub backends_removed: Vec<String>,
    /// Names of backends whose configuration changed.
    pub backends_changed: Vec<String>,
    /// Whether the backends that stay are asked in a different order.
    pub backends_reordered: bool,
    /// Whether `[routing]` changed.
    pub routing_changed: bool,
    /// Whether `plugin_dir` changed.
    pub plugin_dir_changed: bool,
    /// Whether `[limits]` changed.
    pub limits_changed: bool,
    /// Whether `[access_log]` changed.
    pub access_log_changed: bool,
    /// Whether `[reload]` changed (applied at once: quiet period, rescan interval, watching).
    pub reload_changed: bool,
    /// Whether `[admin]` changed (the endpoint is bound at start: it needs a restart).
    pub admin_changed: bool,
    /// Whether `[port_mapping]` changed.
    pub port_mapping_changed: bool,
}

impl ConfigDiff {
    /// True when the new configuration changes nothing.
    pub(crate) fn is_empty(&self) -> bool {
        *self == ConfigDiff::default()
    }

    /// A one-line summary for the log.
    pub(crate) fn summary(&self) -> String {
        let mut parts = Vec::new();
        let mut list = |what: &str, names: Vec<String>| {
            if !names.is_empty() {
                parts.push(format!("{what}: {}", names.join(", ")));
            }
        };
        let addrs = |ls: &[ListenerConfig]| ls.iter().map(|l| l.address.to_string()).collect();
        list("listeners added", addrs(&self.listeners_added));
        list("listeners removed", addrs(&self.listeners_removed));
        list("listeners changed", addrs(&self.listeners_changed));
        list("backends added", self.backends_added.clone());
        list("backends removed", self.backends_removed.clone());
        list("backends changed", self.backends_changed.clone());
        if self.backends_reordered {
            parts.push("backends reordered".into());
        }
        if self.routing_changed {
            parts.push("routing changed".into());
        }
        if self.plugin_dir_changed {
            parts.push("plugin_dir changed".into());
        }
        if self.limits_changed {
            parts.push("limits changed".into());
        }
        if self.access_log_changed {
            parts.push("access log changed".into());
        }
        if self.reload_changed {
            parts.push("reload settings changed".into());
        }
        if self.admin_changed {
            parts.push("admin changed (needs a restart)".into());
        }
        if self.port_mapping_changed {
            parts.push("port_mapping changed".into());
        }
        if parts.is_empty() {
            "no change".into()
        } else {
            parts.join("; ")
        }
    }
}

/// Identity of a listening socket: a listener is the same one when these are equal (turning
/// `listen` on or off opens or closes the socket).
fn socket_key(l: &ListenerConfig) -> (&crate::config::listen::ListenAddr, bool, bool, bool) {
    (&l.address, l.tcp, l.udp, l.listen)
}

/// Computes what changes from `old` to `new`.
pub(crate) fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let mut d = ConfigDiff::default();
    for l in &new.listeners {
        match old.listeners.iter().find(|o| socket_key(o) == socket_key(l)) {
            None => d.listeners_added.push(l.clone()),
            Some(o) if o != l => d.listeners_changed.push(l.clone()),
            Some(_) => {}
        }
    }
    d.listeners_removed = old
        .listeners
        .iter()
        .filter(|o| !new.listeners.iter().any(|l| socket_key(l) == socket_key(o)))
        .cloned()
        .collect();

    let find = |list: &'_ [BackendConfig], name: &str| list.iter().position(|b| b.name == name);
    for b in &new.backends {
        match find(&old.backends, &b.name) {
            None => d.backends_added.push(b.name.clone()),
            Some(i) if old.backends[i] != *b => d.backends_changed.push(b.name.clone()),
            Some(_) => {}
        }
    }
    d.backends_removed = old
        .backends
        .iter()
        .filter(|o| find(&new.backends, &o.name).is_none())
        .map(|o| o.name.clone())
        .collect();
    let kept = |from: &[BackendConfig], other: &[BackendConfig]| -> Vec<String> {
        from.iter()
            .filter(|b| find(other, &b.name).is_some())
            .map(|b| b.name.clone())
            .collect()
    };
    d.backends_reordered = kept(&old.backends, &new.backends) != kept(&new.backends, &old.backends);
    d.routing_changed = old.routing != new.routing;
    d.plugin_dir_changed = old.plugin_dir != new.plugin_dir;
    d.limits_changed = old.limits != new.limits;
    d.access_log_changed = old.access_log != new.access_log;
    d.reload_changed = old.reload != new.reload;
    d.admin_changed = old.admin != new.admin;
    d.port_mapping_changed = old.port_mapping != new.port_mapping;
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> Config {
        crate::config::parse(Path::new("/etc/pmmux/pmmux.toml"), text).expect("valid test config")
    }

    fn backend(name: &str, target: &str) -> String {
        format!("[[backend]]\nname = \"{name}\"\nprotocol = \"pass\"\ntarget = \"{target}\"\n")
    }

    const L1: &str = "[[listener]]\naddress = \"127.0.0.1:1000\"\n";
    const L2: &str = "[[listener]]\naddress = \"127.0.0.1:2000\"\n";

    #[test]
    fn identical_configs_differ_in_nothing() {
        let a = config(&format!("{L1}{}", backend("a", "127.0.0.1:1")));
        let d = diff(&a, &a.clone());
        assert!(d.is_empty());
        assert_eq!(d.summary(), "no change");
    }

    #[test]
    fn listeners_added_removed_and_changed() {
        let old = config(&format!("{L1}{L2}{}", backend("a", "127.0.0.1:1")));
        let new = config(&format!(
            "{L1}strategy = \"least-requests\"\n[[listener]]\naddress = \"[::1]:3000\"\n{}",
            backend("a", "127.0.0.1:1")
        ));
        let d = diff(&old, &new);
        assert_eq!(d.listeners_added.len(), 1);
        assert_eq!(d.listeners_added[0].address.to_string(), "[::1]:3000");
        assert_eq!(d.listeners_removed.len(), 1);
        assert_eq!(d.listeners_removed[0].address.to_string(), "127.0.0.1:2000");
        assert_eq!(d.listeners_changed.len(), 1);
        assert_eq!(d.listeners_changed[0].address.to_string(), "127.0.0.1:1000");
        assert!(d.backends_added.is_empty() && !d.backends_reordered);
    }

    #[test]
    fn backends_added_removed_changed() {
        let old = config(&format!(
            "{L1}{}{}{}",
            backend("a", "127.0.0.1:1"),
            backend("b", "127.0.0.1:2"),
            backend("c", "127.0.0.1:3")
        ));
        let new = config(&format!(
            "{L1}{}{}{}",
            backend("a", "127.0.0.1:1"),
            backend("c", "127.0.0.1:9"),
            backend("d", "127.0.0.1:4")
        ));
        let d = diff(&old, &new);
        assert_eq!(d.backends_added, vec!["d"]);
        assert_eq!(d.backends_removed, vec!["b"]);
        assert_eq!(d.backends_changed, vec!["c"]);
        assert!(!d.backends_reordered, "a then c in both");
        assert_eq!(
            d.summary(),
            "backends added: d; backends removed: b; backends changed: c"
        );
    }

    #[test]
    fn reordering_is_seen_apart_from_changes() {
        let old = config(&format!(
            "{L1}{}{}",
            backend("a", "127.0.0.1:1"),
            backend("b", "127.0.0.1:2")
        ));
        let new = config(&format!(
            "{L1}{}{}",
            backend("b", "127.0.0.1:2"),
            backend("a", "127.0.0.1:1")
        ));
        let d = diff(&old, &new);
        assert!(d.backends_reordered);
        assert!(d.backends_changed.is_empty() && d.backends_added.is_empty());
    }

    #[test]
    fn params_and_matchers_count_as_changes() {
        let old = config(&format!("{L1}{}", backend("a", "127.0.0.1:1")));
        let with_params = config(&format!("{L1}{}[backend.params]\nx = 1\n", backend("a", "127.0.0.1:1")));
        assert_eq!(diff(&old, &with_params).backends_changed, vec!["a"]);
        let with_match = config(&format!(
            "{L1}{}[backend.match]\nremote_port = 22\n",
            backend("a", "127.0.0.1:1")
        ));
        assert_eq!(diff(&old, &with_match).backends_changed, vec!["a"]);
    }

    #[test]
    fn routing_and_plugin_dir() {
        let old = config(&format!("{L1}{}", backend("a", "127.0.0.1:1")));
        let new = config(&format!(
            "plugin_dir = \"/opt/p\"\n{L1}[routing]\nprobe_timeout_ms = 10\n{}",
            backend("a", "127.0.0.1:1")
        ));
        let d = diff(&old, &new);
        assert!(d.routing_changed && d.plugin_dir_changed);
        assert!(d.summary().ends_with("routing changed; plugin_dir changed"));
    }

    #[test]
    fn reload_and_admin_changes_are_changes() {
        let base = format!("{L1}{}", backend("a", "127.0.0.1:1"));
        let old = config(&base);
        let d = diff(&old, &config(&format!("{base}[reload]\nquiet_period_ms = 50\n")));
        assert!(d.reload_changed && !d.is_empty(), "{d:?}");
        assert_eq!(d.summary(), "reload settings changed");
        let d = diff(&old, &config(&format!("{base}[admin]\naddress = \"127.0.0.1:9900\"\n")));
        assert!(d.admin_changed && !d.reload_changed, "{d:?}");
        assert_eq!(d.summary(), "admin changed (needs a restart)");
    }
}
