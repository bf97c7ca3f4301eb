//! Plugin folder permissions, end to end: the real `pmmux` refuses to load anything from a plugin
//! folder, or a plugin file, that others could write (one log line with the mode and the fix),
//! keeps serving its other listeners meanwhile, and loads the plugin once the mode is fixed.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use pmmux_e2e::*;

/// An echo backend on one port and a pass backend to `echo_server` on another, with fast rescans.
fn start(echo_server: &TcpServer) -> (Pmmux, u16, u16) {
    let (pm, ports) = start_pmmux(2, &[], |p| {
        format!(
            "plugin_dir = \"plugins\"\n[[listener]]\naddress = \"127.0.0.1:{}\"\n[[listener]]\naddress = \"127.0.0.1:{}\"\n\
             [reload]\nquiet_period_ms = 100\nrescan_interval_ms = 300\n\
             [[backend]]\nname = \"echo\"\nprotocol = \"echo\"\n[backend.match]\nlocal_port = {}\n\
             [[backend]]\nname = \"pass\"\nprotocol = \"pass\"\ntarget = \"{}\"\n[backend.match]\nlocal_port = {}\n",
            p[0],
            p[1],
            p[0],
            echo_server.addr(),
            p[1]
        )
    });
    (pm, ports[0], ports[1])
}

/// A gid no group database lists.
const NO_SUCH_GID: u32 = 3_999_999_999;

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Whether the echo plugin answers on `port` now.
fn echo_serves(port: u16) -> bool {
    tcp_roundtrip(loopback(port), b"ping", std::time::Duration::from_secs(5)).is_ok_and(|got| got == b"ping")
}

fn pass_serves(port: u16) {
    let got = tcp_roundtrip(loopback(port), b"other listener", CLIENT_TIMEOUT).expect("pass round trip");
    assert_eq!(got, b"other listener");
}

#[test]
fn a_world_writable_plugin_folder_loads_nothing_until_its_mode_is_fixed() {
    let echo_server = TcpEcho::start();
    let (pm, echo_port, pass_port) = start(&echo_server);
    let dir = pm.plugin_dir();
    chmod(&dir, 0o777);
    pm.install_plugin("echo");
    // "world-writable, fix with chmod o-w" when the folder's group is root's private group (as
    // here on Debian), "group- and world-writable, ... go-w" otherwise.
    let line = wait_log_line(&pm, &["plugin refused", "world-writable (mode 0777)"]);
    assert!(
        line.contains("anyone could make pmmux run their code; fix with chmod ")
            && line.contains(if root_group_is_private() {
                "chmod o-w"
            } else {
                "chmod go-w"
            }),
        "{line}"
    );
    assert!(!pm.log().contains("plugin loaded"), "{}", pm.log());
    assert!(
        !echo_serves(echo_port),
        "the echo plugin serves from a world-writable folder"
    );
    pass_serves(pass_port);

    // Fixed: the next rescan loads it.
    chmod(&dir, 0o755);
    wait_log_line(&pm, &["plugin loaded", "libpmmux_echo.so"]);
    assert!(eventually(LOG_TIMEOUT, || echo_serves(echo_port)));
    pass_serves(pass_port);
    // Reported once, not at every rescan.
    assert_eq!(log_lines(&pm, &["world-writable"]).len(), 1, "{}", pm.log());
}

#[test]
fn a_group_writable_plugin_file_is_refused_and_loads_once_fixed() {
    let echo_server = TcpEcho::start();
    let (pm, echo_port, pass_port) = start(&echo_server);
    let file = pm.plugin_dir().join(plugin_file_name("echo"));
    let staging = pm.plugin_dir().join(".staging.tmp");
    fs::copy(plugin_lib("echo"), &staging).expect("copy plugin");
    chmod(&staging, 0o664);
    // A group that is not the owner's private group (one with no entry at all): the group bit of
    // a private group of the owner alone would be accepted (umask 002 systems).
    std::os::unix::fs::chown(&staging, None, Some(NO_SUCH_GID)).expect("chgrp");
    fs::rename(&staging, &file).expect("rename into place");
    let line = wait_log_line(&pm, &["plugin refused", "is group-writable (mode 0664)"]);
    assert!(
        line.contains(&format!("fix with chmod g-w {}", file.display())),
        "{line}"
    );
    assert!(!echo_serves(echo_port));
    pass_serves(pass_port);

    chmod(&file, 0o644);
    wait_log_line(&pm, &["plugin loaded", "libpmmux_echo.so"]);
    assert!(eventually(LOG_TIMEOUT, || echo_serves(echo_port)));

    // Made writable again while loaded: refused, and the loaded version keeps serving.
    chmod(&file, 0o666);
    wait_log_line(
        &pm,
        &[
            "previous version keeps serving",
            "is group- and world-writable (mode 0666)",
        ],
    );
    assert!(echo_serves(echo_port));
}

/// Whether group 0 has no member but root in the password and group files (as on Debian): then a
/// root-owned, group-writable folder is what `umask 002` makes for root.
fn root_group_is_private() -> bool {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = fs::read_to_string("/etc/group").unwrap_or_default();
    let others_primary = passwd.lines().any(|l| {
        let f: Vec<&str> = l.split(':').collect();
        f.len() > 3 && f[3] == "0" && f[2] != "0"
    });
    let listed = group
        .lines()
        .find(|l| l.split(':').nth(2) == Some("0"))
        .and_then(|l| l.split(':').nth(3))
        .unwrap_or("");
    !others_primary && listed.split(',').all(|m| m.is_empty() || m == "root")
}

#[test]
fn a_folder_and_file_writable_by_the_owners_private_group_load_as_under_umask_002() {
    if !root_group_is_private() {
        eprintln!("SKIP: group 0 has members besides root here, so it is not a private group");
        return;
    }
    let echo_server = TcpEcho::start();
    let (pm, echo_port, pass_port) = start(&echo_server);
    let dir = pm.plugin_dir();
    chmod(&dir, 0o775);
    std::os::unix::fs::chown(&dir, Some(0), Some(0)).expect("chown");
    let staging = dir.join(".staging.tmp");
    fs::copy(plugin_lib("echo"), &staging).expect("copy plugin");
    chmod(&staging, 0o775);
    std::os::unix::fs::chown(&staging, Some(0), Some(0)).expect("chown");
    fs::rename(&staging, dir.join(plugin_file_name("echo"))).expect("rename into place");
    wait_log_line(&pm, &["plugin loaded", "libpmmux_echo.so"]);
    assert!(eventually(LOG_TIMEOUT, || echo_serves(echo_port)));
    pass_serves(pass_port);
    assert!(!pm.log().contains("plugin refused"), "{}", pm.log());
}
