//! Configuration without a file and from the environment, end to end: the real `pmmux` run with
//! only `-p` / `-b` serves curl → nginx and echo; `{{env:NAME}}` supplies a backend's target; and
//! the errors of both name what is wrong (the argument, or the file's line:column).

mod common;

use std::time::Duration;

use common::*;
use pmmux_e2e::*;

#[test]
fn quick_start_with_p_and_b_serves_curl_to_nginx_and_echo_without_a_config_file() {
    let web = HttpServer::start("qs-web");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}:tcp");
    let http = format!(
        "web:http:target.ip=127.0.0.1,target.port={},host=\"a.example\"",
        web.port()
    );
    let pm = Pmmux::start_opts(&StartOptions {
        config: None,
        plugins: &["http", "echo"],
        args: &["-p", &listen, "-b", &http, "-b", "rest:echo:priority=fallback"],
        ..StartOptions::default()
    });
    pm.wait_listening(loopback(port));
    assert!(!pm.config_path().exists());

    let out = client(
        "curl",
        &args(&["-sS", "-H", "Host: a.example", &web.url_via(port, IDENT_FILE)]),
    );
    assert_eq!(out.expect_success("curl via pmmux").trim(), "qs-web");
    let echoed = tcp_roundtrip(loopback(port), b"not http\n", CLIENT_TIMEOUT).expect("echo round trip");
    assert_eq!(echoed, b"not http\n");
    // Another Host is not the web backend's: it falls to the echo.
    let out = client(
        "curl",
        &args(&["-sS", "-H", "Host: b.example", &web.url_via(port, IDENT_FILE)]),
    );
    assert!(!out.stdout_str().contains("qs-web"), "{}", out.stdout_str());

    // SIGHUP has no file to re-read: it says so and keeps serving.
    pm.signal(libc::SIGHUP);
    wait_log_line(&pm, &["configuration from the command line: nothing to reload"]);
    let out = client(
        "curl",
        &args(&["-sS", "-H", "Host: a.example", &web.url_via(port, IDENT_FILE)]),
    );
    assert_eq!(out.expect_success("curl after SIGHUP").trim(), "qs-web");
    assert!(pm.stop().is_some_and(|s| s.success()));
}

#[test]
fn quick_start_errors_name_the_argument() {
    let bin = pmmux_bin().to_string_lossy().into_owned();
    let cases: [(&[&str], &str); 4] = [
        (
            &["-p", "80:sctp", "-b", "a:noop"],
            "pmmux: -p 80:sctp: expected [ADDRESS:]PORT[:tcp|udp]",
        ),
        (
            &["-p", "1", "-b", "a:pass:target=nohost"],
            "pmmux: command line: backend `a`: target `nohost` is not host:port",
        ),
        (
            &["-p", "1", "-b", "a:tls:sni=\"x"],
            "pmmux: -b a:tls:sni=\"x: the quoted value of `sni` is not closed",
        ),
        (&["-b", "a:noop"], "pmmux: command line: -b needs at least one -p"),
    ];
    for (argv, want) in cases {
        let out = run(&bin, argv, Duration::from_secs(20));
        assert!(!out.status.success(), "{argv:?} succeeded");
        assert!(out.stderr_str().contains(want), "{argv:?}: {}", out.stderr_str());
    }
    let out = run(&bin, &["--config", "x.toml", "-p", "1"], Duration::from_secs(20));
    assert!(out.stderr_str().contains("cannot be used with"), "{}", out.stderr_str());
    let out = run(&bin, &["--plugin-dir", "p"], Duration::from_secs(20));
    assert!(
        out.stderr_str().contains("pmmux: --plugin-dir goes with -p / -b"),
        "{}",
        out.stderr_str()
    );
}

#[test]
fn env_placeholder_supplies_a_target_and_an_unset_one_is_an_error_at_its_line() {
    let echo = TcpEcho::start();
    let config = |port: u16| {
        format!(
            "plugin_dir = \"plugins\"\n[[listener]]\naddress = \"127.0.0.1:{port}\"\n[[backend]]\nname = \"e\"\n\
             protocol = \"pass\"\ntarget = \"{{{{env:PMMUX_E2E_TARGET}}}}\"\n"
        )
    };
    let port = free_port();
    let target = echo.addr().to_string();
    let pm = Pmmux::start_opts(&StartOptions {
        config: Some(&config(port)),
        env: &[("PMMUX_E2E_TARGET", &target)],
        ..StartOptions::default()
    });
    pm.wait_listening(loopback(port));
    let data = random_bytes(64 * 1024);
    let got = tcp_roundtrip(loopback(port), &data, CLIENT_TIMEOUT).expect("round trip");
    assert_eq!(sha256_hex(&got), sha256_hex(&data));

    // Without the variable: refused, naming the variable at line 7, column 11 of the file.
    let mut cmd = std::process::Command::new(pmmux_bin());
    cmd.arg("check-config")
        .arg(pm.config_path())
        .env_remove("PMMUX_E2E_TARGET");
    let out = run_cmd(cmd, None, Duration::from_secs(20));
    assert!(!out.status.success());
    let want = format!(
        "{}:7:11: environment variable PMMUX_E2E_TARGET is not set",
        pm.config_path().display()
    );
    assert!(out.stderr_str().contains(&want), "{}", out.stderr_str());
}
