//! The pmmux under test: finding the release binary and plugins, writing its configuration into a
//! temporary folder, starting it on probed free ports, and stopping it by PID (TERM, then KILL).

use std::fs::File;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::sys;

/// Plugins copied into the bench's plugin folder when their release library exists.
const PLUGINS: [&str; 6] = ["ssh", "tls", "http", "echo", "http_response", "dns"];

/// How long pmmux may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// PIDs of the pmmux processes running now, for the watchdog.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// The temp folder to remove if the watchdog ends the run (None when kept).
static WORKDIR: Mutex<Option<PathBuf>> = Mutex::new(None);

/// For the watchdog: kills (SIGKILL) every pmmux (and socat) this process started and has not stopped yet,
/// then removes the temp folder (the process exits without running destructors).
pub fn kill_live() {
    let pids = match LIVE.lock() {
        Ok(p) => p.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    for &pid in &pids {
        // SAFETY: signalling a child we started, by its PID, before it was reaped; then the process
        // group of that id, which exists only when we made the child its leader (socat, whose
        // per-client children share it).
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
    }
    for pid in pids {
        // SAFETY: reaping our own killed child; a null status pointer is allowed.
        unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0) };
    }
    let dir = match WORKDIR.lock() {
        Ok(d) => d.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    if let Some(d) = dir {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Adds (`live`) or removes a child PID the watchdog kills if the run is cut short.
pub fn track(pid: u32, live: bool) {
    let mut pids = match LIVE.lock() {
        Ok(p) => p,
        Err(poisoned) => poisoned.into_inner(),
    };
    pids.retain(|&p| p != pid);
    if live {
        pids.push(pid);
    }
}

/// The upstream servers pmmux forwards to.
#[derive(Debug, Clone, Copy)]
pub struct Upstreams {
    /// Request→response server (connection-rate test).
    pub rr: SocketAddr,
    /// Byte sink (bulk test, routed idle connections).
    pub sink: SocketAddr,
}

/// A prepared work folder: config template inputs and the plugin copies.
pub struct Setup {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Detector plugins present, in the order the connection-rate chain asks them.
    pub detectors: Vec<&'static str>,
    /// Whether the `http` plugin is present (then it is also the backend that matches).
    pub has_http: bool,
    /// Every plugin copied into the folder (`ssh`, `echo`, `dns`, ...).
    present: Vec<&'static str>,
}

impl Setup {
    /// Checks the binary, copies the plugin libraries found in `plugin_src` into a fresh temp dir.
    pub fn new(bin: &Path, plugin_src: &Path, keep: bool) -> anyhow::Result<Setup> {
        if !bin.is_file() {
            bail!(
                "pmmux binary not found at {} (build it: cargo build --release -p pmmux)",
                bin.display()
            );
        }
        let mut dir = tempfile::Builder::new()
            .prefix("pmmux-bench.")
            .tempdir()
            .context("creating the temp dir")?;
        if keep {
            dir.disable_cleanup(true);
        } else if let Ok(mut w) = WORKDIR.lock() {
            *w = Some(dir.path().to_owned());
        }
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins)?;
        let mut present = Vec::new();
        for name in PLUGINS {
            let file = format!("libpmmux_{name}.so");
            let src = plugin_src.join(&file);
            if src.is_file() {
                std::fs::copy(&src, plugins.join(&file)).with_context(|| format!("copying {}", src.display()))?;
                present.push(name);
            }
        }
        let detectors: Vec<&'static str> = ["ssh", "tls", "http"]
            .into_iter()
            .filter(|p| present.contains(p))
            .collect();
        let has_http = present.contains(&"http");
        Ok(Setup {
            bin: bin.to_owned(),
            dir,
            detectors,
            has_http,
            present,
        })
    }

    /// Whether the release library of `plugin` (`dns`, `echo`, ...) was found and copied.
    pub fn has(&self, plugin: &str) -> bool {
        self.present.contains(&plugin)
    }

    /// The temp folder (config, plugins, pmmux logs).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Describes the connection-rate detection chain for the report.
    pub fn chain(&self) -> String {
        let mut steps: Vec<String> = Vec::new();
        for d in &self.detectors {
            steps.push(match *d {
                "tls" => "tls(sni=nomatch.invalid)".into(),
                "http" => "http(host=other.invalid)".into(),
                other => other.into(),
            });
        }
        if self.has_http {
            steps.push("http(host=bench.local) MATCH".into());
            steps.push("pass".into());
        } else {
            steps.push("pass MATCH".into());
        }
        steps.join(" -> ")
    }

    /// The configuration text: a `rate` listener whose connections go through every detector before
    /// the matching backend, and a `bulk` listener that ends on a `pass` to the sink.
    pub fn config(&self, rate: u16, bulk: u16, up: Upstreams, probe_timeout_ms: u64) -> String {
        let mut c = format!(
            "# written by pmmux-bench\nplugin_dir = \"plugins\"\n\n\
             [[listener]]\nname = \"rate\"\naddress = \"127.0.0.1:{rate}\"\n\n\
             [[listener]]\nname = \"bulk\"\naddress = \"127.0.0.1:{bulk}\"\n\n\
             [routing]\nprobe_timeout_ms = {probe_timeout_ms}\npreview_limit = 16384\ndrain_timeout_ms = 500\n"
        );
        let backend = |name: &str, protocol: &str, target: SocketAddr, port: Option<u16>, params: &str| {
            let mut b = format!("\n[[backend]]\nname = \"{name}\"\nprotocol = \"{protocol}\"\ntarget = \"{target}\"\n");
            if let Some(p) = port {
                b += &format!("[backend.match]\nlocal_port = [{p}]\n");
            }
            if !params.is_empty() {
                b += &format!("[backend.params]\n{params}\n");
            }
            b
        };
        // Detectors that must say no, after looking, to every connection of both listeners.
        for d in &self.detectors {
            c += &match *d {
                "tls" => backend("tls", "tls", up.rr, None, "sni = [\"nomatch.invalid\"]"),
                "http" => backend("http-other", "http", up.rr, None, "host = \"other.invalid\""),
                other => backend(other, other, up.rr, None, ""),
            };
        }
        if self.has_http {
            c += &backend("http-bench", "http", up.rr, Some(rate), "host = \"bench.local\"");
        }
        c += &backend("rate-pass", "pass", up.rr, Some(rate), "");
        c += &backend("bulk-pass", "pass", up.sink, Some(bulk), "");
        c
    }

    /// Writes a config for fresh free ports and starts pmmux on it, pinned to `cpu` if given.
    pub fn start(
        &self,
        label: &str,
        up: Upstreams,
        probe_timeout_ms: u64,
        cpu: Option<usize>,
    ) -> anyhow::Result<Pmmux> {
        let (rate, bulk) = (free_port()?, free_port()?);
        let config = self.path().join(format!("pmmux-{label}.toml"));
        std::fs::write(&config, self.config(rate, bulk, up, probe_timeout_ms))?;
        let log = self.path().join(format!("pmmux-{label}.log"));
        let (rate, bulk) = (
            SocketAddr::from(([127, 0, 0, 1], rate)),
            SocketAddr::from(([127, 0, 0, 1], bulk)),
        );
        self.launch(&config, &log, "warn", [rate, bulk], cpu)
    }

    /// Starts pmmux on an existing `config` (which listens on `listeners`: the first is `rate`, the
    /// second `bulk`), logging at `log_level` into `log`, pinned to `cpu` if given; returns once it
    /// accepts on both.
    pub fn launch(
        &self,
        config: &Path,
        log: &Path,
        log_level: &str,
        listeners: [SocketAddr; 2],
        cpu: Option<usize>,
    ) -> anyhow::Result<Pmmux> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--config").arg(config).args(["--log-level", log_level]);
        cmd.env_remove("RUST_LOG").stdin(Stdio::null()).stdout(Stdio::null());
        cmd.stderr(File::create(log)?);
        if let Some(cpu) = cpu {
            // SAFETY: only an async-signal-safe syscall runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || sys::pin_current(cpu));
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        track(child.id(), true);
        let mut p = Pmmux {
            child,
            log: log.to_owned(),
            rate: listeners[0],
            bulk: listeners[1],
        };
        p.wait_listening()?;
        Ok(p)
    }
}

/// A running pmmux; stopped (TERM, then KILL) when dropped.
pub struct Pmmux {
    child: Child,
    log: PathBuf,
    /// The listener whose connections go through the detection chain (the reload test's only
    /// listener).
    pub rate: SocketAddr,
    /// The listener that forwards to the sink (the reload test's only listener, again).
    pub bulk: SocketAddr,
}

impl Pmmux {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_listening(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("pmmux exited at start ({status}): {}", self.log_tail());
            }
            let up = |a| TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok();
            if up(self.rate) && up(self.bulk) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("pmmux did not listen within {START_TIMEOUT:?}: {}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The log file (pmmux's stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The end of pmmux's log (stderr), for error messages.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        let start = text.len().saturating_sub(600);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].replace('\n', " | ")
    }

    /// Warnings and errors pmmux logged (it runs at `warn`), counted by line.
    pub fn log_lines(&self) -> usize {
        std::fs::read_to_string(&self.log).map_or(0, |t| t.lines().count())
    }

    /// Sends SIGTERM, waits up to `grace`, then SIGKILL; always reaps the child.
    pub fn stop(&mut self, grace: Duration) -> io::Result<()> {
        let result = self.stop_inner(grace);
        track(self.child.id(), false);
        result
    }

    fn stop_inner(&mut self, grace: Duration) -> io::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child by its PID; it is not reaped yet, so the PID is still ours.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        self.child.wait().map(|_| ())
    }
}

impl Drop for Pmmux {
    fn drop(&mut self) {
        let _ = self.stop(Duration::from_secs(3));
    }
}

/// A port free right now on 127.0.0.1 (bound to port 0, then released).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
