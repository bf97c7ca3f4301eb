//! Binary upgrade end to end, with the real `pmmux` (SIGUSR2 and `pmmux upgrade`): under load from
//! several client threads plus long checksummed streams nothing is refused, reset or corrupted,
//! streams opened before finish on the old process (its own sockets, seen in /proc), and the old
//! process exits 0; a new binary that exits at once, or a broken configuration, leaves the old
//! process serving with the reason in its log; UDP flows stay with the old process until idle or
//! until it exits, new UDP clients go to the new one; systemd hears MAINPID= then READY=1.

#[path = "../common/mod.rs"]
mod common;
mod load;

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use load::*;
use pmmux_e2e::*;

/// Long enough that only the streams' end (never the timeout) lets the old process exit.
const DRAIN_MS: u64 = 20_000;

fn pass_config(port: u16, target: SocketAddr, extra: &str) -> String {
    format!(
        "{}{extra}[routing]\ndrain_timeout_ms = {DRAIN_MS}\n[[backend]]\nname = \"echo\"\nprotocol = \"pass\"\ntarget = \"{target}\"\n",
        listeners(&[format!("127.0.0.1:{port}")])
    )
}

/// Sends SIGUSR2 to `pid` and waits until it has handed over; returns the new PID.
fn upgrade(pm: &Pmmux, pid: u32, handovers_before: usize) -> u32 {
    signal_pid(pid, libc::SIGUSR2);
    wait_log_count(pm, &["stops accepting and drains"], handovers_before + 1);
    wait_new_pid(pm, pid, LOG_TIMEOUT).unwrap_or_else(|| panic!("no new process took over from {pid}"))
}

#[test]
fn upgrade_under_load_refuses_resets_and_corrupts_nothing_and_old_streams_finish_on_the_old_process() {
    let echo = lean_echo();
    let (pm, port) = start_one(&[], |port| pass_config(port, echo, ""));
    let addr = loopback(port);
    let old = pm.pid();

    // Streams opened before the first upgrade, sending until after the second.
    let stop_streams = Arc::new(AtomicBool::new(false));
    let streams: Vec<Stream> = (0..4).map(|_| long_stream(addr, &stop_streams)).collect();
    let tally = Arc::new(Tally::default());
    let (stop, clients) = short_load(addr, 4, &tally);
    thread::sleep(Duration::from_millis(700));

    let first = upgrade(&pm, old, 0);
    let _first_guard = PidGuard(first);
    for s in &streams {
        assert!(
            pid_has_tcp_connection(old, addr, s.local),
            "the stream from {} is not held by the old process {old}",
            s.local
        );
        assert!(
            !pid_has_tcp_connection(first, addr, s.local),
            "the new process holds an old stream"
        );
    }
    assert!(pm.is_running(), "the old process exited with streams open");

    // A second upgrade, of the upgraded process, still under load.
    thread::sleep(Duration::from_millis(700));
    let second = upgrade(&pm, first, 1);
    let _second_guard = PidGuard(second);
    thread::sleep(Duration::from_millis(700));
    stop_load(stop, clients);
    assert!(pm.is_running(), "the old process exited with streams open");
    stop_streams.store(true, Ordering::Relaxed);

    for (i, s) in streams.into_iter().enumerate() {
        let bytes = s
            .done
            .join()
            .expect("stream thread")
            .unwrap_or_else(|e| panic!("stream {i}: {e}"));
        assert!(bytes >= 50 * 8 * 1024, "stream {i} carried only {bytes} bytes");
    }
    tally.assert_clean(50);

    // The old process exits 0 once its streams are done, long before the drain timeout.
    let status = pm
        .wait_exit(Duration::from_secs(10))
        .expect("the old process exits after its streams");
    assert!(status.success(), "old process: {status}");
    let status = wait_pid_exit(first, Duration::from_secs(10)).expect("the first new process exits");
    assert!(status.success(), "first new process: {status}");

    // Both logs name the other's PID.
    let log = pm.log();
    assert!(
        log.contains(&format!("upgrade: started the new process (PID {first})")),
        "{log}"
    );
    assert!(log.contains(&format!("PID {first} started by PID {old}")));
    assert!(log.contains(&format!(
        "upgrade: the new process (PID {first}) accepts; this process (PID {old}) stops accepting"
    )));
    assert!(log.contains(&format!("upgrade: took over from PID {old}")));
    assert!(log.contains(&format!("PID {second} started by PID {first}")));
    assert!(!log.contains("drain timeout reached"), "a drain timed out:\n{log}");

    // The last process serves, and stops cleanly.
    assert_eq!(
        tcp_roundtrip(addr, b"after", CLIENT_TIMEOUT).expect("round trip"),
        b"after"
    );
    let status = stop_pid(second, Duration::from_secs(10)).expect("second new process stops");
    assert!(status.success(), "second new process: {status}");
}

