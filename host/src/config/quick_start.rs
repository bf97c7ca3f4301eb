//! The quick-start command line, after the C# pmmux: `-p PUBLIC:LOCAL[:tcp|udp][:KEY=VALUE,...]`
//! (listen and map a public port on the NAT gateway) or `-p [ADDRESS:]PORT[:tcp|udp]` listeners and
//! `-b NAME:PROTOCOL[:KEY=VALUE,...]` backends build the same [`Config`] a file would (they are
//! turned into a TOML document and validated by [`config::parse`]), so a run needs no file.
//!
//! Backend keys: `target=HOST:PORT`; `target.ip=` + `target.port=` (and, for `pass`, the C#
//! `ip=` + `port=`); `priority=`; `udp_idle_timeout_ms=`; `idle_timeout_ms=`; `match.KEY=` for `[backend.match]`; every
//! other key goes to `[backend.params]`. A value in double quotes (`\"` and `\\` escape) is always
//! a string and may hold `,` `:` `=`; an unquoted `true`/`false`, integer or float becomes that
//! TOML scalar, anything else a string; a key given twice becomes a list.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::config::{self, Config};
use crate::portmap::PublicPort;

/// A `-p` or `-b` argument that cannot be used, or a configuration they make that is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuickStartError {
    /// A `-p` argument.
    #[error("-p {arg}: {why}")]
    Port {
        /// The argument.
        arg: String,
        /// What is wrong.
        why: String,
    },
    /// A `-b` argument.
    #[error("-b {arg}: {why}")]
    Backend {
        /// The argument.
        arg: String,
        /// What is wrong.
        why: String,
    },
    /// The configuration the arguments make is invalid.
    #[error("command line: {0}")]
    Invalid(String),
}

/// One `-p`: where to listen, on which transports, and the public port to map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    /// Address (0.0.0.0 when only a port is given; port 0 for a LOCAL of `?`).
    pub address: SocketAddr,
    /// Listen on TCP.
    pub tcp: bool,
    /// Listen on UDP.
    pub udp: bool,
    /// The public port to ask the NAT gateway for (`None`: no mapping).
    pub public: Option<PublicPort>,
    /// Whether to listen (`listen=false`: map only).
    pub listen: bool,
}

