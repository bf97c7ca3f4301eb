//! A new user's first hour, end to end with the real `pmmux`: the README's run command on a fresh
//! copy under umask 002 and 022; the quick start finding the plugins the build made without a flag
//! and routing a client that waits (ssh-keyscan) with `--on-timeout`; `check-config` listing every
//! mistake of a file at once; a reload applying `[reload]` and saying `[admin]` needs a restart;
//! `pmmux status` without a configuration saying what it needs.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use pmmux_e2e::*;

/// The README's one-line run command (the first `sh` block after "## The two commands").
fn readme_run_command() -> String {
    let readme = fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let section = readme
        .split("## The two commands")
        .nth(1)
        .expect("README has '## The two commands'");
    let block = section.split("```sh\n").nth(1).expect("a sh block");
    let command = block.split("\n```").next().expect("closed block").trim().to_owned();
    assert!(!command.contains('\n'), "the run command is one line: {command}");
    command
}

#[test]
fn the_readme_run_command_serves_on_a_fresh_copy_under_umask_002_and_022() {
    let command = readme_run_command();
    // Everything after the build, on the build this suite made (not a second, release build).
    let after_build = command
        .strip_prefix("cargo build --release && ")
        .unwrap_or_else(|| panic!("the run command starts with the build: {command}"));
    let debug = debug_dir().display().to_string();
    let after_build = after_build.replace("target/release/", &format!("{debug}/"));
    for umask in ["002", "022"] {
        let Some(ns) = LoopbackNs::create("readme") else {
            eprintln!("SKIP: no network namespace here (ip netns add failed): the default port 8443 may be taken");
            return;
        };
        let fresh = temp_dir("readme");
        fs::create_dir(fresh.path().join("config")).expect("config folder");
        fs::copy(
            workspace_root().join("config/pmmux.toml"),
            fresh.path().join("config/pmmux.toml"),
        )
        .expect("copy config/pmmux.toml");
        let script = format!("umask {umask} && {after_build}");
        let mut cmd = ns.command("sh", &["-c", &script]);
        cmd.current_dir(fresh.path());
        let log = fresh.path().join("run.log");
        let mut pm = ChildGuard::spawn_logged("readme run command", cmd, &log).expect("run the README command");
        let mut answer = String::new();
        let served = eventually(Duration::from_secs(30), || {
            let out = run_cmd(
                ns.command("curl", &["-sS", "-m", "5", "http://127.0.0.1:8443/"]),
                None,
                CLIENT_TIMEOUT,
            );
            answer = out.stdout_str();
            answer.contains("Hello from pmmux")
        });
        assert!(served, "umask {umask}: curl got {answer:?}; log:\n{}", pm.log());
        let echoed = run_cmd(
            ns.command("sh", &["-c", "echo hello | socat -t 5 - TCP:127.0.0.1:8443"]),
            None,
            CLIENT_TIMEOUT,
        );
        assert_eq!(
            echoed.stdout_str(),
            "hello\n",
            "umask {umask}: echo through the fallback"
        );
        let text = pm.log();
        assert!(
            text.contains("2 of 2 backends in routing (web, echo)") && !text.contains("plugin refused"),
            "umask {umask}:\n{text}"
        );
        let mode = fs::metadata(fresh.path().join("config/plugins"))
            .expect("config/plugins")
            .permissions()
            .mode();
        eprintln!("umask {umask}: config/plugins is {:04o}; served", mode & 0o7777);
        pm.kill();
    }
}

#[test]
fn quick_start_finds_the_built_plugins_and_routes_a_waiting_client_with_on_timeout() {
    let sshd = Sshd::start();
    // A working folder without plugins/: the quick start must find the build's own.
    let cwd = temp_dir("quick-start-cwd");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}:tcp");
    let ssh = format!("ssh:ssh:target={}", sshd.addr());
    let mut cmd = Command::new(pmmux_bin());
    cmd.args([
        "-p",
        &listen,
        "-b",
        &ssh,
        "-b",
        "web:http-response:body=quick",
        "--on-timeout",
        "ssh",
    ])
    .current_dir(cwd.path());
    let log = cwd.path().join("pmmux.log");
    let mut pm = ChildGuard::spawn_logged("quick start", cmd, &log).expect("start pmmux");
    // Every debug plugin of the build is copied to the shadow folder and loaded (about 20 MB
    // each): slower than a test's usual two plugins on a loaded machine.
    pm.wait_listening(loopback(port), Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e}\n{}", pm.log()));
    let text = pm.log();
    let summary = text
        .lines()
        .find(|l| l.contains("pmmux started"))
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    assert!(
        summary.contains(&format!("plugins from {}", debug_dir().display()))
            && summary.contains("2 of 2 backends in routing (ssh, web)"),
        "{summary}"
    );
    assert!(!text.contains("fixture"), "a test fixture library was loaded:\n{text}");

    // ssh-keyscan waits for the server to speak: the probe timeout routes it to --on-timeout.
    let out = client(
        "ssh-keyscan",
        &args(&["-T", "15", "-p", &port.to_string(), "-t", "ed25519", "127.0.0.1"]),
    );
    let keys = out.expect_success("ssh-keyscan through the quick start");
    assert!(sshd.host_key_matches(&keys), "{keys:?}\n{}", pm.log());
    let out = client("curl", &args(&["-sS", &format!("http://127.0.0.1:{port}/")]));
    assert_eq!(out.stdout_str(), "quick");
    pm.terminate(PMMUX_STOP_GRACE);
}