/// Copies the built binary to `<dir>/bin/pmmux` (the path the process will be started from).
fn own_binary(dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin folder");
    let path = bin.join("pmmux");
    replace_file(&path, &std::fs::read(pmmux_bin()).expect("read pmmux"));
    path
}

/// Atomically puts `bytes` at `path`, executable, as a deployment would (write beside, rename).
fn replace_file(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    let staging = path.with_extension("new");
    std::fs::write(&staging, bytes).expect("write staging file");
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::rename(&staging, path).expect("rename into place");
}

/// `pmmux upgrade --admin ADDR`, run with the built binary.
fn upgrade_command(admin: SocketAddr) -> std::process::Output {
    let args = ["upgrade", "--admin", &admin.to_string(), "--timeout-secs", "30"];
    run(&pmmux_bin().to_string_lossy(), &args, Duration::from_secs(40))
}

#[test]
fn a_failed_upgrade_leaves_the_old_process_serving_and_says_why() {
    let echo = TcpEcho::start();
    let bin_dir = temp_dir("upgrade-bin");
    let program = own_binary(bin_dir.path());
    let (pm, port, admin) = (0..5)
        .find_map(|_| {
            let (port, admin) = (free_port(), free_port());
            let config = pass_config(
                port,
                echo.addr(),
                &format!("[admin]\naddress = \"127.0.0.1:{admin}\"\n"),
            );
            let pm = Pmmux::start_opts(&StartOptions {
                config: Some(&config),
                program: Some(&program),
                ..StartOptions::default()
            });
            match pm.try_wait_listening(loopback(port), PMMUX_START_TIMEOUT) {
                Ok(()) => Some((pm, port, loopback(admin))),
                Err(e) if e.contains("cannot listen on") => None,
                Err(e) => panic!("{e}"),
            }
        })
        .expect("pmmux could not bind fresh ports 5 times");
    pm.wait_listening(admin);
    let old = pm.pid();
    let addr = loopback(port);
    let tally = Arc::new(Tally::default());
    let (stop, clients) = short_load(addr, 3, &tally);

    // 1. The binary now at the path exits at once.
    replace_file(&program, b"#!/bin/sh\nexit 3\n");
    pm.signal(libc::SIGUSR2);
    let line = wait_log_line(&pm, &["upgrade failed", "exit status 3", "before it was ready"]);
    assert!(
        line.contains(&format!("this process (PID {old}) keeps serving")),
        "{line}"
    );
    // The same through the command, which reports the failure and exits 1.
    let out = upgrade_command(admin);
    assert!(
        !out.status.success(),
        "pmmux upgrade succeeded with a broken binary: {}",
        out.stdout_str()
    );
    assert!(
        out.stderr_str().contains("upgrade failed") && out.stderr_str().contains(&format!("PID {old} keeps serving")),
        "{}",
        out.stderr_str()
    );

    // 2. The real binary, but a configuration it refuses: it says why, and the old one logs it.
    replace_file(&program, &std::fs::read(pmmux_bin()).expect("read pmmux"));
    let good = std::fs::read_to_string(pm.config_path()).expect("config");
    pm.write_config(&good.replace("protocol = \"pass\"", "protocol = \"pass\"\nno_such_key = 1"));
    pm.signal(libc::SIGUSR2);
    let line = wait_log_line(&pm, &["upgrade failed", "failed:", "no_such_key"]);
    assert!(
        line.contains(&format!("this process (PID {old}) keeps serving")),
        "{line}"
    );
    assert!(pm.is_running());
    assert!(pid_listens_tcp(old, addr), "the old process stopped listening");

    // 3. Fixed: the command upgrades and names the new process.
    pm.write_config(&good);
    let out = upgrade_command(admin);
    let said = out.expect_success("pmmux upgrade");
    let new = wait_new_pid(&pm, old, LOG_TIMEOUT).expect("new pid in the log");
    let _guard = PidGuard(new);
    assert!(said.contains(&format!("upgraded: PID {new} serves")), "{said}");
    thread::sleep(Duration::from_millis(300));
    stop_load(stop, clients);
    tally.assert_clean(20);

    let status = pm.wait_exit(Duration::from_secs(10)).expect("the old process exits");
    assert!(status.success(), "{status}");
    assert_eq!(tcp_roundtrip(addr, b"new", CLIENT_TIMEOUT).expect("round trip"), b"new");
    // The admin endpoint moved with the rest.
    assert!(pid_listens_tcp(new, admin));
    let status = stop_pid(new, Duration::from_secs(10)).expect("new process stops");
    assert!(status.success(), "{status}");
}

