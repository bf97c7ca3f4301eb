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
fn panics_are_charged_to_their_client_and_a_backend_cools_down_and_returns_quietly() {
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
    let from = |last: u8| Some(std::net::IpAddr::from([127, 0, 0, last]));
    let ok = b"OK and then some bytes".to_vec();
    let routed_to_panicky = |got: &[u8]| String::from_utf8_lossy(got) == sha256_hex(&ok);
    // While the plugin works, it routes.
    let got = tcp_roundtrip(addr, &ok, T).expect("panicky backend round trip");
    assert!(routed_to_panicky(&got));

    // One client sending the bytes that make detection panic: each panic is a no-match (the
    // connection falls through to echo, bytes intact), charged to that client; after 4 the
    // address is refused for a while (closed at once), and nobody else is affected.
    for i in 0..4 {
        let payload = format!("PANIC number {i}").into_bytes();
        let got = tcp_roundtrip_from(from(2), addr, &payload, T).expect("falls through to echo");
        assert_eq!(got, payload, "connection {i}");
    }
    assert!(
        pm.wait_for_log("client refused after repeated plugin errors", T),
        "{}",
        pm.log()
    );
    let refused = tcp_roundtrip_from(from(2), addr, b"PANIC again", T).unwrap_or_default();
    assert!(refused.is_empty(), "a refused client was served: {refused:?}");
    let got = tcp_roundtrip(addr, &ok, T).expect("another client");
    assert!(
        routed_to_panicky(&got),
        "the backend left routing for one client's panics"
    );

    // Panics from many addresses (3 each, under the per-client bound): after 16 in a row the
    // backend leaves routing for a cool-down (5 s), then returns by itself.
    for client in 10..16u8 {
        for i in 0..3 {
            let payload = format!("PANIC from .{client} #{i}").into_bytes();
            let got = tcp_roundtrip_from(from(client), addr, &payload, T).expect("falls through");
            assert_eq!(got, payload);
        }
    }
    assert!(
        pm.wait_for_log("backend out of routing after repeated plugin errors", T),
        "{}",
        pm.log()
    );
    let line = pm
        .log()
        .lines()
        .find(|l| l.contains("backend out of routing"))
        .map(str::to_owned);
    assert!(line.as_deref().is_some_and(|l| l.contains("cooldown_s=5")), "{line:?}");
    let cooled = std::time::Instant::now();
    let got = tcp_roundtrip(addr, &ok, T).expect("echo while cooling down");
    assert_eq!(got, ok, "a backend cooling down was routed to");
    assert!(pm.wait_for_log("backend out of routing", T));
    loop {
        let got = tcp_roundtrip(addr, &ok, T).expect("round trip");
        if routed_to_panicky(&got) {
            break;
        }
        assert!(
            cooled.elapsed() < Duration::from_secs(15),
            "the backend never came back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "backend back in routing {:?} after its cool-down began",
        cooled.elapsed()
    );
    assert!(pm
        .log()
        .contains("backend back in routing after its plugin-error cool-down"));

    // Quiet: 22 panics, logged once per burst (one line per 10 s per backend), with the location
    // and the client; nothing written by the plugin's own panic hook, no backtrace (the harness
    // sets RUST_BACKTRACE=1).
    let log = pm.log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("plugin error, treated as no match"))
        .collect();
    assert!((1..=3).contains(&errors.len()), "{errors:#?}");
    assert!(
        errors[0].contains("detect panicked: fixture: detect panics on purpose at "),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("client=127.0.0."), "{}", errors[0]);
    for noise in ["thread '", "stack backtrace", "note: run with"] {
        assert!(!log.contains(noise), "`{noise}` in the log:\n{log}");
    }
    assert!(pm.is_running());
}