/// Whether a field is a port number, `?` or `!`: two of them first make the C# binding form.
fn port_field(s: &str) -> bool {
    s == "?" || s == "!" || (!s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses one `-p`, in either form:
///
/// - `PUBLIC:LOCAL[:tcp|udp][:KEY=VALUE,...]` (the C# pmmux's binding): listen on LOCAL and ask
///   the NAT gateway to forward PUBLIC to it. PUBLIC `!`: no mapping; `?`: the gateway chooses.
///   LOCAL `?`: the OS chooses. Keys: `bind-address=IP` (default 0.0.0.0), `listen=false` (map
///   only).
/// - `[ADDRESS:]PORT[:tcp|udp]` (IPv6 as `[::1]:PORT`): listen only, no mapping.
///
/// They are told apart by the first two `:`-separated fields: both a port number, `?` or `!`
/// make the C# form (an ADDRESS is never a bare number).
pub fn parse_port(arg: &str) -> Result<PortSpec, QuickStartError> {
    let err = |why: &str| QuickStartError::Port {
        arg: arg.to_owned(),
        why: why.to_owned(),
    };
    let mut fields = arg.splitn(3, ':');
    let (first, second, rest) = (fields.next().unwrap_or_default(), fields.next(), fields.next());
    if let Some(second) = second.filter(|s| port_field(first) && port_field(s)) {
        return parse_binding(first, second, rest.unwrap_or_default()).map_err(|why| err(&why));
    }
    let (rest, tcp, udp) = match arg.rsplit_once(':') {
        Some((r, "tcp")) => (r, true, false),
        Some((r, "udp")) => (r, false, true),
        _ => (arg, true, true),
    };
    let address = if let Ok(port) = rest.parse::<u16>() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
    } else if let Ok(a) = rest.parse::<SocketAddr>() {
        a
    } else {
        return Err(err(
            "expected [ADDRESS:]PORT[:tcp|udp] (IPv6 as [::1]:PORT) or PUBLIC:LOCAL[:tcp|udp][:KEY=VALUE,...]",
        ));
    };
    Ok(PortSpec {
        address,
        tcp,
        udp,
        public: None,
        listen: true,
    })
}

/// The C# form's fields after `PUBLIC:LOCAL`.
fn parse_binding(public: &str, local: &str, rest: &str) -> Result<PortSpec, String> {
    let number = |s: &str, what: &str| -> Result<u16, String> {
        s.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{what} `{s}` is not a port (1..=65535)"))
    };
    let public = match public {
        "!" => None,
        "?" => Some(PublicPort::Any),
        p => Some(PublicPort::Fixed(number(p, "PUBLIC")?)),
    };
    let local = match local {
        "?" => 0,
        "!" => return Err("LOCAL cannot be `!` (only PUBLIC can: no mapping)".into()),
        p => number(p, "LOCAL")?,
    };
    let (transport, options) = match rest.split_once(':') {
        Some((t @ ("tcp" | "udp"), o)) => (Some(t), o),
        None if rest == "tcp" || rest == "udp" => (Some(rest), ""),
        _ => (None, rest),
    };
    let (tcp, udp) = match transport {
        Some("tcp") => (true, false),
        Some("udp") => (false, true),
        _ => (true, true),
    };
    let mut ip = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let mut listen = true;
    for (key, value) in split_pairs(options)? {
        let text = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
        match key.as_str() {
            "bind-address" => {
                let t = text.trim_start_matches('[').trim_end_matches(']');
                ip = t
                    .parse()
                    .map_err(|_| format!("bind-address `{text}` is not an IP address"))?;
            }
            "listen" => {
                listen = value
                    .as_bool()
                    .ok_or_else(|| format!("listen=`{text}` is not true or false"))?;
            }
            other => return Err(format!("unknown key `{other}` (expected bind-address= or listen=)")),
        }
    }
    if !listen && public.is_none() {
        return Err("listen=false with PUBLIC `!` would neither listen nor map".into());
    }
    if !listen && local == 0 {
        return Err("listen=false needs a LOCAL port to forward to, not `?`".into());
    }
    Ok(PortSpec {
        address: SocketAddr::new(ip, local),
        tcp,
        udp,
        public,
        listen,
    })
}

/// Parses `NAME:PROTOCOL[:KEY=VALUE,...]` into one `[[backend]]` table.
pub fn parse_backend(arg: &str) -> Result<Table, QuickStartError> {
    let err = |why: String| QuickStartError::Backend {
        arg: arg.to_owned(),
        why,
    };
    let mut parts = arg.splitn(3, ':');
    let name = parts.next().unwrap_or_default();
    let protocol = parts.next().unwrap_or_default();
    if name.is_empty() || protocol.is_empty() {
        return Err(err("expected NAME:PROTOCOL[:KEY=VALUE,...]".into()));
    }
    let mut backend = Table::new();
    backend.insert("name".into(), Value::String(name.into()));
    backend.insert("protocol".into(), Value::String(protocol.into()));
    let (mut params, mut matchers) = (Table::new(), Table::new());
    let (mut ip, mut port) = (None, None);
    for (key, value) in split_pairs(parts.next().unwrap_or_default()).map_err(err)? {
        let text = || value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
        match key.as_str() {
            "target" | "priority" => {
                backend.insert(key, Value::String(text()));
            }
            "udp_idle_timeout_ms" | "idle_timeout_ms" => {
                backend.insert(key, value);
            }
            "target.ip" => ip = Some(text()),
            "target.port" => port = Some(text()),
            "ip" if protocol == "pass" => ip = Some(text()),
            "port" if protocol == "pass" => port = Some(text()),
            k if k.starts_with("match.") => add(&mut matchers, &k["match.".len()..], value),
            _ => add(&mut params, &key, value),
        }
    }
    match (ip, port) {
        (Some(ip), Some(port)) => {
            if backend.contains_key("target") {
                return Err(err("give target= or target.ip= + target.port=, not both".into()));
            }
            let host = if ip.contains(':') && !ip.starts_with('[') {
                format!("[{ip}]")
            } else {
                ip
            };
            backend.insert("target".into(), Value::String(format!("{host}:{port}")));
        }
        (None, None) => {}
        _ => return Err(err("target.ip= and target.port= go together".into())),
    }
    if !params.is_empty() {
        backend.insert("params".into(), Value::Table(params));
    }
    if !matchers.is_empty() {
        backend.insert("match".into(), Value::Table(matchers));
    }
    Ok(backend)
}

/// A key given twice makes a list.
fn add(table: &mut Table, key: &str, value: Value) {
    match table.get_mut(key) {
        Some(Value::Array(list)) => list.push(value),
        Some(first) => *first = Value::Array(vec![first.clone(), value]),
        None => {
            table.insert(key.to_owned(), value);
        }
    }
}

/// Splits `k=v,k="v, with commas",...` into keys and typed values.
fn split_pairs(text: &str) -> Result<Vec<(String, Value)>, String> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let mut key = String::new();
        let mut has_value = false;
        for c in chars.by_ref() {
            if c == '=' {
                has_value = true;
                break;
            }
            key.push(c);
        }
        let key = key.trim().to_owned();
        if key.is_empty() || key.contains(',') || !has_value {
            return Err(format!("`{key}` is not KEY=VALUE"));
        }
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c @ ('"' | '\\')) => v.push(c),
                        Some(c) => {
                            v.push('\\');
                            v.push(c);
                        }
                        None => return Err(format!("the quoted value of `{key}` is not closed")),
                    },
                    Some(c) => v.push(c),
                    None => return Err(format!("the quoted value of `{key}` is not closed")),
                }
            }
            match chars.next() {
                None | Some(',') => {}
                Some(c) => return Err(format!("`{c}` after the quoted value of `{key}` (expected `,`)")),
            }
            Value::String(v)
        } else {
            let raw: String = chars.by_ref().take_while(|&c| c != ',').collect();
            scalar(raw.trim())
        };
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// An unquoted value: a bool, integer or float as TOML reads it, anything else a string.
fn scalar(raw: &str) -> Value {
    match raw {
        "true" => Value::Boolean(true),
        "false" => Value::Boolean(false),
        _ => raw
            .parse::<i64>()
            .map(Value::Integer)
            .or_else(|_| raw.parse::<f64>().map(Value::Float))
            .unwrap_or_else(|_| Value::String(raw.to_owned())),
    }
}

