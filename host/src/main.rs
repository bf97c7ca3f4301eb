//! The `pmmux` command line: run the service, check a configuration, or inspect a plugin file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pmmux::config;
use pmmux::control::server::Server;
use pmmux::ops::status::Status;
use pmmux::plugins::{Loader, PluginSet};
use pmmux::routing::registry::Registry;

/// A port multiplexer whose backends are plugins.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file.
    #[arg(long, short, default_value = "pmmux.toml", global = true)]
    config: PathBuf,
    /// Log level (error, warn, info, debug, trace) or a full filter; RUST_LOG wins when set.
    #[arg(long, default_value = "info", global = true)]
    log_level: String,
    #[command(flatten)]
    run: RunArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// The runtime for the CPUs this process may run on: one worker per CPU, or with a single CPU
/// (a container limit, `taskset`) a current-thread runtime, which serves the same tasks without
/// the work-stealing scheduler's cross-thread queues and wake-ups (about 3 % less CPU per
/// connection in the close benchmark). Blocking work still goes to the blocking pool either way.
fn runtime_builder() -> tokio::runtime::Builder {
    match std::thread::available_parallelism() {
        Ok(n) if n.get() == 1 => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
}

/// Options of a run (given before or after `run`).
#[derive(clap::Args, Clone, Default)]
struct RunArgs {
    /// Quick start without a config file: listen on [ADDRESS:]PORT[:tcp|udp] (repeatable; address
    /// 0.0.0.0, both transports unless one is named; IPv6 as [::1]:PORT), or listen on LOCAL and
    /// map PUBLIC on the NAT gateway with PUBLIC:LOCAL[:tcp|udp][:bind-address=IP,listen=false]
    /// (PUBLIC `!`: no mapping, `?`: any; LOCAL `?`: any).
    #[arg(
        short = 'p',
        long = "port",
        value_name = "[ADDRESS:]PORT[:tcp|udp] | PUBLIC:LOCAL[:tcp|udp][:KEY=VALUE,...]",
        conflicts_with = "config"
    )]
    ports: Vec<String>,
    /// Quick start: a backend NAME:PROTOCOL[:KEY=VALUE,...] (repeatable); keys target=HOST:PORT,
    /// target.ip= + target.port=, priority=, match.KEY=, the rest are plugin params.
    #[arg(
        short = 'b',
        long = "backend",
        value_name = "NAME:PROTOCOL[:KEY=VALUE,...]",
        conflicts_with = "config"
    )]
    backends: Vec<String>,
    /// Quick start: the plugin folder (relative to the working folder) [default: ./plugins when
    /// it holds a plugin, else the libpmmux_* libraries beside the pmmux executable (a cargo
    /// build), else ../lib/pmmux/plugins from it (the package: /usr/lib/pmmux/plugins)].
    #[arg(long, conflicts_with = "config")]
    plugin_dir: Option<PathBuf>,
    /// Quick start: the backend (a -b NAME) for clients that send nothing within the probe
    /// timeout (server-speaks-first protocols: SSH clients that wait, SMTP, FTP).
    #[arg(long, value_name = "NAME", conflicts_with = "config")]
    on_timeout: Option<String>,
    /// After binding every listener, switch to this user (needs root).
    #[arg(long)]
    user: Option<String>,
    /// With --user: the group to switch to (default: the user's primary group).
    #[arg(long, requires = "user")]
    group: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Run(RunArgs),
    /// Validate a configuration: syntax, names, and that every backend builds with the plugins in
    /// its plugin folder. Exits 1 and lists every problem when anything is wrong.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Check what transparent backends (`transparent = true`) need on this host: the capability to
    /// set IP_TRANSPARENT, the nftables mark and the policy routing that hand replies for client
    /// addresses to pmmux. Prints each item ok or MISSING with the command that fixes it; exits 1
    /// when something is missing.
    CheckTransparent,
    /// Load one plugin file and print its ABI version, name, version and protocols, or exactly why
    /// it cannot be loaded.
    InspectPlugin {
        /// The plugin library.
        file: PathBuf,
    },
    /// Upgrade a running pmmux to the binary now at the path it was started from, without refusing
    /// a connection (the same as `kill -USR2 PID`), and report how it went: the new process's PID,
    /// or why it failed (the old process then keeps serving). The PID comes from --pid or from
    /// the admin endpoint (`[admin] address` of the configuration, or --admin).
    Upgrade {
        /// The running process.
        #[arg(long)]
        pid: Option<u32>,
        /// Admin address to ask for the PID and the outcome, instead of the one in the configuration.
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
        /// How long to wait for the outcome, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
    /// Write a new plugin crate: Cargo.toml (cdylib + rlib), a detector with its tests and a
    /// README. It builds out of tree with `cargo build --release` against this pmmux's plugin-api
    /// source (a path dependency), and `pmmux inspect-plugin` accepts the library it makes.
    NewPlugin {
        /// The plugin's name and protocol (lower-case letters, digits and `-`).
        name: String,
        /// Where to write it (created; must be empty) [default: ./pmmux-plugin-NAME].
        dir: Option<PathBuf>,
        /// The plugin-api folder to build against [default: the pmmux source this binary was
        /// built from].
        #[arg(long, value_name = "DIR")]
        plugin_api: Option<PathBuf>,
    },
    /// Show what a running pmmux has loaded: plugins and versions, old versions still mapped,
    /// listeners, backends with live connections. Asks the admin endpoint (`[admin] address` of
    /// the configuration, or --admin).
    Status {
        /// Admin address to ask, instead of the one in the configuration.
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
        /// Print the JSON document.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = pmmux::ops::logging::init(&cli.log_level);
    pmmux::control::upgrade::parent::remember_invocation();
    pmmux::ops::systemd::init();
    let result = match &cli.command {
        None => inherit_then_run(&cli.config, &cli.run),
        Some(Command::Run(args)) => inherit_then_run(&cli.config, args),
        Some(Command::Upgrade {
            pid,
            admin,
            timeout_secs,
        }) => upgrade(&cli.config, *pid, *admin, *timeout_secs),
        Some(Command::CheckConfig { file }) => check_config(file),
        Some(Command::CheckTransparent) => check_transparent(),
        Some(Command::InspectPlugin { file }) => inspect_plugin(file),
        Some(Command::NewPlugin { name, dir, plugin_api }) => new_plugin(name, dir.as_deref(), plugin_api.as_deref()),
        Some(Command::Status { admin, json }) => status(&cli.config, *admin, *json),
    };
    // The last records and log lines are written before the error below.
    pmmux::ops::logging::close_access_log();
    log.finish();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pmmux: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Takes the sockets handed over by an upgrading process or by systemd, then runs; a new process
/// that cannot start tells the old one why (it keeps serving).
fn inherit_then_run(path: &Path, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let old = pmmux::control::upgrade::init().context("reading the sockets handed over by the old process")?;
    if let Some(old) = old {
        let me = std::process::id();
        tracing::info!(
            old_pid = old,
            "upgrade: PID {me} started by PID {old}; taking over its listening sockets"
        );
    }
    let activated =
        pmmux::control::upgrade::inherit::init_systemd().context("reading the sockets passed by systemd")?;
    if activated > 0 {
        tracing::info!(
            sockets = activated,
            "socket activation: {activated} socket(s) from systemd (LISTEN_FDS)"
        );
    }
    let result = run(path, args);
    if let Err(e) = &result {
        pmmux::control::upgrade::report_failed(&format!("{e:#}"));
    }
    result
}

fn run(path: &Path, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let config = if args.ports.is_empty() && args.backends.is_empty() {
        anyhow::ensure!(
            args.plugin_dir.is_none(),
            "--plugin-dir goes with -p / -b; with a config file, set plugin_dir in it"
        );
        anyhow::ensure!(
            args.on_timeout.is_none(),
            "--on-timeout goes with -p / -b; with a config file, set [routing] on_timeout in it"
        );
        config::load(path)?
    } else {
        quick_start_config(args)?
    };
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let run_as = match &args.user {
        // The process this one upgrades dropped root already (this one runs as its user).
        Some(user) if pmmux::control::upgrade::upgrading_from().is_some() && euid != 0 => {
            tracing::info!(user = %user, uid = euid, "upgrade: already running without root; --user was applied by the first process");
            None
        }
        Some(user) => Some(pmmux::ops::privdrop::resolve(user, args.group.as_deref())?),
        None => None,
    };
    let keeper = check_transparent_at_start(&config, run_as.as_ref())?;
    raise_fd_limit();
    let runtime = runtime_builder().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        install_signal_handlers();
        // Caught before READY=1: a SIGTERM right after it must drain, not kill.
        let shutdown = shutdown_signal();
        let server = Server::bind(config).await?;
        if let Some(run_as) = &run_as {
            pmmux::ops::privdrop::drop_to(run_as, &[server.shadow_dir()])?;
            if let Some(backends) = &keeper {
                keep_net_admin(backends)?;
            }
        }
        let serving = format!("serving {} listening socket(s)", server.local_addrs().len());
        match tokio::task::spawn_blocking(pmmux::control::upgrade::report_ready).await {
            Ok(Some(old)) => pmmux::ops::systemd::ready(&format!("{serving}; took over from PID {old}")),
            _ => pmmux::ops::systemd::ready(&serving),
        }
        server.run(shutdown).await;
        anyhow::Ok(())
    })?;
    // Connections past the drain timeout are cut here, with the runtime.
    runtime.shutdown_background();
    Ok(ExitCode::SUCCESS)
}

