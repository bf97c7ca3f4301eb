//! Loader refusals, end to end: the real `pmmux` binary with a plugin folder holding good plugins
//! beside a random file, a truncated plugin, a plugin whose export panics, a plugin built against a
//! changed ABI and a duplicate protocol provider. Each refusal is one log line naming the file and the
//! cause, and the host still routes traffic (checked with checksums) to the plugins that loaded.

use std::path::PathBuf;
use std::time::Duration;

use pmmux_e2e::*;

const T: Duration = Duration::from_secs(20);

fn read(path: &PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn every_bad_library_is_refused_by_name_and_the_rest_keeps_serving() {
    let sink = TcpSink::start();
    let port = free_port();
    let config = format!(
        r#"
plugin_dir = "plugins"
[[listener]]
address = "127.0.0.1:{port}"
[[backend]]
name = "ssh"
protocol = "ssh"
target = "{sink}"
[[backend]]
name = "changed"
protocol = "changed"
target = "{sink}"
[[backend]]
name = "echo"
protocol = "echo"
"#,
        sink = sink.addr()
    );
    let ssh = read(&plugin_lib("ssh"));
    let files: Vec<(String, Vec<u8>)> = vec![
        ("garbage.so".into(), random_bytes(64 * 1024)),
        ("libhalf.so".into(), ssh[..ssh.len() / 2].to_vec()),
        (
            "libpanic_export.so".into(),
            read(&artifact("libfixture_panic_export.so")),
        ),
        ("libmajor2.so".into(), read(&abi_fixture("major2"))),
        ("libappended.so".into(), read(&abi_fixture("appended"))),
        // Sorted after libpmmux_ssh.so, so it is the second provider of `ssh`.
        ("libzz_ssh_again.so".into(), ssh.clone()),
        // Dotfiles are an installer's temporaries: never loaded, never reported.
        (".libpmmux_echo.so.tmp".into(), random_bytes(100)),
    ];
    let pm = Pmmux::start_with_files(&config, &["ssh", "echo"], &files);
    pm.wait_listening(loopback(port));

    let refusals = [
        ("garbage.so", "not an ELF file"),
        ("libhalf.so", "truncated"),
        ("libpanic_export.so", "the root module loader panicked"),
        (
            "libmajor2.so",
            "built against plugin-api 2.0.0, this host speaks plugin-api 1.1.0",
        ),
        (
            "libzz_ssh_again.so",
            "protocol `ssh` is already provided by plugin `ssh`",
        ),
    ];
    for (file, cause) in refusals {
        let line = pm
            .log()
            .lines()
            .find(|l| l.contains("plugin refused") && l.contains(file))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no refusal line for {file}:\n{}", pm.log()));
        assert!(line.contains(cause), "refusal of {file} does not say `{cause}`: {line}");
    }
    assert!(!pm.log().contains(".libpmmux_echo.so.tmp"), "a dotfile was looked at");
    // A plugin built against a newer 1.x (a field appended) loads in this older host.
    assert!(pm.wait_for_log("plugin loaded plugin=changed", T), "{}", pm.log());

    // The host serves, through each plugin that loaded, with every byte intact.
    let addr = loopback(port);
    let mut ssh_stream = b"SSH-2.0-OpenSSH_9.2p1\r\n".to_vec();
    ssh_stream.extend(random_bytes(1 << 20));
    let got = tcp_roundtrip(addr, &ssh_stream, T).expect("ssh-routed round trip");
    assert_eq!(String::from_utf8_lossy(&got), sha256_hex(&ssh_stream));

    let mut changed_stream = b"CHANGED".to_vec();
    changed_stream.extend(random_bytes(100_000));
    let got = tcp_roundtrip(addr, &changed_stream, T).expect("changed-routed round trip");
    assert_eq!(String::from_utf8_lossy(&got), sha256_hex(&changed_stream));

    let other = random_bytes(2 << 20);
    let got = tcp_roundtrip(addr, &other, T).expect("echo round trip");
    assert_eq!(sha256_hex(&got), sha256_hex(&other));
    assert!(pm.is_running());
}

#[test]
fn panicking_hooks_count_as_no_match_and_repeated_panics_disable_the_backend() {
    let sink = TcpSink::start();
    let port = free_port();
    let config = format!(
        r#"
plugin_dir = "plugins"
[[listener]]
address = "127.0.0.1:{port}"
[[backend]]
name = "ctor-panics"
protocol = "panicky"
target = "{sink}"
[backend.params]
panic_in_constructor = true
[[backend]]
name = "panicky"
protocol = "panicky"
target = "{sink}"
[[backend]]
name = "echo"
protocol = "echo"
"#,
        sink = sink.addr()
    );
    let pm = Pmmux::start(&config, &["libfixture_panic_hooks.so", "echo"]);
    pm.wait_listening(loopback(port));
    assert!(
        pm.wait_for_log("backend `ctor-panics` is not in routing: plugin `panicky@0.1.0`", T),
        "{}",
        pm.log()
    );
    assert!(pm
        .log()
        .contains("backend constructor panicked: fixture: constructor panics on purpose"));

    let addr = loopback(port);
    // While the plugin works, it routes.
    let ok = b"OK and then some bytes".to_vec();
    let got = tcp_roundtrip(addr, &ok, T).expect("panicky backend round trip");
    assert_eq!(String::from_utf8_lossy(&got), sha256_hex(&ok));

    // Each panic is a no-match: the connection falls through to echo, bytes intact.
    for i in 0..20 {
        let payload = format!("PANIC number {i}").into_bytes();
        let got = tcp_roundtrip(addr, &payload, T).expect("falls through to echo");
        assert_eq!(got, payload, "connection {i}");
    }
    assert!(
        pm.log().contains("detect panicked: fixture: detect panics on purpose"),
        "{}",
        pm.log()
    );
    assert!(
        pm.wait_for_log("backend disabled after repeated plugin errors", T),
        "{}",
        pm.log()
    );

    // Disabled: even a matching client now goes to echo, and the host is alive.
    let got = tcp_roundtrip(addr, &ok, T).expect("echo after disable");
    assert_eq!(got, ok);
    assert!(pm.is_running());
}

#[test]
fn inspect_plugin_prints_the_plugin_or_exactly_why_not() {
    let bin = pmmux_bin();
    let bin = bin.to_str().expect("utf-8 path");
    let out = run(bin, &["inspect-plugin", plugin_lib("ssh").to_str().expect("path")], T);
    let text = out.expect_success("inspect-plugin ssh");
    assert!(text.contains("plugin:     ssh 1.0.0"), "{text}");
    assert!(text.contains("plugin-api: 1.1.0 (ABI revision 2)"), "{text}");
    assert!(text.contains("protocols:  ssh"), "{text}");

    // A plugin built against plugin-api 1.0.0, before revision 2 appended methods, still loads.
    let old = api_1_0_fixture();
    let out = run(bin, &["inspect-plugin", old.to_str().expect("path")], T);
    let text = out.expect_success("inspect-plugin on a plugin-api 1.0.0 build");
    assert!(text.contains("plugin-api: 1.0.0 (ABI revision 1)"), "{text}");
    assert!(text.contains("host ABI:   plugin-api 1.1.0 (ABI revision 2)"), "{text}");

    let major2 = abi_fixture("major2");
    let out = run(bin, &["inspect-plugin", major2.to_str().expect("path")], T);
    assert!(!out.status.success());
    assert!(out.stderr_str().contains("plugin-api 2.0.0"), "{}", out.stderr_str());

    let dir = temp_dir("inspect");
    let garbage = write_file_in(dir.path(), "x.so", &random_bytes(4096));
    let out = run(bin, &["inspect-plugin", garbage.to_str().expect("path")], T);
    assert!(!out.status.success());
    assert!(
        out.stderr_str()
            .contains("x.so: cannot load: not a complete shared library"),
        "{}",
        out.stderr_str()
    );
}

#[test]
fn check_config_reports_every_problem_with_its_line() {
    let bin = pmmux_bin();
    let bin = bin.to_str().expect("utf-8 path");
    let dir = temp_dir("check-config");
    std::fs::create_dir_all(dir.path().join("plugins")).expect("plugins dir");
    std::fs::copy(plugin_lib("ssh"), dir.path().join("plugins/libpmmux_ssh.so")).expect("copy ssh");
    let good = write_file_in(
        dir.path(),
        "good.toml",
        b"[[listener]]\naddress = \"127.0.0.1:1\"\n[[backend]]\nname = \"ssh\"\nprotocol = \"ssh\"\ntarget = \"127.0.0.1:22\"\n",
    );
    let out = run(bin, &["check-config", good.to_str().expect("path")], T);
    assert!(out
        .expect_success("check-config good")
        .contains("ok: 1 listener(s), 1 backend(s), 1 plugin(s)"));

    let bad = write_file_in(
        dir.path(),
        "bad.toml",
        b"[[listener]]\naddress = \"127.0.0.1:1\"\n[[backend]]\nname = \"x\"\nprotocol = \"pass\"\ntarget = \"nowhere\"\n",
    );
    let out = run(bin, &["check-config", bad.to_str().expect("path")], T);
    assert!(!out.status.success());
    assert!(
        out.stderr_str()
            .contains("bad.toml:6:10: backend `x`: target `nowhere` is not host:port"),
        "{}",
        out.stderr_str()
    );

    let typo = write_file_in(
        dir.path(),
        "typo.toml",
        b"[[listener]]\naddress = \"127.0.0.1:1\"\n[[backend]]\nname = \"x\"\nprotocol = \"shh\"\ntarget = \"127.0.0.1:22\"\n[[backend]]\nname = \"y\"\nprotocol = \"ssh\"\n[backend.params]\nverbose = true\n",
    );
    let out = run(bin, &["check-config", typo.to_str().expect("path")], T);
    assert!(!out.status.success());
    let err = out.stderr_str();
    assert!(err.contains("no loaded plugin provides protocol `shh`"), "{err}");
    assert!(
        err.contains("typo.toml:7:1: backend `y` is not in routing: plugin `ssh@1.0.0`")
            && err.contains("unknown field `verbose`"),
        "{err}"
    );
}
