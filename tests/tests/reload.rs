//! Hot reload, end to end: plugins dropped in, replaced (by `cp`, rename and `install`) and removed
//! under live traffic, bad files dropped over a working plugin, and configuration edits, all while
//! connections are open. The fixture plugin `versioned` greets each client with its build version, so
//! a client sees which library version serves it.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pmmux_e2e::*;

const T: Duration = Duration::from_secs(20);

/// A config with one listener, fast reload settings, an admin endpoint and the given backends.
fn config(port: u16, admin: u16, backends: &str) -> String {
    format!(
        "plugin_dir = \"plugins\"\n[[listener]]\naddress = \"127.0.0.1:{port}\"\n[reload]\nquiet_period_ms = 150\nrescan_interval_ms = 2000\n[admin]\naddress = \"127.0.0.1:{admin}\"\n{backends}"
    )
}

const VERSIONED: &str = "[[backend]]\nname = \"versioned\"\nprotocol = \"versioned\"\n";

/// One client session with the `versioned` plugin: sends `HELLO` and `payload`, returns the version
/// that greeted it after checking the echo is byte-exact.
fn versioned_session(addr: SocketAddr, payload: &[u8]) -> Result<String, String> {
    let mut data = b"HELLO".to_vec();
    data.extend_from_slice(payload);
    let got = tcp_roundtrip(addr, &data, T).map_err(|e| format!("round trip: {e}"))?;
    let newline = got.iter().position(|&b| b == b'\n').ok_or("no greeting line")?;
    let version = String::from_utf8_lossy(&got[..newline]).into_owned();
    if sha256_hex(&got[newline + 1..]) != sha256_hex(&data) {
        return Err(format!(
            "echo differs: {} bytes back, {} sent",
            got.len() - newline - 1,
            data.len()
        ));
    }
    Ok(version)
}