/// Writes `text` to `file` and runs `pmmux check-config FILE`, which must exit 1: its standard
/// error.
fn failing_check_config(file: &Path, text: &str) -> String {
    fs::write(file, text).expect("write config");
    let out = run(
        pmmux_bin().to_str().expect("utf-8"),
        &["check-config", file.to_str().expect("utf-8")],
        CLIENT_TIMEOUT,
    );
    let err = out.stderr_str();
    assert_eq!(out.status.code(), Some(1), "{err}");
    err
}

#[test]
fn check_config_lists_four_different_mistakes_at_once_and_exits_1() {
    let dir = temp_dir("check-config-four");
    let plugins = dir.path().join("plugins");
    fs::create_dir(&plugins).expect("plugins");
    for p in ["tls", "http_response", "echo"] {
        fs::copy(plugin_lib(p), plugins.join(plugin_file_name(p))).expect("copy plugin");
    }
    let file = dir.path().join("pmmux.toml");
    // 1. an unset {{env}} (which used to hide every other problem), 2. an unknown protocol, 3. a
    // wrong-typed param, 4. on_timeout naming no backend.
    let err = failing_check_config(
        &file,
        "plugin_dir = \"plugins\"\n\n[[listener]]\naddress = \"{{env:PMMUX_E2E_UNSET_LISTEN}}\"\n\n\
         [[backend]]\nname = \"web\"\nprotocol = \"https\"\ntarget = \"127.0.0.1:8080\"\n\n\
         [[backend]]\nname = \"tls-a\"\nprotocol = \"tls\"\ntarget = \"127.0.0.1:9443\"\n[backend.params]\nsni = 42\n\n\
         [[backend]]\nname = \"echo\"\nprotocol = \"echo\"\n[routing]\non_timeout = \"sssh\"\n",
    );
    eprintln!("{err}");
    let f = file.display();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 5, "{err}");
    assert!(lines[0].starts_with(&format!(
        "{f}:4:12: environment variable PMMUX_E2E_UNSET_LISTEN is not set"
    )));
    assert_eq!(
        lines[1],
        format!("{f}:22:14: routing.on_timeout names `sssh`, which is not a backend")
    );
    assert!(
        lines[2].starts_with(&format!("{f}:6:1: backend `web` is not in routing: no loaded plugin provides protocol `https` (available: pass, noop, echo, http-response, tls)")),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].starts_with(&format!("{f}:11:1: backend `tls-a` is not in routing: plugin `tls@"))
            && lines[3].contains("invalid type: integer `42`")
            && lines[3].ends_with(&format!("fix: its [backend.params] at {f}:15:1")),
        "{}",
        lines[3]
    );
    assert_eq!(lines[4], format!("{f}: 4 problems"));

    // A missing plugin folder, a forwarding backend set, no backend at all: each named.
    let err = failing_check_config(
        &file,
        "plugin_dir = \"nowhere\"\n[[listener]]\naddress = \"127.0.0.1:1\"\n[[backend]]\nname = \"a\"\nprotocol = \"tls\"\ntarget = \"127.0.0.1:2\"\n",
    );
    assert!(
        err.contains("nowhere does not exist, and backends need plugins"),
        "{err}"
    );
    let err = failing_check_config(
        &file,
        "plugin_dir = \"plugins\"\n[[listener]]\naddress = \"127.0.0.1:1\"\n",
    );
    assert!(
        err.contains("no [[backend]]: every connection would be closed"),
        "{err}"
    );

    // A forwarding backend without a target is named (echo serves clients itself: no target needed).
    let err = failing_check_config(
        &file,
        "plugin_dir = \"plugins\"\n[[listener]]\naddress = \"127.0.0.1:1\"\n\
         [[backend]]\nname = \"echo\"\nprotocol = \"echo\"\n\
         [[backend]]\nname = \"tls-a\"\nprotocol = \"tls\"\n",
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "{f}:7:1: backend `tls-a` is not in routing: protocol `tls` forwards clients to a \
                 target and the backend has none; fix: add target = \"host:port\" to its [[backend]] at {f}:7:1"
            ),
            format!("{f}: 1 problem"),
        ],
        "{err}"
    );
}