/// Where a quick start takes its plugins from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSource {
    /// The folder (relative paths are taken from the working folder).
    pub dir: PathBuf,
    /// Only files whose name starts with this are plugins (a cargo target folder also holds test
    /// fixture libraries).
    pub prefix: Option<String>,
}

impl PluginSource {
    /// Every library in `dir`.
    pub fn dir(dir: impl Into<PathBuf>) -> PluginSource {
        PluginSource {
            dir: dir.into(),
            prefix: None,
        }
    }
}

/// The file name prefix of the plugins this workspace builds (`libpmmux_http.so`).
pub(crate) const BUILT_PLUGIN_PREFIX: &str = "libpmmux_";

/// Finds the plugins of a quick start run without `--plugin-dir`, first found wins:
/// 1. `plugins/` in the working folder, when it holds a library (the folder a user made);
/// 2. the folder of the `pmmux` executable, when it holds `libpmmux_*` libraries (a cargo build:
///    `target/release/pmmux` beside `target/release/libpmmux_http.so`);
/// 3. `../lib/pmmux/plugins` from the executable's folder (the package: `/usr/bin/pmmux` and
///    `/usr/lib/pmmux/plugins`).
///
/// `Err` lists the places looked at.
pub fn find_plugins(cwd: &Path, exe: Option<&Path>) -> Result<PluginSource, Vec<PathBuf>> {
    let has = |dir: &Path, prefix: &str| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                let path = e.path();
                crate::plugins::loader::is_library(&path)
                    && path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(prefix))
            })
        })
    };
    let mut tried = vec![cwd.join("plugins")];
    if has(&tried[0], "") {
        return Ok(PluginSource::dir(tried.swap_remove(0)));
    }
    if let Some(bin_dir) = exe.and_then(Path::parent) {
        if has(bin_dir, BUILT_PLUGIN_PREFIX) {
            return Ok(PluginSource {
                dir: bin_dir.to_owned(),
                prefix: Some(BUILT_PLUGIN_PREFIX.to_owned()),
            });
        }
        tried.push(bin_dir.to_owned());
        let packaged = bin_dir.join("../lib/pmmux/plugins");
        if has(&packaged, "") {
            return Ok(PluginSource::dir(packaged));
        }
        tried.push(packaged);
    }
    Err(tried)
}

