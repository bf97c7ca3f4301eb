//! Unit tests of configuration parsing and validation.
use super::*;

fn parse_str(text: &str) -> Result<Config, ConfigError> {
    parse(Path::new("/etc/pmmux/pmmux.toml"), text)
}

const MINIMAL: &str = "[[listener]]\naddress = \"127.0.0.1:8443\"\n[[backend]]\nname = \"all\"\nprotocol = \"pass\"\ntarget = \"127.0.0.1:22\"\n";

#[test]
fn one_listener_and_one_pass_backend_is_valid() {
    let c = parse_str(MINIMAL).expect("valid");
    assert_eq!(c.plugin_dir, PathBuf::from("/etc/pmmux/plugins"));
    assert_eq!(c.listeners[0].name, "127.0.0.1:8443");
    assert!(c.listeners[0].tcp && !c.listeners[0].udp);
    assert_eq!(c.routing.preview_limit, DEFAULT_PREVIEW_LIMIT);
    assert_eq!(c.backends[0].priority, Priority::Normal);
}

#[test]
fn the_issue_example_parses() {
    let text = r#"
plugin_dir = "plugins"
[[listener]]
address = "127.0.0.1:8443"
transport = ["tcp"]
[[listener]]
address = "[::1]:8443"
[routing]
strategy = "first-available"
probe_timeout_ms = 3000
preview_limit = 16384
on_timeout = "web"
[[backend]]
name = "web"
protocol = "http"
target = "127.0.0.1:8080"
priority = "normal"
[backend.match]
remote_ip = ["127.0.0.0/8", "!127.0.0.2/32"]
local_port = [8443, "9000-9100"]
[backend.params]
host = "www.example"
"#;
    let c = parse_str(text).expect("valid");
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.routing.on_timeout.as_deref(), Some("web"));
    assert!(c.backends[0].params_toml.contains("host = \"www.example\""));
}

#[test]
fn unknown_field_is_reported_with_line_and_column() {
    let err = parse_str("[[listener]]\naddress = \"127.0.0.1:1\"\nadress = 1\n").unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with("/etc/pmmux/pmmux.toml:3:1: unknown field `adress`"),
        "{shown}"
    );
}

#[test]
fn every_validation_error_is_reported_in_file_order() {
    let text = "[[listener]]\naddress = \"localhost:1\"\n[routing]\non_timeout = \"nope\"\n[[backend]]\nname = \"a\"\nprotocol = \"pass\"\ntarget = \"x:y\"\n[[backend]]\nname = \"a\"\nprotocol = \"noop\"\n";
    let err = parse_str(text).unwrap_err();
    let lines: Vec<_> = err.issues.iter().map(|i| (i.line, i.message.clone())).collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert_eq!(lines[0].0, 2);
    assert!(lines[0].1.contains("not IP:PORT"));
    assert_eq!(lines[1].0, 4);
    assert_eq!(lines[2].0, 8);
    assert!(lines[2].1.contains("no valid port"));
    assert_eq!(lines[3].0, 10);
    assert!(lines[3].1.contains("used twice"));
}

#[test]
fn targets() {
    assert!(check_target("127.0.0.1:80").is_ok());
    assert!(check_target("[::1]:80").is_ok());
    assert!(check_target("backend.internal:8080").is_ok());
    assert!(check_target("::1:80").is_err());
    assert!(check_target("host").is_err());
    assert!(check_target("host:99999").is_err());
}

#[test]
fn preview_limit_is_bounded() {
    let text = format!("{MINIMAL}[routing]\npreview_limit = 0\n");
    let err = parse_str(&text).unwrap_err();
    assert_eq!(err.issues[0].line, 8);
}

