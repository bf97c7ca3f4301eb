//! `pmmux check-transparent`: what the host needs for transparent backends, each item ok or
//! missing with the command that fixes it. The reply path from an upstream server to a client's
//! address must end in pmmux: packets of a transparent socket are marked (nftables `socket
//! transparent 1 meta mark set 1`), and a policy rule routes marked packets to the local table
//! (`ip rule add fwmark 1 lookup 100` + `ip route add local 0.0.0.0/0 dev lo table 100`). The
//! inspection reads `ip rule`, `ip route` and `nft list ruleset`; the parsing is pure and tested.

use std::process::Command;

/// The mark and table the README's rules use.
pub const MARK: u32 = 1;
/// The routing table the README's rules use.
pub const TABLE: u32 = 100;

/// One thing the host needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// What it is.
    pub what: String,
    /// `Some(true)` ok, `Some(false)` missing, `None` could not be told (a tool is missing).
    pub ok: Option<bool>,
    /// What was found.
    pub detail: String,
    /// The command that fixes it.
    pub fix: String,
}

/// The fwmark → table rules in `ip rule show` output (`32765: from all fwmark 0x1 lookup 100`).
pub fn fwmark_rules(ip_rule: &str) -> Vec<(u32, String)> {
    ip_rule
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let at = |key: &str| words.iter().position(|w| *w == key).and_then(|i| words.get(i + 1));
            let mark = at("fwmark")?;
            let mark = mark.split('/').next()?;
            let mark = match mark.strip_prefix("0x") {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => mark.parse().ok()?,
            };
            let table = at("lookup").or_else(|| at("table"))?;
            Some((mark, (*table).to_owned()))
        })
        .collect()
}

/// Whether `ip route show table N` output routes everything to the local host
/// (`local default dev lo scope host`, or `local 0.0.0.0/0` / `local ::/0`).
pub fn has_local_default(routes: &str) -> bool {
    routes.lines().any(|line| {
        let mut words = line.split_whitespace();
        words.next() == Some("local")
            && matches!(words.next(), Some("default" | "0.0.0.0/0" | "::/0"))
            && line.contains(" dev lo")
    })
}

/// The marks nftables sets on packets of transparent sockets (`socket transparent 1 ... meta mark
/// set 0x00000001`) in `nft list ruleset` output.
pub fn nft_transparent_marks(ruleset: &str) -> Vec<u32> {
    ruleset
        .lines()
        .filter(|l| l.contains("socket transparent 1"))
        .filter_map(|l| {
            let value = l.split("mark set ").nth(1)?.split_whitespace().next()?;
            match value.strip_prefix("0x") {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => value.parse().ok(),
            }
        })
        .collect()
}

/// The items, from the outputs of the host's tools (`None`: the tool could not be run).
pub struct Observed {
    /// Whether IP_TRANSPARENT can be set, or why not.
    pub capability: Result<(), String>,
    /// `ip -4 rule show`.
    pub rules_v4: Option<String>,
    /// `ip -4 route show table <each table of a fwmark rule>`, by table.
    pub routes_v4: Vec<(String, String)>,
    /// `ip -6 rule show`.
    pub rules_v6: Option<String>,
    /// `ip -6 route show table <table>`, by table.
    pub routes_v6: Vec<(String, String)>,
    /// `nft list ruleset`.
    pub nft: Option<String>,
}