/// Builds the configuration of a run from `-p`, `-b`, `--on-timeout` and the plugins. The result
/// has no file: the configuration is not watched and SIGHUP only rescans the plugins.
pub fn build(
    ports: &[String],
    backends: &[String],
    plugins: &PluginSource,
    on_timeout: Option<&str>,
) -> Result<Config, QuickStartError> {
    let plugin_dir = plugins.dir.as_path();
    if ports.is_empty() {
        return Err(QuickStartError::Invalid(
            "-b needs at least one -p [ADDRESS:]PORT to listen on".into(),
        ));
    }
    let mut listeners = Vec::new();
    for p in ports {
        let spec = parse_port(p)?;
        let mut transport = Vec::new();
        for (on, name) in [(spec.tcp, "tcp"), (spec.udp, "udp")] {
            if on {
                transport.push(Value::String(name.into()));
            }
        }
        let mut l = Table::new();
        l.insert("address".into(), Value::String(spec.address.to_string()));
        l.insert("transport".into(), Value::Array(transport));
        match spec.public {
            Some(PublicPort::Fixed(p)) => {
                l.insert("public_port".into(), Value::Integer(i64::from(p)));
            }
            Some(PublicPort::Any) => {
                l.insert("public_port".into(), Value::String("?".into()));
            }
            None => {}
        }
        if !spec.listen {
            l.insert("listen".into(), Value::Boolean(false));
        }
        listeners.push(Value::Table(l));
    }
    let backends = backends
        .iter()
        .map(|b| parse_backend(b).map(Value::Table))
        .collect::<Result<Vec<_>, _>>()?;
    let plugin_dir = std::path::absolute(plugin_dir).unwrap_or_else(|_| plugin_dir.to_owned());
    let mut root = Table::new();
    root.insert(
        "plugin_dir".into(),
        Value::String(plugin_dir.to_string_lossy().into_owned()),
    );
    root.insert("listener".into(), Value::Array(listeners));
    root.insert("backend".into(), Value::Array(backends));
    let mut reload = Table::new();
    reload.insert("watch_config".into(), Value::Boolean(false));
    root.insert("reload".into(), Value::Table(reload));
    if let Some(name) = on_timeout {
        let mut routing = Table::new();
        routing.insert("on_timeout".into(), Value::String(name.to_owned()));
        root.insert("routing".into(), Value::Table(routing));
    }
    let text = toml::to_string(&root).map_err(|e| QuickStartError::Invalid(e.to_string()))?;
    let mut config = config::parse(Path::new(""), &text).map_err(|e| {
        QuickStartError::Invalid(
            e.issues
                .into_iter()
                .map(|i| i.message.replace("routing.on_timeout", "--on-timeout"))
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    config.plugin_prefix = plugins.prefix.clone();
    Ok(config)
}

#[cfg(test)]
mod tests;