/// Polls until a new connection is greeted by `want` (e.g. "v2").
fn wait_for_version(addr: SocketAddr, want: &str) -> Duration {
    let started = Instant::now();
    loop {
        if let Ok(v) = versioned_session(addr, b"probe") {
            if v == want {
                return started.elapsed();
            }
        }
        assert!(started.elapsed() < T, "version {want} never took new connections");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Starts pmmux with only the `versioned` backend and `v1` as its library, and waits until new
/// connections are greeted by v1. Returns the host, the live library path, its address and the
/// admin port.
fn start_serving_v1(v1: &Path) -> (Pmmux, std::path::PathBuf, SocketAddr, u16) {
    let (port, admin) = (free_port(), free_port());
    let pm = Pmmux::start(&config(port, admin, VERSIONED), &[]);
    let live = pm.plugin_dir().join("libfixture_versioned.so");
    fs::copy(v1, &live).expect("install v1");
    let addr = loopback(port);
    pm.wait_listening(addr);
    wait_for_version(addr, "v1");
    (pm, live, addr, admin)
}

/// The ways a deployment replaces a library file.
#[derive(Clone, Copy, Debug)]
enum Replace {
    /// `cp new old`: same inode, rewritten in place.
    Cp,
    /// Copy beside it, then `mv` over it: one atomic rename.
    Rename,
    /// `install new old`: not atomic (remove, create, write).
    Install,
}

fn replace(how: Replace, from: &Path, to: &Path) {
    match how {
        Replace::Cp => {
            fs::copy(from, to).unwrap_or_else(|e| panic!("cp: {e}"));
        }
        Replace::Rename => {
            let staging = to.with_file_name(".staging.so.tmp");
            fs::copy(from, &staging).unwrap_or_else(|e| panic!("copy: {e}"));
            fs::rename(&staging, to).unwrap_or_else(|e| panic!("rename: {e}"));
        }
        Replace::Install => {
            let args = ["-m", "0644", from.to_str().expect("path"), to.to_str().expect("path")];
            run("install", &args, T).expect_success("install");
        }
    }
}

#[test]
fn a_plugin_dropped_into_an_empty_folder_routes_the_next_connection() {
    let (port, admin) = (free_port(), free_port());
    let pm = Pmmux::start(
        &config(port, admin, "[[backend]]\nname = \"echo\"\nprotocol = \"echo\"\n"),
        &[],
    );
    let addr = loopback(port);
    pm.wait_listening(addr);
    // No plugin yet: the backend is out of routing and the client is closed unanswered.
    assert_eq!(tcp_roundtrip(addr, b"anyone?", T).expect("closed cleanly"), b"");
    assert!(
        pm.log().contains("no loaded plugin provides protocol `echo`"),
        "{}",
        pm.log()
    );

    fs::copy(plugin_lib("echo"), pm.plugin_dir().join("libpmmux_echo.so")).expect("cp plugin in");
    let started = Instant::now();
    let payload = random_bytes(256 * 1024);
    loop {
        // Until the plugin is live the client is closed unanswered (a large payload may see the
        // close before it has sent everything).
        match tcp_roundtrip(addr, &payload, T) {
            Ok(got) if got == payload => break,
            Ok(got) => assert!(got.is_empty(), "partial answer before the plugin was live"),
            Err(_) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the dropped-in plugin never routed:\n{}",
            pm.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(pm.log().contains("plugin loaded plugin=echo"));
}

#[test]
fn replacing_a_plugin_under_load_loses_no_connection_and_new_ones_see_the_new_version() {
    let v1 = versioned_fixture("1");
    let v2 = versioned_fixture("2");
    let (pm, live, addr, _) = start_serving_v1(&v1);

    // Clients keep opening connections and streaming checksummed bytes the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..3)
        .map(|c| {
            let (stop, done, failures) = (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&failures));
            thread::spawn(move || {
                let payload = random_bytes(64 * 1024 + c);
                while !stop.load(Ordering::Relaxed) {
                    match versioned_session(addr, &payload) {
                        Ok(v) if v == "v1" || v == "v2" => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(v) => failures
                            .lock()
                            .expect("lock")
                            .push(format!("unexpected greeting {v:?}")),
                        Err(e) => failures.lock().expect("lock").push(e),
                    }
                }
            })
        })
        .collect();

    let mut latencies = Vec::new();
    for how in [Replace::Cp, Replace::Rename, Replace::Install] {
        for i in 0..20 {
            let (file, version) = if i % 2 == 0 { (&v2, "v2") } else { (&v1, "v1") };
            replace(how, file, &live);
            latencies.push(wait_for_version(addr, version));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    let failures = failures.lock().expect("lock");
    assert!(
        failures.is_empty(),
        "{} failed connections, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(
        done.load(Ordering::Relaxed) > 60,
        "too little traffic: {}",
        done.load(Ordering::Relaxed)
    );
    latencies.sort();
    println!(
        "60 replaces, {} client connections, new version live after: median {:?}, max {:?}",
        done.load(Ordering::Relaxed),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    assert!(pm.is_running());
}

#[test]
fn a_connection_opened_before_a_replace_keeps_its_version_which_is_unmapped_once_it_closes() {
    let v1 = versioned_fixture("1");
    let v2 = versioned_fixture("2");
    let (pm, live, addr, admin) = start_serving_v1(&v1);

    let mut old = TcpStream::connect(addr).expect("connect");
    old.set_read_timeout(Some(T)).expect("timeout");
    let exchange = |stream: &mut TcpStream, msg: &[u8]| -> Vec<u8> {
        stream.write_all(msg).expect("write");
        let mut got = vec![0u8; msg.len()];
        stream.read_exact(&mut got).expect("read echo");
        got
    };
    old.write_all(b"HELLO").expect("hello");
    let mut greeting = [0u8; 8];
    old.read_exact(&mut greeting).expect("greeting");
    assert_eq!(&greeting, b"v1\nHELLO");

    replace(Replace::Rename, &v2, &live);
    wait_for_version(addr, "v2");
    assert_eq!(exchange(&mut old, b"still v1 code"), b"still v1 code");

    fs::remove_file(&live).expect("remove plugin");
    let started = Instant::now();
    while versioned_session(addr, b"x").is_ok() {
        assert!(started.elapsed() < T, "removed plugin still routes");
        thread::sleep(Duration::from_millis(20));
    }
    assert!(pm.wait_for_log("plugin removed plugin=versioned", T));
    let payload = random_bytes(1 << 20);
    assert_eq!(sha256_hex(&exchange(&mut old, &payload)), sha256_hex(&payload));

    // What is mapped: v1 only, for the connection still open (v2 served probes only, and was
    // unmapped once they and its backend were gone), and no plugin current.
    let bin = pmmux_bin();
    let status = || {
        let out = run(
            bin.to_str().expect("path"),
            &["status", "--admin", &format!("127.0.0.1:{admin}")],
            T,
        );
        out.expect_success("pmmux status")
    };
    let shadows_mapped = || {
        let maps = fs::read_to_string(format!("/proc/{}/maps", pm.pid())).expect("read maps");
        let mut files: Vec<String> = maps
            .lines()
            .filter(|l| l.contains("pmmux-shadow"))
            .filter_map(|l| l.split_whitespace().nth(5).map(str::to_owned))
            .collect();
        files.dedup();
        files
    };
    let text = status();
    assert!(
        text.contains("1 plugin version(s) mapped, 1 old; 1 unmapped after draining"),
        "{text}"
    );
    assert_eq!(shadows_mapped().len(), 1, "{:#?}", shadows_mapped());

    // The last connection of v1 ends: v1 is unmapped, and no deleted shadow copy stays mapped.
    drop(old);
    let started = Instant::now();
    loop {
        let text = status();
        if text.contains("0 plugin version(s) mapped, 0 old; 2 unmapped after draining") {
            break;
        }
        assert!(
            started.elapsed() < T,
            "v1 still mapped after its last connection:\n{text}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(shadows_mapped().is_empty(), "{:#?}", shadows_mapped());
    assert!(pm.is_running());
}

#[test]
fn bad_files_dropped_over_a_working_plugin_are_refused_and_it_keeps_serving() {
    let v1 = versioned_fixture("1");
    let major2 = abi_fixture("major2");
    let (pm, live, addr, _) = start_serving_v1(&v1);

    let good = fs::read(&v1).expect("read v1");
    let bad: [(&str, Vec<u8>, &str); 3] = [
        ("truncated", good[..good.len() * 9 / 10].to_vec(), "truncated"),
        ("garbage", random_bytes(200_000), "not an ELF file"),
        (
            "changed ABI",
            fs::read(&major2).expect("read major2"),
            "plugin-api 2.0.0",
        ),
    ];
    for (what, bytes, cause) in bad {
        let staging = pm.plugin_dir().join(".bad.tmp");
        fs::write(&staging, &bytes).expect("write bad file");
        fs::rename(&staging, &live).expect("rename over the plugin");
        let wanted = cause.to_string();
        let started = Instant::now();
        while !pm
            .log()
            .lines()
            .any(|l| l.contains("previous version keeps serving") && l.contains(&wanted))
        {
            assert!(started.elapsed() < T, "no refusal for the {what} file:\n{}", pm.log());
            thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            versioned_session(addr, &random_bytes(100_000)).expect("old version serves"),
            "v1"
        );
    }
    fs::copy(&v1, &live).expect("restore");
    assert!(pm.is_running());
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < T, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn configuration_edits_apply_while_connections_stay_open_and_a_bad_edit_is_refused() {
    let (echo_a, echo_b, sink) = (TcpEcho::start(), TcpEcho::start(), TcpSink::start());
    let (port1, port2, admin) = (free_port(), free_port(), free_port());
    let two_listeners = format!("[[listener]]\naddress = \"127.0.0.1:{port2}\"\n");
    let pass_to =
        |target: SocketAddr| format!("[[backend]]\nname = \"all\"\nprotocol = \"pass\"\ntarget = \"{target}\"\n");
    let base =
        |extra: &str, backends: &str| format!("{}{extra}", config(port1, admin, &format!("{two_listeners}{backends}")));
    let pm = Pmmux::start(&base("", &pass_to(echo_a.addr())), &["ssh"]);
    let (addr1, addr2) = (loopback(port1), loopback(port2));
    pm.wait_listening(addr1);
    pm.wait_listening(addr2);

    // A long-lived connection on each listener, through backend `all` to echo A.
    let mut open1 = TcpStream::connect(addr1).expect("connect 1");
    let mut open2 = TcpStream::connect(addr2).expect("connect 2");
    for s in [&mut open1, &mut open2] {
        s.set_read_timeout(Some(T)).expect("timeout");
    }
    let ping = |s: &mut TcpStream, msg: &[u8]| {
        s.write_all(msg).expect("write");
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).expect("read");
        assert_eq!(got, msg);
    };
    ping(&mut open1, b"one");
    ping(&mut open2, b"two");
    let a_before = echo_a.connections();

    // Change the target: new connections go to echo B, open ones stay on A.
    pm.write_config(&base("", &pass_to(echo_b.addr())));
    wait_until("new connections reach echo B", || {
        let _ = tcp_roundtrip(addr1, b"x", T);
        echo_b.connections() > 0
    });
    let a_after_switch = echo_a.connections();
    assert!(a_after_switch >= a_before);
    for _ in 0..3 {
        assert_eq!(tcp_roundtrip(addr1, b"new", T).expect("new connection"), b"new");
    }
    assert_eq!(
        echo_a.connections(),
        a_after_switch,
        "a new connection reached the old target"
    );
    ping(&mut open1, b"still A");

    // Add a backend in front: SSH clients now go to the sink, the rest still to B.
    let ssh_first = format!(
        "[[backend]]\nname = \"ssh\"\nprotocol = \"ssh\"\ntarget = \"{}\"\n{}",
        sink.addr(),
        pass_to(echo_b.addr())
    );
    pm.write_config(&base("", &ssh_first));
    let banner = b"SSH-2.0-test\r\nrest".to_vec();
    wait_until("the added ssh backend routes", || {
        tcp_roundtrip(addr1, &banner, T)
            .map(|got| got == sha256_hex(&banner).into_bytes())
            .unwrap_or(false)
    });

    // An invalid edit is refused with its line and column, and the running config goes on.
    pm.write_config(&format!(
        "{}\n[[backend]]\nname = \"broken\"\nprotocol = \"pass\"\ntarget = \"nowhere\"\n",
        base("", &ssh_first)
    ));
    assert!(
        pm.wait_for_log("configuration refused; the running configuration stays", T),
        "{}",
        pm.log()
    );
    assert!(pm.log().contains("target `nowhere` is not host:port"));
    let line_col = pm
        .log()
        .lines()
        .any(|l| l.contains("pmmux.toml:") && l.contains("target `nowhere`"));
    assert!(line_col, "no file:line:column in {}", pm.log());
    assert_eq!(
        tcp_roundtrip(addr1, &banner, T).expect("ssh still routed"),
        sha256_hex(&banner).into_bytes()
    );

    // Remove listener 2: it stops accepting, but its open connection goes on.
    let one_listener = config(port1, admin, &ssh_first);
    pm.write_config(&one_listener);
    wait_until("listener 2 closed", || TcpStream::connect(addr2).is_err());
    ping(&mut open2, b"listener gone, connection alive");
    ping(&mut open1, b"and this one too");
    // SIGHUP reloads too (here: nothing changed, and nothing breaks).
    pm.signal(libc::SIGHUP);
    assert!(pm.wait_for_log("SIGHUP: reloading the configuration", T));
    ping(&mut open1, b"after SIGHUP");
    assert!(pm.is_running());
}