/// Judges what was observed.
pub fn judge(o: &Observed) -> Vec<Item> {
    let mut items = vec![Item {
        what: "capability to set IP_TRANSPARENT (CAP_NET_ADMIN)".into(),
        ok: Some(o.capability.is_ok()),
        detail: match &o.capability {
            Ok(()) => "this process can set it".into(),
            Err(e) => e.clone(),
        },
        fix: "run pmmux as root (also with --user: one thread keeps CAP_NET_ADMIN), or as its user with systemd: AmbientCapabilities=CAP_NET_ADMIN, or: setcap cap_net_admin+ep $(command -v pmmux)"
            .into(),
    }];
    let nft_marks = o.nft.as_deref().map(nft_transparent_marks);
    let mark = nft_marks.as_ref().and_then(|m| m.first().copied()).unwrap_or(MARK);
    items.push(Item {
        what: "nftables: packets of transparent sockets are marked".into(),
        ok: nft_marks.as_ref().map(|m| !m.is_empty()),
        detail: match &nft_marks {
            None => "cannot run `nft list ruleset` (nftables not installed, or not permitted); an iptables \
                     `-m socket --transparent -j MARK` rule does the same"
                .into(),
            Some(m) if m.is_empty() => "no `socket transparent 1 meta mark set` rule".into(),
            Some(m) => format!("mark {:#x}", m[0]),
        },
        fix: format!(
            "nft add table inet pmmux && nft add chain inet pmmux prerouting '{{ type filter hook prerouting \
             priority mangle; policy accept; }}' && nft add rule inet pmmux prerouting socket transparent 1 \
             meta mark set {mark} accept"
        ),
    });
    for (family, rules, routes, all) in [
        ("IPv4", &o.rules_v4, &o.routes_v4, "0.0.0.0/0"),
        ("IPv6", &o.rules_v6, &o.routes_v6, "::/0"),
    ] {
        let flag = if family == "IPv4" { "-4" } else { "-6" };
        let table = rules
            .as_deref()
            .and_then(|r| fwmark_rules(r).into_iter().find(|(m, _)| *m == mark).map(|(_, t)| t));
        items.push(Item {
            what: format!("{family}: policy rule sends mark {mark:#x} to a routing table"),
            ok: rules.as_ref().map(|_| table.is_some()),
            detail: match (rules, &table) {
                (None, _) => "cannot run `ip rule`".into(),
                (Some(_), None) => format!("no `fwmark {mark:#x}` rule in `ip {flag} rule`"),
                (Some(_), Some(t)) => format!("fwmark {mark:#x} lookup {t}"),
            },
            fix: format!("ip {flag} rule add fwmark {mark} lookup {TABLE}"),
        });
        let t = table.clone().unwrap_or_else(|| TABLE.to_string());
        let shown = routes.iter().find(|(n, _)| *n == t).map(|(_, r)| r.as_str());
        items.push(Item {
            what: format!("{family}: table {t} delivers everything locally"),
            ok: shown.map(has_local_default),
            detail: match shown {
                None => format!("cannot run `ip {flag} route show table {t}`"),
                Some(r) if has_local_default(r) => "local default dev lo".into(),
                Some(_) => format!("no `local default dev lo` route in table {t}"),
            },
            fix: format!("ip {flag} route add local {all} dev lo table {t}"),
        });
    }
    items
}

/// Runs a tool and returns its standard output, `None` when it cannot be run or fails.
fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Looks at this host.
pub fn observe() -> Observed {
    let capability = super::probe().map_err(|e| format!("setting IP_TRANSPARENT failed: {e}"));
    let nft = output("nft", &["list", "ruleset"]);
    let mark = nft
        .as_deref()
        .and_then(|r| nft_transparent_marks(r).first().copied())
        .unwrap_or(MARK);
    let tables = |rules: &Option<String>| -> Vec<String> {
        let mut t: Vec<String> = rules
            .as_deref()
            .map(fwmark_rules)
            .unwrap_or_default()
            .into_iter()
            .filter(|(m, _)| *m == mark)
            .map(|(_, t)| t)
            .collect();
        t.push(TABLE.to_string());
        t
    };
    let rules_v4 = output("ip", &["-4", "rule", "show"]);
    let rules_v6 = output("ip", &["-6", "rule", "show"]);
    let routes = |flag: &str, tables: Vec<String>| -> Vec<(String, String)> {
        tables
            .into_iter()
            .map(|t| {
                // A table with no route yet makes `ip` fail: that is an empty table.
                let shown = output("ip", &[flag, "route", "show", "table", &t]).unwrap_or_default();
                (t, shown)
            })
            .collect()
    };
    Observed {
        capability,
        routes_v4: routes("-4", tables(&rules_v4)),
        routes_v6: routes("-6", tables(&rules_v6)),
        rules_v4,
        rules_v6,
        nft,
    }
}

