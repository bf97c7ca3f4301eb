//! Real clients against real servers through pmmux, one application protocol per test: the
//! `mosquitto` broker with `mosquitto_sub` / `mosquitto_pub` (`mqtt`), `redis-server` with
//! `redis-cli` (`redis`), a PostgreSQL 15 server with `psql` (`postgres`), `microsocks` with
//! `curl --socks5` fetching from nginx (`socks5`), and OpenSSH's `ssh -D` with `curl --socks4a`
//! (`socks4`). Every config lists `ssh`, `tls` and `http`
//! backends (forwarding to a decoy that must see nothing) before the backend under test, and an
//! `echo` catch-all after it. Every server is started by the test on a free loopback port; the
//! system services of these packages are never used. VPN protocols are in `protocols_vpn.rs`.

mod common;
mod proto_common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use common::*;
use pmmux_e2e::*;
use proto_common::*;

/// Bound on a subscriber waiting for its message.
const SUBSCRIBER_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- mqtt

#[test]
fn mosquitto_sub_receives_what_mosquitto_pub_sends_both_through_pmmux() {
    let decoy = TcpSink::start();
    let dir = temp_dir("mosquitto");
    let conf = dir.path().join("mosquitto.conf");
    let mosquitto = find_tool("mosquitto", "mosquitto");
    let (broker, broker_port) = start_server("mosquitto", &dir.path().join("mosquitto.log"), |port| {
        fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 log_dest stderr\nlog_type all\nconnection_messages true\n"
            ),
        )
        .expect("write mosquitto.conf");
        let mut cmd = Command::new(&mosquitto);
        cmd.arg("-c").arg(&conf);
        cmd
    });
    let (pm, port) = start_one(&plugins_with(&["mqtt"]), |port| {
        format!(
            "{head}{decoys}[[backend]]\nname = \"mqtt\"\nprotocol = \"mqtt\"\ntarget = \"127.0.0.1:{broker_port}\"\n{ECHO_CATCH_ALL}",
            head = listeners(&[format!("127.0.0.1:{port}")]),
            decoys = decoy_backends(decoy.addr()),
        )
    });
    let p = port.to_string();

    // The subscriber, through pmmux, waits for one message (QoS 1).
    let sub_out = dir.path().join("sub.out");
    let mut cmd = Command::new(find_tool("mosquitto_sub", "mosquitto-clients"));
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &p,
        "-i",
        "pmmux-sub",
        "-t",
        "pmmux/e2e",
        "-q",
        "1",
        "-C",
        "1",
    ])
    .args(["-W", "20"]);
    let mut sub = ChildGuard::spawn_logged("mosquitto_sub", cmd, &sub_out).expect("spawn mosquitto_sub");
    // Publish only once the broker has the subscription (it arrived through pmmux).
    assert!(
        broker.wait_for_log("Received SUBSCRIBE from pmmux-sub", LOG_TIMEOUT),
        "the broker never saw the subscription; sub: {}; broker log:\n{}",
        sub.log(),
        broker.log()
    );

    let out = client(
        "mosquitto_pub",
        &args(&[
            "-h",
            "127.0.0.1",
            "-p",
            &p,
            "-i",
            "pmmux-pub",
            "-t",
            "pmmux/e2e",
            "-q",
            "1",
            "-m",
            "hello-through-pmmux-42",
        ]),
    );
    out.expect_success("mosquitto_pub through pmmux");
    let status = sub.wait_timeout(SUBSCRIBER_TIMEOUT);
    assert!(
        status.is_some_and(|s| s.success()),
        "mosquitto_sub did not get its message ({status:?}): {}; broker log:\n{}",
        sub.log(),
        broker.log()
    );
    assert_eq!(sub.log().trim(), "hello-through-pmmux-42");

    for id in ["pmmux-sub", "pmmux-pub"] {
        let line = wait_log_line(&pm, &["backend=\"mqtt\"", &format!("mqtt.client_id={id}")]);
        assert!(line.contains("mqtt.version="), "{line}");
        assert!(
            broker
                .log()
                .lines()
                .any(|l| l.contains("New client connected from 127.0.0.1:") && l.contains(&format!(" as {id} "))),
            "{}",
            broker.log()
        );
    }
    assert_eq!(decoy.connections(), 0, "an MQTT client reached a decoy");
    assert!(log_lines(&pm, &["backend=\"catch-all\""]).is_empty(), "{}", pm.log());
}