/// Transparent backends need IP_TRANSPARENT on their upstream sockets: the process must be able
/// to set it (root, or a granted capability). With `--user`, one thread keeps CAP_NET_ADMIN across
/// the drop and makes those sockets ([`pmmux::ops::transparent::keeper`]): returns the transparent
/// backends then, for [`keep_net_admin`] after the drop.
fn check_transparent_at_start(
    config: &config::Config,
    run_as: Option<&pmmux::ops::privdrop::RunAs>,
) -> anyhow::Result<Option<Vec<String>>> {
    let transparent = pmmux::ops::transparent::transparent_backends(config);
    if transparent.is_empty() {
        return Ok(None);
    }
    pmmux::ops::transparent::check(config)?;
    tracing::info!(backends = %transparent.join(", "), "transparent backends: IP_TRANSPARENT can be set; `pmmux check-transparent` checks the routing");
    if run_as.is_none() {
        return Ok(None);
    }
    pmmux::ops::transparent::keeper::start()
        .context("starting the thread that keeps CAP_NET_ADMIN for transparent backends")?;
    Ok(Some(transparent))
}

/// After `--user`: the keeper thread narrows its capabilities to CAP_NET_ADMIN, and can still set
/// IP_TRANSPARENT.
fn keep_net_admin(backends: &[String]) -> anyhow::Result<()> {
    use pmmux::ops::transparent::{keeper, probe, CapabilityError};
    keeper::narrow().context("keeping CAP_NET_ADMIN for transparent backends after --user")?;
    probe().map_err(|source| CapabilityError {
        backends: backends.to_vec(),
        source,
    })?;
    tracing::info!("kept CAP_NET_ADMIN in one thread, which makes the transparent backends' upstream sockets");
    Ok(())
}