/// The report, one line per item (`ok`, `MISSING`, `unknown`) with the fix under each one that is
/// not ok, then the notes on when the routing is needed; and whether everything is ok.
pub fn render(items: &[Item]) -> (String, bool) {
    let mut out = String::new();
    for i in items {
        let state = match i.ok {
            Some(true) => "ok     ",
            Some(false) => "MISSING",
            None => "unknown",
        };
        out.push_str(&format!("{state} {}: {}\n", i.what, i.detail));
        if i.ok != Some(true) {
            out.push_str(&format!("        fix: {}\n", i.fix));
        }
    }
    out.push_str(
        "notes:\n\
         - upstream on another host: that host must route replies for client addresses through this one \
         (its default route or a route to the clients via this host); the rules above then hand them to pmmux.\n\
         - upstream on this host: its replies are local output; mark them too, by its port, e.g. \
         nft add chain inet pmmux output '{ type route hook output priority mangle; policy accept; }' && \
         nft add rule inet pmmux output tcp sport 22 meta mark set 1\n\
         - IPv6 items matter only for IPv6 clients; ip_nonlocal_bind is not needed (IP_TRANSPARENT binds any address).\n",
    );
    let ok = items.iter().all(|i| i.ok == Some(true) || i.what.starts_with("IPv6"));
    (out, ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = "0:\tfrom all lookup local\n32764:\tfrom all fwmark 0x1 lookup 100\n\
                         32765:\tfrom all fwmark 0x2/0xff lookup tproxy\n32766:\tfrom all lookup main\n";
    const NFT: &str =
        "table inet pmmux {\n\tchain prerouting {\n\t\ttype filter hook prerouting priority mangle; policy accept;\n\
                       \t\tsocket transparent 1 meta mark set 0x00000001 accept\n\t}\n}\n";

    #[test]
    fn reads_rules_routes_and_marks_as_the_tools_print_them() {
        assert_eq!(
            fwmark_rules(RULES),
            vec![(1, "100".to_owned()), (2, "tproxy".to_owned())]
        );
        assert!(fwmark_rules("0:\tfrom all lookup local\n").is_empty());
        assert!(has_local_default("local default dev lo scope host \n"));
        assert!(has_local_default("local ::/0 dev lo metric 1024 pref medium\n"));
        assert!(!has_local_default("default via 10.0.0.1 dev eth0\n"));
        assert!(!has_local_default(""));
        assert_eq!(nft_transparent_marks(NFT), vec![1]);
        assert!(nft_transparent_marks("table inet filter {\n}\n").is_empty());
    }

    fn observed(rules: &str, routes: &str, nft: Option<&str>) -> Observed {
        Observed {
            capability: Ok(()),
            rules_v4: Some(rules.into()),
            routes_v4: vec![("100".into(), routes.into())],
            rules_v6: Some(String::new()),
            routes_v6: vec![],
            nft: nft.map(Into::into),
        }
    }

    #[test]
    fn a_complete_setup_is_ok_and_each_gap_is_named_with_its_fix() {
        let items = judge(&observed(RULES, "local default dev lo scope host\n", Some(NFT)));
        let (text, ok) = render(&items);
        assert!(ok, "{text}");
        assert!(text.contains("MISSING IPv6"), "IPv6 is reported, not required: {text}");

        let items = judge(&observed("32766:\tfrom all lookup main\n", "", Some("")));
        let (text, ok) = render(&items);
        assert!(!ok);
        for fix in [
            "fix: ip -4 rule add fwmark 1 lookup 100",
            "fix: ip -4 route add local 0.0.0.0/0 dev lo table 100",
            "socket transparent 1 meta mark set 1 accept",
        ] {
            assert!(text.contains(fix), "{fix} in {text}");
        }

        let mut no_cap = observed(RULES, "local default dev lo scope host\n", None);
        no_cap.capability = Err("setting IP_TRANSPARENT failed: Operation not permitted".into());
        let (text, ok) = render(&judge(&no_cap));
        assert!(!ok);
        assert!(text.contains("MISSING capability"), "{text}");
        assert!(text.contains("unknown nftables"), "{text}");
    }
}