// ---------------------------------------------------------------- redis

#[test]
fn redis_cli_sets_and_gets_through_pmmux_including_a_1_mib_value() {
    let decoy = TcpSink::start();
    let dir = temp_dir("redis");
    let redis = find_tool("redis-server", "redis-server");
    let (server, redis_port) = start_server("redis-server", &dir.path().join("redis.log"), |port| {
        let mut cmd = Command::new(&redis);
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--daemonize", "no", "--protected-mode", "yes"])
        .arg("--dir")
        .arg(dir.path());
        cmd
    });
    let (pm, port) = start_one(&plugins_with(&["redis"]), |port| {
        format!(
            "{head}{decoys}[[backend]]\nname = \"redis\"\nprotocol = \"redis\"\ntarget = \"127.0.0.1:{redis_port}\"\n{ECHO_CATCH_ALL}",
            head = listeners(&[format!("127.0.0.1:{port}")]),
            decoys = decoy_backends(decoy.addr()),
        )
    });
    let p = port.to_string();
    let cli = |extra: &[&str], input: Option<&[u8]>| {
        let mut a = vec!["-h", "127.0.0.1", "-p", &p];
        a.extend_from_slice(extra);
        match input {
            Some(bytes) => run_with_input("redis-cli", &a, bytes, CLIENT_TIMEOUT),
            None => run("redis-cli", &a, CLIENT_TIMEOUT),
        }
    };

    let out = cli(&["SET", "k", "v-through-pmmux"], None);
    assert_eq!(out.expect_success("redis-cli SET").trim(), "OK");
    let out = cli(&["GET", "k"], None);
    assert_eq!(out.expect_success("redis-cli GET").trim(), "v-through-pmmux");

    // 1 MiB of random bytes as the last argument (-x reads it from stdin), and back.
    let data = random_bytes(1 << 20);
    let out = cli(&["-x", "SET", "big"], Some(&data));
    assert_eq!(out.expect_success("redis-cli -x SET big").trim(), "OK");
    let out = cli(&["STRLEN", "big"], None);
    assert_eq!(out.expect_success("redis-cli STRLEN").trim(), (1 << 20).to_string());
    let out = cli(&["--raw", "GET", "big"], None);
    out.expect_success("redis-cli GET big");
    // --raw ends the value with one newline.
    let got = out.stdout.strip_suffix(b"\n").unwrap_or(&out.stdout);
    assert_eq!(got.len(), data.len(), "GET big returned {} bytes", got.len());
    assert_eq!(sha256_hex(got), sha256_hex(&data));

    for command in ["SET", "GET", "STRLEN"] {
        wait_log_line(&pm, &["backend=\"redis\"", &format!("redis.command={command}")]);
    }
    wait_log_count(&pm, &["backend=\"redis\"", "connection closed"], 5);
    assert_eq!(
        decoy.connections(),
        0,
        "a redis client reached a decoy: {}",
        server.log()
    );
    assert!(log_lines(&pm, &["backend=\"catch-all\""]).is_empty(), "{}", pm.log());
}

// ---------------------------------------------------------------- postgres

/// `id -u NAME` and `id -g NAME`.
fn user_ids(name: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        run("id", &[flag, name], TOOL_TIMEOUT)
            .expect_success(&format!("id {flag} {name}"))
            .trim()
            .parse()
            .expect("numeric id")
    };
    (id("-u"), id("-g"))
}

/// The newest `/usr/lib/postgresql/<version>/bin/<tool>`.
fn pg_tool(tool: &str) -> std::path::PathBuf {
    let mut found: Vec<(u32, std::path::PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                    let p = e.path().join("bin").join(tool);
                    p.is_file().then_some((v, p))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("no /usr/lib/postgresql/*/bin/{tool}: install it with `apt-get install postgresql`"))
        .1
}

