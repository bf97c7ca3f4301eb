//! The Debian package, end to end: `packaging/deb/build.sh` packages the host and plugins this
//! test suite built (stripped, gzip -1, so it costs seconds and no second build), `dpkg -i`
//! installs it, `/usr/bin/pmmux --config /etc/pmmux/pmmux.toml` serves curl the default answer on
//! 127.0.0.1:8443, and `dpkg -r` stops it and leaves nothing running; `dpkg --purge` removes the
//! configuration and the `pmmux` user. pmmux and curl run in a network namespace the test creates
//! (its own 127.0.0.1:8443, whatever else listens there on the host) and deletes.
//!
//! Skips, saying why, where dpkg is absent or the test is not root; runs are serialized by a lock
//! file, as dpkg allows one at a time.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::*;
use pmmux_e2e::*;

const DPKG_TIMEOUT: Duration = Duration::from_secs(120);

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Holds an exclusive lock on a file for as long as it lives (the field is only kept open).
struct Lock(#[allow(dead_code)] fs::File);

impl Lock {
    fn take(path: &str) -> Lock {
        use std::os::fd::AsRawFd;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .expect("open lock file");
        // SAFETY: flock on a descriptor this struct owns.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {path}");
        Lock(file)
    }
}

/// Runs programs in a namespace of the test's own, or in the host's when there is none.
struct Place(Option<LoopbackNs>);

impl Place {
    fn create() -> Place {
        let ns = LoopbackNs::create("deb");
        if ns.is_none() {
            eprintln!("note: no network namespace here (ip netns add failed); using the host's 127.0.0.1:8443");
        }
        Place(ns)
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        match &self.0 {
            Some(ns) => ns.command(program, args),
            None => {
                let mut c = Command::new(program);
                c.args(args);
                c
            }
        }
    }
}

/// Purges the package if the test ends early, so no run leaves it installed.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", "pmmux"], DPKG_TIMEOUT);
    }
}

/// Processes running the packaged binary (also once it is deleted).
fn packaged_processes() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let exe = fs::read_link(e.path().join("exe")).ok()?;
            let exe = exe.to_string_lossy();
            (exe == "/usr/bin/pmmux" || exe == "/usr/bin/pmmux (deleted)").then_some(pid)
        })
        .collect()
}

fn dpkg(args: &[&str]) -> String {
    let mut cmd = Command::new("dpkg");
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    run_cmd(cmd, None, DPKG_TIMEOUT).expect_success(&format!("dpkg {}", args.join(" ")))
}

