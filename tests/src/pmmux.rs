//! The `Pmmux` guard: runs the built host binary with a config and plugins in a temporary folder.
//!
//! Layout of the folder ([`Pmmux::dir`]):
//! ```text
//! <tmp>/pmmux.toml     the config; {PLUGIN_DIR} and {DIR} in the given text are replaced by
//!                      absolute paths (or write `plugin_dir = "plugins"`, relative to the config)
//! <tmp>/plugins/       copies of the named plugin libraries (lib<name>.so), plus any extra
//!                      files given to [`Pmmux::start_with_files`]
//! <tmp>/pmmux.log      the host's stdout and stderr
//! ```
//! The host runs as `pmmux --config <tmp>/pmmux.toml --log-level debug`, with `<tmp>` as its
//! working folder and `RUST_BACKTRACE=1` ([`Pmmux::start_opts`] can leave `--config` out, add
//! arguments and environment variables).

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tempfile::TempDir;

use crate::data::{temp_dir, write_file_in};
use crate::paths::{plugin_file_name, plugin_lib, pmmux_bin};
use crate::process::ChildGuard;

/// How long the host may take to open a listener.
pub const PMMUX_START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long [`Pmmux::stop`] waits after SIGTERM before SIGKILL.
pub const PMMUX_STOP_GRACE: Duration = Duration::from_secs(10);

/// How [`Pmmux::start_opts`] starts the host.
#[derive(Clone, Copy, Default)]
pub struct StartOptions<'a> {
    /// The config text written to `<tmp>/pmmux.toml` and passed as `--config`; `None` runs
    /// without a config file (the quick-start `-p` / `-b` form, given in `args`).
    pub config: Option<&'a str>,
    /// Plugins copied into `<tmp>/plugins/`, as for [`Pmmux::start`].
    pub plugins: &'a [&'a str],
    /// Extra files written into the plugin folder, as for [`Pmmux::start_with_files`].
    pub files: &'a [(String, Vec<u8>)],
    /// Arguments after the standard ones; `{PLUGIN_DIR}` and `{DIR}` are expanded.
    pub args: &'a [&'a str],
    /// Extra environment variables.
    pub env: &'a [(&'a str, &'a str)],
    /// The open-file limit (soft and hard) set in the child before it runs.
    pub nofile: Option<u64>,
    /// Called with the plugin folder once it is filled, before the host starts: for entries that
    /// are not files (FIFOs, sockets, symlinks).
    pub prepare: Option<&'a dyn Fn(&Path)>,
    /// The program to run instead of the built `pmmux` (a copy a test replaces, for upgrades).
    pub program: Option<&'a Path>,
    /// Run inside this network namespace (one a test made with [`crate::netns`]): the host is
    /// started through `ip netns exec`, which execs it, so the guard's PID is the host's.
    pub netns: Option<&'a str>,
}

/// A running pmmux host; killed on drop (its log tail is printed if the test is panicking).
pub struct Pmmux {
    // Dropped first: the process dies before its folder is removed.
    guard: Mutex<ChildGuard>,
    dir: TempDir,
}

impl Pmmux {
    /// Copy `plugins` (short names like `"ssh"`, see [`plugin_file_name`]) into `<tmp>/plugins/`,
    /// write `config_toml` to `<tmp>/pmmux.toml` and start the host. Does not wait: call
    /// [`Pmmux::wait_listening`] for each listener the test will use.
    ///
    /// # Panics
    /// When the host or a plugin has not been built, or the host cannot be spawned.
    pub fn start(config_toml: &str, plugins: &[&str]) -> Pmmux {
        Self::start_with_args(config_toml, plugins, &[])
    }

    /// Like [`Pmmux::start`], with extra command-line arguments after the standard ones.
    pub fn start_with_args(config_toml: &str, plugins: &[&str], extra_args: &[&str]) -> Pmmux {
        Self::launch(config_toml, plugins, &[], extra_args, None)
    }

    /// Like [`Pmmux::start`], with the open-file limit (soft and hard, so the host cannot raise
    /// it) set to `nofile` in the child before it runs.
    pub fn start_with_fd_limit(config_toml: &str, plugins: &[&str], nofile: u64) -> Pmmux {
        Self::launch(config_toml, plugins, &[], &[], Some(nofile))
    }

    /// Like [`Pmmux::start`], also writing `files` (`(file name, bytes)`) into the plugin folder
    /// before the host starts: garbage, truncated or fixture libraries, dotfiles.
    pub fn start_with_files(config_toml: &str, plugins: &[&str], files: &[(String, Vec<u8>)]) -> Pmmux {
        Self::launch(config_toml, plugins, files, &[], None)
    }

    fn launch(
        config_toml: &str,
        plugins: &[&str],
        files: &[(String, Vec<u8>)],
        extra_args: &[&str],
        nofile: Option<u64>,
    ) -> Pmmux {
        Self::start_opts(&StartOptions {
            config: Some(config_toml),
            plugins,
            files,
            args: extra_args,
            env: &[],
            nofile,
            prepare: None,
            program: None,
            netns: None,
        })
    }