/// `pmmux check-transparent`: what transparent backends need on this host, ok or missing with the
/// command that fixes it. Exits 1 when something needed is missing.
fn check_transparent() -> anyhow::Result<ExitCode> {
    use pmmux::ops::transparent::setup;
    let (text, ok) = setup::render(&setup::judge(&setup::observe()));
    print!("{text}");
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Installs the SIGHUP, SIGUSR1 and SIGUSR2 handlers before anything else runs: their default action ends
/// the process, and systemd may send SIGHUP to a new process the moment it is the main one. (tokio
/// keeps a handler installed for the process's life once a signal stream was made; a SIGHUP before
/// the server listens for it is ignored; the server subscribes to SIGUSR2 before binding.)
fn install_signal_handlers() {
    use tokio::signal::unix::{signal, SignalKind};
    for kind in [
        SignalKind::hangup(),
        SignalKind::user_defined1(),
        SignalKind::user_defined2(),
    ] {
        if let Err(e) = signal(kind) {
            tracing::warn!(error = %e, "cannot install a signal handler");
        }
    }
}

/// `pmmux upgrade`: signal the running process and report the outcome.
fn upgrade(
    config_path: &Path,
    pid: Option<u32>,
    admin: Option<std::net::SocketAddr>,
    timeout_secs: u64,
) -> anyhow::Result<ExitCode> {
    let admin = match admin {
        Some(a) => Some(a),
        None if pid.is_some() => config::load(config_path).ok().and_then(|c| c.admin),
        None => Some(config::load(config_path)?.admin.with_context(|| {
            format!(
                "{} has no [admin] address; pass --pid or --admin",
                config_path.display()
            )
        })?),
    };
    let outcome = pmmux::control::upgrade::command::upgrade(pid, admin, std::time::Duration::from_secs(timeout_secs));
    match outcome {
        Ok(done) => {
            println!("{done}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("pmmux upgrade: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The configuration of a `-p` / `-b` run, with its plugins found as [`find_plugins`] says.
///
/// [`find_plugins`]: pmmux::config::quick_start::find_plugins
fn quick_start_config(args: &RunArgs) -> anyhow::Result<config::Config> {
    use pmmux::config::quick_start::{build, find_plugins, PluginSource};
    let plugins = match &args.plugin_dir {
        Some(dir) => PluginSource::dir(dir),
        None => {
            let cwd = std::env::current_dir().context("reading the working folder")?;
            let exe = std::env::current_exe().ok();
            match find_plugins(&cwd, exe.as_deref()) {
                Ok(found) => found,
                Err(tried) => {
                    let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
                    tracing::warn!(
                        "no plugins found (looked in {}); only the built-in pass and noop protocols \
                         work: build the plugins (cargo build --release) or pass --plugin-dir",
                        tried.join(", ")
                    );
                    PluginSource::dir(cwd.join("plugins"))
                }
            }
        }
    };
    Ok(build(
        &args.ports,
        &args.backends,
        &plugins,
        args.on_timeout.as_deref(),
    )?)
}

/// Each relayed connection holds two descriptors; lift the soft limit to the hard one, as proxies do.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                tracing::debug!(from = lim.rlim_cur, to = lim.rlim_max, "raised the open-file limit");
            }
        }
    }
}

/// Installs the SIGTERM and SIGINT handlers now, before `READY=1` (a stop that follows readiness at
/// once must drain, not kill the process), and completes on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        let (mut term, mut int) = match handlers {
            (Ok(t), Ok(i)) => (t, i),
            _ => {
                tracing::error!("cannot install signal handlers; stop pmmux with SIGKILL");
                return std::future::pending().await;
            }
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
    }
}