#[test]
fn limits_are_off_by_default_and_read_when_given() {
    let c = parse_str(MINIMAL).expect("valid");
    assert_eq!(c.limits, crate::ops::limits::GlobalLimitsConfig::default());
    assert_eq!(
        c.listeners[0].limits,
        crate::ops::limits::ListenerLimitsConfig::default()
    );
    let text = "[limits]\nmax_connections = 5000\nmax_previews = 300\n[[listener]]\naddress = \"127.0.0.1:1\"\n\
                max_connections = 100\nmax_connections_per_ip = 8\n";
    let c = parse_str(text).expect("valid");
    assert_eq!(c.limits.max_connections, Some(5000));
    assert_eq!(c.limits.max_previews, Some(300));
    assert_eq!(c.listeners[0].limits.max_connections, Some(100));
    assert_eq!(c.listeners[0].limits.max_connections_per_ip, Some(8));
}

#[test]
fn a_zero_limit_is_refused_at_its_line() {
    let text = "[limits]\nmax_previews = 0\n[[listener]]\naddress = \"127.0.0.1:1\"\nmax_connections_per_ip = 0\n";
    let e = parse_str(text).unwrap_err();
    assert_eq!(e.issues.len(), 2, "{e}");
    assert_eq!((e.issues[0].line, e.issues[1].line), (2, 5), "{e}");
    assert!(e.to_string().contains("limits.max_previews must be at least 1"), "{e}");
    let unknown = parse_str("[limits]\nmax_conections = 1\n[[listener]]\naddress = \"127.0.0.1:1\"\n").unwrap_err();
    assert!(
        unknown.to_string().contains("unknown field `max_conections`"),
        "{unknown}"
    );
}

#[test]
fn a_remote_admin_address_needs_allow_remote() {
    let head = "[[listener]]\naddress = \"127.0.0.1:1\"\n[admin]\n";
    let local = parse_str(&format!("{head}address = \"[::1]:9900\"\n")).expect("loopback is fine");
    assert_eq!(local.admin, Some("[::1]:9900".parse().unwrap()));
    let e = parse_str(&format!("{head}address = \"0.0.0.0:9900\"\n")).unwrap_err();
    assert_eq!(e.issues[0].line, 4, "{e}");
    assert!(e.to_string().contains("allow_remote = true"), "{e}");
    let remote = parse_str(&format!("{head}address = \"0.0.0.0:9900\"\nallow_remote = true\n")).expect("allowed");
    assert_eq!(remote.admin, Some("0.0.0.0:9900".parse().unwrap()));
}

#[test]
fn weights_default_to_one_and_are_bounded_at_their_line() {
    let backend = |w: &str| {
        format!("[[listener]]\naddress = \"127.0.0.1:1\"\n[routing]\nstrategy = \"weighted\"\n[[backend]]\nname = \"a\"\nprotocol = \"pass\"\ntarget = \"127.0.0.1:2\"\n{w}\n")
    };
    let c = parse_str(&backend("")).expect("valid");
    assert_eq!((c.routing.strategy, c.backends[0].weight), (Strategy::Weighted, 1));
    assert_eq!(
        parse_str(&backend("weight = 256")).expect("valid").backends[0].weight,
        256
    );
    for bad in ["weight = 0", "weight = 257"] {
        let err = parse_str(&backend(bad)).unwrap_err();
        assert_eq!(err.issues[0].line, 9, "{err}");
        assert!(err.to_string().contains("backend `a`: weight must be 1..=256"), "{err}");
    }
}

#[test]
fn backends_know_where_their_table_and_params_are() {
    let text = "[[listener]]\naddress = \"127.0.0.1:1\"\n\n# a comment\n[[backend]]\nname = \"a\"\nprotocol = \"x\"\n\
                [backend.params]\nk = 1\n\n  [[backend]]\n  name = \"b\"\n  protocol = \"y\"\n";
    let c = parse(Path::new("/etc/pmmux/pmmux.toml"), text).unwrap();
    let at = |p: Place| (p.line, p.column);
    assert_eq!(at(c.backends[0].place), (5, 1));
    assert_eq!(at(c.backends[0].params_place), (8, 1));
    assert_eq!(at(c.backends[1].place), (11, 3));
    assert_eq!(
        at(c.backends[1].params_place),
        (11, 3),
        "no params: the backend's place"
    );
    assert_eq!(c.backends[0].place.in_file(Path::new("f.toml")), "f.toml:5:1");
    // Moving a backend in the file does not change it.
    let moved = parse(Path::new("/etc/pmmux/pmmux.toml"), &text.replace("# a comment\n", "")).unwrap();
    assert_eq!(moved.backends, c.backends);
}