#[test]
fn psql_queries_a_real_postgres_through_pmmux_routed_by_user() {
    let decoy = TcpSink::start();
    // PostgreSQL refuses to run as root: initdb and the server run as the `postgres` user the
    // package creates, in a folder it owns.
    let (uid, gid) = user_ids("postgres");
    let dir = temp_dir("postgres");
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the postgres folder");
    let data = dir.path().join("data");
    let mut initdb = Command::new(pg_tool("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ])
        .current_dir(dir.path())
        .uid(uid)
        .gid(gid);
    run_cmd(initdb, None, Duration::from_secs(60)).expect_success("initdb as postgres");
    let postgres = pg_tool("postgres");
    let (server, pg_port) = start_server("postgres", &dir.path().join("postgres.log"), |port| {
        let mut cmd = Command::new(&postgres);
        cmd.arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ])
            .arg("-k")
            .arg(dir.path())
            .current_dir(dir.path())
            .uid(uid)
            .gid(gid);
        cmd
    });
    let (pm, port) = start_one(&plugins_with(&["postgres"]), |port| {
        format!(
            "{head}{decoys}\
             [[backend]]\nname = \"pg-other\"\nprotocol = \"postgres\"\ntarget = \"{decoy}\"\n\
             [backend.params]\nuser = \"someone-else\"\n\
             [[backend]]\nname = \"pg\"\nprotocol = \"postgres\"\ntarget = \"127.0.0.1:{pg_port}\"\n\
             [backend.params]\nuser = \"postgres\"\n{ECHO_CATCH_ALL}",
            head = listeners(&[format!("127.0.0.1:{port}")]),
            decoys = decoy_backends(decoy.addr()),
            decoy = decoy.addr(),
        )
    });
    let conninfo =
        format!("host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=disable connect_timeout=10");

    let out = client("psql", &args(&[&conninfo, "-Atc", "select 41+1"]));
    let stdout = out.expect_success(&format!("psql through pmmux; server log:\n{}", server.log()));
    assert_eq!(stdout.trim(), "42");

    // A ~1.3 MB result, checked against the same text built here.
    let out = client(
        "psql",
        &args(&[
            &conninfo,
            "-Atc",
            "select string_agg(i::text, ',' order by i) from generate_series(1, 200000) i",
        ]),
    );
    let stdout = out.expect_success("psql big result through pmmux");
    let expected = (1..=200_000).map(|i: u32| i.to_string()).collect::<Vec<_>>().join(",");
    assert_eq!(stdout.trim_end().len(), expected.len());
    assert_eq!(
        sha256_hex(stdout.trim_end().as_bytes()),
        sha256_hex(expected.as_bytes())
    );

    let line = wait_log_line(&pm, &["backend=\"pg\"", "postgres.user=postgres"]);
    assert!(line.contains("postgres.database=postgres"), "{line}");
    wait_log_count(&pm, &["backend=\"pg\"", "connection closed"], 2);
    assert_eq!(decoy.connections(), 0, "psql reached a decoy");
    assert!(log_lines(&pm, &["backend=\"catch-all\""]).is_empty(), "{}", pm.log());
}

// ---------------------------------------------------------------- socks5