/// Everything `run` would trip over, listed at once: the file's own problems (syntax, names,
/// every `{{env}}` placeholder), the plugin folder (missing, holding no plugin, refused for its
/// permissions, files that do not load) and every backend that would be out of routing (unknown
/// protocol with the available ones, params a plugin refuses, with their line and column).
fn check_config(path: &Path) -> anyhow::Result<ExitCode> {
    let (config, issues) = config::load_all(path);
    let mut problems: Vec<String> = if issues.is_empty() {
        Vec::new()
    } else {
        config::ConfigError {
            path: path.to_owned(),
            issues,
        }
        .to_string()
        .lines()
        .map(str::to_owned)
        .collect()
    };
    let mut summary = None;
    if let Some(config) = &config {
        let loader = Loader::new().context("creating the plugin shadow folder")?;
        let mut set = PluginSet::with_prefix(config.plugin_prefix.clone());
        let report = set.reconcile(&loader, &config.plugin_dir);
        let plugins = set.plugins();
        let needs_plugins = config
            .backends
            .iter()
            .any(|b| !pmmux::routing::registry::BUILTIN_PROTOCOLS.contains(&b.protocol.as_str()));
        if needs_plugins && report.refused.is_empty() && plugins.is_empty() {
            problems.push(empty_plugin_dir(path, &config.plugin_dir));
        }
        for r in &report.refused {
            problems.push(format!(
                "{}: plugin {} refused: {}",
                path.display(),
                r.file.display(),
                r.reason
            ));
        }
        if let Err(e) = pmmux::ops::transparent::check(config) {
            problems.push(format!("{}: {e}", path.display()));
        }
        let (registry, build_issues) = Registry::build(config, plugins, None);
        problems.extend(build_issues.iter().map(ToString::to_string));
        if config.backends.is_empty() {
            problems.push(format!(
                "{}: no [[backend]]: every connection would be closed; add one (config/pmmux.toml has examples)",
                path.display()
            ));
        }
        summary = Some(format!(
            "{}: ok: {} listener(s), {} backend(s), {} plugin(s) from {}",
            path.display(),
            config.listeners.len(),
            registry.backends.len(),
            registry.plugins.len(),
            config.plugin_dir.display()
        ));
    }
    match summary {
        Some(ok) if problems.is_empty() => {
            println!("{ok}");
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            for p in &problems {
                eprintln!("{p}");
            }
            let n = problems.len();
            eprintln!("{}: {n} problem{}", path.display(), if n == 1 { "" } else { "s" });
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The problem of a plugin folder that loads nothing while backends need plugins.
fn empty_plugin_dir(config: &Path, dir: &Path) -> String {
    let what = match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_owned(),
        Err(e) => format!("cannot be read ({e})"),
        Ok(m) if !m.is_dir() => "is not a folder".to_owned(),
        Ok(_) => "holds no plugin library".to_owned(),
    };
    format!(
        "{}: plugin folder {} {what}, and backends need plugins; fix: put the built plugins there \
         (install -d -m 755 {} && install -m 644 target/release/libpmmux_*.so {}), or point plugin_dir \
         at the folder that holds them (the package's: /usr/lib/pmmux/plugins)",
        config.display(),
        dir.display(),
        dir.display(),
        dir.display()
    )
}

fn new_plugin(name: &str, dir: Option<&Path>, plugin_api: Option<&Path>) -> anyhow::Result<ExitCode> {
    use pmmux::plugins::scaffold;
    let dir = dir.map_or_else(|| PathBuf::from(format!("pmmux-plugin-{name}")), Path::to_owned);
    let api = scaffold::plugin_api_source(plugin_api)?;
    let files = scaffold::write(name, &dir, &api)?;
    for f in &files {
        println!("wrote {}", f.display());
    }
    let lib = format!("libpmmux_{}.so", name.replace('-', "_"));
    println!(
        "next: cd {} && cargo test && cargo build --release && pmmux inspect-plugin target/release/{lib}\n\
         (pmmux-plugin-api is the path dependency {}; see README.md there)",
        dir.display(),
        api.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn inspect_plugin(file: &Path) -> anyhow::Result<ExitCode> {
    let loader = Loader::new().context("creating the plugin shadow folder")?;
    match loader.load(file) {
        Ok(p) => {
            println!("file:       {}", file.display());
            println!("plugin:     {} {}", p.name, p.version);
            println!("plugin-api: {} (ABI revision {})", p.api_version, p.abi_version);
            println!(
                "host ABI:   plugin-api {} (ABI revision {})",
                <pmmux_plugin_api::PluginModRef as abi_stable::library::RootModule>::VERSION_STRINGS.version,
                pmmux_plugin_api::ABI_VERSION
            );
            println!("protocols:  {}", p.protocols.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}: cannot load: {e}", file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The admin address `pmmux status` asks, from the configuration; every way this fails says what
/// `status` needs and how to give it.
fn status_address(config_path: &Path) -> anyhow::Result<std::net::SocketAddr> {
    let how = "pmmux status asks a running pmmux through its admin endpoint; pass --admin ADDRESS \
               (its [admin] address), or --config FILE (the configuration it runs with)";
    if !config_path.exists() {
        anyhow::bail!("no configuration file at {}: {how}", config_path.display());
    }
    let config = match config::load(config_path) {
        Ok(c) => c,
        Err(e) => anyhow::bail!("{e}\n{how}"),
    };
    config.admin.with_context(|| {
        format!(
            "{} has no [admin] address, so the running pmmux has no admin endpoint to ask; add \
             [admin] address = \"127.0.0.1:9900\" (it needs a restart), or pass --admin ADDRESS",
            config_path.display()
        )
    })
}

fn status(config_path: &Path, admin: Option<std::net::SocketAddr>, json: bool) -> anyhow::Result<ExitCode> {
    use std::io::{Read, Write};
    let address = match admin {
        Some(a) => a,
        None => status_address(config_path)?,
    };
    let timeout = std::time::Duration::from_secs(5);
    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)
        .with_context(|| format!("cannot reach the admin endpoint at {address}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(b"GET /status HTTP/1.0\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .context("malformed answer from the admin endpoint")?;
    if json {
        println!("{body}");
    } else {
        let status: Status = serde_json::from_str(body).context("unreadable status document")?;
        print!("{}", status.to_text());
    }
    Ok(ExitCode::SUCCESS)
}