#[test]
fn inspect_plugin_prints_the_plugin_or_exactly_why_not() {
    let bin = pmmux_bin();
    let bin = bin.to_str().expect("utf-8 path");
    let out = run(bin, &["inspect-plugin", plugin_lib("ssh").to_str().expect("path")], T);
    let text = out.expect_success("inspect-plugin ssh");
    assert!(text.contains("plugin:     ssh 1.0.0"), "{text}");
    assert!(text.contains("plugin-api: 1.1.0 (ABI revision 4)"), "{text}");
    assert!(text.contains("protocols:  ssh"), "{text}");

    // A plugin built against plugin-api 1.0.0, before revision 2 appended methods, still loads.
    let old = api_1_0_fixture();
    let out = run(bin, &["inspect-plugin", old.to_str().expect("path")], T);
    let text = out.expect_success("inspect-plugin on a plugin-api 1.0.0 build");
    assert!(text.contains("plugin-api: 1.0.0 (ABI revision 1)"), "{text}");
    assert!(text.contains("host ABI:   plugin-api 1.1.0 (ABI revision 4)"), "{text}");

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

/// Creates, in `dir`, an entry of each kind that is not a regular file, all named like libraries.
fn make_odd_entries(dir: &std::path::Path) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |name: &str| CString::new(dir.join(name).as_os_str().as_bytes()).expect("path without NUL");
    // SAFETY: plain system calls on NUL-terminated paths owned for the call.
    unsafe {
        assert_eq!(libc::mkfifo(c("libfifo.so").as_ptr(), 0o600), 0, "mkfifo");
        let dev = libc::makedev(1, 3); // the /dev/null character device
        assert_eq!(
            libc::mknod(c("libdev.so").as_ptr(), libc::S_IFCHR | 0o600, dev),
            0,
            "mknod"
        );
    }
    drop(std::os::unix::net::UnixListener::bind(dir.join("libsock.so")).expect("bind a socket"));
    std::fs::create_dir(dir.join("libdir.so")).expect("create a folder");
    std::os::unix::fs::symlink("nowhere.so", dir.join("libdangling.so")).expect("dangling symlink");
    std::os::unix::fs::symlink("libloop.so", dir.join("libloop.so")).expect("looping symlink");
}

#[test]
fn entries_that_are_not_files_are_refused_unopened_and_never_block_start_reload_or_stop() {
    let port = free_port();
    let config = format!(
        "plugin_dir = \"plugins\"\n[reload]\nrescan_interval_ms = 200\nquiet_period_ms = 100\n\
         [[listener]]\naddress = \"127.0.0.1:{port}\"\n\
         [[backend]]\nname = \"ssh\"\nprotocol = \"ssh\"\ntarget = \"127.0.0.1:1\"\n\
         [[backend]]\nname = \"echo\"\nprotocol = \"echo\"\n"
    );
    let prepare = make_odd_entries;
    let pm = Pmmux::start_opts(&StartOptions {
        config: Some(&config),
        plugins: &["echo"],
        prepare: Some(&prepare),
        ..StartOptions::default()
    });
    // Start-up did not block on the FIFO (before this fix it hung in open() before listening).
    pm.wait_listening(loopback(port));
    let odd = [
        ("libfifo.so", "not a regular file (a FIFO)"),
        ("libdev.so", "not a regular file (a device)"),
        ("libsock.so", "not a regular file (a socket)"),
        ("libdir.so", "not a regular file (a folder)"),
        ("libdangling.so", "a symbolic link that leads to no file"),
        ("libloop.so", "a symbolic link that leads to no file"),
    ];
    // Several rescans later, each is still reported exactly once.
    std::thread::sleep(Duration::from_millis(1000));
    for (file, cause) in odd {
        let lines: Vec<String> = pm
            .log()
            .lines()
            .filter(|l| l.contains("plugin refused") && l.contains(&format!("/{file} ")))
            .map(str::to_owned)
            .collect();
        assert_eq!(lines.len(), 1, "{file}: {lines:#?}\n{}", pm.log());
        assert!(
            lines[0].contains(cause),
            "refusal of {file} does not say `{cause}`: {}",
            lines[0]
        );
    }
    let payload = random_bytes(100_000);
    assert_eq!(tcp_roundtrip(loopback(port), &payload, T).expect("echo"), payload);

    // The reload thread is not stuck: a plugin dropped in now loads, and routes.
    pm.install_plugin("ssh");
    assert!(pm.wait_for_log("plugin loaded plugin=ssh", T), "{}", pm.log());
    // SIGTERM ends the host promptly (it used to wait for a writer on the FIFO).
    let status = pm.stop().expect("pmmux exited");
    assert!(status.success(), "{status:?}\n{}", pm.log());
}
