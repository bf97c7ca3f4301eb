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
