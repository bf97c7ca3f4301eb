//! Unit tests of the quick-start parser: ports (IPv4, IPv6, transports, C# forms), backend specs
//! (quoting, typed values, target forms) and the configuration they build.

use super::*;

fn port(arg: &str) -> (String, bool, bool) {
    let p = parse_port(arg).unwrap();
    (p.address.to_string(), p.tcp, p.udp)
}

#[test]
fn ports() {
    assert_eq!(port("8443"), ("0.0.0.0:8443".into(), true, true));
    assert_eq!(port("127.0.0.1:5353:udp"), ("127.0.0.1:5353".into(), false, true));
    assert_eq!(port("8443:tcp"), ("0.0.0.0:8443".into(), true, false));
    assert_eq!(port("[::1]:8443"), ("[::1]:8443".into(), true, true));
    assert_eq!(port("[::1]:8443:udp"), ("[::1]:8443".into(), false, true));
    assert_eq!(port("!:8080:tcp"), ("0.0.0.0:8080".into(), true, false));
    let e = parse_port("::1:80").unwrap_err().to_string();
    assert!(e.contains("IPv6 as [::1]:PORT"), "{e}");
    assert!(parse_port("host:80").is_err());
    assert!(parse_port("70000").is_err());
    assert!(parse_port("80:sctp").is_err());
}