#[test]
fn an_unset_env_placeholder_does_not_hide_the_other_problems() {
    let text = "[[listener]]\naddress = \"{{env:PMMUX_UNIT_NOT_SET_A}}\"\n[[backend]]\nname = \"a\"\n\
                protocol = \"pass\"\ntarget = \"{{env:PMMUX_UNIT_NOT_SET_B}}\"\n[routing]\npreview_limit = 0\n";
    let (config, issues) = parse_all(Path::new("c.toml"), text);
    assert!(config.is_some());
    let lines: Vec<(usize, &str)> = issues.iter().map(|i| (i.line, i.message.as_str())).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].0 == 2 && lines[0].1.contains("PMMUX_UNIT_NOT_SET_A is not set"),
        "{lines:?}"
    );
    assert!(
        lines[1].0 == 6 && lines[1].1.contains("PMMUX_UNIT_NOT_SET_B is not set"),
        "{lines:?}"
    );
    assert!(lines[2].0 == 8 && lines[2].1.contains("preview_limit"), "{lines:?}");
    // A TOML syntax error after a bad placeholder is listed with it.
    let (config, issues) = parse_all(Path::new("c.toml"), "a = \"{{env:PMMUX_UNIT_NOT_SET_A}}\"\nb = = 1\n");
    assert!(config.is_none());
    assert_eq!(issues.len(), 2, "{issues:?}");
}

#[test]
fn transparent_is_read_and_refused_where_it_cannot_apply() {
    let base = "[[listener]]\naddress = \"127.0.0.1:1\"\ntransport = [\"tcp\", \"udp\"]\n[[backend]]\nname = \"a\"\n";
    let ok = parse(
        Path::new("c.toml"),
        &format!("{base}protocol = \"pass\"\ntarget = \"10.0.0.1:22\"\ntransparent = true\n"),
    )
    .unwrap();
    assert!(ok.backends[0].transparent);
    let default = parse(
        Path::new("c.toml"),
        &format!("{base}protocol = \"pass\"\ntarget = \"10.0.0.1:22\"\n"),
    )
    .unwrap();
    assert!(!default.backends[0].transparent, "off unless asked for");
    let off = parse(
        Path::new("c.toml"),
        &format!("{base}protocol = \"noop\"\ntransparent = false\n"),
    )
    .unwrap();
    assert!(!off.backends[0].transparent);

    let messages = |text: String| -> Vec<(usize, String)> {
        let (_, issues) = parse_all(Path::new("c.toml"), &text);
        issues.into_iter().map(|i| (i.line, i.message)).collect()
    };
    let noop = messages(format!("{base}protocol = \"noop\"\ntransparent = true\n"));
    assert_eq!(noop.len(), 1, "{noop:?}");
    assert_eq!(noop[0].0, 7, "at the transparent key: {noop:?}");
    assert!(
        noop[0].1.contains("backend `a`: transparent = true has no effect"),
        "{noop:?}"
    );
    let unix = messages(format!(
        "{base}protocol = \"pass\"\ntarget = \"unix:/run/app.sock\"\ntransparent = true\n"
    ));
    assert!(
        unix.iter()
            .any(|(line, m)| *line == 8 && m.contains("transparent = true cannot apply to a Unix-socket target")),
        "{unix:?}"
    );
    let not_bool = messages(format!(
        "{base}protocol = \"pass\"\ntarget = \"10.0.0.1:22\"\ntransparent = 1\n"
    ));
    assert!(not_bool.iter().any(|(line, _)| *line == 8), "{not_bool:?}");
}