    /// Start the host as `options` say (with a config file or without one, extra environment).
    pub fn start_opts(options: &StartOptions<'_>) -> Pmmux {
        let StartOptions {
            config,
            plugins,
            files,
            args,
            env,
            nofile,
            prepare,
            program,
            netns,
        } = *options;
        let bin = program.map_or_else(pmmux_bin, Path::to_path_buf);
        let libs: Vec<PathBuf> = plugins.iter().map(|p| plugin_lib(p)).collect();
        let dir = temp_dir("pmmux");
        let plugin_dir = dir.path().join("plugins");
        fs::create_dir_all(&plugin_dir).expect("create plugins folder");
        for lib in &libs {
            let name = lib.file_name().expect("library file name");
            fs::copy(lib, plugin_dir.join(name)).unwrap_or_else(|e| panic!("copy {}: {e}", lib.display()));
        }
        for (name, bytes) in files {
            write_file_in(&plugin_dir, name, bytes);
        }
        if let Some(prepare) = prepare {
            prepare(&plugin_dir);
        }
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        if let Some(config_toml) = config {
            let config = dir.path().join("pmmux.toml");
            fs::write(&config, expand(config_toml, dir.path())).expect("write pmmux.toml");
            cmd.arg("--config").arg(&config);
        }
        cmd.arg("--log-level")
            .arg("debug")
            .args(args.iter().map(|a| expand(a, dir.path())))
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .env("RUST_BACKTRACE", "1");
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: n as libc::rlim_t,
                rlim_max: n as libc::rlim_t,
            };
            // SAFETY: setrlimit is async-signal-safe and only reads `limit`, copied into the closure.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let guard = ChildGuard::spawn_logged("pmmux", cmd, &dir.path().join("pmmux.log"))
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        Pmmux {
            guard: Mutex::new(guard),
            dir,
        }
    }

    fn guard(&self) -> MutexGuard<'_, ChildGuard> {
        self.guard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The temporary folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `<tmp>/plugins`.
    pub fn plugin_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    /// `<tmp>/pmmux.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("pmmux.toml")
    }

    /// `<tmp>/pmmux.log`.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("pmmux.log")
    }

    /// The host's pid.
    pub fn pid(&self) -> u32 {
        self.guard().pid()
    }

    /// Everything the host wrote so far (stdout and stderr).
    pub fn log(&self) -> String {
        self.guard().log()
    }

    /// Wait up to `timeout` for `needle` to appear in the log.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        // Not holding the lock while waiting: other threads may use the guard meanwhile.
        let path = self.log_path();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let text = fs::read(&path).unwrap_or_default();
            if String::from_utf8_lossy(&text).contains(needle) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Wait until the host itself listens on TCP `addr` (seen in `/proc`, no connection made).
    ///
    /// # Panics
    /// With the log's tail, when the host exits first or [`PMMUX_START_TIMEOUT`] passes.
    pub fn wait_listening(&self, addr: SocketAddr) {
        if let Err(e) = self.try_wait_listening(addr, PMMUX_START_TIMEOUT) {
            panic!("{e}");
        }
    }

    /// Like [`Pmmux::wait_listening`], returning the failure instead of panicking.
    pub fn try_wait_listening(&self, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
        self.guard().wait_listening(addr, timeout)
    }

    /// Like [`Pmmux::wait_udp_bound`], returning the failure instead of panicking.
    pub fn try_wait_udp_bound(&self, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
        self.guard().wait_udp_bound(addr, timeout)
    }

    /// Wait until the host has a UDP socket bound to `addr`; panics like [`Pmmux::wait_listening`].
    pub fn wait_udp_bound(&self, addr: SocketAddr) {
        if let Err(e) = self.guard().wait_udp_bound(addr, PMMUX_START_TIMEOUT) {
            panic!("{e}");
        }
    }

    /// Copy a built plugin into the plugin folder atomically (copied to a dotfile, which the host
    /// ignores, then renamed over the target), as a deployment would. Returns the new path.
    pub fn install_plugin(&self, name: &str) -> PathBuf {
        let lib = plugin_lib(name);
        let file = plugin_file_name(name);
        let staging = self.plugin_dir().join(format!(".{file}.tmp"));
        let target = self.plugin_dir().join(&file);
        fs::copy(&lib, &staging).unwrap_or_else(|e| panic!("copy {}: {e}", lib.display()));
        fs::rename(&staging, &target).expect("rename plugin into place");
        target
    }

    /// Remove a plugin library from the plugin folder.
    pub fn remove_plugin(&self, name: &str) {
        let path = self.plugin_dir().join(plugin_file_name(name));
        fs::remove_file(&path).unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
    }

    /// Replace the config file atomically (placeholders expanded as at start).
    pub fn write_config(&self, config_toml: &str) {
        let staging = self.dir.path().join(".pmmux.toml.tmp");
        fs::write(&staging, expand(config_toml, self.dir.path())).expect("write config");
        fs::rename(&staging, self.config_path()).expect("rename config into place");
    }

    /// Whether the host is still running.
    pub fn is_running(&self) -> bool {
        self.guard().is_running()
    }

    /// Wait up to `timeout` for the host to exit by itself.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        self.guard().wait_timeout(timeout)
    }

    /// Send a signal to the host, e.g. `libc::SIGHUP`.
    pub fn signal(&self, sig: i32) {
        self.guard().signal(sig)
    }

    /// SIGTERM, wait up to [`PMMUX_STOP_GRACE`], then SIGKILL. Returns the exit status (a
    /// graceful stop is `Some(status)` with `status.success()`).
    pub fn stop(&self) -> Option<ExitStatus> {
        self.guard().terminate(PMMUX_STOP_GRACE)
    }
}

/// Replace `{PLUGIN_DIR}` and `{DIR}` in a config text.
fn expand(config: &str, dir: &Path) -> String {
    config
        .replace("{PLUGIN_DIR}", &dir.join("plugins").to_string_lossy())
        .replace("{DIR}", &dir.to_string_lossy())
}