/// A UDP server answering each datagram with `<source port of the sender>|<datagram>`, so the
/// client learns which upstream socket (which pmmux flow) carried it.
fn port_reporter() -> (SocketAddr, Arc<AtomicBool>, thread::JoinHandle<()>) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let addr = sock.local_addr().expect("addr");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let handle = thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !flag.load(Ordering::Relaxed) {
            if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                let mut reply = format!("{}|", peer.port()).into_bytes();
                reply.extend_from_slice(&buf[..n]);
                let _ = sock.send_to(&reply, peer);
            }
        }
    });
    (addr, stop, handle)
}

/// Sends `text` from `client` and returns the upstream port that carried it.
fn via(client: &UdpSocket, text: &str) -> u16 {
    client.send(text.as_bytes()).expect("send");
    let mut buf = [0u8; 2048];
    let n = client
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no reply to {text:?} from {:?}: {e}", client.local_addr()));
    let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    let (port, echoed) = reply.split_once('|').unwrap_or_else(|| panic!("odd reply {reply:?}"));
    assert_eq!(echoed, text);
    port.parse().expect("port")
}

/// Like [`via`], but a datagram lost while the old process exits (it was in the tunnel when the
/// old process closed it: lost as on a network) is sent again, once; counts such losses.
fn via_at_exit(client: &UdpSocket, text: &str, lost: &mut u32) -> u16 {
    client.send(text.as_bytes()).expect("send");
    let mut buf = [0u8; 2048];
    match client.recv(&mut buf) {
        Ok(n) => {
            let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
            reply.split_once('|').and_then(|(p, _)| p.parse().ok()).expect("port")
        }
        Err(_) => {
            *lost += 1;
            via(client, text)
        }
    }
}

fn udp_client(to: SocketAddr) -> UdpSocket {
    let c = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    c.connect(to).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
    c
}

/// Which process holds the upstream socket with local port `port`.
fn owner(port: u16, candidates: &[u32]) -> Option<u32> {
    candidates
        .iter()
        .copied()
        .find(|&pid| pid_bound_udp(pid, SocketAddr::from(([127, 0, 0, 1], port))))
}

#[test]
fn udp_flows_stay_with_the_old_process_until_idle_or_until_it_exits_and_new_clients_go_to_the_new_one() {
    let (upstream, stop_upstream, upstream_thread) = port_reporter();
    let (pm, port) = (0..5)
        .find_map(|_| {
            let port = free_udp_port();
            let config = format!(
                "plugin_dir = \"plugins\"\n[[listener]]\naddress = \"127.0.0.1:{port}\"\ntransport = [\"udp\"]\n\
                 [routing]\ndrain_timeout_ms = 4000\n\
                 [[backend]]\nname = \"reporter\"\nprotocol = \"pass\"\ntarget = \"{upstream}\"\nudp_idle_timeout_ms = 1500\n"
            );
            let pm = Pmmux::start(&config, &[]);
            match pm.try_wait_udp_bound(loopback(port), PMMUX_START_TIMEOUT) {
                Ok(()) => Some((pm, port)),
                Err(e) if e.contains("cannot listen on") => None,
                Err(e) => panic!("{e}"),
            }
        })
        .expect("pmmux could not bind a fresh UDP port 5 times");
    let listener = loopback(port);
    let old = pm.pid();
    let (a, c) = (udp_client(listener), udp_client(listener));
    let pa = via(&a, "a1");
    let pc = via(&c, "c1");
    assert_eq!(owner(pa, &[old]), Some(old));

    pm.signal(libc::SIGUSR2);
    wait_log_line(&pm, &["new UDP clients go to the new process", "flows=2"]);
    let new = wait_new_pid(&pm, old, LOG_TIMEOUT).expect("new pid");
    let _guard = PidGuard(new);
    wait_log_line(&pm, &["reading the UDP socket", "old_clients=2"]);

    // Old clients keep their flow (same upstream socket, held by the old process); a new client
    // gets a flow in the new process.
    assert_eq!(via(&a, "a2"), pa, "client A lost its flow at the upgrade");
    assert_eq!(via(&c, "c2"), pc);
    let b = udp_client(listener);
    let pb = via(&b, "b1");
    assert_ne!(pb, pa);
    assert_eq!(
        owner(pb, &[old, new]),
        Some(new),
        "the new client's flow is not in the new process"
    );
    assert_eq!(owner(pa, &[old, new]), Some(old));

    // C keeps talking (its flow stays in the old process); A goes quiet past its idle timeout:
    // its flow ends there and its next datagram starts a flow in the new process.
    let quiet_from = Instant::now();
    while quiet_from.elapsed() < Duration::from_millis(2200) {
        assert_eq!(via(&c, "c-busy"), pc, "client C's flow moved while it was busy");
        assert_eq!(via(&b, "b-busy"), pb, "client B's flow changed in the new process");
        thread::sleep(Duration::from_millis(250));
    }
    assert!(pm.is_running(), "the old process exited while a client was busy");
    let pa2 = via(&a, "a3");
    assert_ne!(pa2, pa, "client A's idle flow was not ended in the old process");
    assert_eq!(owner(pa2, &[old, new]), Some(new));

    // C stays with the old process until it exits at the drain timeout; then its next datagram
    // starts a flow in the new process (detection again, a new upstream port).
    let mut last_old_reply = Instant::now();
    let mut lost = 0;
    while pm.is_running() {
        assert!(
            last_old_reply.elapsed() < Duration::from_secs(10),
            "the old process did not exit"
        );
        let p = via_at_exit(&c, "c-until-exit", &mut lost);
        assert_eq!(via(&b, "b-busy"), pb, "client B's flow changed in the new process");
        if p == pc {
            last_old_reply = Instant::now();
        } else {
            break; // the old process is exiting: its tunnel closed first
        }
        thread::sleep(Duration::from_millis(200));
    }
    let status = pm.wait_exit(Duration::from_secs(10)).expect("the old process exits");
    assert!(status.success(), "{status}");
    assert!(lost <= 1, "{lost} datagrams lost while the old process exited");
    assert!(
        pm.log().contains("drain timeout reached"),
        "the busy UDP flow did not hold the old process"
    );
    let pc2 = via(&c, "c-after");
    assert_ne!(pc2, pc);
    assert_eq!(owner(pc2, &[new]), Some(new));
    assert_eq!(via(&b, "b2"), pb, "the new process's own flow changed");
    wait_log_line(&pm, &["the old process's UDP flows have ended"]);

    stop_upstream.store(true, Ordering::Relaxed);
    upstream_thread.join().expect("upstream thread");
    let status = stop_pid(new, Duration::from_secs(10)).expect("new process stops");
    assert!(status.success(), "{status}");
}