fn binding(arg: &str) -> PortSpec {
    parse_port(arg).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn csharp_bindings_map_a_public_port() {
    let b = binding("443:8443:tcp");
    assert_eq!(
        (b.address.to_string(), b.tcp, b.udp),
        ("0.0.0.0:8443".into(), true, false)
    );
    assert_eq!((b.public, b.listen), (Some(PublicPort::Fixed(443)), true));
    let b = binding("?:8080");
    assert_eq!((b.public, b.tcp, b.udp), (Some(PublicPort::Any), true, true));
    let b = binding("8080:?:udp");
    assert_eq!((b.address.port(), b.public), (0, Some(PublicPort::Fixed(8080))));
    assert_eq!(binding("!:8080:tcp").public, None);
    let b = binding("443:8443:tcp:bind-address=10.77.0.2,listen=false");
    assert_eq!(b.address.to_string(), "10.77.0.2:8443");
    assert!(!b.listen);
    let b = binding("443:8443:bind-address=::1");
    assert_eq!((b.address.to_string(), b.tcp, b.udp), ("[::1]:8443".into(), true, true));
    assert_eq!(
        binding("53:5353:udp:bind-address=\"[::1]\"").address.to_string(),
        "[::1]:5353"
    );
}

#[test]
fn csharp_bindings_that_cannot_work_are_refused() {
    for (arg, why) in [
        ("443:8443:tcp:listen=maybe", "not true or false"),
        ("443:8443:tcp:color=red", "unknown key `color`"),
        ("!:8443:listen=false", "neither listen nor map"),
        ("443:?:listen=false", "needs a LOCAL port"),
        ("443:!", "LOCAL cannot be `!`"),
        ("0:8443", "PUBLIC `0` is not a port"),
        ("443:70000", "LOCAL `70000`"),
        ("443:8443:tcp:bind-address=host", "not an IP address"),
    ] {
        let e = parse_port(arg).unwrap_err().to_string();
        assert!(e.starts_with(&format!("-p {arg}: ")) && e.contains(why), "{arg}: {e}");
    }
}

#[test]
fn a_binding_builds_a_listener_with_public_port() {
    let c = build(
        &[
            "443:8443:tcp".into(),
            "?:5353:udp".into(),
            "9000:9001:tcp:listen=false".into(),
            "8080".into(),
        ],
        &[],
        &PluginSource::dir("plugins"),
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let l: Vec<_> = c
        .listeners
        .iter()
        .map(|l| (l.address.ip().unwrap().port(), l.public_port, l.listen))
        .collect();
    assert_eq!(
        l,
        vec![
            (8443, Some(PublicPort::Fixed(443)), true),
            (5353, Some(PublicPort::Any), true),
            (9001, Some(PublicPort::Fixed(9000)), false),
            (8080, None, true),
        ]
    );
}

fn backend(arg: &str) -> Table {
    parse_backend(arg).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn backend_with_target_and_params() {
    let b = backend("web:http:target=127.0.0.1:8080,host=a.example");
    assert_eq!(b["name"].as_str(), Some("web"));
    assert_eq!(b["protocol"].as_str(), Some("http"));
    assert_eq!(b["target"].as_str(), Some("127.0.0.1:8080"));
    assert_eq!(b["params"]["host"].as_str(), Some("a.example"));
    assert!(!b.contains_key("match"));
}

#[test]
fn csharp_target_pairs_and_priority() {
    let b = backend("ssh:ssh:target.ip=127.0.0.1,target.port=22,priority=vip");
    assert_eq!(b["target"].as_str(), Some("127.0.0.1:22"));
    assert_eq!(b["priority"].as_str(), Some("vip"));
    assert!(!b.contains_key("params"));
    let b = backend("web:pass:ip=127.0.0.1,port=3000");
    assert_eq!(b["target"].as_str(), Some("127.0.0.1:3000"));
    let b = backend("v6:pass:target.ip=::1,target.port=22");
    assert_eq!(b["target"].as_str(), Some("[::1]:22"));
    // `ip`/`port` are target keys for pass only; elsewhere they are params.
    let b = backend("x:regex:port=5");
    assert_eq!(b["params"]["port"].as_integer(), Some(5));
    let b = backend("blackhole:noop");
    assert_eq!(b.len(), 2);
    let e = parse_backend("a:pass:target.ip=1.2.3.4").unwrap_err().to_string();
    assert!(e.contains("go together"), "{e}");
    let e = parse_backend("a:pass:target=1.2.3.4:1,target.ip=1.2.3.4,target.port=2").unwrap_err();
    assert!(e.to_string().contains("not both"));
}

#[test]
fn quoting_and_value_types() {
    let b = backend(r#"t:tls:sni="a.example,b.example",alpn=h2,alpn="http/1.1",x="say \"hi\", k=v:1""#);
    assert_eq!(b["params"]["sni"].as_str(), Some("a.example,b.example"));
    let alpn: Vec<&str> = b["params"]["alpn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(alpn, ["h2", "http/1.1"]);
    assert_eq!(b["params"]["x"].as_str(), Some("say \"hi\", k=v:1"));
    let b = backend(r#"h:http-response:status=404,h2c=false,ratio=0.5,body="404",proxy.address="https://e:1""#);
    assert_eq!(b["params"]["status"].as_integer(), Some(404));
    assert_eq!(b["params"]["h2c"].as_bool(), Some(false));
    assert_eq!(b["params"]["ratio"].as_float(), Some(0.5));
    assert_eq!(b["params"]["body"].as_str(), Some("404"));
    assert_eq!(b["params"]["proxy.address"].as_str(), Some("https://e:1"));
    let b = backend("m:pass:target=127.0.0.1:1,match.remote_ip=127.0.0.0/8,udp_idle_timeout_ms=500");
    assert_eq!(b["match"]["remote_ip"].as_str(), Some("127.0.0.0/8"));
    assert_eq!(b["udp_idle_timeout_ms"].as_integer(), Some(500));
    for bad in [
        "web",
        "web:",
        ":http",
        "w:http:host",
        r#"w:http:host="a"#,
        r#"w:http:host="a"b"#,
        "w:http:=x",
    ] {
        let e = parse_backend(bad).unwrap_err().to_string();
        assert!(e.starts_with(&format!("-b {bad}: ")), "{e}");
    }
}

#[test]
fn builds_a_config() {
    let c = build(
        &["8443".into(), "127.0.0.1:5353:udp".into()],
        &[
            "web:http:target=127.0.0.1:8080,host=a.example".into(),
            "ssh:ssh:target.ip=127.0.0.1,target.port=22,priority=vip".into(),
        ],
        &PluginSource::dir("plugins"),
        None,
    )
    .unwrap();
    assert_eq!(c.listeners.len(), 2);
    assert!(c.listeners[0].tcp && c.listeners[0].udp);
    assert!(!c.listeners[1].tcp && c.listeners[1].udp);
    assert_eq!(c.backends[0].target.as_deref(), Some("127.0.0.1:8080"));
    assert!(c.backends[0].params_toml.contains("host = \"a.example\""));
    assert_eq!(c.backends[1].priority, crate::config::Priority::Vip);
    assert!(c.plugin_dir.is_absolute() && c.plugin_dir.ends_with("plugins"));
    assert!(!c.reload.watch_config);
    assert_eq!(c.path, Path::new(""));

    let e = build(
        &["1".into()],
        &["a:pass:target=nohost".into()],
        &PluginSource::dir("p"),
        None,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "command line: backend `a`: target `nohost` is not host:port or unix:/PATH"
    );
    let e = build(
        &["1".into()],
        &["a:noop".into(), "a:noop".into()],
        &PluginSource::dir("p"),
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("backend name `a` is used twice"), "{e}");
    let e = build(&[], &["a:noop".into()], &PluginSource::dir("p"), None).unwrap_err();
    assert!(e.to_string().contains("at least one -p"), "{e}");
    let e = build(
        &["1".into()],
        &["a:pass:target=1.2.3.4:1,priority=top".into()],
        &PluginSource::dir("p"),
        None,
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("command line: "), "{e}");
}

#[test]
fn on_timeout_names_a_backend() {
    let c = build(
        &["1".into()],
        &["ssh:pass:target=127.0.0.1:22".into()],
        &PluginSource::dir("p"),
        Some("ssh"),
    )
    .unwrap();
    assert_eq!(c.routing.on_timeout.as_deref(), Some("ssh"));
    let e = build(&["1".into()], &["a:noop".into()], &PluginSource::dir("p"), Some("b")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "command line: --on-timeout names `b`, which is not a backend"
    );
}

#[test]
fn finds_the_plugins_of_a_build_or_of_the_package() {
    let root = tempfile::tempdir().unwrap();
    let (cwd, bin, lib) = (
        root.path().join("work"),
        root.path().join("usr/bin"),
        root.path().join("usr/lib/pmmux/plugins"),
    );
    for d in [&cwd, &bin, &lib] {
        std::fs::create_dir_all(d).unwrap();
    }
    let exe = bin.join("pmmux");
    let tried = find_plugins(&cwd, Some(&exe)).unwrap_err();
    assert_eq!(
        tried,
        [cwd.join("plugins"), bin.clone(), bin.join("../lib/pmmux/plugins")]
    );
    // The package's folder.
    std::fs::write(lib.join("libpmmux_echo.so"), b"").unwrap();
    assert_eq!(
        find_plugins(&cwd, Some(&exe)).unwrap(),
        PluginSource::dir(bin.join("../lib/pmmux/plugins"))
    );
    // A cargo build: libraries beside the executable, test fixtures among them left out.
    std::fs::write(bin.join("libfixture_panic.so"), b"").unwrap();
    assert!(find_plugins(&cwd, Some(&exe)).unwrap().prefix.is_none());
    std::fs::write(bin.join("libpmmux_http.so"), b"").unwrap();
    let found = find_plugins(&cwd, Some(&exe)).unwrap();
    assert_eq!((found.dir, found.prefix.as_deref()), (bin.clone(), Some("libpmmux_")));
    // A plugins/ folder with a library in the working folder wins; an empty one does not.
    std::fs::create_dir(cwd.join("plugins")).unwrap();
    assert_eq!(find_plugins(&cwd, Some(&exe)).unwrap().dir, bin);
    std::fs::write(cwd.join("plugins/libmine.so"), b"").unwrap();
    assert_eq!(
        find_plugins(&cwd, Some(&exe)).unwrap(),
        PluginSource::dir(cwd.join("plugins"))
    );
}