#[test]
fn curl_socks5_through_pmmux_and_microsocks_downloads_from_nginx() {
    let decoy = TcpSink::start();
    let web = HttpServer::start("socks-web");
    let sum = web.add_random_file("big.bin", 4 << 20);
    let dir = temp_dir("microsocks");
    let microsocks = find_tool("microsocks", "microsocks");
    let (socks, socks_port) = start_server("microsocks", &dir.path().join("microsocks.log"), |port| {
        let mut cmd = Command::new(&microsocks);
        cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
        cmd
    });
    let (pm, port) = start_one(&plugins_with(&["socks4", "socks5"]), |port| {
        format!(
            "{head}{decoys}\
             [[backend]]\nname = \"socks4\"\nprotocol = \"socks4\"\ntarget = \"{decoy}\"\n\
             [[backend]]\nname = \"socks5\"\nprotocol = \"socks5\"\ntarget = \"127.0.0.1:{socks_port}\"\n{ECHO_CATCH_ALL}",
            head = listeners(&[format!("127.0.0.1:{port}")]),
            decoys = decoy_backends(decoy.addr()),
            decoy = decoy.addr(),
        )
    });

    let out = run(
        "curl",
        &[
            "-sS",
            "--fail",
            "--max-time",
            "30",
            "--socks5",
            &format!("127.0.0.1:{port}"),
            &web.url("big.bin"),
        ],
        CLIENT_TIMEOUT,
    );
    out.expect_success(&format!(
        "curl --socks5 through pmmux; microsocks log:\n{}",
        socks.log()
    ));
    assert_eq!(out.stdout.len(), 4 << 20);
    assert_eq!(sha256_hex(&out.stdout), sum);
    // nginx saw the request (from microsocks), once.
    assert_eq!(
        web.access_log().lines().filter(|l| l.contains("GET /big.bin")).count(),
        1,
        "{}",
        web.access_log()
    );

    let line = wait_log_line(&pm, &["backend=\"socks5\"", "socks5.methods="]);
    assert!(line.contains("routed"), "{line}");
    wait_log_line(&pm, &["backend=\"socks5\"", "connection closed"]);
    assert_eq!(
        decoy.connections(),
        0,
        "the SOCKS5 client reached a decoy or the socks4 backend"
    );
    assert!(log_lines(&pm, &["backend=\"catch-all\""]).is_empty(), "{}", pm.log());
}

// ---------------------------------------------------------------- socks4a

/// SOCKS4a carries the host name, not an address: `curl --socks4a` through pmmux to OpenSSH's
/// dynamic forwarding (`ssh -D`, which speaks SOCKS4, SOCKS4a and SOCKS5), which resolves
/// `localhost` and fetches from nginx. The `socks5` backend, listed first, must not take it.
#[test]
fn curl_socks4a_through_pmmux_and_ssh_dynamic_forwarding_downloads_from_nginx() {
    let decoy = TcpSink::start();
    let web = HttpServer::start("socks4a-web");
    let sum = web.add_random_file("big.bin", 1 << 20);
    let sshd = Sshd::start();
    let dir = temp_dir("ssh-d");
    let (forwarder, socks_port) = start_server("ssh -D", &dir.path().join("ssh.log"), |port| {
        let mut cmd = Command::new("ssh");
        cmd.args([
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-D",
            &format!("127.0.0.1:{port}"),
        ])
        .args(sshd.ssh_args(sshd.port()));
        cmd
    });
    let (pm, port) = start_one(&plugins_with(&["socks4", "socks5"]), |port| {
        format!(
            "{head}{decoys}\
             [[backend]]\nname = \"socks5\"\nprotocol = \"socks5\"\ntarget = \"{decoy}\"\n\
             [[backend]]\nname = \"socks4\"\nprotocol = \"socks4\"\ntarget = \"127.0.0.1:{socks_port}\"\n{ECHO_CATCH_ALL}",
            head = listeners(&[format!("127.0.0.1:{port}")]),
            decoys = decoy_backends(decoy.addr()),
            decoy = decoy.addr(),
        )
    });

    let url = format!("http://localhost:{}/big.bin", web.addr().port());
    let out = run(
        "curl",
        &[
            "-sS",
            "--fail",
            "--max-time",
            "30",
            "--socks4a",
            &format!("127.0.0.1:{port}"),
            &url,
        ],
        CLIENT_TIMEOUT,
    );
    out.expect_success(&format!(
        "curl --socks4a through pmmux; ssh -D log:\n{}",
        forwarder.log()
    ));
    assert_eq!(out.stdout.len(), 1 << 20);
    assert_eq!(sha256_hex(&out.stdout), sum);

    // The request carried the name, which the plugin reports; pmmux routed it to the socks4 backend.
    let line = wait_log_line(&pm, &["backend=\"socks4\"", "socks4.host=localhost"]);
    assert!(line.contains("routed"), "{line}");
    wait_log_line(&pm, &["backend=\"socks4\"", "connection closed"]);
    assert_eq!(
        decoy.connections(),
        0,
        "the SOCKS4a client reached a decoy or the socks5 backend"
    );
    assert!(log_lines(&pm, &["backend=\"catch-all\""]).is_empty(), "{}", pm.log());
}