/// Receives the next notification that is not a watchdog ping.
fn next_notification(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).expect("a notification within the timeout");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg != "WATCHDOG=1" {
            return msg;
        }
    }
}

#[test]
fn systemd_hears_mainpid_from_the_old_process_then_ready_from_the_new_one() {
    let dir = temp_dir("upgrade-notify");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind the notification socket");
    sock.set_read_timeout(Some(LOG_TIMEOUT)).expect("timeout");
    let echo = TcpEcho::start();
    let (pm, port) = (0..5)
        .find_map(|_| {
            let port = free_port();
            let config = pass_config(port, echo.addr(), "");
            let pm = Pmmux::start_opts(&StartOptions {
                config: Some(&config),
                env: &[
                    ("NOTIFY_SOCKET", path.to_str().expect("utf-8 path")),
                    ("WATCHDOG_USEC", "2000000"),
                ],
                ..StartOptions::default()
            });
            match pm.try_wait_listening(loopback(port), PMMUX_START_TIMEOUT) {
                Ok(()) => Some((pm, port)),
                Err(e) if e.contains("cannot listen on") => None,
                Err(e) => panic!("{e}"),
            }
        })
        .expect("pmmux could not bind a fresh port 5 times");
    let old = pm.pid();
    assert!(next_notification(&sock).starts_with("READY=1\n"));

    pm.signal(libc::SIGUSR2);
    let main_pid = next_notification(&sock);
    let new = wait_new_pid(&pm, old, LOG_TIMEOUT).expect("new pid");
    let _guard = PidGuard(new);
    assert!(
        main_pid.starts_with(&format!(
            "MAINPID={new}\nSTATUS=upgraded: PID {new} serves; PID {old} drains"
        )),
        "{main_pid:?}"
    );
    let ready = next_notification(&sock);
    assert_eq!(
        ready,
        format!("READY=1\nSTATUS=serving 1 listening socket(s); took over from PID {old}")
    );
    // The old process sends nothing more (no STOPPING=1: it is not the service's main process).
    let status = pm.wait_exit(Duration::from_secs(10)).expect("old process exits");
    assert!(status.success(), "{status}");
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut buf = [0u8; 256];
    while let Ok(n) = sock.recv(&mut buf) {
        assert_eq!(&buf[..n], b"WATCHDOG=1", "unexpected notification after the takeover");
    }
    assert_eq!(
        tcp_roundtrip(loopback(port), b"x", CLIENT_TIMEOUT).expect("round trip"),
        b"x"
    );
    signal_pid(new, libc::SIGTERM);
    assert!(next_notification(&sock).starts_with("STOPPING=1"));
    let status = wait_pid_exit(new, Duration::from_secs(10)).expect("new process exits");
    assert!(status.success(), "{status}");
}