#[test]
fn the_debian_package_installs_serves_the_default_answer_and_removes_cleanly() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: dpkg -i needs root");
        return;
    }
    if !(have("dpkg") && have("dpkg-deb") && have("strip")) {
        eprintln!("SKIP: dpkg, dpkg-deb or strip (binutils) is not installed");
        return;
    }
    let _lock = Lock::take("/tmp/pmmux-package-e2e.lock");
    let out = temp_dir("deb");

    let started = Instant::now();
    let build = run(
        workspace_root()
            .join("packaging/deb/build.sh")
            .to_str()
            .expect("utf-8 path"),
        &[
            "--from",
            debug_dir().to_str().expect("utf-8 path"),
            "--out",
            out.path().to_str().expect("utf-8 path"),
            "--fast",
        ],
        DPKG_TIMEOUT,
    );
    let deb = build.expect_success("packaging/deb/build.sh");
    let deb = deb.lines().last().expect("the .deb path").trim().to_owned();
    let size = fs::metadata(&deb).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "built {deb} ({:.1} MB) in {:.1} s",
        size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let contents = run("dpkg-deb", &["--contents", &deb], CLIENT_TIMEOUT).expect_success("dpkg-deb --contents");
    for path in [
        "./usr/bin/pmmux",
        "./usr/lib/pmmux/plugins/libpmmux_http_response.so",
        "./etc/pmmux/pmmux.toml",
        "./lib/systemd/system/pmmux.service",
    ] {
        assert!(contents.contains(path), "{path} not in the package:\n{contents}");
    }

    let _installed = Installed;
    dpkg(&["-i", &deb]);
    assert_eq!(
        dpkg(&["-s", "pmmux"]).lines().find(|l| l.starts_with("Status:")),
        Some("Status: install ok installed")
    );
    let conffiles = run("dpkg-query", &["-W", "-f=${Conffiles}", "pmmux"], CLIENT_TIMEOUT).expect_success("dpkg-query");
    assert!(conffiles.contains("/etc/pmmux/pmmux.toml"), "{conffiles}");
    let config = fs::read_to_string("/etc/pmmux/pmmux.toml").expect("packaged configuration");
    assert!(
        config.contains("\nplugin_dir = \"/usr/lib/pmmux/plugins\"\n"),
        "{config}"
    );
    let unit = fs::read_to_string("/lib/systemd/system/pmmux.service").expect("packaged unit");
    assert!(
        unit.contains("ExecStart=/usr/bin/pmmux --config /etc/pmmux/pmmux.toml") && unit.contains("\nUser=pmmux\n"),
        "{unit}"
    );
    assert!(!unit.contains("/usr/local"), "{unit}");
    let user = run("getent", &["passwd", "pmmux"], CLIENT_TIMEOUT).expect_success("getent passwd pmmux");
    assert!(user.starts_with("pmmux:"), "{user}");
    // Plugins as pmmux's permission check wants them: root's, written by no one else; stripped.
    let plugin_dir = Path::new("/usr/lib/pmmux/plugins");
    let meta = fs::metadata(plugin_dir).expect("plugin folder");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o755));
    let plugin = plugin_dir.join("libpmmux_http_response.so");
    let meta = fs::metadata(&plugin).expect("plugin file");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o644));
    let sections = run("objdump", &["-h", plugin.to_str().expect("utf-8")], CLIENT_TIMEOUT);
    if sections.status.success() {
        assert!(
            !sections.stdout_str().contains(".debug_info"),
            "packaged plugin has debug info"
        );
    }
    if have("systemd-analyze") {
        let verify = run(
            "systemd-analyze",
            &["verify", "/lib/systemd/system/pmmux.service"],
            DPKG_TIMEOUT,
        );
        assert!(
            verify.status.success(),
            "systemd-analyze verify: {}",
            verify.stderr_str()
        );
    } else {
        eprintln!("note: systemd-analyze not installed; the packaged unit is not verified");
    }

    // The command the package documents, serving the default answer.
    let ns = Place::create();
    let log = out.path().join("pmmux.log");
    let mut pmmux = ChildGuard::spawn_logged(
        "packaged pmmux",
        ns.command("/usr/bin/pmmux", &["--config", "/etc/pmmux/pmmux.toml"]),
        &log,
    )
    .expect("start /usr/bin/pmmux");
    let mut answer = String::new();
    let served = eventually(Duration::from_secs(20), || {
        let out = run_cmd(
            ns.command("curl", &["-sS", "-m", "5", "http://127.0.0.1:8443/"]),
            None,
            CLIENT_TIMEOUT,
        );
        answer = out.stdout_str();
        answer.contains("Hello from pmmux")
    });
    assert!(served, "curl got {answer:?}; pmmux log:\n{}", pmmux.log());
    let log_text = pmmux.log();
    let summary = log_text
        .lines()
        .find(|l| l.contains("pmmux started"))
        .unwrap_or_else(|| panic!("no start-up summary:\n{log_text}"));
    assert!(
        summary.contains("listening on 127.0.0.1:8443/tcp")
            && summary.contains("plugins from /usr/lib/pmmux/plugins")
            && summary.contains("2 of 2 backends in routing (web, echo)"),
        "{summary}"
    );
    assert!(
        !log_text.contains(" WARN ") && !log_text.contains(" ERROR "),
        "{log_text}"
    );

    // Removal stops it (prerm) and leaves nothing running; the conffile stays until purge.
    dpkg(&["-r", "pmmux"]);
    let status = pmmux.wait_timeout(Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "pmmux after dpkg -r: {status:?}\n{}",
        pmmux.log()
    );
    assert_eq!(
        packaged_processes(),
        Vec::<u32>::new(),
        "pmmux still running after dpkg -r"
    );
    assert!(!Path::new("/usr/bin/pmmux").exists() && !plugin_dir.exists());
    assert!(
        Path::new("/etc/pmmux/pmmux.toml").exists(),
        "dpkg -r keeps the conffile"
    );
    dpkg(&["--purge", "pmmux"]);
    assert!(!Path::new("/etc/pmmux").exists());
    assert!(!run("getent", &["passwd", "pmmux"], CLIENT_TIMEOUT).status.success());
    eprintln!(
        "package built, installed, served, removed and purged in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