/// Issue text of a config that must fail, each with its line:column.
fn issues(text: &str) -> Vec<String> {
    parse_str(text)
        .unwrap_err()
        .issues
        .iter()
        .map(|i| format!("{}:{}: {}", i.line, i.column, i.message))
        .collect()
}

#[test]
fn a_unix_listener_and_target_parse_with_mode_owner_and_trusted_peers() {
    let text = r#"
[[listener]]
address = "unix:/run/pmmux/in.sock"
mode = "0660"
owner = "root"
group = "0"
accept_proxy_protocol = ["user:root", "any"]
[[backend]]
name = "web"
protocol = "pass"
target = "unix:/run/nginx.sock"
"#;
    let c = parse_str(text).expect("valid");
    let l = &c.listeners[0];
    assert_eq!(l.address, listen::ListenAddr::Unix("/run/pmmux/in.sock".into()));
    assert_eq!(l.name, "unix:/run/pmmux/in.sock");
    assert!(l.tcp && !l.udp && l.accept_proxy_protocol.is_empty());
    assert_eq!(
        l.unix,
        listen::UnixOptions {
            mode: Some(0o660),
            owner: Some(0),
            group: Some(0),
            trusted: vec![listen::PeerTrust::Uid(0), listen::PeerTrust::Any],
        }
    );
    assert!(c.backends[0].target_is_unix());
}

#[test]
fn unix_listener_mistakes_are_reported_where_they_are() {
    let text = r#"[[listener]]
address = "unix:/run/a.sock"
transport = ["tcp", "udp"]
mode = "rw-rw----"
owner = "no-such-user-pmmux"
accept_proxy_protocol = ["127.0.0.1"]
max_connections_per_ip = 3
[[listener]]
address = "unix:relative.sock"
[[listener]]
address = "127.0.0.1:1"
mode = "0600"
[[listener]]
address = "unix:/run/a.sock"
[[backend]]
name = "b"
protocol = "pass"
target = "unix:/"
"#;
    let got = issues(text);
    let want = [
        "3:13: listener `unix:/run/a.sock`: a unix: listener is a stream socket and takes \"tcp\" only (UDP over Unix datagram sockets is not supported)",
        "4:8: listener `unix:/run/a.sock`: mode `rw-rw----` is not octal permission bits such as \"0660\" (at most \"0777\")",
        "5:9: listener `unix:/run/a.sock`: owner `no-such-user-pmmux` is not a user on this system (a name or a numeric uid)",
        "6:25: listener `unix:/run/a.sock`: accept_proxy_protocol entry `127.0.0.1` is not \"any\", \"user:NAME\" or \"group:NAME\" (on a unix: listener the peer's credentials decide, not an IP network)",
        "7:26: listener `unix:/run/a.sock`: max_connections_per_ip applies to IP listeners only (Unix clients have no IP address)",
        "9:11: listener address `unix:relative.sock` is not unix:/ABSOLUTE/PATH (a Unix socket path must be absolute)",
        "12:8: listener `127.0.0.1:1`: mode applies to unix: listeners only (it sets the socket file's mode)",
        "14:11: two listeners on unix:/run/a.sock/tcp",
        "18:10: backend `b`: target `unix:/` names a folder, not a socket file",
    ];
    assert_eq!(got, want, "{got:#?}");
}

#[test]
fn defer_accept_is_on_unless_silent_clients_are_routed_and_a_listener_may_say_otherwise() {
    let on = parse_str(MINIMAL).expect("valid");
    assert!(
        on.listeners[0].defer_accept,
        "no on_timeout: every routed client speaks first"
    );
    let with_timeout = format!("{MINIMAL}[routing]\non_timeout = \"all\"\n");
    let off = parse_str(&with_timeout).expect("valid");
    assert!(
        !off.listeners[0].defer_accept,
        "on_timeout: a silent client is routed, not held"
    );
    let explicit = MINIMAL.replace(
        "address = \"127.0.0.1:8443\"\n",
        "address = \"127.0.0.1:8443\"\ndefer_accept = false\n",
    );
    assert!(!parse_str(&explicit).expect("valid").listeners[0].defer_accept);
}