#[test]
fn a_reload_applies_reload_settings_and_says_admin_needs_a_restart() {
    let body = |port: u16, extra: &str| {
        format!(
            "{}[[backend]]\nname = \"echo\"\nprotocol = \"echo\"\n{extra}",
            listeners(&[format!("127.0.0.1:{port}")])
        )
    };
    let (pm, port) = start_one(&["echo"], |port| body(port, "[reload]\nquiet_period_ms = 100\n"));
    fs::write(
        pm.config_path(),
        body(port, "[reload]\nquiet_period_ms = 100\nrescan_interval_ms = 700\n"),
    )
    .expect("rewrite config");
    let line = wait_log_line(&pm, &["[reload] applied"]);
    assert!(line.contains("rescan_interval_ms=700"), "{line}");
    wait_log_line(&pm, &["configuration reloaded", "reload settings changed"]);
    fs::write(
        pm.config_path(),
        body(
            port,
            "[reload]\nquiet_period_ms = 100\nrescan_interval_ms = 700\n[admin]\naddress = \"127.0.0.1:1\"\n",
        ),
    )
    .expect("rewrite config");
    let line = wait_log_line(&pm, &["[admin] changed", "needs a restart"]);
    assert!(
        line.contains("running=off") && line.contains("configured=127.0.0.1:1"),
        "{line}"
    );
    let echoed = tcp_roundtrip(loopback(port), b"still here", CLIENT_TIMEOUT).expect("echo");
    assert_eq!(echoed, b"still here");
}

#[test]
fn status_without_a_configuration_says_what_it_needs() {
    let cwd = temp_dir("status-no-config");
    let mut cmd = Command::new(pmmux_bin());
    cmd.arg("status").current_dir(cwd.path());
    let out = run_cmd(cmd, None, CLIENT_TIMEOUT);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr_str().trim(),
        "pmmux: no configuration file at pmmux.toml: pmmux status asks a running pmmux through its admin \
         endpoint; pass --admin ADDRESS (its [admin] address), or --config FILE (the configuration it runs with)"
    );
}

/// `config/pmmux.toml` with every commented-out example key and table uncommented.
fn every_example_uncommented() -> String {
    let text = fs::read_to_string(workspace_root().join("config/pmmux.toml")).expect("config/pmmux.toml");
    text.lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if is_table_header(rest) || is_key_line(rest) => rest.to_owned(),
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `[table]` or `[[table]]`, then nothing or a comment (not prose that starts with a table's name).
fn is_table_header(line: &str) -> bool {
    let Some(end) = line.find(']') else {
        return false;
    };
    let name = line[..end].trim_start_matches('[');
    let after = line[end..].trim_start_matches(']').trim_start();
    line.starts_with('[')
        && !name.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
        && (after.is_empty() || after.starts_with('#'))
}

/// `key = value`, the key in lower case.
fn is_key_line(line: &str) -> bool {
    line.split_once(" = ")
        .is_some_and(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
}

#[test]
fn every_example_of_the_annotated_config_passes_check_config() {
    let dir = temp_dir("examples");
    let plugins = dir.path().join("plugins");
    fs::create_dir(&plugins).expect("plugins");
    for p in ["dns", "quic", "ssh", "tls", "http", "http_response", "echo"] {
        fs::copy(plugin_lib(p), plugins.join(plugin_file_name(p))).expect("copy plugin");
    }
    let text = every_example_uncommented();
    assert!(
        text.contains("\nproxy_protocol = \"v2\""),
        "the tls-a example is uncommented"
    );
    let file = dir.path().join("pmmux.toml");
    fs::write(&file, &text).expect("write config");
    let out = run(
        pmmux_bin().to_str().expect("utf-8"),
        &["check-config", file.to_str().expect("utf-8")],
        CLIENT_TIMEOUT,
    );
    let ok = out.expect_success("check-config of every example");
    assert!(ok.contains("ok: 2 listener(s), 9 backend(s), 7 plugin(s)"), "{ok}");
}

#[test]
fn a_port_in_use_or_an_invalid_config_stops_the_start_with_one_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address");
    let dir = temp_dir("start-errors");
    let file = dir.path().join("pmmux.toml");
    fs::write(
        &file,
        format!("[[listener]]\naddress = \"{addr}\"\n[[backend]]\nname = \"n\"\nprotocol = \"noop\"\n"),
    )
    .expect("write config");
    let bin = pmmux_bin();
    let bin = bin.to_str().expect("utf-8");
    let out = run(bin, &["--config", file.to_str().expect("utf-8")], CLIENT_TIMEOUT);
    let err = out.stderr_str();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("pmmux: cannot listen on {addr}: Address already in use")),
        "{err}"
    );
    assert_eq!(err.matches("Address already in use").count(), 1, "said once: {err}");

    fs::write(
        &file,
        "[[listener]]\naddress = \"127.0.0.1:1\"\n[routing]\npreview_limit = 0\nbogus = 1\n",
    )
    .expect("write config");
    let out = run(bin, &["--config", file.to_str().expect("utf-8")], CLIENT_TIMEOUT);
    let err = out.stderr_str();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{}:5:1: unknown field `bogus`", file.display())),
        "{err}"
    );
}
